// DOM builders. Everything that comes from the server is set with textContent, or goes through the
// markdown renderer (markdown-it with HTML disabled, then DOMPurify): no server string is ever parsed
// as HTML on its own.

import { codeLanguage, highlight, renderMarkdown } from "./markdown.js";
import { switchReasonText } from "./plain.js";

// Mount options the artifact renderers follow (the inventory mount sends its low-stock threshold).
const options = { low_stock_threshold: null };

/** Called once with the mount panel's options (page config) before anything is rendered. */
export function configureRender(panelOptions = {}) {
  options.low_stock_threshold = Number.isInteger(panelOptions.low_stock_threshold) ? panelOptions.low_stock_threshold : null;
}

function isLow(value) {
  return options.low_stock_threshold !== null && value <= options.low_stock_threshold;
}

/** el("div", {class: "x", dataset: {a: 1}, onclick: fn}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
// 24x24 stroke icons (our own paths).
const ICONS = {
  menu: "M4 6h16M4 12h16M4 18h16",
  plus: "M12 5v14M5 12h14",
  pencil: "M4 20h4L19 9l-4-4L4 16v4zM13.5 6.5l4 4",
  archive: "M3 4h18v4H3zM5 8v12h14V8M10 12h4",
  unarchive: "M3 4h18v4H3zM5 8v12h14V8M12 18v-6M9 14l3-3 3 3",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6",
  copy: "M9 9h11v11H9zM5 15H4V4h11v1",
  check: "M5 12l5 5 9-9",
  regenerate: "M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5",
  edit: "M4 20h4L19 9l-4-4L4 16v4z",
  down: "M12 5v14M6 13l6 6 6-6",
  close: "M6 6l12 12M18 6L6 18",
  search: "M11 4a7 7 0 1 0 0 14a7 7 0 1 0 0-14zM20 20l-4-4",
  info: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18zM12 11v6M12 7.5v.5",
  thumbUp: "M3 10h4v10H3zM7 10l4-7c1.5 0 2.5 1 2.2 2.6L12.6 9H19a2 2 0 0 1 2 2.3l-1.2 6.9A2 2 0 0 1 17.8 20H7",
  thumbDown: "M3 14h4V4H3zM7 14l4 7c1.5 0 2.5-1 2.2-2.6L12.6 15H19a2 2 0 0 0 2-2.3l-1.2-6.9A2 2 0 0 0 17.8 4H7",
};

/** An inline SVG icon (decorative: the button around it carries the name). */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon icon-${name}`);
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

/** A small icon button with an accessible name (and the same name as a tooltip). */
export function iconButton(name, label, attrs = {}) {
  return el("button", { type: "button", class: "icon-btn", "aria-label": label, title: label, ...attrs }, icon(name));
}

// A polite live region for short confirmations ("Copied"), created on first use.
export function announce(text) {
  let region = document.getElementById("sr-status");
  if (!region) {
    region = el("div", { id: "sr-status", class: "visually-hidden", role: "status", "aria-live": "polite" });
    document.body.append(region);
  }
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = text;
  }, 30);
}

/** Copy text to the clipboard (the async API, else a hidden textarea); resolves true on success. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const area = el("textarea", { class: "visually-hidden", "aria-hidden": "true", tabindex: "-1" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A copy button: copies `getText()`, says "Copied" for a moment. */
export function copyButton(getText, { label = "Copy", testid = "copy", className = "" } = {}) {
  const button = iconButton("copy", label, { class: `icon-btn copy-btn ${className}`.trim(), "data-testid": testid });
  button.addEventListener("click", async () => {
    const ok = await copyText(getText());
    button.classList.toggle("is-copied", ok);
    button.replaceChildren(icon(ok ? "check" : "copy"));
    button.dataset.copied = ok ? "true" : "false";
    announce(ok ? "Copied to the clipboard" : "Could not copy");
    window.setTimeout(() => {
      button.classList.remove("is-copied");
      button.replaceChildren(icon("copy"));
    }, 1500);
  });
  return button;
}

/** Render markdown into `node`, then give each fenced code block a language label, highlighting and a
 * copy button (built with DOM methods, after sanitising). */
export function setMarkdown(node, text) {
  node.innerHTML = renderMarkdown(text); // markdown-it (HTML disabled) + DOMPurify, see markdown.js
  for (const pre of node.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const language = codeLanguage(code);
    const source = code.textContent;
    const html = highlight(source, language);
    if (html !== null) {
      code.innerHTML = html; // highlight.js output, sanitised to spans with classes
      code.classList.add("hljs");
    }
    const head = el(
      "div",
      { class: "code-head" },
      el("span", { class: "code-lang", text: language || "text" }),
      copyButton(() => source, { label: "Copy code", testid: "code-copy", className: "code-copy" }),
    );
    const block = el("div", { class: "code-block", "data-testid": "code-block", dataset: { lang: language } }, head);
    pre.replaceWith(block);
    block.append(pre);
  }
  for (const table of node.querySelectorAll("table")) {
    if (table.parentElement && table.parentElement.classList.contains("table-wrap")) continue;
    const wrap = el("div", { class: "table-wrap md-table" });
    table.replaceWith(wrap);
    wrap.append(table);
  }
}

// ---------------------------------------------------------------------------------------- time

const relative = typeof Intl !== "undefined" && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

/** "just now", "5 min ago", "yesterday", "Mar 3" */
export function relativeTime(ms, now = Date.now()) {
  if (!ms) return "";
  const seconds = Math.round((ms - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  if (!relative) return formatTime(ms);
  if (abs < 45 * 60) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 22 * 3600) return relative.format(Math.round(seconds / 3600), "hour");
  if (abs < 6 * 86400) return relative.format(Math.round(seconds / 86400), "day");
  return new Date(ms).toLocaleDateString([], { month: "short", day: "numeric", year: abs > 300 * 86400 ? "numeric" : undefined });
}

export function exactTime(ms) {
  return ms ? new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "medium" }) : "";
}

/** <time> with the relative text, the exact time on hover; `refreshTimes` keeps the text current. */
export function timeNode(ms, { testid = "msg-time" } = {}) {
  const node = el("time", { class: "msg-time", "data-testid": testid });
  setTime(node, ms);
  return node;
}

export function setTime(node, ms) {
  if (!ms) {
    node.hidden = true;
    return;
  }
  node.hidden = false;
  node.dataset.ms = String(ms);
  node.dateTime = new Date(ms).toISOString();
  node.title = exactTime(ms);
  node.textContent = relativeTime(ms);
}

export function refreshTimes(root = document) {
  for (const node of root.querySelectorAll("time[data-ms]")) node.textContent = relativeTime(Number(node.dataset.ms));
}

export function prettyJson(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function formatDuration(ms) {
  if (typeof ms !== "number") return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function formatTime(ms) {
  if (!ms) return "";
  const date = new Date(ms);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { month: "short", day: "numeric" });
}

// ---------------------------------------------------------------------------------------- runtime

export function engineLabel(engine) {
  if (!engine) return "";
  return [engine.provider, engine.model].filter(Boolean).join(" · ");
}

/** The engine that answers next (from a ws.hello): "offline · offline-v1", marked when it is the offline one. */
export function renderEngine(node, hello) {
  const data = hello.data || {};
  const engine = data.engine || {};
  const offline = engine.provider === "offline";
  node.classList.toggle("is-offline", offline);
  node.title = offline ? "Offline engine: deterministic, no network, not a language model" : `Engine: ${engineLabel(engine)}`;
  node.replaceChildren(offline ? el("span", { class: "badge-engine-dot", "aria-hidden": "true" }) : "", engineLabel(engine));
  node.dataset.engine = engineLabel(engine);
  node.hidden = false;
}

/** "analyst v1" */
export function runtimeName(marker) {
  if (!marker) return "?";
  const version = marker.profile_version ?? marker.version;
  return `${marker.runtime_key || "?"}${version ? ` v${version}` : ""}`;
}

export function switchNotice(from, to, reason) {
  const text = `Runtime switched: ${runtimeName(from)} → ${runtimeName(to)}`;
  return el(
    "div",
    {
      class: "notice notice-switch",
      "data-testid": "switch-notice",
      role: "status",
      title: reason ? `Why: ${switchReasonText(reason)}` : null,
      dataset: { reason: reason || "" },
    },
    el("span", { class: "notice-icon", "aria-hidden": "true", text: "⇄" }),
    text,
  );
}

export function notice(text, { kind = "info", testid = "notice" } = {}) {
  return el(
    "div",
    { class: `notice notice-${kind}`, "data-testid": testid, role: kind === "error" ? "alert" : "status" },
    text,
  );
}

// ---------------------------------------------------------------------------------------- tools

export function toolCall({ call_id, name, input }) {
  const status = el("span", { class: "tool-status", text: "running…" });
  const body = el(
    "div",
    { class: "tool-body" },
    el("div", { class: "tool-label", text: "Input" }),
    el("pre", { class: "json", "data-testid": "tool-input", text: prettyJson(input ?? {}) }),
  );
  const node = el(
    "details",
    { class: "tool-call is-running", "data-testid": "tool-call", dataset: { callId: call_id || "", toolName: name || "" } },
    el(
      "summary",
      {},
      el("span", { class: "tool-icon", "aria-hidden": "true", text: "⚙" }),
      el("span", { class: "tool-name", text: name || "tool" }),
      status,
    ),
    body,
  );
  return { node, status, body };
}

export function toolResult(view, { result, error }) {
  view.node.classList.remove("is-running");
  const hasError = error !== undefined && error !== null;
  view.node.classList.add(hasError ? "is-error" : "is-done");
  view.status.textContent = hasError ? "error" : "done";
  view.body.querySelectorAll(".tool-output").forEach((node) => node.remove());
  view.body.append(
    el("div", { class: "tool-label tool-output", text: hasError ? "Error" : "Result" }),
    el("pre", {
      class: `json tool-output${hasError ? " is-error" : ""}`,
      "data-testid": hasError ? "tool-error" : "tool-result",
      text: hasError ? String(error) : prettyJson(result),
    }),
  );
}

// ---------------------------------------------------------------------------------------- artifacts

export function stockClass(qty) {
  const value = Number(qty);
  if (!Number.isFinite(value)) return "";
  if (value <= 0) return "stock-out";
  if (isLow(value)) return "stock-low";
  return "";
}

export function stockLabel(qty) {
  const value = Number(qty);
  if (value <= 0) return "Out of stock";
  if (isLow(value)) return "Low stock";
  return "";
}

export function qtyCell(qty, attrs = {}) {
  const cls = stockClass(qty);
  const label = stockLabel(qty);
  return el(
    "td",
    { class: `num qty ${cls}`.trim(), ...attrs, dataset: { qty: qty ?? "" } },
    el("span", { class: "qty-value", text: qty ?? "" }),
    label ? el("span", { class: "stock-pill", text: label === "Out of stock" ? "out" : "low", title: label }) : null,
  );
}

function artifactTable(data) {
  const columns = Array.isArray(data.columns) ? data.columns : [];
  const rows = Array.isArray(data.rows) ? data.rows : [];
  const qtyIndex = columns.indexOf("qty");
  const skuIndex = columns.indexOf("sku");
  const numeric = new Set(["qty", "price", "cost", "total"]);
  const table = el(
    "table",
    { class: "data-table", "data-testid": "artifact-table" },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: colClass(c, numeric), text: c })))),
    el(
      "tbody",
      {},
      rows.map((row) =>
        el(
          "tr",
          { dataset: skuIndex >= 0 ? { sku: row[skuIndex] } : {}, class: qtyIndex >= 0 ? stockClass(row[qtyIndex]) : "" },
          row.map((cell, i) =>
            i === qtyIndex
              ? qtyCell(cell, { class: `num qty col-qty ${stockClass(cell)}`.trim() })
              : el("td", { class: colClass(columns[i], numeric), text: cellText(cell) }),
          ),
        ),
      ),
    ),
  );
  const foot = data.truncated ? el("p", { class: "muted small", text: `Showing ${rows.length} of ${data.total}.` }) : null;
  return [el("div", { class: "table-wrap" }, table), foot, rows.length ? null : el("p", { class: "muted", text: "No rows." })];
}

function colClass(column, numeric) {
  const safe = String(column ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
  return `col-${safe}${numeric.has(column) ? " num" : ""}`;
}

function cellText(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// [key, label, short label]
const REPORT_FIGURES = [
  ["sku_count", "SKUs", "SKUs"],
  ["total_units", "Units", "Units"],
  ["retail_value", "Retail value", "Retail"],
  ["cost_basis", "Cost basis", "Cost"],
  ["potential_profit", "Potential profit", "Profit"],
  ["low_stock_count", "Low stock", "Low"],
  ["out_of_stock_count", "Out of stock", "Out"],
  ["sales_total", "Sales total", "Sales"],
];

/** The report's figures as a definition grid (used by report artifacts and the inventory panel). */
export function reportFigures(data, { compact = false } = {}) {
  const figures = REPORT_FIGURES.filter(([key]) => data[key] !== undefined).map(([key, long, short]) => {
    const label = compact ? short : long;
    let cls = "figure";
    if (key === "low_stock_count" && Number(data[key]) > 0) cls += " is-warn";
    if (key === "out_of_stock_count" && Number(data[key]) > 0) cls += " is-danger";
    const term = key === "low_stock_count" ? `${label} (≤ ${data.threshold})` : label;
    return el("div", { class: cls, dataset: { figure: key } }, el("dt", { text: term, title: long }), el("dd", { text: data[key] }));
  });
  return el("dl", { class: `figures${compact ? " is-compact" : ""}` }, figures);
}

function artifactReport(data) {
  const skus = (items) => (items || []).map((i) => i.sku).filter(Boolean);
  const low = skus(data.low_stock);
  const out = skus(data.out_of_stock);
  return [
    el("div", { "data-testid": "artifact-report" }, reportFigures(data)),
    low.length ? el("p", { class: "small" }, el("strong", { text: "Low stock: " }), low.join(", ")) : null,
    out.length ? el("p", { class: "small" }, el("strong", { text: "Out of stock: " }), out.join(", ")) : null,
    data.since ? el("p", { class: "muted small", text: `Sales since ${data.since}` }) : null,
  ];
}

function artifactItem(data) {
  const rows = [
    ["SKU", data.sku],
    ["Category", data.category],
    ["Price", data.price],
    ["Cost", data.cost],
    ["Tags", Array.isArray(data.tags) ? data.tags.join(", ") : data.tags],
  ];
  if (data.sale) rows.push(["Sale", `${data.sale.qty} × ${data.sale.sku || data.sku} = ${data.sale.total} (${data.sale.date})`]);
  if (data.adjustment) {
    const adj = data.adjustment;
    const applied = typeof adj.applied_delta === "number" && adj.applied_delta > 0 ? `+${adj.applied_delta}` : adj.applied_delta;
    rows.push(["Change", `${applied}${adj.clamped ? ` (requested ${adj.requested_delta}, clamped at 0)` : ""}`]);
  }
  const label = stockLabel(data.qty);
  return [
    el(
      "div",
      { class: "item-card", "data-testid": "artifact-item", dataset: { sku: data.sku || "" } },
      el(
        "div",
        { class: `item-qty ${stockClass(data.qty)}`.trim() },
        el("span", { class: "item-qty-value", "data-testid": "artifact-item-qty", text: data.qty ?? "?" }),
        el("span", { class: "item-qty-label", text: label || "in stock" }),
      ),
      el(
        "dl",
        { class: "item-facts" },
        rows
          .filter(([, value]) => value !== undefined && value !== null && value !== "")
          .map(([key, value]) => el("div", {}, el("dt", { text: key }), el("dd", { text: value }))),
      ),
    ),
  ];
}

export function artifact(frameData) {
  const { kind, title } = frameData || {};
  const data = (frameData && frameData.data) || {};
  let body;
  if (kind === "table") body = artifactTable(data);
  else if (kind === "report") body = artifactReport(data);
  else if (kind === "item") body = artifactItem(data);
  else body = [el("pre", { class: "json", text: prettyJson(data) })];
  return el(
    "figure",
    { class: `artifact artifact-${kind || "unknown"}`, "data-testid": "artifact", dataset: { kind: kind || "" } },
    el("figcaption", {}, el("span", { class: "artifact-kind", text: kind || "artifact" }), title || ""),
    body,
  );
}

// ---------------------------------------------------------------------------------------- chips

export function chips(items, onPick, { testid = "suggestion-chip" } = {}) {
  return (items || [])
    .filter((text) => typeof text === "string" && text.trim())
    .map((text) =>
      el("button", {
        type: "button",
        class: "chip",
        "data-testid": testid,
        text,
        onclick: () => onPick(text),
      }),
    );
}
