// Plain words for what the page shows: middleware notices, why an answer failed, how a conversation
// follows its profile, conversation titles and the sidebar's day groups. The raw names, codes and
// messages stay in the runtime record (runtime_panel.js); the transcript says what happened.

const KINDS = {
  email: ["e-mail address", "e-mail addresses"],
  phone: ["phone number", "phone numbers"],
  card: ["card number", "card numbers"],
};

function plural(count, [one, many]) {
  return `${count} ${count === 1 ? one : many}`;
}

function listText(items) {
  if (items.length < 2) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function humanise(name) {
  const text = String(name || "").replace(/[_-]+/g, " ").trim();
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

// What a middleware did, by `<middleware>:<event>`: its `detail` fills the blanks.
const MIDDLEWARE_TEXT = {
  "context_window:trimmed": (d) =>
    `Kept the last ${plural(Number(d.kept_messages) || 0, ["message", "messages"])} as context`,
  "redact:redacted": (d) => {
    const counts = Object.entries(d.counts || {}).map(([kind, n]) => plural(Number(n) || 0, KINDS[kind] || [kind, kind]));
    return counts.length ? `Hid ${listText(counts)} from the model` : "Hid personal data from the model";
  },
  "guardrail:blocked": () => "Refused: the message matches a blocked term",
  "agent_mode:mode": (d) => `Mode: ${d.mode}`,
  "suggestions:suggested": () => "Suggested follow-ups",
  "inventory_artifacts:artifact": (d) => (d.title ? `Made a ${d.kind || "card"}: ${d.title}` : `Made a ${d.kind || "card"}`),
};

/** "Mode: plan" for {middleware: "agent_mode", event: "mode", detail: {mode: "plan"}}. */
export function middlewareText({ middleware, event, detail } = {}) {
  const make = MIDDLEWARE_TEXT[`${middleware}:${event}`];
  if (make) {
    try {
      return make(detail && typeof detail === "object" ? detail : {});
    } catch {
      /* an unexpected detail: the generic sentence below */
    }
  }
  return `${humanise(middleware)}: ${humanise(event).toLowerCase()}`;
}

// Why an answer failed, by the turn's `error.code` (chat/turns.py, the engines, chat/services.py).
const ERROR_TEXT = {
  connection_error: "The model's server could not be reached.",
  timeout: "The model took too long to answer.",
  provider_error: "The model's provider reported an error.",
  malformed_stream: "The model's answer arrived broken, so it was stopped.",
  interrupted: "The server stopped while this answer was being written.",
  storage_unavailable: "The server lost its database for too long while answering.",
  resolution_failed: "This conversation's profile could not be loaded.",
  profile_unavailable: "This conversation's profile cannot be used now: its stack is broken. An editor must fix it, or choose another profile.",
  internal_error: "Something went wrong on the server.",
};

/** One plain sentence for a failed or interrupted turn (the code and the raw message are in the record). */
export function turnErrorText(error, status = "failed") {
  const code = (error && error.code) || (status === "interrupted" ? "interrupted" : "");
  return ERROR_TEXT[code] || "The answer failed.";
}

// Why a conversation's runtime switched (`runtime.switched` reasons, runtime.md 7).
const SWITCH_REASON = {
  profile_changed: "another profile was chosen",
  profile_updated: "the profile has a new version",
  label_moved: "the label it follows moved to another version",
  runtime_changed: "the runtime changed",
  access_revoked: "you may no longer use the previous profile",
  rollout_halted: "a rollout was stopped",
  tools_changed: "its tools changed",
};

export function switchReasonText(reason) {
  return SWITCH_REASON[reason] || humanise(reason).toLowerCase();
}

/** A ref's part after `@`: "" (latest or the serving label), a label, or a version number. */
export function refAt(ref) {
  const text = String(ref || "");
  return text.includes("@") ? text.slice(text.indexOf("@") + 1) : "";
}

/** How a runtime follows its profile (ws.hello's `{slug, version, ref, label}`): its mode, the words,
 * and `short` words for a narrow screen ("follows latest (v3)" / "latest (v3)"). */
export function describeFollow(profile) {
  const at = refAt(profile.ref || profile.slug);
  if (/^\d+$/.test(at)) {
    const version = profile.version ?? at;
    return { mode: "pinned", text: `pinned to v${version}`, short: `pinned v${version}` };
  }
  const label = profile.label && profile.label !== "latest" ? profile.label : "latest";
  return { mode: label === "latest" ? "follow" : "label", text: `follows ${label} (v${profile.version})`, short: `${label} (v${profile.version})` };
}

/** A conversation's own choice, short (the sidebar): "Agent · pinned v2", "Agent · production", "Agent · latest". */
export function choiceText(selection, nameOf) {
  if (!selection || !selection.slug) return "My default";
  const name = nameOf(selection.slug, selection.registry);
  const at = refAt(selection.ref);
  if (!at) return `${name} · latest`;
  return /^\d+$/.test(at) ? `${name} · pinned v${at}` : `${name} · ${at}`;
}

/** A title from a prompt's first line: plain text, markdown marks removed, at most `max` characters. */
export function plainTitle(text, max = 60) {
  const plain = String(text || "")
    .replace(/```[\s\S]*?(```|$)/g, " ") // fenced code
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, "$1") // images: their alt text
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1") // links: their text
    .replace(/^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)/gm, "") // headings, quotes, list markers
    .replace(/(\*\*|__|~~)(.+?)\1/g, "$2")
    .replace(/(^|[^\w*])[*_]([^*_\s](?:[^*_]*[^*_\s])?)[*_](?=[^\w*]|$)/g, "$1$2")
    .replace(/`+([^`]*)`+/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
  if (plain.length <= max) return plain;
  const cut = plain.slice(0, max);
  const space = cut.lastIndexOf(" ");
  return `${(space > max * 0.6 ? cut.slice(0, space) : cut).trimEnd()}…`;
}

function dayStart(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

/** The sidebar's group of a time: "Today", "Yesterday", a weekday in the last week, else a date. */
export function dayLabel(ms, now = Date.now()) {
  if (!ms) return "Earlier";
  const today = dayStart(new Date(now));
  const day = dayStart(new Date(ms));
  const days = Math.round((today - day) / 86_400_000);
  if (days <= 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days < 7) return new Date(ms).toLocaleDateString([], { weekday: "long" });
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return new Date(ms).toLocaleDateString([], { day: "numeric", month: "long", year: sameYear ? undefined : "numeric" });
}
