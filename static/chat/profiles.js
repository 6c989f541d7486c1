// The profile controls. The page never decides which profile is current: it shows what the server
// answered (GET/POST {api_base}profile, and ws.hello for a conversation's own selection).

import { ApiError } from "./api.js";
import { el } from "./render.js";

export const STARTERS_KEY = "webchat.starter_suggestions@v1";

export function profileLabel(profile) {
  return `${profile.display_name || profile.slug}${profile.is_default ? " (default)" : ""}`;
}

/** The profile's starter suggestions, without those the server said this user may not run
 * (`unavailable`: {"registry/slug": [text, ...]}, from the page config). */
export function starterSuggestions(profile, unavailable = {}) {
  const ext = profile && profile.extensions && profile.extensions[STARTERS_KEY];
  const items = ext && Array.isArray(ext.items) ? ext.items.filter((s) => typeof s === "string") : [];
  const denied = new Set((profile && unavailable[`${profile.registry}/${profile.slug}`]) || []);
  return items.filter((text) => !denied.has(text));
}

function fillOptions(select, profiles, { leading = [] } = {}) {
  select.replaceChildren(
    ...leading,
    ...profiles.map((p) =>
      el("option", { value: p.slug, title: p.description || "", dataset: { registry: p.registry }, text: profileLabel(p) }),
    ),
  );
}

/** The user's current profile for this mount (stored server-side per user and mount). */
export class ProfilePicker {
  constructor({ api, select, noticeEl, storageKey, onChange = () => {} }) {
    this.api = api;
    this.select = select;
    this.noticeEl = noticeEl;
    this.storageKey = storageKey;
    this.onChange = onChange;
    this.profiles = [];
    this.current = null;
    select.addEventListener("change", () => this.choose(select.value));
  }

  bySlug(slug, registry) {
    return this.profiles.find((p) => p.slug === slug && (!registry || p.registry === registry)) || null;
  }

  async load() {
    this.select.disabled = true;
    try {
      const [profiles, current] = await Promise.all([this.api.profiles(), this.api.currentProfile()]);
      this.profiles = profiles;
      this.rememberNames(profiles);
      this.show(current);
    } catch (err) {
      this.showNotice(`Profiles could not be loaded: ${err.message}`, "error");
      throw err;
    } finally {
      this.select.disabled = this.profiles.length === 0;
    }
  }

  /** Show the server's answer, and say so when a remembered selection was dropped by the server. */
  show(current) {
    this.current = current;
    if (!this.bySlug(current.slug, current.registry)) {
      // The list is stale (a profile was created since): show the server's choice anyway.
      this.profiles = [...this.profiles, { ...current.profile, registry: current.registry }];
    }
    fillOptions(this.select, this.profiles);
    this.select.value = current.slug;
    this.select.dataset.source = current.source;
    this.select.dataset.current = current.slug;
    if (current.source === "selection") {
      this.remember(current);
    } else if (current.stale_selection) {
      // The server says which stored selection no longer resolves. Said once (not on every page load),
      // with the display name the profile had (remembered locally: the server no longer has it).
      const stale = current.stale_selection;
      const key = `${stale.registry}/${stale.slug}`;
      if (this.storedValue("stale-shown") !== key) {
        const remembered = this.remembered();
        const name =
          remembered && remembered.slug === stale.slug && remembered.registry === stale.registry
            ? remembered.name
            : (this.storedValue("names") || {})[key] || stale.slug;
        this.showNotice(
          `Profile '${name}' is no longer available; using the default '${current.profile.display_name || current.slug}'.`,
          "warn",
        );
        this.storeValue("stale-shown", key);
      }
    }
  }

  /** Display names of the profiles seen, so a profile that goes away can still be named. */
  rememberNames(profiles) {
    const names = this.storedValue("names") || {};
    for (const p of profiles) names[`${p.registry}/${p.slug}`] = p.display_name || p.slug;
    this.storeValue("names", names);
  }

  storedValue(suffix) {
    try {
      return JSON.parse(window.localStorage.getItem(`${this.storageKey}:${suffix}`) || "null");
    } catch {
      return null;
    }
  }

  storeValue(suffix, value) {
    try {
      window.localStorage.setItem(`${this.storageKey}:${suffix}`, JSON.stringify(value));
    } catch {
      /* storage disabled */
    }
  }

