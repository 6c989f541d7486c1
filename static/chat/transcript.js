// The conversation on the page: turns built from stored turns (hydration) and from live frames.
// Applying a frame twice never duplicates anything: turns are keyed by turn_id, answer parts by
// message_id, tool calls by call_id, and a turn that is finished on the page ignores late frames.
//
// It also keeps the view at the latest message while the user follows it (scrolling up stops that and
// shows "jump to latest"), and offers the message actions: copy, 👍/👎 feedback on each finished answer,
// regenerate / retry and edit of the last turn, and the runtime record behind "Answered by". What
// middlewares did and why an answer failed are said in plain words (plain.js); names, codes, raw
// messages and fingerprints are in the record.

import {
  artifact,
  chips,
  copyButton,
  el,
  engineLabel,
  formatDuration,
  icon,
  iconButton,
  notice,
  setMarkdown,
  setTime,
  switchNotice,
  timeNode,
  toolCall,
  toolResult,
} from "./render.js";
import { middlewareText, turnErrorText } from "./plain.js";

const FINISHED = new Set(["completed", "failed", "cancelled", "interrupted"]);
const STATUS_TEXT = {
  queued: "Queued",
  running: "Answering…",
  failed: "Failed",
  cancelled: "Stopped",
  interrupted: "Interrupted",
};
// What the marker under an answer says, by the turn's status.
const MARKER_LABEL = {
  completed: "Answered by",
  failed: "Failed on",
  interrupted: "Failed on",
  cancelled: "Stopped on",
};
const NEAR_END_PX = 80;

class TurnView {
  /**
   * @param {string} turnId
   * @param {string} prompt
   * @param {object} hooks onDraw(), actions {copy, regenerate(turn), edit(turn, prompt), runtime(turn),
   *   feedback(turn, rating)}
   */
  constructor(turnId, prompt, hooks) {
    this.id = turnId;
    this.prompt = prompt ?? "";
    this.hooks = hooks;
    this.status = "queued";
    this.finalized = false;
    this.replaced = false;
    this.parts = new Map(); // message_id -> {node, text}
    this.tools = new Map(); // call_id -> tool view
    this.statusPill = el("span", { class: "turn-status", "data-testid": "turn-status" });
    this.userTime = timeNode(0, { testid: "user-time" });
    this.bubble = el("div", { class: "bubble", "data-testid": "user-text", text: this.prompt });
    this.editButton = iconButton("edit", "Edit and resend", { class: "icon-btn", "data-testid": "edit-prompt", hidden: true });
    this.editButton.addEventListener("click", () => this.startEdit());
    this.userActions = el(
      "div",
      { class: "msg-actions" },
      copyButton(() => this.prompt, { label: "Copy message", testid: "copy-prompt" }),
      this.editButton,
    );
    this.user = el(
      "div",
      { class: "msg msg-user", "data-testid": "user-message" },
      this.bubble,
      el("div", { class: "msg-meta" }, this.statusPill, this.userTime, this.userActions),
    );
    if (!prompt) this.user.hidden = true;
    this.notices = el("div", { class: "turn-notices" });
    this.body = el("div", { class: "assistant-body" });
    this.suggestions = el("div", { class: "chips turn-suggestions", "data-testid": "suggestions", hidden: true });
    this.markerButton = el("button", {
      type: "button",
      class: "marker-button",
      "data-testid": "runtime-open",
      "aria-haspopup": "dialog",
      title: "Show the runtime record of this answer",
      onclick: () => this.hooks.actions.runtime(this),
    });
    this.marker = el("footer", { class: "answer-marker", "data-testid": "answer-marker", hidden: true }, this.markerButton);
    this.answerTime = timeNode(0, { testid: "answer-time" });
    this.regenerateButton = el(
      "button",
      { type: "button", class: "btn btn-sm btn-ghost", "data-testid": "regenerate", hidden: true },
      icon("regenerate"),
      el("span", { class: "btn-text", text: "Regenerate" }),
    );
    this.regenerateButton.addEventListener("click", () => this.hooks.actions.regenerate(this));
    this.feedback = null; // the caller's rating of the answer: {rating, comment, at_ms} or null
    this.thumbs = {
      up: this.thumbButton("up", "thumbUp", "Good answer"),
      down: this.thumbButton("down", "thumbDown", "Bad answer"),
    };
    this.answerActions = el(
      "div",
      { class: "msg-actions" },
      copyButton(() => this.answerText(), { label: "Copy answer", testid: "copy-answer" }),
      this.thumbs.up,
      this.thumbs.down,
      this.regenerateButton,
    );
    this.meta = el("div", { class: "answer-meta" }, this.marker, this.answerTime, this.answerActions);
    this.assistant = el(
      "div",
      { class: "msg msg-assistant", "data-testid": "assistant-message", hidden: true },
      el("div", { class: "avatar", "aria-hidden": "true", text: "✦" }),
      el("div", { class: "assistant-main" }, this.body, this.suggestions, this.meta),
    );
    this.replacedBar = el("button", {
      type: "button",
      class: "replaced-toggle",
      "data-testid": "replaced-toggle",
      "aria-expanded": "false",
      hidden: true,
      onclick: () => this.toggleReplaced(),
    });
    this.node = el(
      "article",
      { class: "turn", "data-testid": "turn", dataset: { turnId, status: this.status } },
      this.replacedBar,
      this.user,
      this.notices,
      this.assistant,
    );
    this.setStatus("queued");
  }

