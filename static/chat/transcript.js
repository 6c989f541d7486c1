// The conversation on the page: turns built from stored turns (hydration) and from live frames.
// Applying a frame twice never duplicates anything: turns are keyed by turn_id, answer parts by
// message_id, tool calls by call_id, and a turn that is finished on the page ignores late frames.

import {
  artifact,
  chips,
  el,
  engineLabel,
  formatDuration,
  notice,
  setMarkdown,
  shortFingerprint,
  switchNotice,
  toolCall,
  toolResult,
} from "./render.js";

const FINISHED = new Set(["completed", "failed", "cancelled", "interrupted"]);
const STATUS_TEXT = {
  queued: "Queued",
  running: "Answering…",
  failed: "Failed",
  cancelled: "Cancelled",
  interrupted: "Interrupted",
};

/** {kind: "table", title: "Low stock"} -> 'kind table · title "Low stock"' */
function describeDetail(detail) {
  if (!detail || typeof detail !== "object") return detail ? String(detail) : "";
  return Object.entries(detail)
    .map(([key, value]) => `${key} ${typeof value === "string" ? (/\s/.test(value) ? `“${value}”` : value) : JSON.stringify(value)}`)
    .join(" · ");
}

class TurnView {
  constructor(turnId, prompt) {
    this.id = turnId;
    this.status = "queued";
    this.finalized = false;
    this.parts = new Map(); // message_id -> {node, text}
    this.tools = new Map(); // call_id -> tool view
    this.statusPill = el("span", { class: "turn-status", "data-testid": "turn-status" });
    this.user = el(
      "div",
      { class: "msg msg-user", "data-testid": "user-message" },
      el("div", { class: "bubble", "data-testid": "user-text", text: prompt ?? "" }),
      this.statusPill,
    );
    if (!prompt) this.user.hidden = true;
    this.notices = el("div", { class: "turn-notices" });
    this.body = el("div", { class: "assistant-body" });
    this.suggestions = el("div", { class: "chips turn-suggestions", "data-testid": "suggestions", hidden: true });
    this.marker = el("footer", { class: "answer-marker", "data-testid": "answer-marker", hidden: true });
    this.assistant = el(
      "div",
      { class: "msg msg-assistant", "data-testid": "assistant-message", hidden: true },
      el("div", { class: "avatar", "aria-hidden": "true", text: "✦" }),
      el("div", { class: "assistant-main" }, this.body, this.suggestions, this.marker),
    );
    this.node = el(
      "article",
      { class: "turn", "data-testid": "turn", dataset: { turnId, status: this.status } },
      this.user,
      this.notices,
      this.assistant,
    );
    this.setStatus("queued");
  }

  setStatus(status, detail) {
    this.status = status;
    this.node.dataset.status = status;
    const text = STATUS_TEXT[status];
    this.statusPill.textContent = text ? `${text}${detail ? ` · ${detail}` : ""}` : "";
    this.statusPill.hidden = !text;
    this.statusPill.className = `turn-status status-${status}`;
  }

  showAssistant() {
    this.assistant.hidden = false;
  }

  setMarker(marker, extra = {}) {
    if (!marker || !marker.runtime_key) return;
    const parts = [
      el("span", { class: "marker-label", text: this.finalized ? "Answered by" : "Running on" }),
      el("strong", { class: "marker-key", text: marker.runtime_key }),
      el("span", { class: "marker-version", text: `v${marker.profile_version ?? "?"}` }),
      el("code", { class: "marker-fp", text: shortFingerprint(marker.fingerprint), title: marker.fingerprint || "" }),
    ];
    if (extra.engine) parts.push(el("span", { class: "marker-engine", text: extra.engine }));
    if (extra.duration) parts.push(el("span", { class: "marker-duration", text: extra.duration }));
    this.marker.replaceChildren(...parts);
    this.marker.dataset.runtimeKey = marker.runtime_key;
    this.marker.dataset.profileVersion = marker.profile_version ?? "";
    this.marker.dataset.fingerprint = marker.fingerprint || "";
    this.marker.hidden = false;
    this.markerData = marker;
    this.markerExtra = extra;
  }

  textPart(messageId) {
    let part = this.parts.get(messageId);
    if (!part) {
      const node = el("div", { class: "answer-text markdown", "data-testid": "answer-text", dataset: { messageId } });
      part = { node, text: "", seq: 0 };
      this.parts.set(messageId, part);
      this.body.append(node);
    }
    return part;
  }

  /** The whole text of a message (llm.final, llm.snapshot, hydration): frames up to `seq` are in it. */
  setText(messageId, text, seq = 0) {
    if (!text) return;
    const part = this.textPart(messageId);
    part.seq = Math.max(part.seq, seq);
    if (part.text === text) return;
    part.text = text;
    this.render(part);
  }

