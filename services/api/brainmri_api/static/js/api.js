// The API as the page uses it: the key, JSON requests, artifacts as blob: URLs, job polling.
//
// The key lives in sessionStorage only (gone when the tab closes; never localStorage, never a
// cookie), and travels as the X-API-Key header. Artifacts need that header too, so they are
// fetched here and handed out as object URLs; `<img src>` alone could not authenticate.

const KEY_SLOT = "brainmri.apiKey";
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const MAX_POLL_FAILURES = 5;

/** An API failure with the server's own `{error: {code, message}}` (or a network problem). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_SLOT) || "";
}

export function setKey(key) {
  sessionStorage.setItem(KEY_SLOT, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_SLOT);
}

// The key's role as /v1/me last answered: admin controls follow it. Only the page's looks
// depend on it; the server checks the role again on every call.
let keyRole = "user";

export function getRole() {
  return keyRole;
}

export function setRole(role) {
  keyRole = role === "admin" ? "admin" : "user";
}

export function isFinished(status) {
  return FINISHED.has(status);
}

async function errorFrom(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code || code);
      message = String(body.error.message || message);
    }
  } catch {
    // not JSON (a proxy's HTML page): keep the status line
  }
  return new ApiError(response.status, code, message);
}

/** fetch() with the key attached; throws ApiError for anything but 2xx. */
async function send(method, path, { json, form } = {}) {
  const key = getKey();
  if (!key) {
    throw new ApiError(401, "no_key", "Enter an API key first.");
  }
  const headers = { "X-API-Key": key, Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser writes the multipart boundary itself
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network_error", `Cannot reach the server: ${err.message}`);
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  return response;
}

export async function getJson(path) {
  return (await send("GET", path)).json();
}

export async function postJson(path, json) {
  return (await send("POST", path, { json })).json();
}

export async function postForm(path, form) {
  return (await send("POST", path, { form })).json();
}

/** Who the key belongs to: `{key_id, role}`. */
export function whoAmI() {
  return getJson("/v1/me");
}

/** An artifact (CAM, plot, report) as an object URL; the caller revokes it. */
export async function artifactUrl(path) {
  const response = await send("GET", path);
  return URL.createObjectURL(await response.blob());
}

export function jobsQuery({ kind = "", status = "", limit = 20, offset = 0 } = {}) {
  const query = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (kind) query.set("kind", kind);
  if (status) query.set("status", status);
  return `/v1/jobs?${query}`;
}

export function cancelJob(jobId) {
  return postJson(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, {});
}

/**
 * Poll a job until it finishes, calling onUpdate(job) after every read. `isStale()` lets the
 * caller abandon a poll (a newer submission, another job opened) without a race. A few
 * consecutive network errors or 5xx answers (a restarting API) are ridden out; anything
 * else (401, 404) ends the poll at once.
 */
export async function pollJob(jobId, onUpdate, isStale = () => false) {
  let delay = 250;
  let failures = 0;
  for (;;) {
    if (isStale()) return null;
    let job;
    try {
      job = await getJson(`/v1/jobs/${encodeURIComponent(jobId)}`);
      failures = 0;
    } catch (err) {
      const transient = err instanceof ApiError && (err.status === 0 || err.status >= 500);
      if (!transient || ++failures > MAX_POLL_FAILURES) throw err;
    }
    if (isStale()) return null;
    if (job) {
      onUpdate(job);
      if (isFinished(job.status)) return job;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(1500, delay * 1.5);
  }
}
