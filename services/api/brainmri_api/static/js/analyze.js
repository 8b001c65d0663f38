// The Analyze view: choose or drop one file, submit a predict job, follow it, show the card.

import { ApiError, cancelJob, pollJob, postForm } from "./api.js";
import { fill, showError, UrlScope } from "./dom.js";
import { jobErrorMessage, renderPredictResult, renderStatus } from "./results.js";

const $ = (id) => document.getElementById(id);
const urls = new UrlScope();
let chosen = null; // the File to upload
let currentJob = null; // id of the job being followed; a newer submission replaces it

function choose(file) {
  chosen = file || null;
  $("file-name").textContent = chosen
    ? `${chosen.name} (${Math.max(1, Math.round(chosen.size / 1024))} KB)`
    : "No file chosen";
}

function wireDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => choose(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer?.files?.[0];
    if (file) choose(file);
  });
  // A file dropped beside the zone would make the browser navigate away to show it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }
}

function formData() {
  const form = new FormData();
  form.append("file", chosen, chosen.name || "upload");
  form.append("tta", $("tta").checked ? "true" : "false");
  form.append("cam", $("cam").checked ? "true" : "false");
  const threshold = $("threshold").value.trim();
  if (threshold !== "") form.append("threshold", threshold);
  return form;
}

async function submit(event) {
  event.preventDefault();
  const error = $("predict-error");
  showError(error, null);
  if (!chosen) {
    showError(error, new Error("Choose or drop a file first."));
    return;
  }
  const button = $("predict-submit");
  button.disabled = true;
  urls.revokeAll();
  fill($("predict-result"));
  fill($("predict-status"));
  let jobId = null;
  try {
    const created = await postForm("/v1/jobs/predict", formData());
    jobId = created.job_id;
    currentJob = jobId;
    $("predict-cancel").hidden = false;
    const job = await pollJob(
      jobId,
      (update) => renderStatus($("predict-status"), update),
      () => currentJob !== jobId,
    );
    if (!job) return; // superseded by a newer submission
    const message = jobErrorMessage(job);
    if (message) {
      showError(error, new Error(message));
    } else {
      $("predict-result").append(renderPredictResult(job, urls));
    }
  } catch (err) {
    showError(error, err instanceof ApiError ? err : new Error(String(err)));
  } finally {
    if (currentJob === jobId) $("predict-cancel").hidden = true;
    button.disabled = false;
  }
}

async function cancel() {
  if (!currentJob) return;
  try {
    await cancelJob(currentJob);
  } catch (err) {
    showError($("predict-error"), err);
  }
}

export function initAnalyze() {
  wireDropZone();
  $("predict-form").addEventListener("submit", submit);
  $("predict-cancel").addEventListener("click", cancel);
}

export function showAnalyze() {}
