"""Helpers for the browser tests: Chromium launch options, login, the chat page's controls, REST calls."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1100, "height": 700}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000
# axe-core, vendored for the tests only (MPL-2.0; see static/vendor/README.md).
AXE = ROOT / "tests" / "e2e" / "vendor" / "axe-core-4.14.1" / "axe.min.js"


def update_screenshots() -> bool:
    return os.environ.get("UPDATE_SCREENSHOTS") == "1"


def launch(playwright: Any) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class Watch:
    """Console errors, page errors and dialogs of one page; none is expected."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Accept console errors matching `pattern` (Chromium logs every 4xx answer as one, even a handled one)."""
        self.allowed.append(re.compile(pattern))

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"dialog fired: {dialog.type} {dialog.message!r}")
        dialog.dismiss()

    def assert_clean(self) -> None:
        problems = [p for p in self.problems if not any(a.search(p) for a in self.allowed)]
        assert problems == [], "\n".join(problems)


def new_page(
    browser: Browser, base_url: str, *, viewport: dict[str, int] | None = None, **options: Any
) -> tuple[BrowserContext, Page, Watch]:
    context = browser.new_context(base_url=base_url, viewport=viewport or VIEWPORT, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    return context, page, watch


def session_login(context: BrowserContext, base_url: str, user: Any) -> None:
    """A session for `user` created in the (shared) test database, handed to the browser as a cookie."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    host = base_url.split("://", 1)[1].split(":", 1)[0]
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "domain": host,
                "path": "/",
            }
        ]
    )


def form_login(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("login-submit").click()


def open_app(page: Page, path: str = "/") -> None:
    """Load a chat page and wait until it is connected to its conversation."""
    page.goto(path)
    wait_ready(page)


def wait_ready(page: Page) -> None:
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def choose_profile(page: Page, slug: str, *, scope: str = "default", version: str = "") -> None:
    """Open the profile picker, choose `slug` for `scope` (`default`: the user's default, which this
    conversation follows; `conversation`: this conversation only) at `version` ("" latest, a label name or
    a version number), apply, and wait until the server confirmed it (a new hello)."""
    picker = page.get_by_test_id("profile-picker")
    picker.click()
    panel = page.get_by_test_id("profile-panel")
    panel.locator(f"[data-testid=picker-profile][data-slug='{slug}'] input").check()
    panel.get_by_test_id(f"scope-{scope}").locator("input").check()
    versions = panel.get_by_test_id("picker-version")
    expect(versions).to_have_attribute("data-loaded", slug)  # fetched when the panel opened
    versions.select_option(version)
    panel.get_by_test_id("picker-apply").click()
    expect(panel).to_be_hidden()
    expect(picker).to_have_attribute("aria-busy", "false")
    expect(picker).to_have_attribute("data-scope", scope)
    expect(picker).to_have_attribute("data-runtime-key", slug)
    if scope == "default":
        expect(picker).to_have_attribute("data-default", slug)
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def select_profile(page: Page, slug: str) -> None:
    """Make `slug` the user's default profile (the open conversation follows it) and wait for the new hello."""
    choose_profile(page, slug, scope="default")


def send(page: Page, text: str) -> None:
    box = page.get_by_test_id("composer-input")
    box.fill(text)
    box.press("Enter")


def wait_turns(page: Page, count: int, status: str = "completed") -> None:
    page.wait_for_function(
        "([n, s]) => document.querySelectorAll(`[data-testid=turn][data-status=${s}]`).length >= n",
        arg=[count, status],
    )


def ask(page: Page, text: str) -> None:
    """Send and wait for that turn to finish."""
    before = page.locator("[data-testid=turn][data-status=completed]").count()
    send(page, text)
    wait_turns(page, before + 1)


def current_conv_id(page: Page) -> str:
    return page.evaluate("window.__chat.app.conv.conv_id")


def shot(page: Page, name: str, *, docs: bool = False) -> None:
    """A screenshot for the test artifacts; with UPDATE_SCREENSHOTS=1 also the README's copy (made small)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), type="png")
    if docs and update_screenshots():
        from .pngsmall import shrink

        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = DOCS_SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(target), type="png")
        shrink(target)  # a 256-colour palette: about a third of the size


def api(base_url: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """A REST call with a DRF token: (status, JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def axe_violations(page: Page, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run axe-core on the page as it is; one line per violation of these impacts (node targets included)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: " + (n.failureSummary || "").split("\\n")[1]),
        }))"""
    )
    return [
        f"{v['impact']} {v['id']}: {v['help']} -> {'; '.join(v['nodes'])}" for v in violations if v["impact"] in impacts
    ]


def scroll_state(page: Page, testid: str = "messages") -> dict[str, float]:
    """scrollTop, scrollHeight and clientHeight of an element (by test id)."""
    return page.get_by_test_id(testid).evaluate(
        "el => ({top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight})"
    )


def at_end(state: dict[str, float]) -> bool:
    return state["height"] - state["top"] - state["client"] <= 2
