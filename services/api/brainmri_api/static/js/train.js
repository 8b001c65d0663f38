// The Train view (admin keys only): start a training job on a server-side or S3 dataset; its
// progress and result (the new model against production) open in the job view. Options left
// blank are not sent, so the recipe's own values apply, as with `brainmri submit train`.

import { getRole, postJson } from "./api.js";
import { fill, showError } from "./dom.js";
import { showRecentJobs } from "./jobs.js";

const $ = (id) => document.getElementById(id);

// Request field -> input id and how its text becomes a JSON value.
const NUMBER_FIELDS = [
  ["epochs", "train-epochs", Number.parseInt],
  ["img_size", "train-img-size", Number.parseInt],
  ["batch_size", "train-batch-size", Number.parseInt],
  ["time_budget_minutes", "train-time-budget", Number],
  ["seed", "train-seed", Number.parseInt],
  ["invert_prob", "train-invert-prob", Number],
  ["head_crop_prob", "train-head-crop-prob", Number],
  ["val_frac", "train-val-frac", Number],
  ["test_frac", "train-test-frac", Number],
];

/** The request as the API takes it (`POST /v1/jobs/train`). */
function trainRequest() {
  const request = {
    dataset: $("train-dataset").value.trim(),
    recipe: $("train-recipe").value,
    auto_promote: $("train-auto-promote").checked,
  };
  for (const [field, id, parse] of NUMBER_FIELDS) {
    const text = $(id).value.trim();
    if (text !== "") request[field] = parse(text, 10);
  }
  const crop = $("train-crop").value;
  if (crop) request.crop = crop;
  return request;
}

async function submit(event) {
  event.preventDefault();
  showError($("train-error"), null);
  const button = $("train-submit");
  button.disabled = true;
  try {
    const created = await postJson("/v1/jobs/train", trainRequest());
    window.location.hash = `#/jobs/${encodeURIComponent(created.job_id)}`;
  } catch (err) {
    showError($("train-error"), err);
  } finally {
    button.disabled = false;
  }
}

export function initTrain() {
  $("train-form").addEventListener("submit", submit);
}

export async function showTrain() {
  const admin = getRole() === "admin";
  $("train-form").hidden = !admin;
  $("train-admin-note").hidden = admin;
  if (!admin) {
    fill($("train-recent"));
    return;
  }
  return showRecentJobs(
    "train",
    "Recent training jobs; open one for its result",
    $("train-recent"),
    $("train-error"),
  );
}