  async choose(slug) {
    const previous = this.current;
    const wanted = this.bySlug(slug);
    this.select.disabled = true;
    this.select.setAttribute("aria-busy", "true");
    try {
      const confirmed = await this.api.selectProfile(slug, wanted ? wanted.registry : undefined);
      this.hideNotice();
      this.show(confirmed);
      if (confirmed.slug !== slug) {
        this.showNotice(`The server selected '${confirmed.profile.display_name || confirmed.slug}' instead of '${slug}'.`, "warn");
      }
      this.onChange(confirmed, previous);
    } catch (err) {
      await this.rejected(slug, wanted, previous, err);
    } finally {
      this.select.disabled = false;
      this.select.removeAttribute("aria-busy");
    }
  }

  async rejected(slug, wanted, previous, err) {
    const name = (wanted && wanted.display_name) || slug;
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) {
      try {
        const [profiles, current] = await Promise.all([this.api.profiles(), this.api.currentProfile()]);
        this.profiles = profiles;
        this.storeValue("stale-shown", current.stale_selection ? `${current.stale_selection.registry}/${current.stale_selection.slug}` : null);
        this.show(current);
        const what = err.status === 404 ? "is no longer available" : `cannot be selected (${err.message})`;
        this.showNotice(`Profile '${name}' ${what}; using '${current.profile.display_name || current.slug}'.`, "warn");
        this.onChange(current, previous);
        return;
      } catch {
        /* fall through: show the original error */
      }
    }
    if (previous) this.select.value = previous.slug;
    this.showNotice(`The profile could not be changed: ${err.message}`, "error");
  }

  remembered() {
    try {
      return JSON.parse(window.localStorage.getItem(this.storageKey) || "null");
    } catch {
      return null;
    }
  }

  remember(current) {
    try {
      window.localStorage.setItem(
        this.storageKey,
        JSON.stringify({ registry: current.registry, slug: current.slug, name: current.profile.display_name || current.slug }),
      );
    } catch {
      /* storage disabled: the stale-selection message is then best effort */
    }
  }

  showNotice(text, kind = "info") {
    const close = el("button", {
      type: "button",
      class: "icon-btn notice-close",
      "aria-label": "Dismiss",
      text: "×",
      onclick: () => this.hideNotice(),
    });
    this.noticeEl.replaceChildren(el("span", { class: "notice-text", text }), close);
    this.noticeEl.dataset.kind = kind;
    this.noticeEl.hidden = false;
  }

  hideNotice() {
    this.noticeEl.hidden = true;
    this.noticeEl.replaceChildren();
  }
}

/** "This conversation: [follow my profile | <profiles>]": the conversation's own selection (ws profile.select). */
export class ConversationProfile {
  constructor({ select, picker, send, onNotice }) {
    this.select = select;
    this.picker = picker;
    this.send = send;
    this.onNotice = onNotice;
    this.selection = null; // {registry, slug} or null = follow the user's profile
    this.pending = null;
    select.addEventListener("change", () => this.choose(select.value));
  }

  /** A conversation was loaded: its stored selection (profile_selection) or null. */
  reset(selection) {
    this.selection = selection && selection.slug ? selection : null;
    this.pending = null;
    this.render();
  }

  render() {
    const follow = el("option", { value: "", text: "Follow my profile" });
    const profiles = [...this.picker.profiles];
    if (this.selection && !profiles.some((p) => p.slug === this.selection.slug)) {
      profiles.push({ slug: this.selection.slug, display_name: this.selection.slug, registry: this.selection.registry });
    }
    fillOptions(this.select, profiles, { leading: [follow] });
    this.select.value = this.selection ? this.selection.slug : "";
    this.select.dataset.selection = this.selection ? this.selection.slug : "";
    this.select.title = this.selection
      ? "This conversation keeps its own profile, whatever your profile is."
      : "This conversation follows your profile.";
    this.select.disabled = this.pending !== null;
  }

  choose(value) {
    const slug = value || null; // null: follow my profile again
    if (slug === (this.selection ? this.selection.slug : null)) {
      this.render();
      return;
    }
    this.pending = { slug, previous: this.selection, queued: false };
    this.render();
    this.select.value = value;
    // While the socket reconnects the frame waits in a queue: the reconnect's own hello comes first.
    this.pending.queued = !this.send({ type: "profile.select", slug });
  }

  /** ws.hello confirms a profile.select (it describes the conversation's runtime from now on). */
  onHello(hello) {
    if (!this.pending) return;
    if (this.pending.queued) {
      this.pending.queued = false;
      return;
    }
    const profile = (hello.data && hello.data.profile) || {};
    this.selection = this.pending.slug === null ? null : { registry: profile.registry, slug: profile.slug || hello.data.runtime_key };
    this.pending = null;
    this.render();
  }

  /** The conversation now has its own selection (chosen elsewhere, e.g. a version of its profile). */
  adopt(selection) {
    this.selection = selection;
    this.pending = null;
    this.render();
  }

