// Entry point of the chat page (both mounts). Wires the modules together:
//   api.js (fetch + CSRF), socket.js (reconnecting socket, seq dedupe + replay), transcript.js
//   (turns on the page, message actions, following the stream), profiles.js (profile controls),
//   conversations.js (sidebar: pages, search, archive, delete), runtime_panel.js (a turn's runtime
//   record), render.js + markdown.js (safe DOM), and the mount's panel module if it has one (the
//   inventory's items). On a phone the sidebar is a drawer and the mount's panel a tab.

import { ApiError, ChatApi } from "./api.js";
import { ConversationList, conversationTitle } from "./conversations.js";
import { ConversationProfile, ConversationVersion, ProfilePicker, starterSuggestions } from "./profiles.js";
import { chips, configureRender, el, engineLabel, notice, refreshTimes, renderBadge } from "./render.js";
import { RuntimePanel } from "./runtime_panel.js";
import { ChatSocket } from "./socket.js";
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const PHONE = window.matchMedia("(max-width: 799px)");
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_DELETED = 4410;

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

/** The conversation list as a drawer on a phone: a button opens it, Esc, the backdrop or a choice closes it. */
class Drawer {
  constructor({ sidebar, toggle, close, backdrop, content }) {
    this.sidebar = sidebar;
    this.toggle = toggle;
    this.backdrop = backdrop;
    this.content = content; // what is behind the drawer (inert while it is open)
    this.opened = false;
    toggle.addEventListener("click", () => (this.opened ? this.close() : this.open()));
    close.addEventListener("click", () => this.close());
    backdrop.addEventListener("click", () => this.close());
    PHONE.addEventListener("change", () => this.sync());
    this.sync();
  }

  get isDrawer() {
    return PHONE.matches;
  }

  open() {
    if (!this.isDrawer) return;
    this.opened = true;
    this.sync();
    const target = this.sidebar.querySelector(".conv-item.is-active .conv-open") || this.sidebar.querySelector("input[type=search]");
    if (target) target.focus();
  }

  close({ focus = true } = {}) {
    if (!this.opened) return;
    this.opened = false;
    this.sync();
    if (focus && this.isDrawer) this.toggle.focus();
  }

  sync() {
    const drawer = this.isDrawer;
    const open = drawer && this.opened;
    this.sidebar.classList.toggle("is-open", open);
    this.sidebar.inert = drawer && !open;
    this.backdrop.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    for (const node of this.content) node.inert = open;
    document.body.classList.toggle("drawer-open", open);
  }
}

/** Chat and the mount's panel as tabs on narrow screens (CSS shows both side by side on wide ones). */
class PanelTabs {
  constructor({ layout, tabs }) {
    this.layout = layout;
    this.tabs = tabs; // {chat: button, items: button}
    for (const [name, tab] of Object.entries(tabs)) {
      tab.addEventListener("click", () => this.select(name));
      tab.addEventListener("keydown", (event) => {
        if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          event.preventDefault();
          const next = name === "chat" ? "items" : "chat";
          this.select(next);
          this.tabs[next].focus();
        }
      });
    }
  }

  select(name) {
    this.layout.dataset.tab = name;
    for (const [key, tab] of Object.entries(this.tabs)) {
      tab.setAttribute("aria-selected", String(key === name));
      tab.tabIndex = key === name ? 0 : -1;
    }
  }
}

