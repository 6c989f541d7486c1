"""Every page as people see it: each one opened in Chromium against a real daphne, at desktop and phone
sizes, in the light and the dark theme (the system preference, which base.html and Django's admin both
follow until the user chooses), fails on template syntax in the visible text, a console error, an
uncaught page error, a dialog, or a request that failed or answered 4xx/5xx.

Fast on purpose: one server, one browser, the data seeded once, one login per user (its storage state),
one tab per (user, size, theme) that goes from page to page (static files come from its cache).
With UPDATE_SCREENSHOTS=1 the README's docs/screenshots/{chat,chat-phone,inventory}.png are rewritten
from these pages (light theme).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, Response, expect

from inventory.models import Item
from profiles.html_patterns import html_pattern
from profiles.models import AuditEvent, Profile, ProfileRevision, Registry
from profiles.validation import SLUG_RE
from tests.profiles.test_admin_label_pattern import LABEL_SAMPLES, api_accepts

from .browser import DESKTOP, PHONE, TIMEOUT_MS, Watch, api, form_login, shot, wait_ready
from .helpers import ApiUser, make_user, seed
from .server import LiveServer

# A transactional test flushes the tables of its `available_apps` when it ends: none here, so the data
# `site` commits once serves every page (the mark still has pytest-django create the test database).
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True, available_apps=[])]

TEMPLATE_TEXT = re.compile(r"\{#|#\}|\{%|\{\{")
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # as tests/conftest.py, per test there
CHAT_PROMPTS = ("What is 17.5% of 2,340?", "What is 3 ** 7?", "What is 15% of 480?")


@dataclass(frozen=True)
class View:
    """A page: its name (the test id), its path (`{name}`s filled from the seeded data), who opens it,
    what shows it has finished (`app`: the chat app connected; `docs`: Swagger UI rendered) and whether
    it follows the theme (Swagger UI has none)."""

    name: str
    path: str
    user: str | None = "admin"
    ready: str = ""
    themed: bool = True


PAGES = [
    View("login", "/accounts/login/", user=None),
    View("chat", "/#conv={chat_conv}", ready="app"),
    View("inventory", "/inventory/#conv={inventory_conv}", ready="app"),
    View("chat-plain-user", "/", user="plain", ready="app"),  # no admin link, no writing tools
    View("inventory-plain-user", "/inventory/", user="plain", ready="app"),
    View("admin-index", "/admin/"),
    View("admin-profile-list", "/admin/profiles/profile/"),
    View("admin-profile-change", "/admin/profiles/profile/{profile}/change/"),
    View("admin-profile-history", "/admin/profiles/profile/{profile}/history/"),
    View("admin-profile-versions", "/admin/profiles/profile/{profile}/versions/?from=1&to=2"),
    View("admin-profile-version", "/admin/profiles/profile/{profile}/versions/1/"),
    View("admin-registry-list", "/admin/profiles/registry/"),
    View("admin-registry-change", "/admin/profiles/registry/{registry}/change/"),
    View("admin-revision-list", "/admin/profiles/profilerevision/"),
    View("admin-revision-view", "/admin/profiles/profilerevision/{revision}/change/"),
    View("admin-selection-list", "/admin/profiles/profileselection/"),
    View("admin-audit-list", "/admin/profiles/auditevent/"),
    View("admin-audit-view", "/admin/profiles/auditevent/{audit_event}/change/"),
    View("admin-label-request-list", "/admin/profiles/labelrequest/"),
    View("admin-rollout-list", "/admin/profiles/labelrollout/"),
    View("admin-rollout-view", "/admin/profiles/labelrollout/{rollout}/change/"),
    View("admin-key-list", "/admin/profiles/apikey/"),
    View("admin-price-list", "/admin/chat/price/"),
    View("admin-usage", "/admin/chat/price/usage/?group_by=profile"),
    View("admin-budget-list", "/admin/chat/budget/"),
    View("admin-mcpserver-list", "/admin/chat/mcpserver/"),
    View("admin-mcpserver-add", "/admin/chat/mcpserver/add/"),
    View("admin-dataset-list", "/admin/chat/dataset/"),
    View("admin-dataset-add", "/admin/chat/dataset/add/"),
    View("admin-evaluationrun-list", "/admin/chat/evaluationrun/"),
    View("admin-labelgate-list", "/admin/chat/labelgate/"),
    View("admin-item-list", "/admin/inventory/item/"),
    View("admin-item-change", "/admin/inventory/item/{item}/change/"),
    View("admin-sale-list", "/admin/inventory/sale/"),
    View("api-docs", "/api/docs/", ready="docs", themed=False),
]
# The README's screenshots: (page, size, theme) -> docs/screenshots/<name>.png
DOC_SCREENSHOTS = {
    ("chat", "desktop", "light"): "chat",
    ("chat", "phone", "light"): "chat-phone",
    ("inventory", "desktop", "light"): "inventory",
}


@dataclass
class Site:
    url: str
    states: dict[str, Any]  # a signed-in browser's storage state, per user
    ids: dict[str, Any]  # what the paths name


def storage_state(browser: Browser, url: str, user: ApiUser) -> Any:
    """Sign in once through the real login form; every page of that user reuses the session."""
    context = browser.new_context(base_url=url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/accounts/login/")
    form_login(page, user.username, user.password)
    page.wait_for_url(f"{url}/", wait_until="commit")
    state = context.storage_state()
    context.close()
    return state


def conversation(url: str, user: ApiUser, prefix: str, prompts: tuple[str, ...], **body: Any) -> str:
    """A conversation with answered turns (the offline engine), made through the API."""
    status, created = api(url, "POST", f"{prefix}/api/chat/conversations", user.token, body)
    assert status == 201, created
    for prompt in prompts:
        path = f"{prefix}/api/chat/conversations/{created['conv_id']}/messages?wait=1"
        status, answered = api(url, "POST", path, user.token, {"prompt": prompt})
        assert status == 200, answered
    return created["conv_id"]


@pytest.fixture(scope="module")
def site(_live_server_process: LiveServer, django_db_blocker: Any, browser: Browser) -> Iterator[Site]:
    """The demo data, a profile with two versions and a label, answered conversations and two signed-in
    users (a superuser, a plain user), made once for every page of this module; flushed afterwards as
    `transactional_db` would."""
    url = _live_server_process.url
    try:
        with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=FAST_HASHERS):
            seed()
            admin, plain = make_user("alice", superuser=True), make_user("bob")
            status, body = api(url, "PATCH", "/api/chat/profiles/analyst", admin.token, {"description": "Version two."})
            assert status == 200, body
            status, body = api(url, "PUT", "/api/chat/profiles/analyst/labels/production", admin.token, {"version": 1})
            assert status == 200, body
            arms = [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
            canary = {"arms": arms, "guard": {"max_failure_rate": 0.2, "min_turns": 10}}
            rollout_path = "/api/chat/profiles/analyst/labels/production/rollout"
            status, rollout = api(url, "PUT", rollout_path, admin.token, canary)
            assert status == 200, rollout
            status, key = api(url, "POST", "/api/keys", admin.token, {"name": "deploy bot", "scopes": ["analyst"]})
            assert status == 201, key
            analyst = Profile.objects.get(registry__slug="default", slug="analyst")
            ids = {
                "profile": analyst.pk,
                "default_profile": Profile.objects.get(registry__slug="default", slug="default").pk,
                "registry": Registry.objects.get(slug="default").pk,
                "revision": ProfileRevision.objects.get(registry_slug="default", profile_slug="analyst", version=1).pk,
                "audit_event": AuditEvent.objects.get(action="profile.updated", slug="analyst").pk,
                "rollout": rollout["id"],
                "item": Item.objects.order_by("sku").first().pk,
                "chat_conv": conversation(url, admin, "", CHAT_PROMPTS, profile="analyst", title="Budget check"),
                "inventory_conv": conversation(
                    url, admin, "/inventory", ("which items are low on stock?",), title="Low stock check"
                ),
            }
            states = {"admin": storage_state(browser, url, admin), "plain": storage_state(browser, url, plain)}
        yield Site(url=url, states=states, ids=ids)
    finally:  # also when the setup failed half-way
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, stdout=io.StringIO())


@pytest.fixture(scope="module")
def tab(site: Site, browser: Browser) -> Iterator[Callable[[str | None, str, str], Page]]:
    """tab(user, size, theme): that user's one tab at that size in that theme, blank (any request
    still running from its last page is cancelled before the next page is watched)."""
    opened: dict[tuple[str | None, str, str], Page] = {}

    def _tab(user: str | None, viewport: str, theme: str) -> Page:
        key = (user, viewport, theme)
        if key not in opened:
            context = browser.new_context(
                base_url=site.url,
                viewport=VIEWPORTS[viewport],
                color_scheme=theme,
                storage_state=site.states[user] if user else None,
            )
            context.set_default_timeout(TIMEOUT_MS)
            opened[key] = context.new_page()
        page = opened[key]
        page.goto("about:blank")
        return page

    yield _tab
    for page in opened.values():
        page.context.close()


@contextmanager
def watching(page: Page) -> Iterator[tuple[Watch, set[Request]]]:
    """Problems while the block runs (console errors, page errors, dialogs, failed and 4xx/5xx requests)
    and the URLs of the requests still in flight."""
    watch, pending = Watch(), set[Request]()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.problems.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def dialog(box: Dialog) -> None:
        watch.problems.append(f"dialog fired: {box.type} {box.message!r}")
        box.dismiss()

    def response(answer: Response) -> None:
        if answer.status >= 400:
            watch.problems.append(f"HTTP {answer.status}: {answer.request.method} {answer.url}")

    def failed(request: Request) -> None:
        pending.discard(request)
        watch.problems.append(f"request failed ({request.failure}): {request.method} {request.url}")

    handlers: dict[str, Callable[..., None]] = {
        "console": console,
        "pageerror": lambda error: watch.problems.append(f"page error: {error}"),
        "dialog": dialog,
        "request": lambda request: pending.add(request),
        "requestfinished": lambda request: pending.discard(request),
        "requestfailed": failed,
        "response": response,
    }
    for event, handler in handlers.items():
        page.on(event, handler)
    try:
        yield watch, pending
    finally:
        for event, handler in handlers.items():
            page.remove_listener(event, handler)


def settle(page: Page, view: View, pending: set[Request]) -> None:
    """The page's own sign of readiness, then no request in flight (what fails late is counted too)."""
    if view.ready == "app":
        wait_ready(page)
    elif view.ready == "docs":
        page.wait_for_selector(".swagger-ui .opblock")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while pending and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert not pending, f"{view.name}: requests still running: {sorted(r.url for r in pending)}"


