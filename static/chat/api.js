// fetch + CSRF + the API's JSON error shape ({"error": {"code", "message", "field"?}}).

export class ApiError extends Error {
  constructor(status, code, message, field, body) {
    super(message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code || "error";
    this.field = field;
    this.body = body;
  }
}

export function readCookie(name) {
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** One JSON request. Throws ApiError for non-2xx answers and for network failures (status 0). */
export async function request(url, { method = "GET", body, query, signal } = {}) {
  const target = new URL(url, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) headers["X-CSRFToken"] = readCookie("csrftoken") || "";
  let response;
  try {
    response = await fetch(target, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "The server could not be reached.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const detail = data && !data.error ? firstMessage(data) : null;
    throw new ApiError(response.status, error.code, error.message || detail || response.statusText, error.field, data);
  }
  return data;
}

function firstMessage(data) {
  if (typeof data === "string") return data;
  if (Array.isArray(data)) return data.length ? firstMessage(data[0]) : null;
  if (data && typeof data === "object") {
    const key = Object.keys(data)[0];
    return key === undefined ? null : firstMessage(data[key]);
  }
  return null;
}

/** The mount's chat API (profile routes + conversations), rooted at `apiBase` e.g. "/inventory/api/chat/". */
export class ChatApi {
  constructor(apiBase) {
    this.base = apiBase.endsWith("/") ? apiBase : `${apiBase}/`;
  }

  url(path) {
    return this.base + path;
  }

  profiles() {
    return request(this.url("profiles"));
  }

  /** A profile's labels `[{name, version, protected, ...}]` and versions `[{version, ...}]` (newest first). */
  labels(slug, registry) {
    return request(this.url(`profiles/${encodeURIComponent(slug)}/labels`), { query: { registry } });
  }

  versions(slug, registry) {
    return request(this.url(`profiles/${encodeURIComponent(slug)}/versions`), { query: { registry } });
  }

  currentProfile() {
    return request(this.url("profile"));
  }

  selectProfile(slug, registry) {
    return request(this.url("profile"), { method: "POST", body: registry ? { slug, registry } : { slug } });
  }

  /** One page of the caller's conversations: {count, next, results}; `q` searches titles and messages. */
  conversations({ page = 1, pageSize = 30, q = "", archived = false, signal } = {}) {
    return request(this.url("conversations"), {
      query: { page, page_size: pageSize, q: q || undefined, archived: archived ? "true" : undefined },
      signal,
    });
  }

  updateConversation(convId, changes) {
    return request(this.url(`conversations/${encodeURIComponent(convId)}`), { method: "PATCH", body: changes });
  }

  deleteConversation(convId) {
    return request(this.url(`conversations/${encodeURIComponent(convId)}`), { method: "DELETE" });
  }

  /** One turn with its full runtime record. */
  turn(convId, turnId) {
    return request(this.url(`conversations/${encodeURIComponent(convId)}/turns/${encodeURIComponent(turnId)}`));
  }

  /** Rate an answer: `rating` "up" or "down" gives (or replaces) the caller's feedback, null withdraws it.
   * Resolves to the feedback now stored ({rating, comment, at_ms}) or null. */
  setFeedback(convId, turnId, rating) {
    const url = this.url(`conversations/${encodeURIComponent(convId)}/turns/${encodeURIComponent(turnId)}/feedback`);
    return rating ? request(url, { method: "PUT", body: { rating } }) : request(url, { method: "DELETE" });
  }

  createConversation(body = {}) {
    return request(this.url("conversations"), { method: "POST", body });
  }

  conversation(convId) {
    return request(this.url(`conversations/${encodeURIComponent(convId)}`));
  }

  renameConversation(convId, title) {
    return request(this.url(`conversations/${encodeURIComponent(convId)}`), { method: "PATCH", body: { title } });
  }

  /** Every frame after `sinceSeq`, page by page: stored frames, then the running turn's frames not stored
   * yet and `llm.snapshot` (the streaming message's text so far). */
  async eventsSince(convId, sinceSeq) {
    const frames = [];
    let since = sinceSeq;
    for (;;) {
      const page = await request(this.url(`conversations/${encodeURIComponent(convId)}/events`), {
        query: { since_seq: since },
      });
      frames.push(...(page.frames || []));
      since = page.next_since_seq;
      if (!page.more) break;
    }
    return frames;
  }
}
