// Entry point of the chat page (both mounts). Wires the modules together:
//   api.js (fetch + CSRF), socket.js (reconnecting socket, seq dedupe + replay), connection.js (the
//   connection's state and the offline banner), outbox.js (messages not confirmed yet: pending bubbles),
//   transcript.js (turns on the page, message actions, following the stream), profiles.js + picker.js
//   (the one profile control), conversations.js (sidebar: pages, search, archive, delete, day groups),
//   runtime_panel.js (a turn's runtime record), render.js + markdown.js (safe DOM), plain.js (plain
//   words), layout.js (drawer, tabs, confirmation), and the mount's panel module if it has one (the
//   inventory's items). On a phone the sidebar is a drawer and the mount's panel a tab.

import { AccountPanel } from "./account_panel.js";
import { ApiError, ChatApi } from "./api.js";
import { ConnectionView } from "./connection.js";
import { ConversationList, conversationTitle } from "./conversations.js";
import { Drawer, PanelTabs, confirmDialog } from "./layout.js";
import { Outbox } from "./outbox.js";
import { ProfilePicker } from "./picker.js";
import { choiceText, plainTitle } from "./plain.js";
import { ProfileStore, starterSuggestions } from "./profiles.js";
import { chips, configureRender, el, engineLabel, notice, refreshTimes, renderEngine } from "./render.js";
import { RuntimePanel } from "./runtime_panel.js";
import { ChatSocket } from "./socket.js";
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_DELETED = 4410;
// Beside the mount's panel the list is a drawer below this width, so the chat keeps its room.
const DRAWER_QUERY = { plain: "(max-width: 799px)", panel: "(max-width: 1439px)" };

