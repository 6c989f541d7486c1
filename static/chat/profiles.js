// The profiles of this mount and the user's default one. The page never decides which profile is
// current: it shows what the server answered (GET/POST {api_base}profile, and ws.hello for what answers a
// conversation). picker.js is the one control that changes it.

import { ApiError } from "./api.js";
import { el } from "./render.js";

export const STARTERS_KEY = "webchat.starter_suggestions@v1";

/** The profile's starter suggestions, without those the server said this user may not run
 * (`unavailable`: {"registry/slug": [text, ...]}, from the page config). */
export function starterSuggestions(profile, unavailable = {}) {
  const ext = profile && profile.extensions && profile.extensions[STARTERS_KEY];
  const items = ext && Array.isArray(ext.items) ? ext.items.filter((s) => typeof s === "string") : [];
  const denied = new Set((profile && unavailable[`${profile.registry}/${profile.slug}`]) || []);
  return items.filter((text) => !denied.has(text));
}

/** The profiles the user may pick and their default one (stored server-side per user and mount). */
// A registry's writers also see the slugs they may not use (`restricted`: slug only); the picker offers
// only the profiles this user may choose.
function usable(profiles) {
  return profiles.filter((profile) => !profile.restricted);
}

export class ProfileStore {
  /**
   * @param {object} options api (ChatApi), noticeEl (the profile notice element), storageKey (localStorage prefix)
   */
  constructor({ api, noticeEl, storageKey }) {
    this.api = api;
    this.noticeEl = noticeEl;
    this.storageKey = storageKey;
    this.profiles = [];
    this.current = null; // GET {api_base}profile: {registry, slug, ref, version, label, mode, source, profile}
  }

  bySlug(slug, registry) {
    return this.profiles.find((p) => p.slug === slug && (!registry || p.registry === registry)) || null;
  }

  nameOf(slug, registry) {
    const profile = this.bySlug(slug, registry);
    return (profile && (profile.display_name || profile.slug)) || slug;
  }

  async load() {
    try {
      const [profiles, current] = await Promise.all([this.api.profiles(), this.api.currentProfile()]);
      this.profiles = usable(profiles);
      this.rememberNames(this.profiles);
      this.show(current);
    } catch (err) {
      this.showNotice(`Profiles could not be loaded: ${err.message}`, "error");
      throw err;
    }
  }

  /** Keep the server's answer, and say so when a remembered selection was dropped by the server. */
  show(current) {
    this.current = current;
    if (!this.bySlug(current.slug, current.registry)) {
      // The list is stale (a profile was created since): show the server's choice anyway.
      this.profiles = [...this.profiles, { ...current.profile, registry: current.registry }];
    }
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

  /** Make `ref` (`slug`, `slug@label`, `slug@3`) the user's default. Resolves to the server's answer;
   * a profile gone meanwhile is said in the notice and the server's fallback is returned. */
  async selectDefault(ref, registry) {
    const slug = String(ref).split("@")[0];
    const wanted = this.bySlug(slug, registry);
    try {
      const confirmed = await this.api.selectProfile(ref, registry);
      this.hideNotice();
      this.show(confirmed);
      if (confirmed.slug !== slug) {
        this.showNotice(`The server selected '${confirmed.profile.display_name || confirmed.slug}' instead of '${slug}'.`, "warn");
      }
      return confirmed;
    } catch (err) {
      const name = (wanted && wanted.display_name) || slug;
      if (!(err instanceof ApiError && (err.status === 404 || err.status === 400))) throw err;
      const [profiles, current] = await Promise.all([this.api.profiles(), this.api.currentProfile()]);
      this.profiles = usable(profiles);
      this.storeValue("stale-shown", current.stale_selection ? `${current.stale_selection.registry}/${current.stale_selection.slug}` : null);
      this.show(current);
      const what = err.status === 404 ? "is no longer available" : `cannot be selected (${err.message})`;
      this.showNotice(`Profile '${name}' ${what}; using '${current.profile.display_name || current.slug}'.`, "warn");
      return current;
    }
  }

  // ---- what was seen, for naming a profile that went away

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

  // ---- the notice under the toolbar

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
