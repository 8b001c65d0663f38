// Entry module: the API-key form and a hash router (#/analyze, #/jobs, #/jobs/<id>,
// #/evaluate, #/train, #/models) that shows one <section> at a time. The disclaimer banner lives
// outside the sections, so it is on every view.

import { forgetKey, getKey, setKey, setRole, whoAmI } from "./api.js";
import { initAnalyze, showAnalyze } from "./analyze.js";
import { initEvaluate, showEvaluate } from "./evaluate.js";
import { hideJob, initJobs, showJob, showJobs } from "./jobs.js";
import { initModels, showModels } from "./models.js";
import { initTrain, showTrain } from "./train.js";

const $ = (id) => document.getElementById(id);

const VIEWS = {
  analyze: { section: "view-analyze", show: showAnalyze, needsKey: false },
  jobs: { section: "view-jobs", show: showJobs, needsKey: true },
  job: { section: "view-job", show: showJob, needsKey: true },
  evaluate: { section: "view-evaluate", show: showEvaluate, needsKey: true },
  train: { section: "view-train", show: showTrain, needsKey: true },
  models: { section: "view-models", show: showModels, needsKey: true },
};

function parseHash() {
  const parts = window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", arg: decodeURIComponent(parts[1]) };
  return { name: VIEWS[parts[0]] ? parts[0] : "analyze", arg: null };
}

function route({ focus = true } = {}) {
  const { name, arg } = parseHash();
  for (const [viewName, view] of Object.entries(VIEWS)) {
    $(view.section).hidden = viewName !== name;
  }
  if (name !== "job") hideJob();
  const navName = name === "job" ? "jobs" : name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === navName) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const section = $(VIEWS[name].section);
  document.title = `${section.querySelector("h2").textContent} - brainmri (research only)`;
  if (focus) section.querySelector("h2").focus();
  if (VIEWS[name].needsKey && !getKey()) {
    $("key-status").textContent = "Enter an API key to see this view.";
    $("api-key").focus();
    return;
  }
  VIEWS[name].show(arg);
}

/** Admin-only links (Train) follow the key's role; the views check it again when shown. */
function applyRole(role) {
  setRole(role);
  for (const node of document.querySelectorAll("[data-admin-only]")) node.hidden = role !== "admin";
}

/** Ask the server who the key is; admin controls follow the answer. */
async function checkKey() {
  const status = $("key-status");
  if (!getKey()) {
    applyRole("user");
    status.textContent = "No API key set.";
    return false;
  }
  try {
    const me = await whoAmI();
    applyRole(me.role);
    status.textContent = `Key accepted (${me.role}).`;
    status.dataset.role = me.role;
    return true;
  } catch (err) {
    applyRole("user");
    status.textContent = `Key not accepted: ${err.message}`;
    delete status.dataset.role;
    return false;
  }
}

function initKeyForm() {
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("api-key");
    setKey(input.value.trim());
    input.value = "";
    if (await checkKey()) route({ focus: false });
  });
  $("key-forget").addEventListener("click", () => {
    forgetKey();
    window.location.reload(); // drop every result and image shown under the old key
  });
}

async function start() {
  initKeyForm();
  initAnalyze();
  initJobs();
  initEvaluate();
  initTrain();
  initModels();
  window.addEventListener("hashchange", () => route());
  await checkKey();
  route({ focus: false });
}

start();
