// Messages the server has not confirmed yet, each shown as a pending bubble at the end of the
// transcript: "Sending…", or "Waiting for the connection" while the page cannot reach the server.
// Waiting ones go out as soon as the socket is connected, with the idempotency key they were given when
// typed, so sending one again after a drop never makes a second turn. The server's `chat.message` (or its
// `duplicate` answer) replaces the bubble by the turn. A message that cannot be sent (signed out, another
// conversation opened, refused, or waiting longer than PENDING_MAX_MS) is discarded and said so: nothing
// is delivered silently later.

import { el } from "./render.js";

export const PENDING_MAX_MS = 120_000;

const STATE_TEXT = {
  waiting: "Not sent yet: waiting for the connection",
  sending: "Sending…",
};

export class Outbox {
  /**
   * @param {object} options container (where bubbles go: the transcript's tail), send(frame) -> bool (it
   *   reached the server now), onDiscard(prompt, reason) (say it; reason "" when the user withdrew it),
   *   onChange()
   */
  constructor({ container, send, onDiscard, onChange = () => {} }) {
    this.container = container;
    this.send = send;
    this.onDiscard = onDiscard;
    this.onChange = onChange;
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  /** A new message: shown at once, sent now if the socket is connected. */
  add(prompt, key) {
    const item = { prompt, key, since: Date.now(), state: "waiting" };
    const status = el("span", { class: "turn-status status-pending", "data-testid": "pending-status" });
    const withdraw = el("button", {
      type: "button",
      class: "btn btn-sm btn-ghost",
      "data-testid": "pending-withdraw",
      text: "Don't send",
      onclick: () => this.discard(item, ""),
    });
    item.status = status;
    item.node = el(
      "article",
      { class: "turn is-pending", "data-testid": "pending-message" },
      el(
        "div",
        { class: "msg msg-user" },
        el("div", { class: "bubble", "data-testid": "pending-text", text: prompt }),
        el("div", { class: "msg-meta" }, status, withdraw),
      ),
    );
    this.items.push(item);
    this.container.append(item.node);
    this.setState(item, "waiting");
    this.flush();
    this.onChange();
    return item;
  }

  setState(item, state) {
    item.state = state;
    item.node.dataset.state = state;
    item.status.textContent = STATE_TEXT[state];
  }

  /** The socket is connected: send what waits (or discard what waited too long). */
  flush() {
    for (const item of [...this.items]) {
      if (item.state !== "waiting") continue;
      if (Date.now() - item.since > PENDING_MAX_MS) {
        this.discard(item, "The connection was away for more than two minutes.");
      } else if (this.send({ type: "chat.send", prompt: item.prompt, idempotency_key: item.key })) {
        item.sent = true;
        this.setState(item, "sending");
      }
    }
  }

  /** The socket dropped: what was sent but not confirmed goes again (same key) when it is back. */
  disconnected() {
    for (const item of this.items) if (item.state === "sending") this.setState(item, "waiting");
  }

  /** The server's `chat.message` for a new turn: the pending bubble it answers (sent, same text) goes. */
  confirm(text) {
    const item = this.items.find((i) => i.sent && i.prompt === text);
    if (item) this.remove(item);
    return Boolean(item);
  }

  /** The server answered a resend with `duplicate`: the turn exists (its frames come by the replay). */
  confirmOldestSent() {
    const item = this.items.find((i) => i.state === "sending");
    if (item) this.remove(item);
  }

  /** An error frame while a message is on its way: the server refused it. True when one was refused. */
  refuse(reason) {
    const item = this.items.find((i) => i.state === "sending");
    if (!item) return false;
    this.discard(item, reason);
    return true;
  }

  /** Every pending message, said once (e.g. signed out). */
  discardAll(reason) {
    for (const item of [...this.items]) this.discard(item, reason);
  }

  /** Take every pending message off the page (their texts, oldest first), to be said elsewhere. */
  takeAll() {
    const prompts = this.items.map((i) => i.prompt);
    for (const item of [...this.items]) this.remove(item);
    return prompts;
  }

  discard(item, reason) {
    if (!this.items.includes(item)) return;
    this.remove(item);
    this.onDiscard(item.prompt, reason);
  }

  remove(item) {
    this.items = this.items.filter((i) => i !== item);
    item.node.remove();
    this.onChange();
  }
}