  // ---- feedback (thumbs under a finished answer)

  /** 👍 or 👎 (an SVG thumb: no emoji font needed), a toggle named "Good answer" / "Bad answer". */
  thumbButton(rating, iconName, label) {
    const button = iconButton(iconName, label, {
      class: "icon-btn thumb-btn",
      "aria-pressed": "false",
      "data-testid": `feedback-${rating}`,
      hidden: true,
    });
    button.addEventListener("click", () => this.rate(rating));
    return button;
  }

  /** Show the caller's rating ({rating, ...} or null) on the thumbs. */
  setFeedback(feedback) {
    this.feedback = feedback || null;
    for (const [rating, button] of Object.entries(this.thumbs)) {
      const pressed = Boolean(this.feedback && this.feedback.rating === rating);
      button.setAttribute("aria-pressed", String(pressed));
      button.classList.toggle("is-pressed", pressed);
    }
  }

  /** A thumb clicked: give that rating, or withdraw it when it is the one given. The thumbs show what the
   * server stored (unchanged when the request fails). */
  async rate(rating) {
    if (this.ratingBusy) return;
    const next = this.feedback && this.feedback.rating === rating ? null : rating;
    this.ratingBusy = true;
    for (const button of Object.values(this.thumbs)) button.disabled = true;
    try {
      const stored = await this.hooks.actions.feedback(this, next);
      if (stored !== undefined) this.setFeedback(stored);
    } finally {
      this.ratingBusy = false;
      for (const button of Object.values(this.thumbs)) button.disabled = false;
    }
  }

  setStatus(status, detail) {
    this.status = status;
    this.node.dataset.status = status;
    const text = STATUS_TEXT[status];
    this.statusPill.textContent = text ? `${text}${detail ? ` · ${detail}` : ""}` : "";
    this.statusPill.hidden = !text;
    this.statusPill.className = `turn-status status-${status}`;
  }

  setUserTime(ms) {
    if (ms) setTime(this.userTime, ms);
  }

  setAnswerTime(ms) {
    if (ms) setTime(this.answerTime, ms);
  }

  showAssistant() {
    this.assistant.hidden = false;
  }

  answerText() {
    return [...this.parts.values()].map((p) => p.text).join("\n\n").trim();
  }