  /** A delta adds the new text only; one already covered by a snapshot (seq at or below it) is skipped. */
  appendText(messageId, delta, seq = 0) {
    if (!delta) return;
    const part = this.textPart(messageId);
    if (seq && seq <= part.seq) return;
    part.seq = Math.max(part.seq, seq);
    part.text += delta;
    this.render(part);
  }

  /** Markdown is rendered at most once per animation frame, however many deltas arrive. */
  render(part) {
    if (part.pending) return;
    part.pending = true;
    const draw = () => {
      part.pending = false;
      setMarkdown(part.node, part.text);
      this.showAssistant();
    };
    if (typeof requestAnimationFrame === "function" && !document.hidden) requestAnimationFrame(draw);
    else draw();
  }

  /** The final text (middlewares may have edited it): replace the streamed parts if it differs. */
  setFinalText(text) {
    if (typeof text !== "string") return;
    const streamed = [...this.parts.values()].map((p) => p.text).join("").trim();
    if (streamed === text.trim()) return;
    for (const part of this.parts.values()) part.node.remove();
    this.parts.clear();
    this.setText("final", text);
  }

  toolStart(data) {
    if (this.tools.has(data.call_id)) return;
    const view = toolCall(data);
    this.tools.set(data.call_id, view);
    this.body.append(view.node);
    this.showAssistant();
  }

  toolResult(data) {
    if (!this.tools.has(data.call_id)) this.toolStart({ call_id: data.call_id, name: data.name, input: data.input });
    toolResult(this.tools.get(data.call_id), data);
  }

  addArtifact(data) {
    this.body.append(artifact(data));
    this.showAssistant();
  }

  addMiddlewareEvent(data) {
    const detail = describeDetail(data.detail);
    const who = `${data.middleware}${data.id ? `#${data.id}` : ""}`;
    this.body.append(
      el(
        "div",
        { class: "mw-event", "data-testid": "middleware-event", title: detail ? `${who} ${data.event}: ${detail}` : "" },
        el("span", { class: "mw-name", text: who }),
        el("span", { class: "mw-what", text: data.event }),
      ),
    );
  }

  setSuggestions(items, onPick) {
    const buttons = chips(items, onPick);
    this.suggestions.replaceChildren(...buttons);
    this.suggestions.hidden = buttons.length === 0;
  }

  clearSuggestions() {
    this.suggestions.replaceChildren();
    this.suggestions.hidden = true;
  }

  addError(error) {
    const message = (error && (error.message || error.code)) || "The turn failed.";
    this.body.append(
      el(
        "div",
        { class: "turn-error", "data-testid": "turn-error", role: "alert" },
        el("strong", { text: error && error.code ? `${error.code}: ` : "Error: " }),
        message,
      ),
    );
    this.showAssistant();
  }

  finish(status, data = {}) {
    this.finalized = true;
    this.setStatus(status);
    if (data.text !== undefined) this.setFinalText(data.text);
    if (status === "failed") this.addError(data.error);
    if (status === "cancelled") this.body.append(el("div", { class: "turn-note", text: "Cancelled." }));
    if (status === "interrupted") this.addError(data.error || { code: "interrupted", message: "The server stopped during this turn." });
    this.node.classList.remove("is-streaming");
    if (this.markerData) {
      this.setMarker(this.markerData, { ...this.markerExtra, duration: formatDuration(data.duration_ms) });
    }
    this.showAssistant();
  }
}

export class Transcript {
  /**
   * @param {HTMLElement} container
   * @param {object} hooks onSuggestion(text), onActivity(frame), onChange(), engineOf(fingerprint)
   */
  constructor(
    container,
    { onSuggestion = () => {}, onActivity = () => {}, onChange = () => {}, engineOf = () => "" } = {},
  ) {
    this.container = container;
    this.engineOf = engineOf;
    this.onSuggestion = onSuggestion;
    this.onActivity = onActivity;
    this.onChange = onChange;
    this.clear();
  }

  clear() {
    this.turns = new Map();
    this.order = [];
    this.current = null;
    this.container.replaceChildren();
  }

  get isEmpty() {
    return this.order.length === 0;
  }

  get busy() {
    return this.order.some((id) => {
      const turn = this.turns.get(id);
      return !turn.finalized && (turn.status === "queued" || turn.status === "running");
    });
  }

  // ------------------------------------------------------------------------------ hydration

