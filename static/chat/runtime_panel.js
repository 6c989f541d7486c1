// "Answered by …" opens this panel: the turn's full runtime record as the server stored it
// (GET …/conversations/{id}/turns/{turn_id}): profile and version, fingerprint, engine and its settings,
// middlewares with their configs and the events they reported (as stored: names and details), tools,
// overrides applied, usage, duration, and for a failed turn the error's code and raw message; for staff,
// a link to that profile version in the admin. The transcript says these things in plain words only.

import { copyButton, el, engineLabel, exactTime, formatDuration, notice, prettyJson } from "./render.js";

function json(value, testid) {
  return el("pre", { class: "json", "data-testid": testid, text: prettyJson(value) });
}

function isEmpty(value) {
  if (value === null || value === undefined) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === "object") return Object.keys(value).length === 0;
  return value === "";
}

export class RuntimePanel {
  /**
   * @param {object} options dialog (a <dialog>), api (ChatApi), adminUrl (template with REGISTRY/SLUG/0, or null)
   */
  constructor({ dialog, api, adminUrl }) {
    this.dialog = dialog;
    this.api = api;
    this.adminUrl = adminUrl;
    this.body = dialog.querySelector("[data-panel-body]");
    this.title = dialog.querySelector("[data-panel-title]");
    this.request = 0;
    dialog.querySelector("[data-panel-close]").addEventListener("click", () => this.close());
    // Focus goes back to what opened it.
    dialog.addEventListener("close", () => {
      if (this.opener && this.opener.isConnected) this.opener.focus();
    });
    // A click on the backdrop (outside the sheet) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.close();
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  async open(convId, turnId, opener) {
    const request = ++this.request;
    this.opener = opener || null;
    this.body.replaceChildren(el("p", { class: "muted", text: "Loading the runtime record…" }));
    this.dialog.dataset.turnId = turnId;
    this.dialog.removeAttribute("data-loaded");
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const turn = await this.api.turn(convId, turnId);
      if (request !== this.request) return;
      this.render(turn);
      this.dialog.dataset.loaded = "true";
    } catch (err) {
      if (request !== this.request) return;
      this.body.replaceChildren(notice(`The runtime record could not be loaded: ${err.message}`, { kind: "error", testid: "error-notice" }));
    }
  }

  adminLink(turn) {
    if (!this.adminUrl || !turn.registry || !turn.profile_slug || !turn.profile_version) return null;
    const href = this.adminUrl
      .replace("REGISTRY", encodeURIComponent(turn.registry))
      .replace("SLUG", encodeURIComponent(turn.profile_slug))
      .replace(/\/0\/$/, `/${turn.profile_version}/`);
    return el("a", {
      href,
      target: "_blank",
      rel: "noopener",
      class: "admin-link",
      "data-testid": "runtime-admin-link",
      text: `Open ${turn.profile_slug} v${turn.profile_version} in the admin`,
    });
  }

  render(turn) {
    const config = turn.runtime_config || {};
    const engine = turn.engine || {};
    const usage = turn.usage || {};
    const duration = turn.finished_at_ms && turn.started_at_ms ? turn.finished_at_ms - turn.started_at_ms : null;
    const rows = [];
    const row = (label, testid, ...value) =>
      rows.push(el("div", { class: "record-row" }, el("dt", { text: label }), el("dd", { "data-testid": testid }, ...value)));

    const statusText = { completed: "Answered", failed: "Failed", interrupted: "Failed (interrupted)", cancelled: "Stopped" };
    row("Status", "runtime-status", statusText[turn.status] || turn.status);
    if (turn.error) row("Error", "runtime-error", `${turn.error.code || "error"}: ${turn.error.message || ""}`);
    if (!turn.runtime_key) {
      row("Runtime", "runtime-none", "This turn never started on a runtime.");
    } else {
      const ref = turn.profile_ref && turn.profile_ref !== turn.profile_slug ? ` (selected as ${turn.profile_ref})` : "";
      row("Profile", "runtime-profile", `${turn.registry} / ${turn.profile_slug}${ref}`);
      row("Version", "runtime-version", `v${turn.profile_version}`, this.adminLink(turn));
      const arm = turn.rollout;
      if (arm) row("Rollout", "runtime-rollout", `arm v${arm.version} (${arm.weight}%) of the ${arm.label} rollout #${arm.id}`);
      row(
        "Fingerprint",
        "runtime-fingerprint",
        el("code", { class: "fingerprint", text: turn.fingerprint }),
        copyButton(() => turn.fingerprint, { label: "Copy fingerprint", testid: "copy-fingerprint" }),
      );
      row(
        "Engine",
        "runtime-engine",
        `${engineLabel(engine)}${engine.history_turns !== undefined ? ` · ${engine.history_turns} earlier turns of context` : ""}`,
      );
      if (!isEmpty(config.engine_settings)) row("Engine settings", "runtime-settings", json(config.engine_settings, "runtime-settings-json"));
      const middlewares = config.middlewares || turn.middlewares || [];
      row(
        "Middlewares",
        "runtime-middlewares",
        middlewares.length
          ? el(
              "ul",
              { class: "record-list" },
              middlewares.map((m) =>
                el(
                  "li",
                  { "data-testid": "runtime-middleware", dataset: { name: m.name } },
                  el("strong", { text: `${m.name}${m.id ? `#${m.id}` : ""}` }),
                  isEmpty(m.config) ? el("span", { class: "muted", text: " (default config)" }) : json(m.config, "runtime-middleware-config"),
                ),
              ),
            )
          : "none",
      );
      const events = turn.middleware_events || [];
      if (events.length) {
        row(
          "Middleware events",
          "runtime-middleware-events",
          el(
            "ul",
            { class: "record-list" },
            events.map((e) =>
              el(
                "li",
                { "data-testid": "runtime-middleware-event" },
                el("code", { text: `${e.middleware}${e.id ? `#${e.id}` : ""} ${e.event}` }),
                isEmpty(e.detail) ? null : json(e.detail, "runtime-middleware-event-detail"),
              ),
            ),
          ),
        );
      }
      row("Tools", "runtime-tools", (turn.tools || []).length ? turn.tools.join(", ") : "none");
      row(
        "Overrides applied",
        "runtime-overrides",
        isEmpty(turn.overrides_applied) ? "none" : json(turn.overrides_applied, "runtime-overrides-json"),
      );
      if (config.system_prompt) {
        row(
          "System prompt",
          "runtime-system-prompt",
          el("details", {}, el("summary", { text: "Show" }), el("pre", { class: "json prewrap", text: config.system_prompt })),
        );
      }
    }
    const tokens = ["prompt_tokens", "completion_tokens", "total_tokens"].filter((k) => usage[k] !== undefined);
    row("Usage", "runtime-usage", tokens.length ? tokens.map((k) => `${k.replace("_tokens", "")} ${usage[k]}`).join(" · ") + " tokens" : "not reported");
    row(
      "Duration",
      "runtime-duration",
      duration === null ? "—" : formatDuration(duration),
      turn.started_at_ms ? el("span", { class: "muted", text: ` (started ${exactTime(turn.started_at_ms)})` }) : null,
    );
    row("Turn", "runtime-turn", el("code", { text: turn.turn_id }), ` · #${turn.seq}`);
    if (turn.replaces) row("Replaces", "runtime-replaces", el("code", { text: turn.replaces }));
    this.title.textContent = turn.runtime_key ? `Runtime record · ${turn.runtime_key} v${turn.profile_version}` : "Runtime record";
    this.body.replaceChildren(el("dl", { class: "record" }, rows));
  }
}