function uuid4() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function convFromHash() {
  const match = /(?:^#|&)conv=([0-9a-f-]{36})/i.exec(window.location.hash);
  return match ? match[1] : null;
}

function quote(text, max = 80) {
  const line = String(text).replace(/\s+/g, " ").trim();
  return `“${line.length > max ? `${line.slice(0, max)}…` : line}”`;
}

class ChatApp {
  constructor(config) {
    this.config = config;
    configureRender(config.panel ? config.panel.options : {});
    this.api = new ChatApi(config.api_base);
    this.socket = null;
    this.conv = null;
    this.hello = null;
    this.panel = null;
    this.ended = false; // the session ended: nothing can be sent any more
    this.writingTools = new Set(config.writing_tools || []);
    this.titled = new Set();
    this.engines = new Map(); // fingerprint -> engine label, from ws.hello
    this.reconciling = null;

    this.messages = $("messages");
    this.input = $("composer-input");
    this.sendButton = $("send");
    this.stopButton = $("stop");
    this.engine = $("engine-label");
    this.starters = $("starter-suggestions");
    this.heading = $("conversation-heading");
    this.jump = $("jump-latest");

    this.transcript = new Transcript(this.messages, {
      onSuggestion: (text) => this.send(text),
      onActivity: (frame) => this.activity(frame),
      onChange: () => this.refreshControls(),
      engineOf: (fingerprint) => this.engines.get(fingerprint) || "",
      onFollow: (following) => {
        this.jump.hidden = following || this.transcript.isEmpty;
      },
      actions: {
        regenerate: (turn) => this.regenerate(turn.id),
        edit: (turn, prompt) => this.regenerate(turn.id, prompt),
        runtime: (turn) => this.conv && this.runtimePanel.open(this.conv.conv_id, turn.id, turn.markerButton),
        feedback: (turn, rating) => this.rateAnswer(turn.id, rating),
      },
    });
    this.outbox = new Outbox({
      container: this.transcript.tail,
      send: (frame) => (this.socket ? this.socket.sendNow(frame) : false),
      onDiscard: (prompt, reason) => this.discarded(prompt, reason),
      onChange: () => {
        this.refreshControls();
        this.transcript.afterChange();
      },
    });
    this.store = new ProfileStore({
      api: this.api,
      noticeEl: $("profile-notice"),
      storageKey: `profile-chat:selection:${config.username}:${config.mount}`,
    });
    this.picker = new ProfilePicker({
      store: this.store,
      api: this.api,
      button: $("profile-picker"),
      dialog: $("profile-panel"),
      send: (frame) => (this.socket ? this.socket.sendNow(frame) : false),
      onDefault: () => this.socket && this.socket.reconnect(),
      onChange: () => this.choiceChanged(),
      onNotice: (text, kind) => this.store.showNotice(text, kind),
    });
    this.connection = new ConnectionView({
      status: $("connection-status"),
      banner: $("connection-banner"),
      text: $("connection-banner-text"),
      retry: $("retry-now"),
      onRetry: () => this.socket && this.socket.resume(),
    });
    this.conversations = new ConversationList({
      api: this.api,
      list: $("conversation-list"),
      search: $("conversation-search"),
      tabs: { recent: $("show-recent"), archived: $("show-archived") },
      count: $("conversation-count"),
      onOpen: (convId) => this.open(convId),
      onDeleted: (convId, nextId) => this.conversationGone(convId, nextId),
      onArchived: (convId, archived, nextId) => {
        if (archived) this.conversationGone(convId, nextId);
      },
      onRenamed: (conv) => this.conv && conv.conv_id === this.conv.conv_id && this.showHeading(conv),
      onError: (text) => this.transcript.addNotice(notice(text, { kind: "error", testid: "error-notice" })),
      confirm: (options) => confirmDialog($("confirm-dialog"), options),
      choiceOf: (conv) => this.choiceOf(conv),
    });
    this.runtimePanel = new RuntimePanel({ dialog: $("runtime-panel"), api: this.api, adminUrl: config.admin_profile_version_url });
    this.accountPanel = new AccountPanel({ dialog: $("account-panel") });
    $("account-open").addEventListener("click", (event) => this.accountPanel.open(event.currentTarget));
    const panelTabs = document.querySelector("[data-testid=panel-tabs]");
    this.drawer = new Drawer({
      sidebar: $("sidebar"),
      toggle: $("drawer-toggle"),
      close: $("drawer-close"),
      backdrop: $("drawer-backdrop"),
      content: [$("chat-panel"), document.querySelector("[data-mount-panel]"), panelTabs].filter(Boolean),
      query: config.panel ? DRAWER_QUERY.panel : DRAWER_QUERY.plain,
    });
    this.tabs = panelTabs ? new PanelTabs({ layout: $("app"), tabs: { chat: $("tab-chat"), items: $("tab-items") } }) : null;
  }

  async start() {
    this.bindComposer();
    this.bindKeys();
    $("new-conversation").addEventListener("click", () => this.newConversation());
    this.jump.addEventListener("click", () => {
      this.transcript.jumpToEnd();
      this.input.focus({ preventScroll: true });
    });
    window.addEventListener("offline", () => this.socket && this.socket.suspend());
    window.addEventListener("online", () => this.socket && this.socket.resume());
    window.setInterval(() => refreshTimes(), 30_000);
    const panel = this.config.panel ? this.startPanel(this.config.panel) : Promise.resolve();
    try {
      await this.store.load();
    } catch {
      /* the notice says what failed; chatting still works on the server's default */
    }
    this.picker.render();
    try {
      const items = await this.conversations.load();
      const wanted = convFromHash();
      const target = (wanted && (items.some((c) => c.conv_id === wanted) || (await this.exists(wanted))) && wanted) ||
        (items[0] && items[0].conv_id);
      if (target) await this.open(target);
      else await this.newConversation();
    } catch (err) {
      this.transcript.addNotice(notice(`The conversations could not be loaded: ${err.message}`, { kind: "error", testid: "error-notice" }));
    }
    await panel;
    document.body.dataset.ready = "true";
  }

  async exists(convId) {
    try {
      await this.api.conversation(convId);
      return true;
    } catch {
      return false;
    }
  }

  /** The mount's own panel (e.g. the inventory's items table): its module, built on its page element. */
  async startPanel({ module, options }) {
    const { Panel } = await import(module);
    this.panel = new Panel({ ...options, root: document.querySelector("[data-mount-panel]") });
    await this.panel.init();
  }

  // ------------------------------------------------------------------------------ conversations

  /** "New": the open conversation if it is still empty, else an empty one from the list, else a new one. */
  async newConversation() {
    this.drawer.close({ focus: false });
    if (this.tabs) this.tabs.select("chat");
    if (this.conv && this.transcript.isEmpty && !this.outbox.size && !this.transcript.busy && !this.picker.selection && !this.conv.archived_at_ms) {
      this.input.focus();
      return;
    }
    const empty = this.conversations.emptyOne();
    try {
      if (empty && (!this.conv || empty.conv_id !== this.conv.conv_id)) {
        await this.open(empty.conv_id);
      } else {
        const conv = await this.api.createConversation({});
        this.conversations.upsert({ ...conv, turn_count: 0 }, { created: true });
        await this.open(conv.conv_id, conv);
      }
      this.input.focus();
    } catch (err) {
      this.transcript.addNotice(notice(`A conversation could not be created: ${err.message}`, { kind: "error", testid: "error-notice" }));
    }
  }

  async open(convId, detail = null, { unsentReason = "You opened another conversation before it could be sent." } = {}) {
    this.drawer.close({ focus: false });
    if (this.socket) this.socket.stop();
    this.socket = null;
    this.hello = null;
    const unsent = this.outbox.takeAll(); // they belonged to the conversation being left
    this.runtimePanel.close();
    this.transcript.clear();
    for (const prompt of unsent) this.discarded(prompt, unsentReason);
    this.conversations.setActive(convId);
    this.connection.set(this.ended ? "closed" : "connecting");
    let conv;
    try {
      conv = detail && detail.turns ? detail : await this.api.conversation(convId);
    } catch (err) {
      if (this.conversations.activeId === convId) {
        this.transcript.addNotice(notice(`The conversation could not be opened: ${err.message}`, { kind: "error", testid: "error-notice" }));
      }
      return;
    }
    if (this.conversations.activeId !== convId) return; // another conversation was opened meanwhile
    this.conv = conv;
    // Opened by URL (or from an old page): listed and marked even when it is not in the loaded pages.
    const summary = { ...conv };
    delete summary.turns;
    if (!conv.turns_more) summary.turn_count = (conv.turns || []).length; // every turn is on this page
    this.conversations.upsert(summary);
    this.showHeading(conv);
    window.history.replaceState(null, "", `#conv=${convId}`);
    this.transcript.hydrate(conv.turns || []);
    this.picker.reset(conv.profile_selection);
    if (this.ended) return; // signed out: the stored turns are shown, nothing more
    const lastSeq = conv.last_seq || 0; // the stored turns cover every frame up to it
    this.socket = new ChatSocket({
      wsPath: this.config.ws_path,
      convId,
      api: this.api,
      lastSeq,
      onFrame: (frame) => this.frame(frame),
      onStatus: (state, text, code) => this.setConnection(state, text, code),
    }).start();
    if (navigator.onLine === false) this.socket.suspend();
    this.refreshControls();
  }

  showHeading(conv) {
    const title = conversationTitle(conv);
    this.heading.textContent = conv.archived_at_ms ? `${title} (archived)` : title;
    document.title = `${title} · ${this.config.title} · Profile Chat`;
  }

  /** The open conversation was deleted or archived (here or in another tab): open another one. */
  async conversationGone(convId, nextId, reason) {
    this.conversations.remove(convId);
    if (!this.conv || this.conv.conv_id !== convId) return;
    this.conv = null;
    const options = { unsentReason: reason || "The conversation went away before it could be sent." };
    if (nextId && nextId !== convId) await this.open(nextId, null, options);
    else {
      const unsent = this.outbox.takeAll();
      await this.newConversation();
      for (const prompt of unsent) this.discarded(prompt, options.unsentReason);
    }
  }

  /** The profile a conversation uses now, for its sidebar item. */
  choiceOf(conv) {
    const nameOf = (slug, registry) => this.store.nameOf(slug, registry);
    if (conv.profile_selection && conv.profile_selection.slug) return choiceText(conv.profile_selection, nameOf);
    const current = this.store.current;
    return current ? `My default (${nameOf(current.slug, current.registry)})` : "My default";
  }

  /** The picker changed what answers (or the conversation's own choice): the sidebar and the page follow. */
  choiceChanged() {
    if (this.conv) {
      const selection = this.picker.selection;
      this.conv.profile_selection = selection;
      this.conversations.update(this.conv.conv_id, { profile_selection: selection });
    }
    this.conversations.render(); // "My default (…)" of every conversation that follows it
    this.refreshControls();
  }

  // ------------------------------------------------------------------------------ frames

  frame(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "ws.hello":
        this.hello = frame;
        this.engines.set(data.fingerprint, engineLabel(data.engine));
        renderEngine(this.engine, frame);
        this.picker.onHello(frame);
        this.refreshControls();
        break;
      case "ws.pong":
        break;
      case "error":
        if (data.code === "duplicate") {
          this.outbox.confirmOldestSent(); // an idempotent resend: the turn exists already
          break;
        }
        if (data.code === "not_authenticated") break; // the socket closes next (4401): that notice says it
        if (this.picker.onError(data)) break;
        if (data.code !== "nothing_to_cancel" && this.outbox.refuse(data.message || "The server refused it.")) break;
        this.transcript.showError(data);
        break;
      default: {
        const known = frame.type === "chat.message" && this.transcript.turns.has(data.turn_id);
        this.transcript.apply(frame);
        if (frame.type === "chat.message" && !known) {
          if (!data.replaces) this.outbox.confirm(data.text);
          if (this.conv) {
            this.autoTitle(data.text);
            const listed = this.conversations.get(this.conv.conv_id);
            this.conversations.update(this.conv.conv_id, { turn_count: ((listed && listed.turn_count) || 0) + 1 });
          }
        }
      }
    }
  }

  /** A writing tool ran (or an item changed): the mount's panel shows the new data, no reload. */
  activity(frame) {
    if (!this.panel) return;
    const data = frame.data || {};
    const wrote = frame.type === "tool.result" && this.writingTools.has(data.name) && !data.error;
    const item = frame.type === "artifact" && data.kind === "item";
    if (wrote || item) this.panel.scheduleRefresh();
  }

  /** A conversation without a title is named after its first message, as plain text. */
  autoTitle(prompt) {
    const conv = this.conv;
    if (!conv || (conv.title && conv.title.trim()) || this.titled.has(conv.conv_id) || !prompt) return;
    const title = plainTitle(prompt);
    if (!title) return;
    this.titled.add(conv.conv_id);
    conv.title = title;
    this.showHeading(conv);
    this.conversations.update(conv.conv_id, { title });
    this.api
      .updateConversation(conv.conv_id, { title })
      .then((saved) => this.conversations.upsert(saved))
      .catch(() => {});
  }

  /** Turns shown as running whose end the page never heard of (it was away, the server restarted):
   * the stored turns say how they ended. */
  async reconcile() {
    if (!this.conv || this.reconciling || !this.transcript.unfinished.length) return;
    const convId = this.conv.conv_id;
    this.reconciling = this.api
      .conversation(convId)
      .then((stored) => {
        if (this.conv && this.conv.conv_id === convId) this.transcript.reconcile(stored.turns || []);
      })
      .catch(() => {}) // the next reconnect tries again
      .finally(() => {
        this.reconciling = null;
      });
    await this.reconciling;
  }

  // ------------------------------------------------------------------------------ composer and keys

  bindComposer() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendFromComposer();
    });
    this.input.addEventListener("input", () => this.autosize());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendFromComposer();
      }
    });
    this.stopButton.addEventListener("click", () => this.cancel());
  }

  /** Esc: closes the drawer, else stops the running answer (dialogs and inline editors handle their own). */
  bindKeys() {
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
      if (document.querySelector("dialog[open]")) return; // the dialog closes itself
      if (this.drawer.opened) {
        event.preventDefault();
        this.drawer.close();
        return;
      }
      if (this.transcript.busy && this.cancel()) event.preventDefault();
    });
  }

  /** Stop the running answer: only over a connected socket (a stop sent later could stop another turn). */
  cancel() {
    if (this.ended) return false;
    if (!this.socket || !this.socket.sendNow({ type: "chat.cancel" })) {
      this.notConnected("The answer cannot be stopped while the page is not connected.");
      return false;
    }
    return true;
  }

  sendFromComposer() {
    if (this.send(this.input.value)) {
      this.input.value = "";
      this.autosize();
      this.input.focus();
    }
  }

  autosize() {
    const max = Math.max(120, Math.round(window.innerHeight * 0.3));
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, max)}px`;
  }

  /** A message goes through the outbox: shown at once, sent when connected, confirmed by the server. */
  send(text) {
    const prompt = String(text || "").trim();
    if (!prompt || !this.conv || this.ended) return false;
    this.transcript.jumpToEnd();
    this.outbox.add(prompt, uuid4());
    return true;
  }

  /** Regenerate or retry the last turn (same prompt), or resend it edited (`prompt`). */
  regenerate(turnId, prompt = null) {
    if (this.ended) return false;
    const frame = { type: "chat.regenerate", turn_id: turnId, idempotency_key: uuid4() };
    if (prompt !== null) frame.prompt = prompt;
    if (!this.socket || !this.socket.sendNow(frame)) {
      this.notConnected("Not connected: try again when the connection is back.");
      return false;
    }
    this.transcript.jumpToEnd();
    return true;
  }

  /** 👍/👎 under an answer: the feedback stored (or null), undefined when the server refused it (said inline). */
  async rateAnswer(turnId, rating) {
    if (!this.conv) return undefined;
    try {
      return await this.api.setFeedback(this.conv.conv_id, turnId, rating);
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      this.transcript.addNotice(notice(`Feedback not saved: ${message}`, { kind: "warn", testid: "feedback-notice" }));
      return undefined;
    }
  }

  notConnected(text) {
    this.transcript.addNotice(notice(text, { kind: "warn", testid: "offline-notice" }));
  }

  /** A pending message that will not be sent: said, and its text put back in the message box. */
  discarded(prompt, reason) {
    this.input.value = this.input.value.trim() ? `${this.input.value.replace(/\s+$/, "")}\n\n${prompt}` : prompt;
    this.autosize();
    if (!reason) {
      this.input.focus();
      return; // the user withdrew it
    }
    this.transcript.addNotice(
      notice(`Not sent: ${quote(prompt)}. ${reason} The text is back in the message box.`, { kind: "warn", testid: "unsent-notice" }),
    );
  }

  // ------------------------------------------------------------------------------ state on screen

  refreshControls() {
    const busy = this.transcript.busy;
    this.sendButton.hidden = busy && !this.ended;
    this.stopButton.hidden = !busy || this.ended;
    this.transcript.updateLast();
    const profile = this.activeProfile();
    const empty = this.transcript.isEmpty && !this.outbox.size;
    const items = empty ? starterSuggestions(profile, this.config.unavailable_starters || {}) : [];
    this.starters.replaceChildren(...chips(items, (t) => this.send(t), { testid: "starter-chip" }));
    this.starters.hidden = items.length === 0;
    const state = this.messages.querySelector(".empty-state");
    if (empty) {
      const fresh = this.emptyState(profile);
      if (state) state.replaceWith(fresh);
      else this.transcript.place(fresh);
      this.jump.hidden = true;
    } else if (state) {
      state.remove();
    }
  }

  /** The profile that answers next: the hello's (the conversation's own or the user's), else the user's. */
  activeProfile() {
    const answering = this.picker.answering || this.picker.selection;
    if (answering) {
      const profile = this.store.bySlug(answering.slug, answering.registry);
      if (profile) return profile;
    }
    return this.store.current ? { ...this.store.current.profile, registry: this.store.current.registry } : null;
  }

  emptyState(profile) {
    return el(
      "div",
      { class: "empty-state", "data-testid": "empty-state", dataset: { profile: profile ? profile.slug : "" } },
      el("div", { class: "empty-mark", "aria-hidden": "true", text: "✦" }),
      el("h2", { text: this.config.empty_state }),
      el("p", {
        class: "muted",
        "data-testid": "empty-state-profile",
        text: profile
          ? `${profile.display_name || profile.slug} answers: ${profile.description || "ready."}`
          : "Pick a profile above, then type a message.",
      }),
    );
  }

  async setConnection(state, detail, code) {
    this.connection.set(state);
    if (state === "connected") {
      this.outbox.flush();
      this.reconcile();
      return;
    }
    this.outbox.disconnected();
    if (state !== "closed" || !detail) return;
    const unsent = this.outbox.takeAll();
    if (code === CLOSE_DELETED && this.conv) {
      const gone = this.conv.conv_id;
      this.transcript.addNotice(notice(detail, { kind: "error", testid: "error-notice" }));
      await this.conversationGone(gone, (this.conversations.neighbour(gone) || {}).conv_id, detail);
      for (const prompt of unsent) this.discarded(prompt, detail);
      return;
    }
    const message = notice(detail, { kind: "error", testid: "error-notice" });
    if (code === CLOSE_UNAUTHENTICATED) {
      this.ended = true;
      this.input.disabled = true;
      this.input.placeholder = "Signed out: sign in again to chat";
      this.sendButton.disabled = true;
      this.refreshControls();
      const next = `${window.location.pathname}${window.location.hash}`;
      message.append(" ", el("a", { href: `${this.config.login_url}?next=${encodeURIComponent(next)}`, "data-testid": "sign-in-again", text: "Sign in" }));
    }
    this.transcript.addNotice(message);
    for (const prompt of unsent) this.discarded(prompt, detail);
  }
}

const config = JSON.parse($("page-config").textContent);
const app = new ChatApp(config);
// A small handle for debugging and the browser tests (e.g. `window.__chat.socket.ws.close()`).
window.__chat = {
  app,
  config,
  get socket() {
    return app.socket;
  },
  get panel() {
    return app.panel;
  },
  conversationTitle,
};
app.start().catch((err) => {
  const message = err instanceof ApiError ? err.message : String(err);
  app.transcript.addNotice(notice(`The page could not start: ${message}`, { kind: "error", testid: "error-notice" }));
});
