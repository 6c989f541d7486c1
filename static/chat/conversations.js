// The conversation sidebar: every conversation reachable (pages load as the list scrolls, or with
// "Load more"), a search over titles and messages (`?q=`, in the database), the archived ones on their
// own tab, and per conversation: open, rename (PATCH title), archive or bring back, delete (confirmed).
// The list is grouped by the day each conversation started (Today, Yesterday, a weekday, a date), and each
// item says which profile the conversation uses now (its own choice, or "My default").

import { dayLabel } from "./plain.js";
import { el, iconButton } from "./render.js";

const PAGE_SIZE = 30;
const SEARCH_DELAY_MS = 250;

export function conversationTitle(conv) {
  return (conv && conv.title && conv.title.trim()) || "New conversation";
}

export class ConversationList {
  /**
   * @param {object} options api, list (ul), search (input), tabs ({recent, archived} buttons), count (status
   *   element), onOpen(convId), onDeleted(convId, nextId), onArchived(convId, archived, nextId), onRenamed(conv),
   *   onError(text), confirm({title, message, action}) -> Promise<bool>, choiceOf(conv) -> the profile it
   *   uses now, in words
   */
  constructor({
    api,
    list,
    search,
    tabs,
    count,
    onOpen,
    onDeleted = () => {},
    onArchived = () => {},
    onRenamed = () => {},
    onError = () => {},
    confirm,
    choiceOf = () => "",
  }) {
    this.api = api;
    this.list = list;
    this.search = search;
    this.tabs = tabs;
    this.countEl = count;
    this.onOpen = onOpen;
    this.onDeleted = onDeleted;
    this.onArchived = onArchived;
    this.onRenamed = onRenamed;
    this.onError = onError;
    this.confirm = confirm;
    this.choiceOf = choiceOf;
    this.items = [];
    this.activeId = null;
    this.editing = null;
    this.q = "";
    this.archived = false;
    this.page = 0;
    this.total = 0;
    this.hasMore = false;
    this.loading = null;
    this.generation = 0;
    this.more = el("button", {
      type: "button",
      class: "btn btn-sm btn-ghost conv-more-btn",
      "data-testid": "conversations-more",
      text: "Load more",
      onclick: () => this.loadMore(),
    });
    this.sentinel = el("li", { class: "conv-more", role: "presentation" }, this.more);
    if (typeof IntersectionObserver === "function") {
      // Infinite scroll: the next page loads when the end of the list comes into view.
      this.observer = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadMore();
      }, { root: list, rootMargin: "0px 0px 120px 0px" });
    }
    if (search) {
      let typing = null;
      search.addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(() => this.setQuery(search.value), SEARCH_DELAY_MS);
      });
      search.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && search.value) {
          event.preventDefault();
          search.value = "";
          this.setQuery("");
        }
      });
    }
    if (tabs) {
      tabs.recent.addEventListener("click", () => this.setArchived(false));
      tabs.archived.addEventListener("click", () => this.setArchived(true));
    }
  }

  /** The first page of the current view (search text, recent or archived). */
  async load() {
    const generation = ++this.generation;
    this.page = 0;
    this.items = [];
    this.hasMore = false;
    this.loading = null;
    this.list.setAttribute("aria-busy", "true");
    try {
      await this.fetchPage(1, generation);
    } finally {
      if (generation === this.generation) this.list.removeAttribute("aria-busy");
    }
    return this.items;
  }

  async loadMore() {
    if (!this.hasMore || this.loading) return this.loading;
    const generation = this.generation;
    this.loading = this.fetchPage(this.page + 1, generation).finally(() => {
      if (generation === this.generation) this.loading = null;
    });
    return this.loading;
  }

  async fetchPage(page, generation) {
    const body = await this.api.conversations({ page, pageSize: PAGE_SIZE, q: this.q, archived: this.archived });
    if (generation !== this.generation) return;
    const results = Array.isArray(body) ? body : body.results || [];
    const known = new Set(this.items.map((c) => c.conv_id));
    this.items.push(...results.filter((c) => !known.has(c.conv_id))); // pages shift when new ones are created
    this.page = page;
    this.total = Array.isArray(body) ? results.length : body.count;
    this.hasMore = Boolean(body.next);
    this.render();
  }

  setQuery(text) {
    const q = String(text || "").trim();
    if (q === this.q) return;
    this.q = q;
    this.load().catch((err) => this.onError(`The conversations could not be searched: ${err.message}`));
  }

  setArchived(archived) {
    if (archived === this.archived) return;
    this.archived = archived;
    this.tabs.recent.setAttribute("aria-pressed", String(!archived));
    this.tabs.archived.setAttribute("aria-pressed", String(archived));
    this.load().catch((err) => this.onError(`The conversations could not be loaded: ${err.message}`));
  }

  get filtered() {
    return Boolean(this.q) || this.archived;
  }

  get(convId) {
    return this.items.find((c) => c.conv_id === convId) || null;
  }

  /** Insert or update a summary (a detail works too). New ones go first; a search view is left as it is.
   * `created`: it did not exist before (the total grows); else it is one the pages have not reached yet. */
  upsert(conv, { created = false } = {}) {
    const index = this.items.findIndex((c) => c.conv_id === conv.conv_id);
    if (index >= 0) this.items[index] = { ...this.items[index], ...conv, turns: undefined };
    else if (!this.filtered && !conv.archived) {
      this.items.unshift({ ...conv, turns: undefined });
      if (created) this.total += 1;
    }
    this.render();
  }

  update(convId, changes) {
    const conv = this.get(convId);
    if (!conv) return;
    Object.assign(conv, changes);
    this.render();
  }

  remove(convId) {
    const before = this.items.length;
    this.items = this.items.filter((c) => c.conv_id !== convId);
    if (this.items.length < before) this.total = Math.max(0, this.total - 1);
    this.render();
  }

  /** An empty conversation to reuse for "New": no turns, no profile of its own, not archived. */
  emptyOne() {
    return this.items.find((c) => c.turn_count === 0 && !c.profile_selection && !c.archived) || null;
  }

  /** The one after (or else before) `convId` in the list, to open when it goes away. */
  neighbour(convId) {
    const index = this.items.findIndex((c) => c.conv_id === convId);
    if (index < 0) return this.items[0] || null;
    return this.items[index + 1] || this.items[index - 1] || null;
  }

  setActive(convId) {
    this.activeId = convId;
    this.render();
  }

  render() {
    if (this.editing) return; // do not replace the input the user is typing in
    const nodes = [];
    let group = null;
    for (const conv of this.items) {
      const label = dayLabel(conv.created_at_ms);
      if (!group || group.label !== label) {
        const id = `conv-day-${nodes.length}`;
        group = { label, list: el("ul", { class: "conv-day-items", "aria-labelledby": id }) };
        nodes.push(
          el(
            "li",
            { class: "conv-day", "data-testid": "conversation-day" },
            el("h3", { class: "conv-day-title", id, "data-testid": "conversation-day-title", text: label }),
            group.list,
          ),
        );
      }
      group.list.append(this.item(conv));
    }
    if (!nodes.length) {
      const text = this.q ? "No conversations match." : this.archived ? "No archived conversations." : "No conversations yet.";
      nodes.push(el("li", { class: "conv-empty muted", "data-testid": "conversations-empty", text }));
    }
    if (this.hasMore) nodes.push(this.sentinel);
    this.list.replaceChildren(...nodes);
    if (this.observer) {
      this.observer.disconnect();
      if (this.hasMore) this.observer.observe(this.sentinel);
    }
    if (this.countEl) {
      this.countEl.textContent = this.q ? `${this.total} found` : `${this.total} total`;
      this.countEl.title = `${this.total} ${this.archived ? "archived " : ""}conversation${this.total === 1 ? "" : "s"}${this.q ? ` match “${this.q}”` : ""}`;
    }
  }

  item(conv) {
    const active = conv.conv_id === this.activeId;
    const choice = this.choiceOf(conv);
    const title = conversationTitle(conv);
    const archive = conv.archived
      ? iconButton("unarchive", `Bring back “${title}”`, { class: "icon-btn conv-action", "data-testid": "unarchive-conversation" })
      : iconButton("archive", `Archive “${title}”`, { class: "icon-btn conv-action", "data-testid": "archive-conversation" });
    archive.addEventListener("click", () => this.archive(conv.conv_id, !conv.archived));
    const remove = iconButton("trash", `Delete “${title}”`, { class: "icon-btn conv-action", "data-testid": "delete-conversation" });
    remove.addEventListener("click", () => this.confirmDelete(conv.conv_id));
    const rename = iconButton("pencil", `Rename “${title}”`, { class: "icon-btn conv-action", "data-testid": "rename-conversation" });
    rename.addEventListener("click", () => this.startRename(conv.conv_id));
    return el(
      "li",
      {
        class: `conv-item${active ? " is-active" : ""}`,
        "data-testid": "conversation-item",
        dataset: { convId: conv.conv_id, active: active ? "true" : "false" },
      },
      el(
        "button",
        {
          type: "button",
          class: "conv-open",
          "aria-current": active ? "true" : null,
          onclick: () => this.onOpen(conv.conv_id),
        },
        el("span", { class: "conv-title", "data-testid": "conversation-title", text: title }),
        el("span", { class: "conv-meta", "data-testid": "conversation-choice", text: choice }),
      ),
      el("div", { class: "conv-actions" }, rename, archive, remove),
    );
  }

  async archive(convId, archived) {
    try {
      await this.api.updateConversation(convId, { archived });
      // It leaves this view (recent or archived): the other tab lists it now.
      const next = this.neighbour(convId);
      this.remove(convId);
      this.onArchived(convId, archived, next ? next.conv_id : null);
    } catch (err) {
      this.onError(`The conversation could not be ${archived ? "archived" : "brought back"}: ${err.message}`);
    }
  }

  async confirmDelete(convId) {
    const conv = this.get(convId);
    const ok = await this.confirm({
      title: "Delete this conversation?",
      message: `“${conversationTitle(conv)}” and all its messages will be deleted for good.`,
      action: "Delete",
    });
    if (!ok) return;
    try {
      await this.api.deleteConversation(convId);
    } catch (err) {
      if (err.status !== 404) {
        this.onError(`The conversation could not be deleted: ${err.message}`);
        return;
      }
    }
    const next = this.neighbour(convId);
    this.remove(convId);
    this.onDeleted(convId, next ? next.conv_id : null);
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
          const saved = await this.api.updateConversation(convId, { title });
          this.upsert(saved);
          this.onRenamed(saved);
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
