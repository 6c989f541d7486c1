// "Keys & usage": what the signed-in user spent (GET /api/usage), the budgets that apply to them
// (GET /api/budgets: when each resets), and their API keys for the OpenAI-compatible API (GET, POST,
// DELETE /api/keys). A new key's secret is shown once, with a copy button; the server keeps only its hash.

import { request } from "./api.js";
import { copyButton, el, exactTime, notice } from "./render.js";

const dollars = (value) => (value === null || value === undefined ? "unknown" : `US$${Number(value).toFixed(6)}`);

export class AccountPanel {
  /** @param {object} options dialog (a <dialog> with [data-panel-body] and [data-panel-close]) */
  constructor({ dialog }) {
    this.dialog = dialog;
    this.body = dialog.querySelector("[data-panel-body]");
    dialog.querySelector("[data-panel-close]").addEventListener("click", () => this.dialog.close());
    dialog.addEventListener("close", () => {
      if (this.opener && this.opener.isConnected) this.opener.focus();
    });
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.dialog.close();
    });
  }

  async open(opener) {
    this.opener = opener || null;
    this.secret = null;
    if (!this.dialog.open) this.dialog.showModal();
    await this.load();
  }

  async load() {
    this.dialog.removeAttribute("data-loaded");
    this.body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    try {
      const [usage, budgets, keys] = await Promise.all([
        request("/api/usage", { query: { group_by: "profile" } }),
        request("/api/budgets"),
        request("/api/keys"),
      ]);
      this.body.replaceChildren(this.usage(usage), this.budgets(budgets), this.keys(keys));
      this.dialog.dataset.loaded = "true";
    } catch (err) {
      this.body.replaceChildren(notice(`This could not be loaded: ${err.message}`, { kind: "error", testid: "account-error" }));
    }
  }

  usage(report) {
    const total = report.total;
    const rows = report.rows.map((row) =>
      el("tr", { "data-testid": "usage-row" }, el("td", { text: row.key }), el("td", { text: String(row.turns) }),
        el("td", { text: String(row.tokens_in + row.tokens_out) }), el("td", { text: dollars(row.cost_usd) })),
    );
    return el(
      "section",
      { class: "account-section", "data-testid": "usage" },
      el("h3", { text: "Your usage" }),
      el("p", { "data-testid": "usage-total", text: `${total.turns} turns, ${total.tokens_in + total.tokens_out} tokens, ${dollars(total.cost_usd)}` }),
      rows.length
        ? el("table", { class: "account-table" },
            el("thead", {}, el("tr", {}, ...["Profile", "Turns", "Tokens", "Cost"].map((h) => el("th", { text: h })))),
            el("tbody", {}, ...rows))
        : el("p", { class: "muted", text: "No turns yet." }),
    );
  }

  budgets(budgets) {
    const items = budgets.map((b) =>
      el("li", { "data-testid": "budget" },
        `${b.period === "total" ? "Total" : b.period === "day" ? "Daily" : "Monthly"} budget of ${b.scope.type} ${b.scope.id}: `,
        `${dollars(b.used_usd)} of ${dollars(b.amount_usd)} used`,
        b.resets_at_ms ? `, resets ${exactTime(b.resets_at_ms)}` : ", never resets"),
    );
    return el(
      "section",
      { class: "account-section", "data-testid": "budgets" },
      el("h3", { text: "Budgets that apply to you" }),
      items.length ? el("ul", {}, ...items) : el("p", { class: "muted", text: "None." }),
    );
  }

  keys(keys) {
    const rows = keys.map((key) => {
      const revoke = el("button", { type: "button", class: "btn btn-sm", "data-testid": "key-revoke", text: "Revoke" });
      revoke.disabled = key.status === "revoked";
      revoke.addEventListener("click", async () => {
        await request(`/api/keys/${key.id}`, { method: "DELETE" });
        this.secret = null; // shown once: gone with the next change
        await this.load();
      });
      const limits = [key.rpm && `${key.rpm} requests/min`, key.tpm && `${key.tpm} tokens/min`].filter(Boolean).join(", ");
      return el("tr", { "data-testid": "key-row", dataset: { status: key.status } },
        el("td", { text: key.name }), el("td", {}, el("code", { text: `${key.prefix}…` })),
        el("td", { text: key.scopes.join(", ") }), el("td", { text: limits || "none" }),
        el("td", { "data-testid": "key-status", text: key.status }), el("td", {}, revoke));
    });
    const name = el("input", { id: "key-name", "data-testid": "key-name", required: true, maxlength: 100, placeholder: "e.g. report bot" });
    const scopes = el("input", { id: "key-scopes", "data-testid": "key-scopes", value: "*", placeholder: "*, analyst, agent@production" });
    const rpm = el("input", { id: "key-rpm", "data-testid": "key-rpm", type: "number", min: 1, placeholder: "none" });
    const form = el("form", { class: "key-form", "data-testid": "key-form" },
      el("label", { for: "key-name", text: "Name" }), name,
      el("label", { for: "key-scopes", text: "Profiles it may use (comma-separated; * for all)" }), scopes,
      el("label", { for: "key-rpm", text: "Requests per minute" }), rpm,
      el("button", { type: "submit", class: "btn btn-primary btn-sm", "data-testid": "key-create", text: "Create key" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim(), scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) };
      if (rpm.value) body.rpm = Number(rpm.value);
      try {
        const made = await request("/api/keys", { method: "POST", body });
        this.secret = made.key;
        await this.load();
      } catch (err) {
        form.append(notice(`The key was not made: ${err.field ? `${err.field}: ` : ""}${err.message}`, { kind: "error", testid: "key-error" }));
      }
    });
    const secret = this.secret
      ? el("div", { class: "notice notice-warn", "data-testid": "key-secret" },
          "Copy the new key now: it is not shown again. ", el("code", { "data-testid": "key-secret-value", text: this.secret }),
          copyButton(() => this.secret, { label: "Copy the key", testid: "copy-key" }))
      : null;
    return el(
      "section",
      { class: "account-section", "data-testid": "keys" },
      el("h3", { text: "API keys (for the OpenAI-compatible API)" }),
      secret,
      rows.length
        ? el("table", { class: "account-table" },
            el("thead", {}, el("tr", {}, ...["Name", "Key", "Profiles", "Limits", "Status", ""].map((h) => el("th", { text: h })))),
            el("tbody", {}, ...rows))
        : el("p", { class: "muted", text: "No keys yet." }),
      form,
    );
  }
}
