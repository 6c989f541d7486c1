"""Browser interactions: cancelling a running turn, the keyboard, the report card, inline errors, a narrow window.

Chromium (Debian's, headless) through Playwright's sync API against real daphne processes, like
test_browser.py; every test fails on a console error, an uncaught page error or a JavaScript dialog.
The fixtures of test_browser.py are not visible here, so the small ones are declared again on top of
the shared helpers (tests/e2e/browser.py, tests/e2e/helpers.py, tests/e2e/server.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from .browser import (
    TIMEOUT_MS,
    api,
    ask,
    current_conv_id,
    new_page,
    open_app,
    select_profile,
    send,
    session_login,
    shot,
    wait_turns,
)
from .helpers import make_user, seed
from .server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SLOW_DELAY = "0.3"  # seconds between two offline chunks (3 words each) on the `slow_server`
LONG_PROMPT = "Please tell me, in great detail and at length, everything you know about stock rotation"
BROKEN_PATCH = {
    "ai-chat": {"ai-api-type": "openai", "ai-timeout-seconds": 2},
    "openai-chat": {"openai-base-url": "http://127.0.0.1:9/v1"},  # the discard port: connection refused
}
REPORT_FIGURES = {
    "sku_count": "10",
    "total_units": "59",
    "retail_value": "816.41",
    "cost_basis": "256.00",
    "potential_profit": "560.41",
    "low_stock_count": "5",
    "out_of_stock_count": "2",
    "sales_total": "169.83",
}
REPORT_LABELS = [
    "SKUs",
    "Units",
    "Retail value",
    "Cost basis",
    "Potential profit",
    "Low stock (≤ 3)",
    "Out of stock",
    "Sales total",
]
UNREACHABLE = {
    "registry": "default",
    "slug": "unreachable",
    "display_name": "Unreachable",
    "description": "An OpenAI-compatible engine nobody listens to.",
    "runtime": {"system_prompt": "You are a concise assistant.", "step_settings_patch": BROKEN_PATCH},
}


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def _slow_server_process(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """A second daphne whose offline engine is slow enough for a turn to be cancelled mid-answer."""
    server = LiveServer(env={"CHAT_OFFLINE_DELAY_SECONDS": SLOW_DELAY}).start()
    yield server
    server.stop()


@pytest.fixture
def slow_server(_slow_server_process, transactional_db) -> LiveServer:
    return _slow_server_process


@pytest.fixture
def alice(transactional_db):
    """Seed registries and inventory; a superuser with a DRF token (committed: the servers see them)."""
    seed()
    return make_user("alice", superuser=True)


@pytest.fixture
def open_ui(browser, alice) -> Iterator[Callable[..., SimpleNamespace]]:
    """open_ui(server, viewport=None): a fresh browser context signed in as alice, with the chat socket's
    client frames recorded (`sent`, parsed JSON)."""
    user = get_user_model().objects.get(pk=alice.pk)
    contexts = []

    def _open(server: LiveServer, *, viewport: dict[str, int] | None = None) -> SimpleNamespace:
        context, page, watch = new_page(browser, server.url)
        contexts.append(context)
        if viewport:
            page.set_viewport_size(viewport)
        session_login(context, server.url, user)
        sent: list[dict] = []

        def on_socket(ws) -> None:
            if "/ws/chat/" in ws.url:
                ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

        page.on("websocket", on_socket)
        return SimpleNamespace(context=context, page=page, watch=watch, url=server.url, sent=sent)

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def ui(open_ui, daphne_server) -> SimpleNamespace:
    return open_ui(daphne_server)


def sent_types(ui: SimpleNamespace, kind: str) -> list[dict]:
    return [frame for frame in ui.sent if frame.get("type") == kind]


def wait_sent(ui: SimpleNamespace, kind: str, count: int = 1) -> list[dict]:
    """Wait until the page has sent `count` client frames of type `kind` (websocket events are async)."""
    for _ in range(TIMEOUT_MS // 50):
        if len(sent_types(ui, kind)) >= count:
            break
        ui.page.wait_for_timeout(50)
    frames = sent_types(ui, kind)
    assert len(frames) == count, f"{kind}: {frames}"
    return frames


def normalise(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------- tests


def test_stop_ends_the_running_turn_and_keeps_its_partial_text(open_ui, slow_server, daphne_server, alice):
    ui = open_ui(slow_server)
    page = ui.page
    open_app(page)
    cancel = page.get_by_test_id("stop")
    expect(cancel).to_be_hidden()

    send(page, LONG_PROMPT)
    turn = page.get_by_test_id("turn").first
    expect(turn).to_have_attribute("data-status", "running")
    expect(turn.get_by_test_id("turn-status")).to_have_text("Answering…")
    expect(cancel).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(turn.get_by_test_id("answer-text")).to_contain_text("You said")  # a first delta arrived
    assert sent_types(ui, "chat.cancel") == []

    cancel.click()
    assert wait_sent(ui, "chat.cancel") == [{"type": "chat.cancel"}]
    expect(turn).to_have_attribute("data-status", "cancelled")
    expect(turn.get_by_test_id("turn-status")).to_have_text("Stopped")
    expect(turn.locator(".turn-note")).to_have_text("Stopped.")
    expect(turn.get_by_test_id("turn-error")).to_have_count(0)
    expect(turn.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "default")
    expect(turn.get_by_test_id("answer-marker")).to_contain_text("Stopped on")
    expect(cancel).to_be_hidden()
    shot(page, "cancelled-turn")

    status, stored = api(slow_server.url, "GET", f"/api/chat/conversations/{current_conv_id(page)}", alice.token)
    assert status == 200
    assert [(t["prompt"], t["status"]) for t in stored["turns"]] == [(LONG_PROMPT, "cancelled")]
    partial = stored["turns"][0]["text"]
    # The whole answer, for reference: the same prompt in another conversation on the fast server.
    status, conv = api(daphne_server.url, "POST", "/api/chat/conversations", alice.token, {})
    assert status == 201
    path = f"/api/chat/conversations/{conv['conv_id']}/messages?wait=1"
    status, reference = api(daphne_server.url, "POST", path, alice.token, {"prompt": LONG_PROMPT})
    assert (status, reference["status"]) == (200, "completed")
    full = reference["text"]
    assert partial and len(partial) < len(full) and full.startswith(partial), (partial, full)
    assert normalise(turn.get_by_test_id("answer-text").inner_text()) == normalise(partial)
    assert len(sent_types(ui, "chat.send")) == 1
    ui.watch.assert_clean()


def test_keyboard_shift_enter_adds_a_line_enter_sends_and_focus_stays(ui):
    page = ui.page
    open_app(page)
    box = page.get_by_test_id("composer-input")
    expect(box).to_have_accessible_name("Message")
    expect(box).to_have_accessible_description(
        "Enter sends the message; Shift+Enter starts a new line; Escape stops an answer."
    )
    expect(page.get_by_test_id("send")).to_have_accessible_name("Send")
    expect(page.get_by_role("button", name="Send", exact=True)).to_have_attribute("type", "submit")
    expect(page.get_by_role("button", name="Profile: Default · follows latest (v1)")).to_have_attribute(
        "aria-haspopup", "dialog"
    )

    box.click()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.get_by_test_id("turn")).to_have_count(0)

    page.keyboard.press("Enter")
    wait_turns(page, 1)
    first = page.get_by_test_id("turn").first
    assert first.get_by_test_id("user-text").text_content() == "first line\nsecond line"
    # One chat.send only, with both lines: Shift+Enter did not send "first line" on its own.
    assert [f["prompt"] for f in wait_sent(ui, "chat.send")] == ["first line\nsecond line"]
    expect(box).to_have_value("")
    expect(box).to_be_focused()

    # Still focused: typing and Enter, with no click, sends the next message.
    page.keyboard.type("third line")
    page.keyboard.press("Enter")
    wait_turns(page, 2)
    expect(page.get_by_test_id("user-text")).to_have_text(["first line second line", "third line"])
    assert [f["prompt"] for f in wait_sent(ui, "chat.send", 2)] == ["first line\nsecond line", "third line"]
    expect(box).to_be_focused()
    expect(page.get_by_test_id("turn")).to_have_count(2)
    ui.watch.assert_clean()


def test_inventory_report_card_shows_the_figures(ui):
    page = ui.page
    open_app(page, "/inventory/")
    ask(page, "inventory report since 2026-02-08")
    turn = page.get_by_test_id("turn").first
    expect(turn.get_by_test_id("tool-call")).to_have_attribute("data-tool-name", "inventory_report")
    card = turn.locator("[data-testid=artifact][data-kind=report]")
    expect(card).to_have_count(1)
    report = card.get_by_test_id("artifact-report")
    for key, value in REPORT_FIGURES.items():
        expect(report.locator(f"[data-figure={key}] dd"), key).to_have_text(value)
    expect(report.locator("[data-figure] dt")).to_have_text(REPORT_LABELS)
    expect(report.locator("[data-figure=low_stock_count]")).to_have_class(re.compile(r"\bis-warn\b"))
    expect(report.locator("[data-figure=out_of_stock_count]")).to_have_class(re.compile(r"\bis-danger\b"))
    expect(card).to_contain_text("Sales since 2026-02-08")
    expect(turn.get_by_test_id("answer-text")).to_contain_text("169.83")
    card.scroll_into_view_if_needed()
    shot(page, "inventory-report-card")
    ui.watch.assert_clean()


def test_failed_turn_and_error_frame_are_shown_inline(ui, alice):
    status, created = api(ui.url, "POST", "/api/chat/profiles", alice.token, UNREACHABLE)
    assert status == 201, created
    page = ui.page
    open_app(page)
    select_profile(page, "unreachable")
    expect(page.get_by_test_id("engine-label")).to_have_text("openai · gpt-4o-mini")

    send(page, "hello over there")
    wait_turns(page, 1, "failed")
    first = page.get_by_test_id("turn").first
    expect(first.get_by_test_id("turn-status")).to_have_text("Failed")
    error = first.get_by_test_id("turn-error")
    expect(error).to_have_count(1)
    expect(error).to_have_attribute("role", "alert")
    conv_id = current_conv_id(page)
    stored = api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", alice.token)[1]["turns"][0]
    assert (stored["status"], stored["runtime_key"]) == ("failed", "unreachable")
    assert stored["error"]["code"] == "connection_error"
    assert stored["error"]["message"].startswith("could not reach the provider at 127.0.0.1:9")
    expect(error.get_by_test_id("turn-error-text")).to_have_text("The model's server could not be reached.")
    error.get_by_test_id("turn-error-details").click()  # the code and the raw message are in the record
    record = page.get_by_test_id("runtime-panel")
    expect(record.get_by_test_id("runtime-error")).to_have_text(f"connection_error: {stored['error']['message']}")
    page.keyboard.press("Escape")
    expect(first.get_by_test_id("answer-marker")).to_have_attribute("data-runtime-key", "unreachable")
    shot(page, "turn-failed")

    # The conversation stays usable: the next message, on the default profile, is answered.
    select_profile(page, "default")
    ask(page, "hello again")
    second = page.get_by_test_id("turn").nth(1)
    expect(second.get_by_test_id("switch-notice")).to_contain_text("Runtime switched: unreachable v1 → default v1")
    expect(second.get_by_test_id("answer-text")).to_contain_text("(offline · concise assistant)")
    expect(second.get_by_test_id("turn-error")).to_have_count(0)

    # An `error` frame (a policy violation: the default profile allows no request overrides) is shown
    # inline, creates no turn and leaves the page working.
    page.evaluate(
        """() => window.__chat.socket.send({type: "chat.send", prompt: "override this",
                                             request_overrides: {system_prompt: "Be someone else."}})"""
    )
    notice = page.get_by_test_id("error-notice")
    expect(notice).to_have_count(1)
    expect(notice).to_have_text("this profile does not allow request overrides")
    expect(notice).to_have_attribute("data-code", "policy_violation")
    expect(notice).to_have_attribute("role", "alert")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("turn")).to_have_count(2)
    shot(page, "error-frame")

    ask(page, "and once more")
    expect(page.get_by_test_id("turn")).to_have_count(3)
    expect(page.get_by_test_id("turn").nth(2).get_by_test_id("answer-text")).to_contain_text("and once more")
    stored = api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", alice.token)[1]["turns"]
    assert [(t["prompt"], t["status"]) for t in stored] == [
        ("hello over there", "failed"),
        ("hello again", "completed"),
        ("and once more", "completed"),
    ]
    ui.watch.assert_clean()


def test_narrow_window_puts_the_list_in_a_drawer_beside_a_full_width_chat(open_ui, daphne_server):
    ui = open_ui(daphne_server, viewport={"width": 600, "height": 900})
    page = ui.page
    open_app(page)
    sidebar = page.get_by_test_id("sidebar")
    expect(sidebar).to_be_hidden()  # a drawer, closed
    chat = page.locator(".chat-panel").bounding_box()
    assert chat["width"] == pytest.approx(600, abs=1), chat
    assert page.evaluate("document.documentElement.scrollWidth") <= 600  # nothing sticks out sideways

    toggle = page.get_by_test_id("drawer-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_be_focused()

    composer = page.get_by_test_id("composer")
    box = composer.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 600 and box["width"] > 560, box
    assert box["y"] + box["height"] <= 900, box  # at the bottom of the window, without scrolling
    page.get_by_test_id("composer-input").fill("hello from a narrow window")
    page.get_by_test_id("send").click()  # the button, not Enter: it must be reachable
    wait_turns(page, 1)
    turn = page.get_by_test_id("turn").first
    expect(turn.get_by_test_id("user-text")).to_have_text("hello from a narrow window")
    expect(turn.get_by_test_id("answer-text")).to_contain_text("(offline · concise assistant)")
    expect(page.get_by_test_id("composer-input")).to_have_value("")
    expect(page.get_by_test_id("composer-input")).to_be_in_viewport()
    shot(page, "chat-narrow-600")
    ui.watch.assert_clean()