  setMarker(marker, extra = {}) {
    if (!marker || !marker.runtime_key) return;
    const label = this.finalized ? MARKER_LABEL[this.status] || "Answered by" : "Running on";
    const parts = [
      el("span", { class: "marker-label", text: label }),
      el("strong", { class: "marker-key", text: marker.runtime_key }),
      el("span", { class: "marker-version", text: `v${marker.profile_version ?? "?"}` }),
    ];
    if (extra.engine) parts.push(el("span", { class: "marker-engine", text: extra.engine }));
    if (extra.duration) parts.push(el("span", { class: "marker-duration", text: extra.duration }));
    parts.push(icon("info"), el("span", { class: "visually-hidden", text: ": show the runtime record" }));
    this.markerButton.replaceChildren(...parts);
    this.marker.dataset.runtimeKey = marker.runtime_key;
    this.marker.dataset.profileVersion = marker.profile_version ?? "";
    this.marker.dataset.fingerprint = marker.fingerprint || "";
    this.marker.dataset.label = label;
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
      this.hooks.onDraw();
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

  /** A middleware's event, in plain words ("Mode: plan"); its name and detail are in the record. */
  addMiddlewareEvent(data) {
    this.body.append(
      el("div", {
        class: "mw-event",
        "data-testid": "middleware-event",
        dataset: { middleware: data.middleware || "", event: data.event || "" },
        text: middlewareText(data),
      }),
    );
    this.showAssistant();
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

  /** Why the answer failed, in plain words; "Details" opens the record (the code and the raw message). */
  addError(error, status = "failed") {
    const kept = this.answerText() ? " The text so far is kept." : "";
    this.body.append(
      el(
        "div",
        { class: "turn-error", "data-testid": "turn-error", role: "alert", dataset: { code: (error && error.code) || status } },
        el("span", { "data-testid": "turn-error-text", text: `${turnErrorText(error, status)}${kept}` }),
        el("button", {
          type: "button",
          class: "btn btn-sm btn-ghost turn-error-details",
          "data-testid": "turn-error-details",
          "aria-haspopup": "dialog",
          text: "Details",
          onclick: () => this.hooks.actions.runtime(this),
        }),
      ),
    );
    this.showAssistant();
  }

  finish(status, data = {}) {
    this.finalized = true;
    this.setStatus(status);
    if (data.text !== undefined) this.setFinalText(data.text);
    if (status === "failed" || status === "interrupted") this.addError(data.error, status);
    if (status === "cancelled") this.body.append(el("div", { class: "turn-note", text: "Stopped." }));
    this.node.classList.remove("is-streaming");
    if (this.markerData) {
      this.setMarker(this.markerData, { ...this.markerExtra, duration: formatDuration(data.duration_ms) });
    }
    this.regenerateButton.querySelector(".btn-text").textContent = status === "completed" ? "Regenerate" : "Retry";
    this.regenerateButton.dataset.testid = status === "completed" ? "regenerate" : "retry";
    // Feedback is on an answer: a finished turn that answered something.
    const rateable = Boolean(this.hooks.actions.feedback) && (status === "completed" || Boolean(this.answerText()));
    for (const button of Object.values(this.thumbs)) button.hidden = !rateable;
    this.showAssistant();
  }

  /** Only the conversation's last turn, once finished, can be regenerated, retried or edited. */
  setLast(isLast, idle) {
    const can = isLast && this.finalized && idle && !this.replaced;
    this.regenerateButton.hidden = !can;
    this.editButton.hidden = !can || !this.prompt;
    this.node.classList.toggle("is-last", isLast);
  }

  markReplaced() {
    if (this.replaced) return;
    this.replaced = true;
    this.node.classList.add("is-replaced");
    this.node.dataset.replaced = "true";
    this.replacedBar.hidden = false;
    this.updateReplacedBar(false);
    this.cancelEdit();
  }

  updateReplacedBar(expanded) {
    const short = this.prompt.length > 60 ? `${this.prompt.slice(0, 60)}…` : this.prompt;
    this.replacedBar.textContent = expanded ? "Hide the replaced version" : `Replaced version of “${short}” · show`;
    this.replacedBar.setAttribute("aria-expanded", String(expanded));
  }

  toggleReplaced() {
    const expanded = !this.node.classList.contains("is-expanded");
    this.node.classList.toggle("is-expanded", expanded);
    this.updateReplacedBar(expanded);
  }

  // ---- edit and resend (the last prompt)

  startEdit() {
    if (this.editor) return;
    const area = el("textarea", {
      class: "edit-input",
      "data-testid": "edit-input",
      rows: "3",
      maxlength: "8000",
      "aria-label": "Edit your message",
    });
    area.value = this.prompt;
    const send = el("button", { type: "submit", class: "btn btn-primary btn-sm", "data-testid": "edit-send", text: "Send" });
    const cancel = el("button", { type: "button", class: "btn btn-sm", "data-testid": "edit-cancel", text: "Cancel" });
    const form = el("form", { class: "edit-form", "data-testid": "edit-form" }, area, el("div", { class: "edit-actions" }, cancel, send));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const prompt = area.value.trim();
      if (!prompt) return;
      if (this.hooks.actions.edit(this, prompt)) this.cancelEdit();
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        this.cancelEdit();
      }
    });
    cancel.addEventListener("click", () => this.cancelEdit());
    this.editor = form;
    this.bubble.hidden = true;
    this.bubble.after(form);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
    this.hooks.onDraw();
  }

  cancelEdit() {
    if (!this.editor) return;
    this.editor.remove();
    this.editor = null;
    this.bubble.hidden = false;
  }
}

