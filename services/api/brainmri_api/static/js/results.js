// Rendering of job status, predict result cards and evaluation reports. Shared by the Analyze
// view and the job view, so a result looks the same wherever it is opened. (Train reports:
// train-report.js.)

import { artifactImage, artifactViews } from "./artifacts.js";
import { className, fill, fmtDate, fmtNumber, fmtPercent, h, shortId, table } from "./dom.js";

export const DISCLAIMER = "Research/triage only - not a medical device. Not for diagnosis.";

/** Status text plus a <progress> bar; `node` is an aria-live region. A queued job that no
 * live worker can take says so under the bar, instead of sitting at 0% without a word. */
export function renderStatus(node, job) {
  const detail = job.progress_detail || {};
  let text = `Job ${shortId(job.job_id)} (${job.kind}): ${job.status}`;
  if (job.status === "running" || job.status === "queued") {
    text += ` - ${fmtPercent(job.progress, 0)}`;
    if (detail.total) text += ` (${detail.done || 0} of ${detail.total} images)`;
    else if (detail.epoch && detail.epochs) text += ` (${trainingNote(detail)})`;
  }
  const bar = h("progress", {
    max: "1",
    value: String(job.status === "succeeded" ? 1 : job.progress || 0),
    "aria-label": "Job progress",
  });
  const waiting = job.status === "queued" && job.waiting_reason;
  fill(
    node,
    h("span", { className: `status status-${job.status}` }, text),
    bar,
    waiting ? h("p", { className: "waiting-reason" }, `Waiting: ${job.waiting_reason}.`) : null,
  );
  node.dataset.status = job.status;
}

/** Where a train job is: the epoch of the planned epochs (fitted to the job's time budget,
 * if it has one) and the validation macro-F1 that epoch reached, as the CLI shows it. */
function trainingNote(detail) {
  let note = `epoch ${detail.epoch} of ${detail.epochs}`;
  if (typeof detail.val_macro_f1 === "number") {
    note += `, validation macro-F1 ${fmtNumber(detail.val_macro_f1, 3)}`;
  }
  return note;
}

/** The job's error as a sentence, or "" when it has none. */
export function jobErrorMessage(job) {
  if (job.status === "cancelled") return "The job was cancelled.";
  if (job.status !== "failed") return "";
  const error = job.error || {};
  return `The job failed: ${error.message || error.code || "unknown error"}`;
}

/** A horizontal bar for a probability in [0, 1]; widths are set through CSSOM (CSP-safe). */
function bar(value, extraClass = "") {
  const fillNode = h("span", { className: "bar-fill" });
  fillNode.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
  return h("span", { className: `bar ${extraClass}`.trim(), "aria-hidden": "true" }, fillNode);
}

function probabilityRows(result) {
  const entries = Object.entries(result.class_probs || {});
  return h(
    "ul",
    { className: "probs", "aria-label": "Class probabilities" },
    entries.map(([name, prob]) =>
      h(
        "li",
        {
          className: `prob-row${name === result.predicted_class ? " predicted" : ""}`,
          dataset: { class: name, prob: String(prob) },
        },
        h("span", { className: "prob-label" }, className(name)),
        bar(prob),
        h("span", { className: "prob-value" }, fmtNumber(prob, 3)),
      ),
    ),
  );
}

function thresholdGauge(result) {
  const marker = h("span", { className: "threshold-marker", title: "threshold" });
  marker.style.left = `${Math.max(0, Math.min(1, result.threshold)) * 100}%`;
  const gauge = bar(result.tumor_prob, result.has_tumor ? "bar-alert" : "bar-ok");
  gauge.append(marker);
  return h(
    "div",
    {
      className: "gauge",
      role: "img",
      "aria-label": `Tumor probability ${fmtNumber(result.tumor_prob)} against threshold ${fmtNumber(result.threshold)}`,
    },
    h(
      "p",
      { className: "gauge-caption" },
      "Tumor probability ",
      h("strong", { className: "tumor-prob" }, fmtNumber(result.tumor_prob)),
      " against threshold ",
      h("strong", { className: "threshold-value" }, fmtNumber(result.threshold)),
    ),
    gauge,
  );
}

function decision(result) {
  const verdict = result.has_tumor ? "Tumor suspected" : "No tumor suspected";
  const comparison = result.has_tumor ? "at or above" : "below";
  return h(
    "p",
    { className: `decision ${result.has_tumor ? "decision-alert" : "decision-ok"}` },
    h("strong", {}, verdict),
    ` - tumor probability ${fmtNumber(result.tumor_prob)} is ${comparison} the threshold ` +
      `${fmtNumber(result.threshold)}; most likely class: ${className(result.predicted_class)}.`,
  );
}

