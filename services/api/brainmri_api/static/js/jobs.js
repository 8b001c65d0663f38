// The Jobs view (filtered, paged list) and the Job view (one job, live, with its result).

import { cancelJob, getJson, isFinished, jobsQuery, pollJob } from "./api.js";
import { fill, fmtDate, fmtPercent, h, showError, shortId, table, UrlScope } from "./dom.js";
import {
  jobErrorMessage,
  renderEvalReport,
  renderOtherResult,
  renderPredictResult,
  renderStatus,
} from "./results.js";
import { renderTrainReport } from "./train-report.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;
const page = { kind: "", status: "", offset: 0, total: 0 };
const urls = new UrlScope(); // images of the open job
let openJob = null; // id of the job the Job view follows; null when that view is hidden

/** A link to a job's own view. */
export function jobLink(job) {
  return h(
    "a",
    { href: `#/jobs/${encodeURIComponent(job.job_id)}`, dataset: { jobId: job.job_id } },
    h("code", {}, shortId(job.job_id)),
  );
}

function jobRow(job) {
  return [
    jobLink(job),
    job.kind,
    h("span", { className: `status status-${job.status}` }, job.status),
    fmtPercent(job.progress, 0),
    fmtDate(job.created_at),
    job.model_version || "-",
  ];
}

/** The table of a job list page (also used for "Recent evaluations"). */
export function jobsTable(caption, jobs) {
  if (!jobs.length) return h("p", { className: "hint" }, "No jobs match.");
  return table(caption, ["Job", "Kind", "Status", "Progress", "Created", "Model"], jobs.map(jobRow));
}

/** Fill `node` with the caller's ten newest jobs of one kind (the Evaluate and Train views'
 * "recent" lists); a failure empties it and shows in `errorNode`. */
export async function showRecentJobs(kind, caption, node, errorNode) {
  try {
    const body = await getJson(jobsQuery({ kind, limit: 10 }));
    fill(node, jobsTable(caption, body.items));
  } catch (err) {
    fill(node);
    showError(errorNode, err);
  }
}

async function loadJobs() {
  showError($("jobs-error"), null);
  try {
    const body = await getJson(
      jobsQuery({ kind: page.kind, status: page.status, limit: PAGE, offset: page.offset }),
    );
    page.total = body.total;
    fill($("jobs-table"), jobsTable("Your jobs, newest first", body.items));
    const first = body.total ? page.offset + 1 : 0;
    const last = page.offset + body.items.length;
    $("jobs-range").textContent = `Jobs ${first}-${last} of ${body.total}`;
    $("jobs-prev").disabled = page.offset === 0;
    $("jobs-next").disabled = last >= body.total;
  } catch (err) {
    fill($("jobs-table"));
    showError($("jobs-error"), err);
  }
}

export function initJobs() {
  $("jobs-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    page.kind = $("filter-kind").value;
    page.status = $("filter-status").value;
    page.offset = 0;
    loadJobs();
  });
  $("jobs-refresh").addEventListener("click", loadJobs);
  $("jobs-prev").addEventListener("click", () => {
    page.offset = Math.max(0, page.offset - PAGE);
    loadJobs();
  });
  $("jobs-next").addEventListener("click", () => {
    page.offset += PAGE;
    loadJobs();
  });
  $("job-cancel").addEventListener("click", async () => {
    showError($("job-error"), null);
    try {
      await cancelJob(openJob);
    } catch (err) {
      showError($("job-error"), err);
    }
  });
}

export function showJobs() {
  loadJobs();
}

// --- one job ------------------------------------------------------------------------------

function renderMeta(job) {
  const params = Object.entries(job.params || {})
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(", ");
  fill(
    $("job-meta"),
    h(
      "dl",
      { className: "facts" },
      [
        ["Job id", h("code", {}, job.job_id)],
        ["Kind", job.kind],
        ["Status", job.status],
        ["Created", fmtDate(job.created_at)],
        ["Started", fmtDate(job.started_at)],
        ["Finished", fmtDate(job.finished_at)],
        ["Attempts", String(job.attempts)],
        ["Model version", job.model_version || "-"],
        ["Parameters", params || "-"],
      ].map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
    ),
  );
}

/** The report that fits the finished job's kind; null while it has no result. */
function renderResult(job) {
  if (job.status !== "succeeded" || !job.result) return null;
  if (job.kind === "predict") return renderPredictResult(job, urls);
  if (job.kind === "evaluate") return renderEvalReport(job, urls);
  if (job.kind === "train") return renderTrainReport(job, urls);
  return renderOtherResult(job);
}

export async function showJob(jobId) {
  openJob = jobId;
  urls.revokeAll();
  $("job-title").textContent = `Job ${shortId(jobId)}`;
  fill($("job-meta"));
  fill($("job-status"));
  fill($("job-result"));
  showError($("job-error"), null);
  try {
    const job = await pollJob(
      jobId,
      (update) => {
        renderMeta(update);
        renderStatus($("job-status"), update);
        $("job-cancel").hidden = isFinished(update.status);
      },
      () => openJob !== jobId,
    );
    if (!job) return;
    const message = jobErrorMessage(job);
    if (message) showError($("job-error"), new Error(message));
    const result = renderResult(job);
    if (result) $("job-result").append(result);
  } catch (err) {
    if (openJob === jobId) showError($("job-error"), err);
  }
}

/** Leaving the job view stops its poll and frees its images. */
export function hideJob() {
  openJob = null;
  urls.revokeAll();
}