export class Transcript {
  /**
   * @param {HTMLElement} container
   * @param {object} hooks onSuggestion(text), onActivity(frame), onChange(), engineOf(fingerprint),
   *   onFollow(following), onMessage(turnId, data), actions {regenerate(turn), edit(turn, prompt), runtime(turn),
   *   feedback(turn, rating): the stored feedback or null (`rating` null withdraws it), undefined when it failed}
   */
  constructor(
    container,
    {
      onSuggestion = () => {},
      onActivity = () => {},
      onChange = () => {},
      engineOf = () => "",
      onFollow = () => {},
      actions = {},
    } = {},
  ) {
    this.container = container;
    this.engineOf = engineOf;
    this.onSuggestion = onSuggestion;
    this.onActivity = onActivity;
    this.onChange = onChange;
    this.onFollow = onFollow;
    this.actions = {
      regenerate: () => false,
      edit: () => false,
      runtime: () => {},
      ...actions,
    };
    this.turnHooks = { onDraw: () => this.afterChange(), actions: this.actions };
    this.following = true;
    // Always last: the messages not confirmed by the server yet (outbox.js).
    this.tail = el("div", { class: "pending-list", "data-testid": "pending-list" });
    container.addEventListener("scroll", () => this.scrolled(), { passive: true });
    // Whatever changes a height (the container, a turn's late rendering or highlighting) keeps the end in view.
    this.resizer = typeof ResizeObserver === "function" ? new ResizeObserver(() => this.afterChange()) : null;
    if (this.resizer) this.resizer.observe(container);
    this.clear();
  }

  clear() {
    if (this.resizer && this.turns) for (const turn of this.turns.values()) this.resizer.unobserve(turn.node);
    this.turns = new Map();
    this.order = [];
    this.current = null;
    this.container.replaceChildren(this.tail);
    this.setFollowing(true);
  }

