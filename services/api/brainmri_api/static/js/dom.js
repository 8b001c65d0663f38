// Small DOM helpers. Every piece of text reaches the page through textContent (h() below), so
// nothing from the server or a file name is ever parsed as HTML.

// Set as DOM properties; anything else becomes an attribute. (innerHTML is deliberately absent.)
const PROPERTIES = new Set([
  "className", "textContent", "id", "href", "src", "alt", "type", "value", "checked",
  "disabled", "hidden", "htmlFor", "title", "download",
]);

/**
 * Create an element: h("td", {className: "num", dataset: {x: "1"}}, "text", childNode, …).
 * Strings and numbers become text nodes; null/undefined/false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "onClick") {
      node.addEventListener("click", value);
    } else if (PROPERTIES.has(name)) {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Show a readable error in a role="alert" element (or hide it with an empty message). */
export function showError(node, error) {
  const message = error ? error.message || String(error) : "";
  node.textContent = message;
  node.hidden = !message;
}

export function fmtNumber(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "-";
}

export function fmtPercent(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value)
    ? `${(value * 100).toFixed(digits)}%`
    : "-";
}

export function fmtDate(value) {
  if (!value) return "-";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function shortId(id) {
  return String(id || "").slice(0, 8);
}

/** Human names for the model's class identifiers. */
export function className(name) {
  const names = {
    no_tumor: "No tumor",
    glioma: "Glioma",
    meningioma: "Meningioma",
    pituitary: "Pituitary",
  };
  return names[name] || String(name);
}

/** A table with a caption; rows are arrays of cells (strings or nodes). */
export function table(caption, headers, rows, { className: cls = "data" } = {}) {
  return h(
    "table",
    { className: cls },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h(
      "tbody",
      {},
      rows.map((row) => (row instanceof Node ? row : h("tr", {}, row.map((cell) => h("td", {}, cell))))),
    ),
  );
}

/** A group of blob: URLs owned by one view, revoked together when the view re-renders. */
export class UrlScope {
  constructor() {
    this.urls = new Set();
  }

  add(url) {
    this.urls.add(url);
    return url;
  }

  revokeAll() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls.clear();
  }
}
