// The one profile control: a button that says who answers this conversation next ("Agent · follows
// latest (v3)", from ws.hello) and opens a panel to change it: the profile, the scope (this conversation
// only, or my default: new conversations and those that follow it) and the version (latest, a label, or
// pinned). The profile's labels and versions are fetched when the panel opens.
//
// This conversation: `profile.select` over the socket (a new ws.hello confirms it). My default:
// POST {api_base}profile, and the conversation follows it (its own choice, if any, is cleared).

import { el, engineLabel } from "./render.js";
import { describeFollow, refAt } from "./plain.js";

const LOADING = "Loading versions…";

export class ProfilePicker {
  /**
   * @param {object} options store (ProfileStore), api (ChatApi), button, dialog (<dialog> of the panel),
   *   send(frame) -> bool (the frame reached the server now), onDefault() (the user's default changed:
   *   fetch a fresh hello), onChange() (what answers, or the conversation's choice, changed),
   *   onNotice(text, kind)
   */
  constructor({ store, api, button, dialog, send, onDefault, onChange, onNotice }) {
    this.store = store;
    this.api = api;
    this.button = button;
    this.dialog = dialog;
    this.send = send;
    this.onDefault = onDefault;
    this.onChange = onChange;
    this.onNotice = onNotice;
    this.form = dialog.querySelector("form");
    this.list = dialog.querySelector("[data-picker-profiles]");
    this.version = dialog.querySelector("[data-picker-version]");
    this.versionHelp = dialog.querySelector("[data-picker-version-help]");
    this.engineLine = dialog.querySelector("[data-picker-engine]");
    this.answering = null; // ws.hello's profile {registry, slug, version, ref, label}: what answers next
    this.hello = null;
    this.selection = null; // the conversation's own choice {registry, slug, ref}, null: it follows my default
    this.pending = null; // {kind: "conversation" | "follow" | "default", previous}
    this.loads = 0;
    button.addEventListener("click", () => this.open());
    this.form.addEventListener("change", (event) => {
      if (event.target.name === "picker-profile") this.loadVersions(this.chosenProfile());
    });
    this.form.addEventListener("submit", (event) => {
      if (event.submitter && event.submitter.value === "apply") {
        event.preventDefault();
        this.apply();
      }
    });
    dialog.querySelector("[data-picker-close]").addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close(); // the backdrop
    });
    dialog.addEventListener("close", () => this.button.focus());
  }

  get scope() {
    return this.selection ? "conversation" : "default";
  }

  /** A conversation was loaded: its own stored choice (`profile_selection`) or null. */
  reset(selection) {
    this.selection = selection && selection.slug ? { registry: selection.registry, slug: selection.slug, ref: selection.ref || selection.slug } : null;
    this.pending = null;
    this.answering = null;
    this.hello = null;
    if (this.dialog.open) this.dialog.close();
    this.render();
  }

  /** ws.hello: what answers this conversation from now on; it also confirms a pending choice. */
  onHello(hello) {
    const profile = (hello.data && hello.data.profile) || {};
    this.hello = hello;
    this.answering = profile;
    if (this.pending && this.pending.kind === "conversation") {
      this.selection = { registry: profile.registry, slug: profile.slug, ref: profile.ref || profile.slug };
    } else if (this.pending && this.pending.kind === "follow") {
      this.selection = null;
    }
    const changed = this.pending !== null;
    this.pending = null;
    this.render();
    if (changed) this.onChange();
  }

  /** An error frame while a choice is pending: it was refused. Returns true when handled. */
  onError(data) {
    if (!this.pending || this.pending.kind === "default") return false;
    this.selection = this.pending.previous;
    this.pending = null;
    this.render();
    this.onNotice(`This conversation could not switch: ${data.message || data.code}`, "warn");
    return true;
  }

  /** The button: the profile that answers next and how it follows its versions. */
  render() {
    const profile = this.answering || (this.store.current && { ...this.store.current, registry: this.store.current.registry });
    const button = this.button;
    button.setAttribute("aria-busy", String(this.pending !== null));
    button.dataset.scope = this.scope;
    button.dataset.default = this.store.current ? this.store.current.slug : "";
    if (!profile || !profile.slug) {
      button.replaceChildren(el("span", { class: "visually-hidden", text: "Profile: " }), el("span", { class: "picker-name", text: "…" }));
      return;
    }
    const name = this.store.nameOf(profile.slug, profile.registry);
    const follow = describeFollow(profile);
    button.replaceChildren(
      el("span", { class: "visually-hidden", text: "Profile: " }),
      el("span", { class: "picker-name", "data-testid": "picker-name", text: name }),
      el("span", { class: "picker-follow", "data-testid": "picker-follow", text: `· ${follow.text}` }),
      el("span", { class: "picker-follow-short", "aria-hidden": "true", text: `· ${follow.short}` }),
      el("span", { class: "picker-chevron", "aria-hidden": "true", text: "▾" }),
    );
    button.title = `${name}, ${follow.text}: ${this.selection ? "this conversation only" : "your default"}. Change…`;
    button.dataset.mode = follow.mode;
    button.dataset.profile = profile.slug;
    const data = (this.hello && this.hello.data) || {};
    button.dataset.runtimeKey = data.runtime_key || "";
    button.dataset.profileVersion = profile.version ?? "";
    button.dataset.fingerprint = data.fingerprint || "";
  }

  // ------------------------------------------------------------------------------ the panel

  open() {
    const profile = this.answering || this.store.current;
    if (!profile) return;
    const wanted = `${profile.registry}/${profile.slug}`;
    this.list.replaceChildren(
      ...this.store.profiles.map((p) =>
        el(
          "label",
          { class: "picker-option", "data-testid": "picker-profile", dataset: { slug: p.slug } },
          el("input", {
            type: "radio",
            name: "picker-profile",
            value: p.slug,
            dataset: { registry: p.registry },
            checked: `${p.registry}/${p.slug}` === wanted,
          }),
          el(
            "span",
            { class: "picker-option-text" },
            el("span", { class: "picker-option-name", text: p.display_name || p.slug }),
            p.description ? el("span", { class: "picker-option-desc", text: p.description }) : null,
          ),
        ),
      ),
    );
    for (const input of this.form.elements["picker-scope"]) input.checked = input.value === this.scope;
    const engine = this.hello && this.hello.data && this.hello.data.engine;
    this.engineLine.textContent = engine
      ? `Answering now with ${engineLabel(engine)}${engine.provider === "offline" ? ": the offline engine (no network, not a language model)" : ""}.`
      : "";
    this.dialog.showModal();
    const checked = this.list.querySelector("input:checked");
    if (checked) checked.focus();
    this.loadVersions(this.chosenProfile());
  }

  chosenProfile() {
    const input = this.list.querySelector("input:checked");
    return input ? { slug: input.value, registry: input.dataset.registry } : null;
  }

  /** The profile's labels and versions, fetched now: "Latest", each label, each version (pinned). */
  async loadVersions(profile) {
    const load = ++this.loads;
    const select = this.version;
    select.disabled = true;
    select.replaceChildren(el("option", { value: "", text: LOADING }));
    this.versionHelp.textContent = "";
    if (!profile) return;
    let labels = [];
    let versions = [];
    try {
      [labels, versions] = await Promise.all([
        this.api.labels(profile.slug, profile.registry),
        this.api.versions(profile.slug, profile.registry),
      ]);
    } catch {
      this.versionHelp.textContent = "The versions could not be loaded: only the latest can be chosen.";
    }
    if (load !== this.loads) return; // another profile was chosen meanwhile
    const newest = versions.reduce((max, v) => Math.max(max, v.version), 0);
    select.replaceChildren(
      el("option", { value: "", text: newest ? `Latest: follows new versions (now v${newest})` : "Latest: follows new versions" }),
      labels.length
        ? el("optgroup", { label: "Follow a label" }, labels.map((l) => el("option", { value: l.name, text: `${l.name} (now v${l.version})` })))
        : null,
      versions.length
        ? el("optgroup", { label: "Pin a version" }, versions.map((v) => el("option", { value: String(v.version), text: `Pinned to v${v.version}` })))
        : null,
    );
    const current = this.answering && this.answering.slug === profile.slug ? refAt(this.answering.ref) : "";
    select.value = [...select.options].some((o) => o.value === current) ? current : "";
    select.disabled = false;
    select.dataset.loaded = profile.slug;
  }

  /** Apply the panel's choice; the dialog closes, the button says "busy" until the server confirms. */
  async apply() {
    const profile = this.chosenProfile();
    const scope = [...this.form.elements["picker-scope"]].find((i) => i.checked)?.value || "default";
    if (!profile) return;
    const at = this.version.disabled ? "" : this.version.value;
    const ref = at ? `${profile.slug}@${at}` : profile.slug;
    this.dialog.close();
    const previous = this.selection;
    if (scope === "conversation") {
      if (previous && previous.ref === ref && previous.registry === profile.registry) return;
      this.pending = { kind: "conversation", previous };
      if (!this.send({ type: "profile.select", slug: ref, registry: profile.registry })) return this.notConnected();
      this.render();
      return;
    }
    this.pending = { kind: "default", previous };
    this.render();
    try {
      await this.store.selectDefault(ref, profile.registry);
    } catch (err) {
      this.pending = null;
      this.render();
      this.onNotice(`The profile could not be changed: ${err.message}`, "error");
      return;
    }
    this.onChange(); // the user's default changed: every conversation that follows it says so
    if (previous) {
      this.pending = { kind: "follow", previous };
      if (!this.send({ type: "profile.select", slug: null })) return this.notConnected();
      this.render();
    } else {
      this.onDefault(); // a fresh hello says what answers now
    }
  }

  notConnected() {
    this.pending = null;
    this.render();
    this.onNotice("Not connected: this conversation's profile can be changed when the connection is back.", "warn");
  }
}