/** A confirmation in a <dialog> (never window.confirm): resolves true when the action is chosen. */
function confirmDialog({ title, message, action = "OK" }) {
  const dialog = $("confirm-dialog");
  dialog.querySelector("[data-confirm-title]").textContent = title;
  dialog.querySelector("[data-confirm-message]").textContent = message;
  dialog.querySelector("[data-confirm-action]").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
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

    this.messages = $("messages");
    this.input = $("composer-input");
    this.cancelButton = $("cancel-turn");
    this.badge = $("runtime-badge");
    this.connection = $("connection-status");
    this.starters = $("starter-suggestions");
    this.heading = $("conversation-heading");
    this.description = $("profile-description");
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
      },
    });
    this.picker = new ProfilePicker({
      api: this.api,
      select: $("profile-select"),
      noticeEl: $("profile-notice"),
      storageKey: `profile-chat:selection:${config.username}:${config.mount}`,
      onChange: () => this.profileChanged(),
    });
    this.convProfile = new ConversationProfile({
      select: $("conversation-profile-select"),
      picker: this.picker,
      send: (frame) => (this.socket ? this.socket.send(frame) : false),
      onNotice: (text) => this.picker.showNotice(text, "warn"),
    });
    this.convVersion = new ConversationVersion({
      select: $("conversation-version-select"),
      status: $("conversation-follow"),
      api: this.api,
      send: (frame) => (this.socket ? this.socket.send(frame) : false),
      conversation: this.convProfile,
      onNotice: (text) => this.picker.showNotice(text, "warn"),
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
      confirm: confirmDialog,
    });
    this.runtimePanel = new RuntimePanel({ dialog: $("runtime-panel"), api: this.api, adminUrl: config.admin_profile_version_url });
    const panelTabs = document.querySelector("[data-testid=panel-tabs]");
    this.drawer = new Drawer({
      sidebar: $("sidebar"),
      toggle: $("drawer-toggle"),
      close: $("drawer-close"),
      backdrop: $("drawer-backdrop"),
      content: [$("chat-panel"), document.querySelector("[data-mount-panel]"), panelTabs].filter(Boolean),
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
    window.addEventListener("online", () => this.socket && this.socket.reconnect());
    window.setInterval(() => refreshTimes(), 30_000);
    const panel = this.config.panel ? this.startPanel(this.config.panel) : Promise.resolve();
    try {
      await this.picker.load();
    } catch {
      /* the notice says what failed; chatting still works on the server's default */
    }
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
    if (this.conv && this.transcript.isEmpty && !this.transcript.busy && !this.convProfile.selection && !this.conv.archived_at_ms) {
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

  async open(convId, detail = null) {
    this.drawer.close({ focus: false });
    if (this.socket) this.socket.stop();
    this.socket = null;
    this.hello = null;
    this.runtimePanel.close();
    this.transcript.clear();
    this.conversations.setActive(convId);
    this.setConnection(this.ended ? "closed" : "connecting");
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
    this.convProfile.reset(conv.profile_selection);
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
    this.refreshControls();
  }

  showHeading(conv) {
    const title = conversationTitle(conv);
    this.heading.textContent = conv.archived_at_ms ? `${title} (archived)` : title;
    document.title = `${title} · ${this.config.title} · Profile Chat`;
  }

  /** The open conversation was deleted or archived (here or in another tab): open another one. */
  async conversationGone(convId, nextId) {
    this.conversations.remove(convId);
    if (!this.conv || this.conv.conv_id !== convId) return;
    this.conv = null;
    if (nextId && nextId !== convId) await this.open(nextId);
    else await this.newConversation();
  }

  // ------------------------------------------------------------------------------ frames

  frame(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "ws.hello":
        this.hello = frame;
        this.engines.set(data.fingerprint, engineLabel(data.engine));
        renderBadge(this.badge, frame);
        this.convProfile.onHello(frame);
        this.convVersion.onHello(frame);
        this.refreshControls();
        break;
      case "ws.pong":
        break;
      case "error":
        if (data.code === "duplicate") break; // an idempotent resend: the turn exists already
        if (data.code === "not_authenticated") break; // the socket closes next (4401): that notice says it
        if (this.convProfile.onError(data)) break;
        if (this.convVersion.onError(data)) break;
        this.transcript.showError(data);
        break;
      default: {
        const known = frame.type === "chat.message" && this.transcript.turns.has(data.turn_id);
        this.transcript.apply(frame);
        if (frame.type === "chat.message" && this.conv && !known) {
          this.autoTitle(data.text);
          const listed = this.conversations.get(this.conv.conv_id);
          this.conversations.update(this.conv.conv_id, { turn_count: ((listed && listed.turn_count) || 0) + 1 });
        }
        if (frame.type === "turn.started" && this.conv) {
          this.conversations.update(this.conv.conv_id, { current_runtime_key: data.runtime_key });
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

  autoTitle(prompt) {
    const conv = this.conv;
    if (!conv || (conv.title && conv.title.trim()) || this.titled.has(conv.conv_id) || !prompt) return;
    this.titled.add(conv.conv_id);
    const title = prompt.replace(/\s+/g, " ").trim().slice(0, 60);
    conv.title = title;
    this.showHeading(conv);
    this.api
      .updateConversation(conv.conv_id, { title })
      .then((saved) => this.conversations.upsert(saved))
      .catch(() => {});
  }

  // ------------------------------------------------------------------------------ profiles

  profileChanged() {
    this.convProfile.render();
    const own = this.convProfile.selection;
    if (own) {
      this.picker.showNotice(
        `This conversation keeps its own profile '${own.slug}'; your choice applies to conversations that follow your profile.`,
        "info",
      );
    } else if (this.socket) {
      // The user's profile answers the next turn of a conversation that follows it: a fresh hello shows it.
      this.socket.reconnect();
    }
    this.refreshControls();
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
    this.cancelButton.addEventListener("click", () => this.cancel());
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

  cancel() {
    if (!this.socket || this.ended) return false;
    this.socket.send({ type: "chat.cancel" });
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

  send(text) {
    const prompt = String(text || "").trim();
    if (!prompt || !this.socket || this.ended) return false;
    this.transcript.jumpToEnd();
    this.socket.send({ type: "chat.send", prompt, idempotency_key: uuid4() });
    return true;
  }

  /** Regenerate or retry the last turn (same prompt), or resend it edited (`prompt`). */
  regenerate(turnId, prompt = null) {
    if (!this.socket || this.ended) return false;
    const frame = { type: "chat.regenerate", turn_id: turnId, idempotency_key: uuid4() };
    if (prompt !== null) frame.prompt = prompt;
    this.transcript.jumpToEnd();
    this.socket.send(frame);
    return true;
  }

  // ------------------------------------------------------------------------------ state on screen

  refreshControls() {
    const busy = this.transcript.busy;
    this.cancelButton.hidden = !busy;
    this.transcript.updateLast();
    const profile = this.activeProfile();
    const items = this.transcript.isEmpty ? starterSuggestions(profile, this.config.unavailable_starters || {}) : [];
    this.starters.replaceChildren(...chips(items, (t) => this.send(t), { testid: "starter-chip" }));
    this.starters.hidden = items.length === 0;
    this.describe(profile);
    if (this.transcript.isEmpty) {
      const state = this.messages.querySelector(".empty-state");
      const fresh = this.emptyState(profile);
      if (state) state.replaceWith(fresh);
      else this.messages.append(fresh);
    } else {
      this.messages.querySelectorAll(".empty-state").forEach((node) => node.remove());
    }
    if (this.transcript.isEmpty) this.jump.hidden = true;
  }

  /** The profile that answers next: the hello's (the conversation's own or the user's), else the user's. */
  activeProfile() {
    if (this.hello && this.hello.data && this.hello.data.profile) {
      const { registry, slug } = this.hello.data.profile;
      const profile = this.picker.bySlug(slug, registry);
      if (profile) return profile;
    }
    const own = this.convProfile.selection;
    if (own) {
      const profile = this.picker.bySlug(own.slug, own.registry);
      if (profile) return profile;
    }
    return this.picker.current ? { ...this.picker.current.profile, registry: this.picker.current.registry } : null;
  }

  /** The line under the selectors describes the profile that will answer this conversation. */
  describe(profile) {
    if (!profile) {
      this.description.textContent = "";
      return;
    }
    const name = profile.display_name || profile.slug;
    const text = profile.description || "";
    this.description.textContent = this.convProfile.selection ? `${name} (this conversation only)${text ? `: ${text}` : ""}` : text;
    this.description.dataset.profile = profile.slug;
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

  setConnection(state, detail, code) {
    const labels = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };
    this.connection.dataset.state = state;
    this.connection.textContent = labels[state] || state;
    if (state !== "closed" || !detail) return;
    if (code === CLOSE_DELETED && this.conv) {
      const gone = this.conv.conv_id;
      this.transcript.addNotice(notice(detail, { kind: "error", testid: "error-notice" }));
      this.conversationGone(gone, (this.conversations.neighbour(gone) || {}).conv_id);
      return;
    }
    const message = notice(detail, { kind: "error", testid: "error-notice" });
    if (code === CLOSE_UNAUTHENTICATED) {
      this.ended = true;
      this.input.disabled = true;
      this.input.placeholder = "Signed out: sign in again to chat";
      $("send").disabled = true;
      this.cancelButton.hidden = true;
      const next = `${window.location.pathname}${window.location.hash}`;
      message.append(" ", el("a", { href: `${this.config.login_url}?next=${encodeURIComponent(next)}`, "data-testid": "sign-in-again", text: "Sign in" }));
    }
    this.transcript.addNotice(message);
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
