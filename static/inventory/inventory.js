// The inventory panel: items table (search, category filter, low-stock highlighting) and the report
// figures. It refreshes in place when the assistant's tools change the data (see app.js) and when
// any other write commits (the /inventory/ws/items/ socket).

import { request } from "../chat/api.js";
import { el, qtyCell, reportFigures, stockClass } from "../chat/render.js";

/** The mount's panel (Mount.panel in inventory/mounts.py): built with the page element and its options. */
export class Panel {
  constructor({ root, api_base: apiBase }) {
    this.base = apiBase.endsWith("/") ? apiBase : `${apiBase}/`;
    this.root = root;
    this.body = root.querySelector("#items-body");
    this.search = root.querySelector("#items-search");
    this.category = root.querySelector("#items-category");
    this.count = root.querySelector("#inventory-count");
    this.report = root.querySelector("#inventory-report");
    this.categories = new Set();
    this.quantities = new Map(); // sku -> qty as last shown
    this.timer = null;
    this.generation = 0;
    this.refreshes = 0;
  }

  async init() {
    let typing = null;
    this.search.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.refresh(), 200);
    });
    this.category.addEventListener("change", () => this.refresh());
    await this.refresh();
    this.listen();
    return this;
  }

  /** Changes committed anywhere (REST, admin, other users, any conversation) arrive here. */
  listen(backoff = 500) {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${window.location.host}/inventory/ws/items/`);
    this.changes = ws;
    ws.onopen = () => {
      backoff = 500;
      this.root.dataset.live = "on";
    };
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "inventory.changed") this.scheduleRefresh();
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (event) => {
      this.root.dataset.live = "off";
      if (event.code === 4401) return;
      setTimeout(() => this.listen(Math.min(backoff * 2, 5000)), backoff);
    };
  }

  /** Coalesce bursts (a tool result and its artifact arrive together). */
  scheduleRefresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 120);
  }

  async refresh() {
    const generation = ++this.generation;
    this.root.setAttribute("aria-busy", "true");
    try {
      const [items, report] = await Promise.all([
        request(`${this.base}items`, {
          query: { search: this.search.value.trim(), category: this.category.value, ordering: "sku", page_size: 200 },
        }),
        request(`${this.base}report`),
      ]);
      if (generation !== this.generation) return; // a newer refresh is on its way
      const rows = Array.isArray(items) ? items : items.results || [];
      this.renderItems(rows, Array.isArray(items) ? rows.length : items.count);
      this.renderReport(report);
      this.refreshes += 1;
      this.root.dataset.refreshes = String(this.refreshes);
    } catch (err) {
      if (generation !== this.generation) return;
      this.body.replaceChildren(
        el("tr", {}, el("td", { colspan: "5", class: "table-error", role: "alert", text: `Items could not be loaded: ${err.message}` })),
      );
    } finally {
      if (generation === this.generation) this.root.removeAttribute("aria-busy");
    }
  }

  renderItems(items, total) {
    const filtered = Boolean(this.search.value.trim() || this.category.value);
    for (const item of items) if (item.category) this.categories.add(item.category);
    this.renderCategories();
    const rows = items.map((item) => {
      const before = this.quantities.get(item.sku);
      const changed = before !== undefined && before !== item.qty;
      this.quantities.set(item.sku, item.qty);
      return el(
        "tr",
        {
          class: `${stockClass(item.qty)}${changed ? " is-changed" : ""}`.trim(),
          "data-testid": "item-row",
          dataset: { sku: item.sku, qty: item.qty },
        },
        el("td", {}, el("code", { class: "sku", text: item.sku })),
        el(
          "td",
          {},
          el("span", { class: "item-name", text: item.name }),
          item.tags && item.tags.length ? el("span", { class: "item-tags", text: item.tags.join(" · ") }) : null,
        ),
        el("td", { class: "muted col-category", text: item.category }),
        qtyCell(item.qty, { "data-testid": "item-qty" }),
        el("td", { class: "num", text: item.price }),
      );
    });
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted empty", text: filtered ? "No items match." : "No items yet." })));
    }
    this.body.replaceChildren(...rows);
    this.count.textContent = `${total} item${total === 1 ? "" : "s"}${filtered ? " match" : ""}`;
  }

  renderCategories() {
    const selected = this.category.value;
    const options = [...this.categories].sort((a, b) => a.localeCompare(b));
    if (this.category.options.length === options.length + 1) return;
    this.category.replaceChildren(
      el("option", { value: "", text: "All categories" }),
      ...options.map((c) => el("option", { value: c, text: c })),
    );
    this.category.value = selected;
  }

  renderReport(report) {
    this.report.replaceChildren(reportFigures(report, { compact: true }));
  }
}
