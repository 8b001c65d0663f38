// The Models view: registered versions with their headline metrics and stage. Promote and
// roll back appear only for admin keys (the server checks the role again on every call).

import { getJson, getRole, postJson } from "./api.js";
import { fill, fmtDate, fmtNumber, h, showError, table } from "./dom.js";

const $ = (id) => document.getElementById(id);
let modelName = null;

async function act(path, confirmText, doneText) {
  if (!window.confirm(confirmText)) return;
  showError($("models-error"), null);
  try {
    const row = await postJson(path, {});
    $("models-status").textContent = `${doneText}: ${row.version} is now ${row.stage}.`;
    await showModels();
  } catch (err) {
    showError($("models-error"), err);
  }
}

function promoteButton(row) {
  if (getRole() !== "admin" || row.stage === "production") return "";
  return h(
    "button",
    {
      type: "button",
      className: "promote",
      "aria-label": `Promote ${row.version} to production`,
      onClick: () =>
        act(
          `/v1/models/${encodeURIComponent(row.version)}/promote`,
          `Make ${row.version} the production model? Every worker will switch to it.`,
          "Promoted",
        ),
    },
    "Promote",
  );
}

function modelRow(row) {
  const m = row.headline || {};
  const cells = [
    h("code", {}, row.version),
    h("span", { className: `stage stage-${row.stage}` }, row.stage),
    row.arch,
    fmtNumber(m.macro_f1),
    fmtNumber(m.acc_multiclass),
    fmtNumber(m.sensitivity),
    fmtNumber(m.specificity),
    fmtNumber(m.roc_auc_binary),
    fmtNumber(m.ece),
    m.source || "-",
    fmtDate(row.created_at),
    row.stage_reason || "-",
  ];
  if (getRole() === "admin") cells.push(promoteButton(row));
  return h(
    "tr",
    { dataset: { version: row.version, stage: row.stage } },
    cells.map((cell) => h("td", {}, cell)),
  );
}

export async function showModels() {
  showError($("models-error"), null);
  try {
    const body = await getJson("/v1/models");
    modelName = body.items[0]?.name || modelName;
    $("models-production").textContent = body.production
      ? `Production model: ${body.production}`
      : "No production model is registered.";
    $("models-admin").hidden = getRole() !== "admin" || !modelName;
    const headers = [
      "Version",
      "Stage",
      "Architecture",
      "Macro-F1",
      "Accuracy",
      "Sensitivity",
      "Specificity",
      "ROC AUC",
      "ECE",
      "Measured on",
      "Created",
      "Stage reason",
    ];
    if (getRole() === "admin") headers.push("Action");
    fill(
      $("models-table"),
      body.items.length
        ? table("Registered versions, newest first", headers, body.items.map(modelRow))
        : h("p", { className: "hint" }, "No models registered."),
    );
  } catch (err) {
    fill($("models-table"));
    showError($("models-error"), err);
  }
}

export function initModels() {
  $("models-rollback").addEventListener("click", () =>
    act(
      `/v1/models/${encodeURIComponent(modelName)}/rollback`,
      `Return ${modelName} to its previous production version?`,
      "Rolled back",
    ),
  );
}