  /** An error frame while a selection is pending: it was refused. Returns true when handled. */
  onError(data) {
    if (!this.pending) return false;
    const { slug, previous } = this.pending;
    this.pending = null;
    this.selection = previous;
    this.render();
    this.onNotice(`This conversation could not switch to '${slug}': ${data.message || data.code}`);
    return true;
  }
}

/** "Pinned to v1", "Follows production (v2)", "Follows the latest version (v3)": how the runtime in
 * `profile` (ws.hello's `{registry, slug, version, ref, label}`) follows its profile. */
export function describeFollow(profile) {
  const ref = profile.ref || profile.slug || "";
  if (/@\d+$/.test(ref)) return { mode: "pinned", text: `Pinned to v${profile.version}` };
  if (profile.label && profile.label !== "latest") {
    return { mode: "label", text: `Follows ${profile.label} (v${profile.version})` };
  }
  return { mode: "follow", text: `Follows the latest version (v${profile.version})` };
}

/** What follows `@` in the runtime's ref ("" for a plain slug). */
function refAt(profile) {
  const ref = profile.ref || profile.slug || "";
  return ref.includes("@") ? ref.slice(ref.indexOf("@") + 1) : "";
}

/** How this conversation follows its profile: the serving label or the latest version, one of the
 * profile's labels, or pinned to a version. Shows which, and changes it with `profile.select` and a ref
 * (`slug`, `slug@label`, `slug@3`). */
export class ConversationVersion {
  constructor({ select, status, api, send, conversation, onNotice }) {
    this.select = select;
    this.status = status;
    this.api = api;
    this.send = send;
    this.conversation = conversation;
    this.onNotice = onNotice;
    this.profile = null;
    this.pending = false;
    this.loads = 0;
    this.loaded = null; // the hello whose profile's labels and versions are listed
    select.addEventListener("change", () => this.choose(select.value));
    // The labels and versions are fetched when the user goes to choose, not on every hello.
    for (const type of ["focus", "pointerdown"]) select.addEventListener(type, () => this.load());
  }

  load() {
    if (this.profile && this.loaded !== this.profile) {
      this.loaded = this.profile;
      this.fill(this.profile);
    }
  }

  /** ws.hello: the conversation's runtime from now on. */
  async onHello(hello) {
    const profile = (hello.data && hello.data.profile) || {};
    this.profile = profile;
    const { mode, text } = describeFollow(profile);
    this.status.textContent = text;
    this.status.dataset.mode = mode;
    if (this.pending) {
      this.pending = false;
      this.conversation.adopt({ registry: profile.registry, slug: profile.slug });
    }
    // Until the user opens the list: the current choice only.
    const at = refAt(profile);
    const current = at ? el("option", { value: at, text: /^\d+$/.test(at) ? `v${at} only` : `${at} (v${profile.version})` }) : null;
    this.select.replaceChildren(el("option", { value: "", text: "Latest (or the serving label)" }), ...(current ? [current] : []));
    this.select.value = at;
    this.select.disabled = false;
    this.loaded = null;
    if (document.activeElement === this.select) this.load();
  }

  async fill(profile) {
    const load = ++this.loads;
    let labels = [];
    let versions = [];
    try {
      [labels, versions] = await Promise.all([
        this.api.labels(profile.slug, profile.registry),
        this.api.versions(profile.slug, profile.registry),
      ]);
    } catch {
      /* a profile the list cannot show (deleted meanwhile): only "Latest" is offered */
    }
    if (load !== this.loads || profile !== this.profile) return; // a newer hello has come
    const at = refAt(profile);
    this.select.replaceChildren(
      el("option", { value: "", text: "Latest (or the serving label)" }),
      ...labels.map((l) => el("option", { value: l.name, text: `${l.name} (v${l.version})` })),
      ...versions.map((v) => el("option", { value: String(v.version), text: `v${v.version} only` })),
    );
    this.select.value = [...this.select.options].some((o) => o.value === at) ? at : "";
    this.select.disabled = false;
  }

  choose(value) {
    if (!this.profile) return;
    const ref = value ? `${this.profile.slug}@${value}` : this.profile.slug;
    this.pending = true;
    this.select.disabled = true;
    if (!this.send({ type: "profile.select", slug: ref, registry: this.profile.registry })) {
      this.pending = false; // no socket: the reconnect's hello shows what holds
    }
  }

  /** An error frame while a choice is pending: it was refused. Returns true when handled. */
  onError(data) {
    if (!this.pending) return false;
    this.pending = false;
    this.select.disabled = false;
    if (this.profile) this.onHello({ data: { profile: this.profile } });
    this.onNotice(`This conversation could not switch version: ${data.message || data.code}`);
    return true;
  }
}
