// The result of a finished train job: what was registered and why it was (or was not)
// promoted, the new model against production on the same held-out slices, and the training
// curves. An admin decides from this whether to promote by hand, so the comparison comes first.

import { artifactViews } from "./artifacts.js";
import { fmtNumber, h, table } from "./dom.js";
import { DISCLAIMER, PLOTS } from "./results.js";

const COMPARED = [
  ["macro_f1", "Macro-F1"],
  ["acc_multiclass", "Accuracy (4 classes)"],
  ["sensitivity", "Tumor sensitivity at threshold"],
  ["specificity", "Specificity at threshold"],
  ["roc_auc_binary", "ROC AUC (tumor vs none)"],
  ["ap_binary", "Average precision (tumor)"],
  ["ece", "Expected calibration error"],
];

const TRAIN_PLOTS = {
  "training_curves.png": "Training curves: loss and validation metrics per epoch",
  ...PLOTS,
};

/** Why it stands where it does: the registry's stage reason already quotes the gate's verdict
 * where it differs from it (auto-promotion off), so the gate is only named on its own. */
function why(result) {
  const gate = result.gate || "";
  const reason = (result.stage_reason || "").replace(/\.$/, "");
  if (!reason) return gate ? `Promotion gate: ${gate}.` : "";
  if (gate && !reason.includes(gate)) return `Promotion gate: ${gate}. ${reason}.`;
  return `${reason}.`;
}

function verdict(result) {
  const stage = result.promoted
    ? "promoted to production"
    : `registered as ${result.stage || "candidate"}, not promoted`;
  return h(
    "p",
    { className: `train-verdict ${result.promoted ? "decision-ok" : ""}`.trim() },
    h("strong", { className: "train-version" }, result.model_version || "-"),
    ` ${stage}. ${why(result)}`.trimEnd(),
  );
}

function signed(value) {
  return `${value >= 0 ? "+" : ""}${value.toFixed(3)}`;
}

function comparison(result) {
  const candidate = result.test_metrics || {};
  const production = result.production_metrics || {};
  const n = candidate.n ?? "-";
  const version = result.production_version || "-";
  return table(
    `This model against production (${version}) on the same ${n} held-out test slices of this dataset`,
    ["Metric", "New model", "Production", "Difference"],
    COMPARED.map(([key, label]) => {
      const a = candidate[key];
      const b = production[key];
      const both = typeof a === "number" && typeof b === "number";
      return h(
        "tr",
        { dataset: { metric: key } },
        h("th", { scope: "row" }, label),
        h("td", { className: "num candidate" }, fmtNumber(a)),
        h("td", { className: "num production" }, fmtNumber(b)),
        h("td", { className: "num" }, both ? signed(a - b) : "-"),
      );
    }),
  );
}

const SPLITS = ["train", "val", "test"];

/** Slices in one split: the job reports them per class ({train: {glioma: 24, ...}, ...}). */
function splitSize(split, name) {
  const perClass = split[name];
  return perClass ? Object.values(perClass).reduce((sum, n) => sum + n, 0) : "-";
}

function facts(result) {
  const split = result.split || {};
  const seconds = result.training_seconds;
  const budget = fmtNumber(result.time_budget_minutes, 1);
  const epochs = `${result.epochs_run ?? "-"} of ${result.epochs_requested ?? "-"}`;
  const rows = [
    ["Epochs run", `${epochs} (best: ${result.best_epoch ?? "-"})`],
    ["Training time", `${fmtNumber(seconds / 60, 1)} min of a ${budget} min budget`],
    ["Split (train / validation / test)", SPLITS.map((name) => splitSize(split, name)).join(" / ")],
    ["Exact duplicates dropped", String(result.duplicates_dropped ?? "-")],
  ];
  return h(
    "dl",
    { className: "metrics" },
    rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

/** The report of a finished train job. */
export function renderTrainReport(job, urls) {
  const result = job.result || {};
  // The curves first: they say how the training went before the plots of its evaluation.
  const artifacts = Object.entries(result.artifacts || {}).sort(
    ([a], [b]) => (b === "training_curves.png") - (a === "training_curves.png"),
  );
  const { plots, downloads } = artifactViews(artifacts, TRAIN_PLOTS, urls);
  return h(
    "article",
    { className: "report train-report", "aria-labelledby": `report-${job.job_id}` },
    h("h3", { id: `report-${job.job_id}` }, "Training result"),
    h("p", { className: "card-disclaimer" }, DISCLAIMER),
    verdict(result),
    result.recovered ? h("p", { className: "hint" }, result.recovered) : null,
    comparison(result),
    facts(result),
    h("div", { className: "actions" }, downloads),
    h("div", { className: "plots" }, plots),
    h(
      "details",
      {},
      h("summary", {}, "Full result (JSON)"),
      h("pre", { className: "json" }, JSON.stringify(result, null, 2)),
    ),
  );
}
