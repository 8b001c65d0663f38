// The Evaluate view: start an evaluation of the production model on a server-side folder; the
// report (metrics, plots, downloads) opens in the job view once it is submitted.

import { postJson } from "./api.js";
import { showError } from "./dom.js";
import { showRecentJobs } from "./jobs.js";

const $ = (id) => document.getElementById(id);

async function submit(event) {
  event.preventDefault();
  showError($("evaluate-error"), null);
  const threshold = $("eval-threshold").value.trim();
  const request = {
    source: $("eval-source").value.trim(),
    tta: $("eval-tta").checked,
    limit: Number.parseInt($("eval-limit").value || "0", 10) || 0,
  };
  if (threshold !== "") request.threshold = Number(threshold);
  try {
    const created = await postJson("/v1/jobs/evaluate", request);
    window.location.hash = `#/jobs/${encodeURIComponent(created.job_id)}`;
  } catch (err) {
    showError($("evaluate-error"), err);
  }
}

export function initEvaluate() {
  $("evaluate-form").addEventListener("submit", submit);
}

export function showEvaluate() {
  return showRecentJobs(
    "evaluate",
    "Recent evaluation jobs; open one for its report",
    $("evaluate-recent"),
    $("evaluate-error"),
  );
}
