// The light/dark toggle in the header (every page). The system's preference applies until the user
// chooses; the choice is remembered in localStorage and applied before the first paint (base.html).

const KEY = "profile-chat:theme";
const root = document.documentElement;
const prefersDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

function chosen() {
  try {
    const theme = window.localStorage.getItem(KEY);
    return theme === "light" || theme === "dark" ? theme : null;
  } catch {
    return null;
  }
}

export function currentTheme() {
  return root.dataset.theme === "dark" ? "dark" : "light";
}

function show(button) {
  const dark = currentTheme() === "dark";
  button.setAttribute("aria-pressed", String(dark));
  button.title = dark ? "Dark theme (on): switch to light" : "Dark theme (off): switch to dark";
  root.dataset.effectiveTheme = dark ? "dark" : "light";
}

export function setTheme(theme) {
  root.dataset.theme = theme;
  try {
    window.localStorage.setItem(KEY, theme);
  } catch {
    /* storage disabled: the choice lasts for this page */
  }
  const button = document.getElementById("theme-toggle");
  if (button) show(button);
}

const button = document.getElementById("theme-toggle");
if (button) {
  show(button);
  button.addEventListener("click", () => setTheme(currentTheme() === "dark" ? "light" : "dark"));
  if (prefersDark && prefersDark.addEventListener) {
    prefersDark.addEventListener("change", () => {
      if (chosen()) return; // the user's choice holds
      root.dataset.theme = prefersDark.matches ? "dark" : "light";
      show(button);
    });
  }
}
