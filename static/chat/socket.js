// A reconnecting chat socket that applies every conversation frame exactly once, in seq order.
//
// Conversation frames (chat.*, llm.*, tool.*, turn.*, artifact, ...) carry a conversation-wide `seq`.
// After every `ws.hello` the socket fetches what it has not seen yet (GET .../events?since_seq=<highest
// applied>: stored frames, and for a running turn an `llm.snapshot` of the streaming message), merges it
// with the live frames that arrived in the meantime, and applies them sorted by seq, skipping any seq it
// has applied before. Frames for this socket only (ws.hello, ws.pong, error; seq 0) pass straight through.
//
// States (onStatus): connecting, connected, reconnecting (lost: the next attempt is at `retryAt`), offline
// (the browser says it has no network: no attempt until it is back), closed (for good: `FATAL_CLOSE`).

const LOCAL_TYPES = new Set(["ws.hello", "ws.pong", "error"]);
// Close codes after which reconnecting cannot help (see chat/consumers.py).
const FATAL_CLOSE = new Map([
  [4400, "The conversation could not be opened (invalid request)."],
  [4401, "Your session has ended. Please sign in again."],
  [4403, "This conversation belongs to another user."],
  [4404, "The conversation's profile was not found."],
  [4410, "This conversation was deleted."],
]);
const MAX_BACKOFF_MS = 5000;

export class ChatSocket {
  /**
   * @param {object} options
   * @param {string} options.wsPath    e.g. "/ws/chat/"
   * @param {string} options.convId
   * @param {import("./api.js").ChatApi} options.api
   * @param {number} options.lastSeq   every stored frame up to this seq is already on the page
   * @param {(frame: object) => void} options.onFrame
   * @param {(state: string, detail?: string) => void} [options.onStatus]
   */
  constructor({ wsPath, convId, api, lastSeq = 0, onFrame, onStatus = () => {} }) {
    this.wsPath = wsPath;
    this.convId = convId;
    this.api = api;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.floor = lastSeq; // every stored seq <= floor has been applied
    this.lastSeq = lastSeq; // the highest stored seq applied
    this.seen = new Set(); // applied seqs above the floor
    this.ws = null;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.queue = [];
    this.replaying = false;
    this.buffer = [];
    this.connects = 0;
    this.retryAt = 0; // when the next attempt starts (reconnecting)
    this.suspended = false; // the browser is offline: wait for `resume()`
  }

  /** Frames sent now reach the server (the hello came and its replay is applied). */
  get connected() {
    return this.ready && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  get url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${this.wsPath}?conv_id=${encodeURIComponent(this.convId)}`;
  }

  start() {
    this.stopped = false;
    this._open();
    return this;
  }

  /** Close for good (switching conversations): no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "bye");
  }

  /** Open a fresh socket now (e.g. the user's profile changed: the new hello says what runs next). */
  reconnect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "reconnect");
    this.attempt = 0;
    this._open();
  }

  /** The browser lost its network: close, and make no attempt until `resume()`. */
  suspend() {
    if (this.stopped || this.suspended) return;
    this.suspended = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.replaying = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "offline");
    this.onStatus("offline");
  }

  /** The network is back (or the user asked): connect now. */
  resume() {
    this.suspended = false;
    this.reconnect();
  }

  /** Send a client frame; while (re)connecting it waits in a queue and goes out after the replay. */
  send(frame) {
    if (this.sendNow(frame)) return true;
    this.queue.push(frame);
    return false;
  }

  /** Send a client frame only if it reaches the server now; false otherwise (nothing is queued). */
  sendNow(frame) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  _open() {
    clearTimeout(this.timer);
    if (this.suspended) return;
    this.onStatus(this.connects ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.ready = false;
    ws.onmessage = (event) => this._message(ws, event);
    ws.onclose = (event) => this._closed(ws, event);
    ws.onerror = () => {}; // a close event follows
  }

  _message(ws, event) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    if (frame.type === "ws.hello") {
      this._hello(ws, frame);
    } else if (LOCAL_TYPES.has(frame.type)) {
      this.onFrame(frame);
    } else if (this.replaying) {
      this.buffer.push(frame);
    } else {
      this._apply(frame);
    }
  }

  async _hello(ws, hello) {
    this.connects += 1;
    this.replaying = true;
    this.buffer = [];
    this.onFrame(hello);
    const serverLast = Number(hello.data && hello.data.last_seq) || 0;
    let replayed = true;
    if (serverLast > this.lastSeq) {
      try {
        this.buffer.push(...(await this.api.eventsSince(this.convId, this.lastSeq)));
      } catch {
        replayed = false; // live frames still apply; the next reconnect retries the gap
      }
    }
    if (ws !== this.ws) return;
    const frames = this.buffer.sort((a, b) => a.seq - b.seq);
    this.buffer = [];
    this.replaying = false;
    for (const frame of frames) this._apply(frame);
    if (replayed && serverLast > this.floor) {
      this.floor = serverLast;
      for (const seq of this.seen) if (seq <= this.floor) this.seen.delete(seq);
    }
    this.ready = true;
    this.attempt = 0;
    this.onStatus("connected");
    const queued = this.queue.splice(0);
    for (const frame of queued) this.send(frame);
  }

  _apply(frame) {
    const seq = frame.seq;
    // A snapshot shares its seq with the last delta it covers: the transcript orders them by message.
    if (typeof seq === "number" && frame.type !== "llm.snapshot") {
      if (seq <= this.floor || this.seen.has(seq)) return; // already on the page
      this.seen.add(seq);
      if (seq > this.lastSeq) this.lastSeq = seq;
    }
    this.onFrame(frame);
  }

  _closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    this.replaying = false;
    if (this.stopped) return;
    if (FATAL_CLOSE.has(event.code)) {
      this.stopped = true;
      this.onStatus("closed", FATAL_CLOSE.get(event.code), event.code);
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.onStatus("reconnecting");
    this.timer = setTimeout(() => this._open(), delay);
  }
}
