// The page's frame around the chat: the conversation list as a drawer when the window is narrow, the
// chat and the mount's panel as tabs on a phone, and confirmation dialogs.

/** The conversation list as a drawer when `query` matches (a phone; or, beside the mount's panel, any
 * window narrower than both need): a button opens it, Esc, the backdrop or a choice closes it. */
export class Drawer {
  constructor({ sidebar, toggle, close, backdrop, content, query }) {
    this.sidebar = sidebar;
    this.toggle = toggle;
    this.backdrop = backdrop;
    this.content = content; // what is behind the drawer (inert while it is open)
    this.query = window.matchMedia(query);
    this.opened = false;
    toggle.addEventListener("click", () => (this.opened ? this.close() : this.open()));
    close.addEventListener("click", () => this.close());
    backdrop.addEventListener("click", () => this.close());
    this.query.addEventListener("change", () => this.sync());
    this.sync();
  }

  get isDrawer() {
    return this.query.matches;
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
export class PanelTabs {
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
export function confirmDialog(dialog, { title, message, action = "OK" }) {
  dialog.querySelector("[data-confirm-title]").textContent = title;
  dialog.querySelector("[data-confirm-message]").textContent = message;
  dialog.querySelector("[data-confirm-action]").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}
