// The conversation sidebar: list (newest first), switch, inline rename (PATCH title).

import { el, formatTime } from "./render.js";

export function conversationTitle(conv) {
  return (conv && conv.title && conv.title.trim()) || "New conversation";
}

export class ConversationList {
  constructor({ api, list, onOpen, onError = () => {} }) {
    this.api = api;
    this.list = list;
    this.onOpen = onOpen;
    this.onError = onError;
    this.items = [];
    this.activeId = null;
    this.editing = null;
  }

  async load() {
    const page = await this.api.conversations();
    this.items = Array.isArray(page) ? page : page.results || [];
    this.render();
    return this.items;
  }

  get(convId) {
    return this.items.find((c) => c.conv_id === convId) || null;
  }

  /** Insert or update a summary (a detail works too). New ones go first. */
  upsert(conv) {
    const index = this.items.findIndex((c) => c.conv_id === conv.conv_id);
    if (index >= 0) this.items[index] = { ...this.items[index], ...conv };
    else this.items.unshift(conv);
    this.render();
  }

  update(convId, changes) {
    const conv = this.get(convId);
    if (!conv) return;
    Object.assign(conv, changes);
    this.render();
  }

  setActive(convId) {
    this.activeId = convId;
    this.render();
  }

  render() {
    if (this.editing) return; // do not replace the input the user is typing in
    const nodes = this.items.map((conv) => this.item(conv));
    if (!nodes.length) nodes.push(el("li", { class: "conv-empty muted", text: "No conversations yet." }));
    this.list.replaceChildren(...nodes);
  }

  item(conv) {
    const active = conv.conv_id === this.activeId;
    const meta = [conv.current_runtime_key, formatTime(conv.updated_at_ms || conv.created_at_ms)].filter(Boolean).join(" · ");
    return el(
      "li",
      { class: `conv-item${active ? " is-active" : ""}`, "data-testid": "conversation-item", dataset: { convId: conv.conv_id } },
      el(
        "button",
        {
          type: "button",
          class: "conv-open",
          "aria-current": active ? "true" : null,
          onclick: () => this.onOpen(conv.conv_id),
        },
        el("span", { class: "conv-title", "data-testid": "conversation-title", text: conversationTitle(conv) }),
        el("span", { class: "conv-meta", text: meta }),
      ),
      el("button", {
        type: "button",
        class: "icon-btn conv-rename",
        "data-testid": "rename-conversation",
        "aria-label": `Rename “${conversationTitle(conv)}”`,
        title: "Rename",
        text: "✎",
        onclick: () => this.startRename(conv.conv_id),
      }),
    );
  }

  startRename(convId) {
    const conv = this.get(convId);
    const row = this.list.querySelector(`[data-conv-id="${CSS.escape(convId)}"]`);
    if (!conv || !row) return;
    this.editing = convId;
    const input = el("input", {
      type: "text",
      class: "conv-title-input",
      "data-testid": "conversation-title-input",
      "aria-label": "Conversation title",
      maxlength: "200",
      value: conv.title || "",
    });
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      this.editing = null;
      const title = input.value.trim();
      if (save && title !== (conv.title || "")) {
        try {
          const saved = await this.api.renameConversation(convId, title);
          this.upsert(saved);
        } catch (err) {
          this.render();
          this.onError(`The conversation could not be renamed: ${err.message}`);
          return;
        }
      } else {
        this.render();
      }
      const again = this.list.querySelector(`[data-conv-id="${CSS.escape(convId)}"] .conv-open`);
      if (again) again.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    row.replaceChildren(input);
    input.focus();
    input.select();
  }
}
