// The connection's state on screen: a small status in the toolbar, and a banner over the transcript
// whenever the page cannot reach the server (offline, the server away or restarting), saying what
// happens to messages typed meanwhile. A reconnect that succeeds within BANNER_DELAY_MS shows no banner
// (a profile change reconnects on purpose).

const LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  closed: "Disconnected",
};
const BANNER = {
  reconnecting: "Connection lost: reconnecting… Messages you send now wait here and go out when it is back.",
  offline: "You are offline. Messages you send now wait here and go out when the network is back.",
};
export const BANNER_DELAY_MS = 1000;

export class ConnectionView {
  /** @param {object} options status (element), banner (element), text (in the banner), retry (button), onRetry() */
  constructor({ status, banner, text, retry, onRetry }) {
    this.status = status;
    this.banner = banner;
    this.text = text;
    this.retry = retry;
    this.timer = null;
    retry.addEventListener("click", () => onRetry());
  }

  set(state) {
    this.status.dataset.state = state;
    this.status.textContent = LABELS[state] || state;
    clearTimeout(this.timer);
    if (!BANNER[state]) {
      this.banner.hidden = true;
      delete this.banner.dataset.state;
      return;
    }
    const show = () => {
      this.banner.dataset.state = state;
      this.text.textContent = BANNER[state];
      this.retry.hidden = state !== "reconnecting";
      this.banner.hidden = false;
    };
    if (state === "offline" || !this.banner.hidden) show();
    else this.timer = setTimeout(show, BANNER_DELAY_MS);
  }
}