def background_is_dark(page: Page) -> bool:
    """Whether the page's background (the body's, else the root's) is dark."""
    rgb = page.evaluate(
        """() => [document.body, document.documentElement]
              .map((el) => getComputedStyle(el).backgroundColor)
              .find((c) => !/rgba\\(.*, 0\\)|transparent/.test(c)) || "rgb(255, 255, 255)" """
    )
    red, green, blue = (int(n) for n in re.findall(r"\d+", rgb)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue < 128


def invalid_patterns(page: Page, patterns: list[str] | None = None) -> list[str]:
    """The patterns (default: the page's `pattern` attributes) that are not valid regular expressions as
    browsers compile them, with the `v` flag: Chromium ignores such a pattern, and says so only once
    someone types."""
    return page.evaluate(
        """(given) => (given || [...document.querySelectorAll("input[pattern]")].map((input) => input.pattern))
            .filter((pattern) => { try { new RegExp(`^(?:${pattern})$`, "v"); return false; } catch { return true; } })""",
        patterns,
    )


# Every page at both sizes and in both themes, in two passes (desktop light, phone dark), plus the
# combinations the README screenshots need.
VARIANTS = [("desktop", "light"), ("phone", "dark")]
CASES = [(view, viewport, theme) for view in PAGES for viewport, theme in VARIANTS] + [
    (view, viewport, theme)
    for view in PAGES
    for (name, viewport, theme) in DOC_SCREENSHOTS
    if name == view.name and (viewport, theme) not in VARIANTS
]


@pytest.mark.parametrize(("view", "viewport", "theme"), CASES, ids=[f"{v.name}-{vp}-{t}" for v, vp, t in CASES])
def test_page_shows_no_template_text_and_logs_no_error(site: Site, tab, view: View, viewport: str, theme: str):
    page = tab(view.user, viewport, theme)
    with watching(page) as (watch, pending):
        response = page.goto(view.path.format(**site.ids))
        assert response is not None and response.ok, f"{view.name}: {response and response.status}"
        settle(page, view, pending)
        assert view.user is None or "/accounts/login/" not in page.url, f"{view.name}: sent to the login page"

        text = page.inner_text("body")
        assert TEMPLATE_TEXT.findall(text) == [], f"template syntax in the text of {view.name}:\n{text[:3000]}"
        if view.themed:
            assert background_is_dark(page) == (theme == "dark"), f"{view.name} is not in the {theme} theme"
        assert invalid_patterns(page) == [], f"{view.name}: a pattern the browser cannot compile (it checks nothing)"
        watch.assert_clean()

    name = DOC_SCREENSHOTS.get((view.name, viewport, theme))
    if name:
        shot(page, name, docs=True)


def test_the_admin_label_field_checks_the_apis_rule_in_the_browser(site: Site, tab):
    page = tab("admin", "desktop", "light")
    versions = f"/admin/profiles/profile/{site.ids['default_profile']}/versions/"
    with watching(page) as (watch, pending):
        page.goto(versions)
        settle(page, View("label-field", versions), pending)
        field = page.locator("#label-name")
        valid = field.evaluate(
            "(input, names) => names.map((name) => { input.value = name; return input.checkValidity(); })",
            LABEL_SAMPLES,
        )
        assert {n: v for n, v in zip(LABEL_SAMPLES, valid, strict=True) if v != api_accepts(n)} == {}
        # Other rules the translation handles compile under `v` too (a class's `-`, `{`, `]`...).
        translated = [html_pattern(re.compile(rule)) for rule in (SLUG_RE.pattern, r"^[-.a]+\.x$", r"^a{2,}c{x}]$")]
        assert invalid_patterns(page, translated) == []

        posts: list[str] = []
        page.on("request", record := lambda request: posts.append(request.url) if request.method == "POST" else None)
        field.fill("Bad Label!")  # refused by the browser: nothing is posted
        page.get_by_role("button", name="Set label").click()
        page.wait_for_timeout(200)
        assert posts == [] and field.evaluate("input => input.matches(':invalid')")

        field.fill(" Canary ")  # accepted, and the API canonicalises it
        page.get_by_role("button", name="Set label").click()
        expect(page.locator("#profile-labels tbody th")).to_have_text(["canary"])
        assert len(posts) == 1
        page.remove_listener("request", record)
        watch.assert_clean()