  /** Render the stored turns of a conversation (finished ones only: the rest replays from events). */
  hydrate(turns) {
    let previous = null;
    const finished = turns.filter((t) => FINISHED.has(t.status));
    for (const stored of finished) {
      const turn = this.addTurn(stored.turn_id, stored.prompt);
      if (previous && previous.fingerprint && stored.fingerprint && previous.fingerprint !== stored.fingerprint) {
        turn.notices.append(switchNotice(previous, stored, ""));
      }
      for (const call of stored.tool_calls || []) {
        turn.toolStart(call);
        turn.toolResult(call);
      }
      for (const item of stored.artifacts || []) turn.addArtifact(item);
      if (stored.text) turn.setText("stored", stored.text);
      if (stored.runtime_key) {
        turn.setMarker(
          { runtime_key: stored.runtime_key, profile_version: stored.profile_version, fingerprint: stored.fingerprint },
          { engine: engineLabel(stored.engine) },
        );
      }
      const duration =
        stored.finished_at_ms && stored.started_at_ms ? stored.finished_at_ms - stored.started_at_ms : undefined;
      turn.finish(stored.status, { error: stored.error, duration_ms: duration });
      if (stored.runtime_key) previous = stored;
    }
    const last = finished[finished.length - 1];
    if (last && last.suggestions && last.suggestions.length && this.order[this.order.length - 1] === last.turn_id) {
      this.turns.get(last.turn_id).setSuggestions(last.suggestions, this.onSuggestion);
    }
    this.scrollToEnd();
    this.onChange();
  }

  addTurn(turnId, prompt) {
    let turn = this.turns.get(turnId);
    if (turn) return turn;
    turn = new TurnView(turnId, prompt);
    this.turns.set(turnId, turn);
    this.order.push(turnId);
    this.container.append(turn.node);
    return turn;
  }

  /** The next turn to start: the oldest one still queued. */
  nextQueued() {
    for (const id of this.order) {
      const turn = this.turns.get(id);
      if (!turn.finalized && turn.status === "queued") return turn;
    }
    return null;
  }

  addNotice(node) {
    this.container.append(node);
    this.scrollToEnd();
  }

  // ------------------------------------------------------------------------------ live frames

  /** Apply one conversation frame (already deduplicated by seq by the socket). */
  apply(frame) {
    const data = frame.data || {};
    const stick = this.nearEnd();
    switch (frame.type) {
      case "chat.message": {
        if (!this.turns.has(data.turn_id)) {
          for (const id of this.order) this.turns.get(id).clearSuggestions();
          this.addTurn(data.turn_id, data.text);
        }
        break;
      }
      case "chat.queued": {
        const turn = this.turns.get(data.turn_id);
        if (turn && !turn.finalized && turn.status === "queued") turn.setStatus("queued", `position ${data.position}`);
        break;
      }
      case "runtime.switched": {
        const target = this.nextQueued();
        const node = switchNotice(data.from, data.to, data.reason);
        if (target) target.notices.append(node);
        else this.container.append(node);
        break;
      }
      case "turn.started": {
        const turn = this.addTurn(data.turn_id, "");
        this.current = turn;
        if (turn.finalized) break;
        turn.setStatus("running");
        turn.node.classList.add("is-streaming");
        turn.setMarker(data, { engine: this.engineOf(data.fingerprint) });
        turn.showAssistant();
        break;
      }
      case "llm.start":
        break;
      case "llm.delta": {
        const turn = this.turnOfMessage(data.message_id);
        if (turn && !turn.finalized) turn.appendText(data.message_id, data.delta, frame.seq);
        break;
      }
      case "llm.snapshot":
      case "llm.final": {
        const turn = this.turnOfMessage(data.message_id);
        if (!turn || turn.finalized) break;
        turn.setText(data.message_id, data.text, frame.seq);
        break;
      }
      case "tool.start": {
        const turn = this.live();
        if (turn) turn.toolStart(data);
        break;
      }
      case "tool.result": {
        const turn = this.live();
        if (turn) {
          turn.toolResult(data);
          this.onActivity(frame);
        }
        break;
      }
      case "tool.done":
        break;
      case "artifact": {
        const turn = this.live();
        if (turn) {
          turn.addArtifact(data);
          this.onActivity(frame);
        }
        break;
      }
      case "middleware.event": {
        const turn = this.live();
        if (turn) turn.addMiddlewareEvent(data);
        break;
      }
      case "suggestions": {
        const turn = this.live();
        if (turn) turn.setSuggestions(data.items, this.onSuggestion);
        break;
      }
      case "turn.completed":
      case "turn.failed":
      case "turn.cancelled": {
        const turn = this.turns.get(data.turn_id);
        if (!turn || turn.finalized) break;
        turn.finish(frame.type.slice("turn.".length), data);
        if (this.current === turn) this.current = null;
        break;
      }
      default:
        break;
    }
    if (stick) this.scrollToEnd();
    this.onChange();
  }

  /** An `error` frame (this socket only): shown inline. */
  showError(data) {
    const stick = this.nearEnd();
    this.container.append(
      notice(`${data.message || "Something went wrong."}${data.code ? ` (${data.code})` : ""}`, {
        kind: "error",
        testid: "error-notice",
      }),
    );
    if (stick) this.scrollToEnd();
  }

  live() {
    return this.current && !this.current.finalized ? this.current : null;
  }

  turnOfMessage(messageId) {
    const turnId = String(messageId || "").split(":")[0];
    return this.turns.get(turnId) || this.live();
  }

  nearEnd() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
  }

  scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
  }
}