/** The result card of a finished predict job. */
export function renderPredictResult(job, urls) {
  const result = job.result || {};
  const input = result.input || {};
  const images = [
    h(
      "figure",
      {},
      artifactImage(result.input_url, "The input slice as the model saw it", "input-image", urls),
      h("figcaption", {}, "Input slice"),
    ),
  ];
  if (result.cam_url) {
    images.push(
      h(
        "figure",
        {},
        artifactImage(
          result.cam_url,
          "Grad-CAM overlay: warmer colours mark regions that drove the prediction",
          "cam-image",
          urls,
        ),
        h("figcaption", {}, "Grad-CAM overlay"),
      ),
    );
  } else {
    images.push(h("p", { className: "hint" }, "No Grad-CAM overlay was requested."));
  }
  return h(
    "article",
    { className: "result-card", "aria-labelledby": `result-${job.job_id}` },
    h("h3", { id: `result-${job.job_id}` }, "Result"),
    h("p", { className: "card-disclaimer" }, DISCLAIMER),
    decision(result),
    thresholdGauge(result),
    probabilityRows(result),
    h(
      "dl",
      { className: "facts" },
      h("dt", {}, "Model version"),
      h("dd", { className: "model-version" }, result.model_version || job.model_version || "-"),
      h("dt", {}, "Test-time augmentation"),
      h("dd", {}, result.tta ? "on" : "off"),
      h("dt", {}, "Input"),
      h(
        "dd",
        {},
        [input.kind, input.width && input.height ? `${input.width}x${input.height}` : null]
          .filter(Boolean)
          .join(", ") || "-",
      ),
      h("dt", {}, "Slices scored"),
      h("dd", {}, String(result.n_slices || 1)),
    ),
    h("div", { className: "images" }, images),
  );
}

const METRICS = [
  ["n_scored", "Images scored", (v) => String(v ?? "-")],
  ["acc_multiclass", "Accuracy (4 classes)", fmtNumber],
  ["macro_f1", "Macro-F1", fmtNumber],
  ["sensitivity", "Tumor sensitivity at threshold", fmtNumber],
  ["specificity", "Specificity at threshold", fmtNumber],
  ["roc_auc_binary", "ROC AUC (tumor vs none)", fmtNumber],
  ["ap_binary", "Average precision (tumor)", fmtNumber],
  ["ece", "Expected calibration error", fmtNumber],
  ["threshold", "Threshold used", fmtNumber],
  ["best_threshold_by_YoudenJ", "Youden-J best threshold", fmtNumber],
];

export const PLOTS = {
  "cm_multiclass.png": "Confusion matrix over the four classes",
  "cm_binary.png": "Confusion matrix, tumor versus no tumor",
  "roc_binary.png": "ROC curve, tumor versus no tumor",
  "pr_binary.png": "Precision-recall curve, tumor versus no tumor",
  "threshold_sweep.png": "Sensitivity and specificity across thresholds",
  "reliability.png": "Reliability diagram (calibration)",
  "roc_per_class.png": "One-versus-rest ROC curve per class",
  "mistakes.png": "The worst mistakes: missed tumours first, then false alarms, then other classes",
};

function confusionTable(result) {
  const names = result.class_names || Object.keys(result.per_class || {});
  const matrix = result.cm_multiclass || [];
  const head = h(
    "tr",
    {},
    h("td", {}, ""),
    names.map((name) => h("th", { scope: "col" }, `predicted ${className(name)}`)),
  );
  const rows = matrix.map((row, i) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, `true ${className(names[i])}`),
      row.map((count) => h("td", { className: "num" }, String(count))),
    ),
  );
  return h(
    "table",
    { className: "data confusion" },
    h("caption", {}, "Confusion matrix (rows: true class)"),
    h("thead", {}, head),
    h("tbody", {}, rows),
  );
}

/** The evaluation report of a finished evaluate job: headline metrics, tables, plots. */
export function renderEvalReport(job, urls) {
  const result = job.result || {};
  const artifacts = result.artifacts || {};
  const metrics = h(
    "dl",
    { className: "metrics" },
    METRICS.map(([key, label, format]) => [
      h("dt", {}, label),
      h("dd", { dataset: { metric: key } }, format(result[key])),
    ]),
  );
  const perClass = table(
    "Per class",
    ["Class", "Precision", "Recall", "F1", "Images"],
    Object.entries(result.per_class || {}).map(([name, row]) => [
      className(name),
      fmtNumber(row.precision),
      fmtNumber(row.recall),
      fmtNumber(row.f1),
      String(row.support ?? "-"),
    ]),
  );
  const { plots, downloads } = artifactViews(Object.entries(artifacts), PLOTS, urls);
  const failed = (result.errors || []).length;
  return h(
    "article",
    { className: "report", "aria-labelledby": `report-${job.job_id}` },
    h("h3", { id: `report-${job.job_id}` }, "Evaluation report"),
    h("p", { className: "card-disclaimer" }, DISCLAIMER),
    h(
      "p",
      {},
      `Model ${result.model_version || job.model_version || "-"} on ${job.params?.source || "-"}` +
        `${result.tta ? " with test-time augmentation" : ""}; finished ${fmtDate(job.finished_at)}.`,
    ),
    failed ? h("p", { className: "error" }, `${failed} image(s) could not be read.`) : null,
    metrics,
    perClass,
    confusionTable(result),
    h("div", { className: "actions" }, downloads),
    h("div", { className: "plots" }, plots),
  );
}

/** A finished job of a kind this page has no report for: its result as plain JSON text. */
export function renderOtherResult(job) {
  return h(
    "article",
    { className: "report" },
    h("h3", {}, "Result"),
    h("pre", { className: "json" }, JSON.stringify(job.result, null, 2)),
  );
}
