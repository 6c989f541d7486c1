"""The browser UI against a real daphne: choosing a profile really changes the conversation.

Chromium (Debian's, headless) through Playwright's sync API. Every test fails on a console error,
an uncaught page error or a JavaScript dialog. Screenshots go to tests/e2e/artifacts/ (the README's
come from test_every_page.py).
"""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from playwright.sync_api import Page, expect
from rest_framework.authtoken.models import Token

from tests.helpers import import_seed

from .browser import (
    api,
    ask,
    choose_profile,
    current_conv_id,
    form_login,
    new_page,
    open_app,
    select_profile,
    send,
    session_login,
    shot,
    wait_ready,
    wait_turns,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PASSWORD = "a browser test password"
LOW_STOCK = ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]


@pytest.fixture
def user(daphne_server, django_user_model):
    """Seed registries and inventory; a superuser (it has inventory.change_item and the profile perms)."""
    import_seed()
    call_command("inventory_seed", stdout=io.StringIO())
    return django_user_model.objects.create_superuser("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def ui(browser, daphne_server, user):
    """A fresh browser context (cookies, localStorage) per test, signed in as `user`."""
    context, page, watch = new_page(browser, daphne_server.url)
    session_login(context, daphne_server.url, user)
    yield SimpleNamespace(context=context, page=page, watch=watch, url=daphne_server.url)
    context.close()


def get_json(page: Page, path: str):
    """GET with the page's own session cookies."""
    response = page.request.get(path)
    assert response.ok, f"{path}: {response.status} {response.text()}"
    return response.json()


def normalise(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------- tests


def test_login_then_selector_lists_profiles_and_shows_the_servers_choice(browser, daphne_server, user):
    # The server process checks passwords with the default hashers (this process has only the fast MD5 one).
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    context, page, watch = new_page(browser, daphne_server.url)
    try:
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
        form_login(page, "alice", "not the password")
        expect(page.get_by_test_id("login-error")).to_be_visible()
        shot(page, "login-error")

        form_login(page, "alice", PASSWORD)
        wait_ready(page)
        expect(page).to_have_url(re.compile(r"/#conv=[0-9a-f-]{36}$"))
        expect(page.get_by_test_id("username")).to_have_text("alice")
        expect(page.get_by_test_id("nav-admin")).to_be_visible()

        current = get_json(page, "/api/chat/profile")
        assert (current["slug"], current["source"]) == ("default", "default")
        picker = page.get_by_test_id("profile-picker")
        expect(picker).to_have_attribute("data-default", current["slug"])
        expect(picker).to_have_attribute("data-runtime-key", "default")
        expect(picker).to_have_accessible_name("Profile: Default · follows latest (v1)")
        expect(page.get_by_test_id("empty-state-profile")).to_have_text(
            f"Default answers: {current['profile']['description']}"
        )
        expect(page.get_by_test_id("engine-label")).to_have_text("offline · offline-v1")
        picker.click()  # the picker lists the profiles, each with its description
        options = page.get_by_test_id("picker-profile")
        expect(options.locator(".picker-option-name")).to_have_text(["Agent", "Analyst", "Default"])
        expect(options.locator("input:checked")).to_have_value("default")
        expect(page.locator("[data-testid=picker-profile][data-slug=default]")).to_contain_text(
            current["profile"]["description"]
        )
        page.get_by_test_id("picker-cancel").click()
        expect(page.get_by_test_id("profile-panel")).to_be_hidden()
        shot(page, "chat-empty")

        # A narrow window: the conversation list becomes a drawer behind a button; the chat keeps the width.
        page.set_viewport_size({"width": 640, "height": 900})
        expect(page.get_by_test_id("sidebar")).to_be_hidden()
        expect(page.get_by_test_id("drawer-toggle")).to_be_visible()
        composer = page.get_by_test_id("composer").bounding_box()
        assert composer["width"] > 600 and composer["y"] + composer["height"] <= 900
        shot(page, "chat-narrow")

        page.get_by_test_id("logout").click()
        expect(page).to_have_url(re.compile(r"/accounts/login/$"))
        watch.assert_clean()
    finally:
        context.close()


def test_selected_profile_answers_and_switching_it_switches_the_runtime(ui, token):
    page = ui.page
    open_app(page)
    select_profile(page, "analyst")
    assert get_json(page, "/api/chat/profile")["source"] == "selection"
    expect(page.get_by_test_id("profile-picker")).to_have_attribute("data-profile-version", "1")
    expect(page.get_by_test_id("starter-chip")).to_have_text(
        ["Compare two options and recommend one", "What is 17.5% of 2,340?"]
    )

    page.get_by_test_id("starter-chip").nth(1).click()  # the profile's starter suggestion is sent
    wait_turns(page, 1)
    first = page.get_by_test_id("turn").nth(0)
    expect(first.get_by_test_id("user-text")).to_have_text("What is 17.5% of 2,340?")
    expect(first.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "analyst")
    expect(first.get_by_test_id("answer-marker")).to_contain_text("analyst")
    expect(first.get_by_test_id("answer-text")).to_contain_text("409.5")
    expect(first.get_by_test_id("tool-call")).to_have_attribute("data-tool-name", "calculator")
    expect(first.get_by_test_id("suggestion-chip").first).to_be_visible()

    conv_id = current_conv_id(page)
    status, stored = api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", token)
    assert status == 200
    assert [(t["runtime_key"], t["profile_version"]) for t in stored["turns"]] == [("analyst", 1)]

    select_profile(page, "default")
    ask(page, "Hello again")
    second = page.get_by_test_id("turn").nth(1)
    expect(second.get_by_test_id("switch-notice")).to_contain_text("Runtime switched: analyst v1 → default v1")
    expect(second.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "default")
    expect(second.get_by_test_id("answer-text")).to_contain_text("(offline · concise assistant)")
    expect(page.get_by_test_id("switch-notice")).to_have_count(1)

    status, stored = api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", token)
    assert [t["runtime_key"] for t in stored["turns"]] == ["analyst", "default"]
    assert stored["turns"][1]["text"].startswith("(offline · concise assistant)")
    shot(page, "chat")

    # Reloaded, the markers come from the stored turns.
    page.reload()
    wait_ready(page)
    markers = page.get_by_test_id("answer-marker")
    expect(markers.nth(0)).to_have_attribute("data-runtime-key", "analyst")
    expect(markers.nth(1)).to_have_attribute("data-runtime-key", "default")
    expect(page.get_by_test_id("switch-notice")).to_have_count(1)
    ui.watch.assert_clean()


def test_stale_selection_falls_back_to_the_default_and_says_so(ui, token):
    page = ui.page
    open_app(page)
    select_profile(page, "agent")
    status, _ = api(ui.url, "DELETE", "/api/chat/profiles/agent", token)
    assert status == 204

    page.reload()
    wait_ready(page)
    picker = page.get_by_test_id("profile-picker")
    expect(picker).to_have_attribute("data-default", "default")
    assert get_json(page, "/api/chat/profile")["source"] == "default"
    notice = page.get_by_test_id("profile-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Profile 'Agent' is no longer available; using the default 'Default'")
    expect(picker).to_have_attribute("data-runtime-key", "default")
    picker.click()
    expect(page.get_by_test_id("picker-profile").locator(".picker-option-name")).to_have_text(["Analyst", "Default"])
    page.keyboard.press("Escape")
    shot(page, "stale-selection")

    # Selecting a profile that was deleted while the page was open: 404, the server's choice is shown.
    status, _ = api(ui.url, "DELETE", "/api/chat/profiles/analyst", token)
    assert status == 204
    ui.watch.allow(
        r"^console error: Failed to load resource: .* 404 \(Not Found\) \(http://[^)]+/api/chat/profile.*\)$"
    )
    picker.click()
    page.locator("[data-testid=picker-profile][data-slug=analyst] input").check()
    page.get_by_test_id("picker-apply").click()
    expect(notice).to_contain_text("Profile 'Analyst' is no longer available; using 'Default'")
    expect(picker).to_have_attribute("data-default", "default")
    expect(picker).to_have_attribute("data-runtime-key", "default")
    picker.click()
    expect(page.get_by_test_id("picker-profile").locator(".picker-option-name")).to_have_text(["Default"])
    ui.watch.assert_clean()


def test_conversation_profile_sidebar_rename_and_switch(ui, token):
    page = ui.page
    open_app(page)
    picker = page.get_by_test_id("profile-picker")
    expect(picker).to_have_attribute("data-scope", "default")
    choose_profile(page, "agent", scope="conversation")  # profile.select over the socket; a new ws.hello confirms it
    expect(picker).to_have_attribute("data-profile", "agent")
    expect(picker).to_have_attribute("data-default", "default")  # the user's profile is unchanged
    assert get_json(page, "/api/chat/profile")["slug"] == "default"

    ask(page, "what is 6*7?")
    expect(page.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "agent")
    first_id = current_conv_id(page)
    status, stored = api(ui.url, "GET", f"/api/chat/conversations/{first_id}", token)
    assert status == 200
    assert {k: stored["profile_selection"][k] for k in ("registry", "slug")} == {"registry": "default", "slug": "agent"}
    assert stored["turns"][0]["runtime_key"] == "agent"

    item = page.locator(f"[data-testid=conversation-item][data-conv-id='{first_id}']")
    expect(item.get_by_test_id("conversation-title")).to_have_text("what is 6*7?")  # titled from the prompt
    expect(item.get_by_test_id("conversation-choice")).to_have_text("Agent · latest")
    item.get_by_test_id("rename-conversation").click()
    page.get_by_test_id("conversation-title-input").fill("Agent arithmetic")
    page.get_by_test_id("conversation-title-input").press("Enter")
    expect(item.get_by_test_id("conversation-title")).to_have_text("Agent arithmetic")
    assert api(ui.url, "GET", f"/api/chat/conversations/{first_id}", token)[1]["title"] == "Agent arithmetic"

    page.get_by_test_id("new-conversation").click()
    page.wait_for_function("id => window.__chat.app.conv.conv_id !== id", arg=first_id)
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    expect(picker).to_have_attribute("data-runtime-key", "default")
    expect(picker).to_have_attribute("data-scope", "default")
    expect(page.get_by_test_id("conversation-item")).to_have_count(2)

    item.locator(".conv-open").click()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    expect(picker).to_have_attribute("data-scope", "conversation")
    expect(picker).to_have_attribute("data-runtime-key", "agent")
    expect(page.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "agent")

    choose_profile(page, "default", scope="default")  # "My default" again: profile.select with slug null
    expect(item.get_by_test_id("conversation-choice")).to_have_text("My default (Default)")
    assert api(ui.url, "GET", f"/api/chat/conversations/{first_id}", token)[1]["profile_selection"] is None
    ui.watch.assert_clean()


def test_inventory_page_low_stock_artifact_and_live_refresh_after_a_sale(ui, token):
    page = ui.page
    open_app(page, "/inventory/")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.evaluate("window.__noReload = 'still here'")

    row = page.locator("[data-testid=item-row][data-sku='A-1002']")
    expect(row.get_by_test_id("item-qty")).to_have_attribute("data-qty", "2")
    expect(row).to_have_class(re.compile(r"\bstock-low\b"))
    expect(page.locator("[data-testid=item-row][data-sku='A-1021']")).to_have_class(re.compile(r"\bstock-out\b"))
    expect(page.get_by_test_id("item-row")).to_have_count(10)
    expect(page.locator("[data-testid=report] [data-figure=total_units] dd")).to_have_text("59")

    ask(page, "which items are low on stock?")
    table = page.get_by_test_id("artifact-table")
    expect(table.locator("tbody tr")).to_have_count(5)
    assert table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.sku)") == LOW_STOCK
    page.get_by_test_id("tool-call").first.evaluate("node => node.scrollIntoView({block: 'start'})")
    shot(page, "inventory")

    ask(page, "record a sale of 2 A-1002")
    expect(page.get_by_test_id("artifact-item").last).to_have_attribute("data-sku", "A-1002")
    expect(row.get_by_test_id("item-qty")).to_have_attribute("data-qty", "0")
    expect(row).to_have_class(re.compile(r"\bstock-out\b"))
    expect(page.locator("[data-testid=report] [data-figure=total_units] dd")).to_have_text("57")
    assert page.evaluate("window.__noReload") == "still here"
    assert navigations == []

    # A write from elsewhere (another client's REST call) reaches the open page too.
    expect(page.get_by_test_id("inventory-panel")).to_have_attribute("data-live", "on")
    assert api(ui.url, "POST", "/inventory/api/sales", token, {"sku": "B-2001", "qty": 4})[0] == 201
    b2001 = page.locator("[data-testid=item-row][data-sku='B-2001']")
    expect(b2001.get_by_test_id("item-qty")).to_have_attribute("data-qty", "10")
    expect(page.locator("[data-testid=report] [data-figure=total_units] dd")).to_have_text("53")
    assert page.evaluate("window.__noReload") == "still here"

    # The search box and the category filter ask the same API.
    page.get_by_test_id("items-search").fill("mug")
    expect(page.get_by_test_id("item-row")).to_have_count(2)
    page.get_by_test_id("items-search").fill("")
    page.get_by_test_id("items-category").select_option("Home")
    expect(page.get_by_test_id("item-row")).to_have_count(2)
    shot(page, "inventory-after-sale")
    ui.watch.assert_clean()


MARKDOWN_ATTACKS = [
    "https://x.com/[a](https://y.com/onmouseover=location='javascript:alert%281%29'//)",
    '[a](https://y.com/"onmouseover="alert(1)) https://z.com/[b](https://q.com/x"y)',
    "`https://a.com/` [c`d`](https://b.com/`x`) https://c.com/**bold**",
    "[x](javascript:alert(1)) [y](data:text/html,<script>alert(1)</script>) <svg onload=alert(1)>",
    # Tables, headings, quotes, lists and code carry no markup of their own either.
    "| a <img src=x onerror=alert(1)> | [b](javascript:alert(1)) |\n|:--|--:|\n| <script>alert(1)</script> | `<b>` |",
    "# <a href=javascript:alert(1)>h</a>\n> <iframe src=https://evil.example></iframe>\n> - [q](vbscript:x)",
    "- a\n  - <style>*{display:none}</style>\n    1. ![i](https://evil.example/p.png) <img src=x>",
    "```html\n<script>alert(1)</script><img src=x onerror=alert(1)>\n```\n[m](mailto:ann@example.com) [r](/admin/)",
    '<a href="https://x.com" onclick="alert(1)">x</a> <div style="position:fixed">y</div> &lt;b&gt;',
]
MARKDOWN_TAGS = [
    "P", "BR", "STRONG", "EM", "DEL", "S", "CODE", "PRE", "BLOCKQUOTE", "HR", "UL", "OL", "LI", "A",
    "H3", "H4", "H5", "H6", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "SPAN",
]  # fmt: skip


def test_markdown_never_creates_handlers_or_script_links(ui):
    """The renderer, run in the real browser on crafted input (an LLM reply can echo anything)."""
    page = ui.page
    open_app(page)
    rendered = {}
    for attack in MARKDOWN_ATTACKS:
        found = page.evaluate(
            r"""async ([source, ALLOWED]) => {
                const { renderMarkdown } = await import("/static/chat/markdown.js");
                const box = document.createElement("div");
                box.innerHTML = renderMarkdown(source);
                const bad = [];
                for (const node of box.querySelectorAll("*")) {
                    for (const attr of node.attributes) {
                        if (attr.name.startsWith("on")) bad.push(`${node.tagName} ${attr.name}`);
                    }
                    if (!ALLOWED.includes(node.tagName)) bad.push(node.tagName);
                    if (node.tagName === "A" && !/^(https?:\/\/|mailto:)/.test(node.getAttribute("href"))) bad.push("href");
                    if (node.tagName === "A" && node.getAttribute("rel") !== "noopener noreferrer nofollow") bad.push("rel");
                    if (node.hasAttribute("style") || node.hasAttribute("src")) bad.push(`${node.tagName} style/src`);
                    if (node.tagName === "A" && node.querySelector("a")) bad.push("nested link");
                }
                return { bad, tags: [...new Set([...box.querySelectorAll("*")].map((n) => n.tagName))].sort() };
            }""",
            [attack, MARKDOWN_TAGS],
        )
        assert found["bad"] == [], (attack, found)
        rendered[attack] = found["tags"]
    # The constructs themselves are rendered (and only then sanitised): a table, a heading, a quote, nested lists.
    assert {"TABLE", "TH", "TD", "CODE"} <= set(rendered[MARKDOWN_ATTACKS[4]])
    assert {"H3", "BLOCKQUOTE", "UL"} <= set(rendered[MARKDOWN_ATTACKS[5]])
    assert {"UL", "OL", "LI"} <= set(rendered[MARKDOWN_ATTACKS[6]])
    assert "IMG" not in rendered[MARKDOWN_ATTACKS[6]]
    ui.watch.assert_clean()


def test_html_in_a_message_is_shown_as_text(ui):
    page = ui.page
    open_app(page)
    message = "**b** <img src=x onerror=alert(1)> [x](javascript:alert(1)) [d](https://e.com)"
    ask(page, message)
    turn = page.get_by_test_id("turn").first
    expect(turn.get_by_test_id("user-text")).to_have_text(message)
    answer = turn.get_by_test_id("answer-text")
    expect(answer).to_contain_text("<img src=x onerror=alert(1)>")
    expect(answer.locator("strong")).to_have_text("b")
    messages = page.get_by_test_id("messages")
    expect(messages.locator("img")).to_have_count(0)
    expect(messages.locator("a[href^='javascript']")).to_have_count(0)
    expect(answer.locator("a")).to_have_attribute("href", "https://e.com")
    page.wait_for_timeout(200)  # an onerror handler would have fired by now
    shot(page, "html-as-text")
    ui.watch.assert_clean()


def test_reconnect_replays_missed_frames_without_duplicates(ui, token):
    page = ui.page
    open_app(page)
    ask(page, "first message")
    connects = page.evaluate("window.__chat.socket.connects")

    page.evaluate("window.__chat.socket.ws.close()")
    page.wait_for_function("n => window.__chat.socket.connects > n", arg=connects)
    ask(page, "second message")

    # Drop the socket right after sending: the whole turn happens while it is away and is replayed.
    connects = page.evaluate("window.__chat.socket.connects")
    page.evaluate("() => { window.__chat.app.send('third message'); window.__chat.socket.ws.close(); }")
    page.wait_for_function("n => window.__chat.socket.connects > n", arg=connects)
    wait_turns(page, 3)

    expect(page.get_by_test_id("user-text")).to_have_text(["first message", "second message", "third message"])
    expect(page.get_by_test_id("turn")).to_have_count(3)
    expect(page.get_by_test_id("answer-text")).to_have_count(3)
    expect(page.get_by_test_id("error-notice")).to_have_count(0)

    status, stored = api(ui.url, "GET", f"/api/chat/conversations/{current_conv_id(page)}", token)
    assert status == 200
    assert [t["prompt"] for t in stored["turns"]] == ["first message", "second message", "third message"]
    shown = page.get_by_test_id("answer-text").all_inner_texts()
    assert [normalise(t) for t in shown] == [normalise(t["text"]) for t in stored["turns"]]
    send(page, "fourth message")
    wait_turns(page, 4)
    expect(page.get_by_test_id("turn")).to_have_count(4)
    shot(page, "reconnect")
    ui.watch.assert_clean()