  /** Add a node to the transcript, before the pending messages. */
  place(node) {
    this.container.insertBefore(node, this.tail);
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

  /** Turns the page shows as queued or running. */
  get unfinished() {
    return this.order.map((id) => this.turns.get(id)).filter((turn) => !turn.finalized);
  }

  get lastTurn() {
    return this.order.length ? this.turns.get(this.order[this.order.length - 1]) : null;
  }

  // ------------------------------------------------------------------------------ hydration

  /** Render the stored turns of a conversation (finished ones only: the rest replays from events). */
  hydrate(turns) {
    let previous = null;
    const finished = turns.filter((t) => FINISHED.has(t.status));
    const replaced = new Set(turns.map((t) => t.replaces).filter(Boolean));
    for (const stored of finished) {
      const turn = this.addTurn(stored.turn_id, stored.prompt);
      if (previous && previous.fingerprint && stored.fingerprint && previous.fingerprint !== stored.fingerprint) {
        turn.notices.append(switchNotice(previous, stored, ""));
      }
      this.fill(turn, stored);
      if (replaced.has(stored.turn_id)) turn.markReplaced();
      if (stored.runtime_key) previous = stored;
    }
    const last = finished[finished.length - 1];
    if (last && last.suggestions && last.suggestions.length && this.order[this.order.length - 1] === last.turn_id) {
      this.turns.get(last.turn_id).setSuggestions(last.suggestions, this.onSuggestion);
    }
    this.setFollowing(true);
    this.onChange();
    this.afterChange();
  }

  /** A stored, finished turn's content on `turn` (hydration, or a turn that ended while the page was away). */
  fill(turn, stored) {
    turn.setUserTime(stored.created_at_ms);
    for (const event of stored.middleware_events || []) turn.addMiddlewareEvent(event);
    for (const call of stored.tool_calls || []) {
      turn.toolStart(call);
      turn.toolResult(call);
    }
    for (const item of stored.artifacts || []) turn.addArtifact(item);
    if (stored.text) turn.setText("stored", stored.text);
    const duration = stored.finished_at_ms && stored.started_at_ms ? stored.finished_at_ms - stored.started_at_ms : undefined;
    turn.finish(stored.status, { error: stored.error, duration_ms: duration });
    if (stored.runtime_key) {
      turn.setMarker(
        { runtime_key: stored.runtime_key, profile_version: stored.profile_version, fingerprint: stored.fingerprint },
        { engine: engineLabel(stored.engine), duration: formatDuration(duration) },
      );
    }
    turn.setAnswerTime(stored.finished_at_ms);
    turn.setFeedback(stored.feedback);
  }

  /** The stored state of turns the page shows unfinished (`turns`: the conversation's stored turns): one
   * that has ended (completed, failed, cancelled, interrupted) is shown as stored, in its place. Frames
   * that said so may never come (the server restarted). Returns how many were ended here. */
  reconcile(turns) {
    let ended = 0;
    for (const stored of turns) {
      const shown = this.turns.get(stored.turn_id);
      if (!shown || shown.finalized || !FINISHED.has(stored.status)) continue;
      const turn = new TurnView(stored.turn_id, stored.prompt ?? shown.prompt, this.turnHooks);
      turn.notices.replaceChildren(...shown.notices.childNodes);
      this.fill(turn, stored);
      if (this.resizer) {
        this.resizer.unobserve(shown.node);
        this.resizer.observe(turn.node);
      }
      shown.node.replaceWith(turn.node);
      this.turns.set(stored.turn_id, turn);
      if (this.current === shown) this.current = null;
      ended += 1;
    }
    if (ended) {
      this.onChange();
      this.afterChange();
    }
    return ended;
  }

  addTurn(turnId, prompt) {
    let turn = this.turns.get(turnId);
    if (turn) return turn;
    turn = new TurnView(turnId, prompt, this.turnHooks);
    this.turns.set(turnId, turn);
    this.order.push(turnId);
    this.place(turn.node);
    if (this.resizer) this.resizer.observe(turn.node);
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
    this.place(node);
    this.afterChange();
  }

  /** Which turn may be regenerated or edited now (the last one, finished, nothing running). */
  updateLast() {
    const idle = !this.busy;
    const lastId = this.order[this.order.length - 1];
    for (const id of this.order) this.turns.get(id).setLast(id === lastId, idle);
  }

  // ------------------------------------------------------------------------------ live frames

  /** Apply one conversation frame (already deduplicated by seq by the socket). */
  apply(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "chat.message": {
        if (!this.turns.has(data.turn_id)) {
          for (const id of this.order) this.turns.get(id).clearSuggestions();
          const turn = this.addTurn(data.turn_id, data.text);
          turn.setUserTime(frame.ts_ms);
          if (data.replaces && this.turns.has(data.replaces)) this.turns.get(data.replaces).markReplaced();
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
        else this.place(node);
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
        const status = data.status === "interrupted" ? "interrupted" : frame.type.slice("turn.".length);
        turn.finish(status, data);
        turn.setAnswerTime(frame.ts_ms);
        if (this.current === turn) this.current = null;
        break;
      }
      default:
        break;
    }
    this.onChange(); // the controls may change the heights too (actions of the last turn)
    this.afterChange();
  }

  /** An `error` frame (this socket only): shown inline. */
  showError(data) {
    const node = notice(data.message || "Something went wrong.", { kind: "error", testid: "error-notice" });
    if (data.code) node.dataset.code = data.code;
    this.place(node);
    this.afterChange();
  }

  live() {
    return this.current && !this.current.finalized ? this.current : null;
  }

  turnOfMessage(messageId) {
    const turnId = String(messageId || "").split(":")[0];
    return this.turns.get(turnId) || this.live();
  }

  // ------------------------------------------------------------------------------ following the end

  nearEnd() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < NEAR_END_PX;
  }

  /** The user scrolled: following stops when they leave the end, resumes when they come back. */
  scrolled() {
    // Our own jump to the end lands at (or, when the content grew meanwhile, above) its target: not the
    // user. Anything that moved up from it is the user, even while our jump's event is still due.
    if (this.autoScrolling && this.container.scrollTop >= this.autoTop - 1) return;
    this.setFollowing(this.nearEnd());
  }

  setFollowing(following) {
    if (this.following === following) return;
    this.following = following;
    this.onFollow(following);
  }

  /** After anything changed the transcript's height: stay at the end while following. */
  afterChange() {
    if (this.following) this.scrollToEnd();
    else this.onFollow(false);
  }

  scrollToEnd() {
    const c = this.container;
    this.autoScrolling = true;
    c.scrollTop = c.scrollHeight;
    this.autoTop = c.scrollTop;
    // The scroll event of this jump arrives asynchronously: ignore it, not the user's next one.
    window.requestAnimationFrame(() => {
      this.autoScrolling = false;
    });
  }

  /** "Jump to latest": back to the end, and follow again. */
  jumpToEnd() {
    this.setFollowing(true);
    this.scrollToEnd();
  }
}
