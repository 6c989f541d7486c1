// Entry point of the chat page (both mounts). Wires the modules together:
//   api.js (fetch + CSRF), socket.js (reconnecting socket, seq dedupe + replay), transcript.js
//   (turns on the page), profiles.js (profile controls), conversations.js (sidebar),
//   render.js + markdown.js (safe DOM), and the mount's panel module if it has one (the inventory's items).

import { ApiError, ChatApi } from "./api.js";
import { ConversationList, conversationTitle } from "./conversations.js";
import { ConversationProfile, ProfilePicker, starterSuggestions } from "./profiles.js";
import { chips, configureRender, el, engineLabel, notice, renderBadge } from "./render.js";
import { ChatSocket } from "./socket.js";
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);

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

class ChatApp {
  constructor(config) {
    this.config = config;
    configureRender(config.panel ? config.panel.options : {});
    this.api = new ChatApi(config.api_base);
    this.socket = null;
    this.conv = null;
    this.hello = null;
    this.panel = null;
    this.writingTools = new Set(config.writing_tools || []);
    this.titled = new Set();
    this.engines = new Map(); // fingerprint -> engine label, from ws.hello

    this.messages = $("messages");
    this.input = $("composer-input");
    this.cancelButton = $("cancel-turn");
    this.badge = $("runtime-badge");
    this.connection = $("connection-status");
    this.starters = $("starter-suggestions");

    this.transcript = new Transcript(this.messages, {
      onSuggestion: (text) => this.send(text),
      onActivity: (frame) => this.activity(frame),
      onChange: () => this.refreshControls(),
      engineOf: (fingerprint) => this.engines.get(fingerprint) || "",
    });
    this.picker = new ProfilePicker({
      api: this.api,
      select: $("profile-select"),
      description: $("profile-description"),
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
    this.conversations = new ConversationList({
      api: this.api,
      list: $("conversation-list"),
      onOpen: (convId) => this.open(convId),
      onError: (text) => this.transcript.addNotice(notice(text, { kind: "error", testid: "error-notice" })),
    });
  }

  async start() {
    this.bindComposer();
    $("new-conversation").addEventListener("click", () => this.newConversation());
    window.addEventListener("online", () => this.socket && this.socket.reconnect());
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

  async newConversation() {
    if (this.conv && this.transcript.isEmpty && !this.transcript.busy) {
      this.input.focus(); // the open conversation is still empty: use it
      return;
    }
    try {
      const conv = await this.api.createConversation({});
      this.conversations.upsert(conv);
      await this.open(conv.conv_id, conv);
      this.input.focus();
    } catch (err) {
      this.transcript.addNotice(notice(`A conversation could not be created: ${err.message}`, { kind: "error", testid: "error-notice" }));
    }
  }

  async open(convId, detail = null) {
    if (this.socket) this.socket.stop();
    this.socket = null;
    this.hello = null;
    this.transcript.clear();
    this.conversations.setActive(convId);
    this.setConnection("connecting");
    const conv = detail && detail.turns ? detail : await this.api.conversation(convId);
    if (this.conversations.activeId !== convId) return; // another conversation was opened meanwhile
    this.conv = conv;
    window.history.replaceState(null, "", `#conv=${convId}`);
    this.transcript.hydrate(conv.turns || []);
    this.convProfile.reset(conv.profile_selection);
    const lastSeq = conv.last_seq || 0; // the stored turns cover every frame up to it
    this.socket = new ChatSocket({
      wsPath: this.config.ws_path,
      convId,
      api: this.api,
      lastSeq,
      onFrame: (frame) => this.frame(frame),
      onStatus: (state, detail, code) => this.setConnection(state, detail, code),
    }).start();
    this.refreshControls();
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
        this.refreshControls();
        break;
      case "ws.pong":
        break;
      case "error":
        if (data.code === "duplicate") break; // an idempotent resend: the turn exists already
        if (this.convProfile.onError(data)) break;
        this.transcript.showError(data);
        break;
      default:
        this.transcript.apply(frame);
        if (frame.type === "chat.message") this.autoTitle(data.text);
        if (frame.type === "turn.started" && this.conv) {
          this.conversations.update(this.conv.conv_id, { current_runtime_key: data.runtime_key });
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
    this.api
      .renameConversation(conv.conv_id, title)
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

  // ------------------------------------------------------------------------------ composer

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
    this.cancelButton.addEventListener("click", () => {
      if (this.socket) this.socket.send({ type: "chat.cancel" });
    });
  }

  sendFromComposer() {
    if (this.send(this.input.value)) {
      this.input.value = "";
      this.autosize();
      this.input.focus();
    }
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, 200)}px`;
  }

  send(text) {
    const prompt = String(text || "").trim();
    if (!prompt || !this.socket) return false;
    this.socket.send({ type: "chat.send", prompt, idempotency_key: uuid4() });
    return true;
  }

  // ------------------------------------------------------------------------------ state on screen

  refreshControls() {
    this.cancelButton.hidden = !this.transcript.busy;
    const profile = this.activeProfile();
    const items = this.transcript.isEmpty ? starterSuggestions(profile) : [];
    this.starters.replaceChildren(...chips(items, (t) => this.send(t), { testid: "starter-chip" }));
    this.starters.hidden = items.length === 0;
    if (this.transcript.isEmpty && !this.messages.querySelector(".empty-state")) {
      this.messages.append(this.emptyState(profile));
    } else if (!this.transcript.isEmpty) {
      this.messages.querySelectorAll(".empty-state").forEach((node) => node.remove());
    }
  }

  /** The profile that answers next: the hello's, else the user's current one. */
  activeProfile() {
    if (this.hello && this.hello.data && this.hello.data.profile) {
      const { registry, slug } = this.hello.data.profile;
      const profile = this.picker.bySlug(slug, registry);
      if (profile) return profile;
    }
    return this.picker.current ? this.picker.current.profile : null;
  }

  emptyState(profile) {
    return el(
      "div",
      { class: "empty-state" },
      el("div", { class: "empty-mark", "aria-hidden": "true", text: "✦" }),
      el("h2", { text: this.config.empty_state }),
      el("p", {
        class: "muted",
        text: profile
          ? `${profile.display_name || profile.slug}: ${profile.description || "ready."}`
          : "Pick a profile above, then type a message.",
      }),
    );
  }

  setConnection(state, detail, code) {
    const labels = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };
    this.connection.dataset.state = state;
    this.connection.textContent = labels[state] || state;
    if (state === "closed") {
      const message = notice(detail || "The connection was closed.", { kind: "error", testid: "error-notice" });
      if (code === 4401) {
        message.append(" ", el("a", { href: `${this.config.login_url}?next=${encodeURIComponent(window.location.pathname)}`, text: "Sign in" }));
      }
      this.transcript.addNotice(message);
    }
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
