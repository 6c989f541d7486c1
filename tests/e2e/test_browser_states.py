"""A chat UI that always tells the state (issue #18, point 5), in Debian's Chromium against real daphne:
a turn that ended while the tab was away shows its end when it reconnects, an offline banner and pending
bubbles for what is typed meanwhile (sent on reconnect, or discarded with a notice), Stop in place of Send,
one profile picker (scope and version) whose choice the sidebar shows, room for the transcript on a phone,
plain words in the transcript (details in the record), plain titles grouped by day, and room for the chat
beside the inventory.

Every test fails on a console error, an uncaught page error or a JavaScript dialog (tests/e2e/browser.py).
The tests that stop a server use one of their own (`restartable`), never the shared one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from playwright.sync_api import Page, expect

from chat.models import Conversation, Turn
from chat.services import turns_mark_interrupted
from profiles import services as profile_services
from tests.chat.factories import turns_counted

from .browser import (
    DESKTOP,
    PHONE,
    api,
    ask,
    axe_violations,
    choose_profile,
    current_conv_id,
    new_page,
    open_app,
    send,
    session_login,
    shot,
    wait_turns,
)
from .helpers import make_user, seed
from .server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SLOW_DELAY = "0.3"  # seconds between two offline chunks: a long answer runs for a few seconds
LONG_PROMPT = "Please tell me, in great detail and at length, everything you know about stock rotation"
BACK_MS = 25_000  # a restarted server and the socket's backoff (at most 5 s) on a loaded machine
UNREACHABLE = {
    "registry": "default",
    "slug": "unreachable",
    "display_name": "Unreachable",
    "description": "An OpenAI-compatible engine nobody listens to.",
    "runtime": {
        "system_prompt": "You are a concise assistant.",
        "step_settings_patch": {
            "ai-chat": {"ai-api-type": "openai", "ai-timeout-seconds": 2},
            "openai-chat": {"openai-base-url": "http://127.0.0.1:9/v1"},  # the discard port: connection refused
        },
    },
}


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def _restartable_process(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """A daphne of this module's own, slow enough for a turn to be running when it stops."""
    server = LiveServer(env={"CHAT_OFFLINE_DELAY_SECONDS": SLOW_DELAY}).start()
    yield server
    server.stop()


@pytest.fixture
def restartable(_restartable_process, transactional_db) -> Iterator[LiveServer]:
    """That server, running (a test that failed while it was stopped does not leave it stopped)."""
    server = _restartable_process
    if server.process is None or server.process.poll() is not None:
        server.start()
    yield server
    if server.process is None or server.process.poll() is not None:
        server.start()


@pytest.fixture
def alice(transactional_db):
    """The seed (registries, inventory) and a superuser with a DRF token, committed for the servers."""
    seed()
    return make_user("alice", superuser=True)


@pytest.fixture
def open_ui(browser, daphne_server, alice) -> Iterator[Callable[..., SimpleNamespace]]:
    """open_ui(server=None, viewport=DESKTOP, **context options): a fresh context signed in as alice, with
    the chat socket's client frames recorded (`sent`). Every context is closed whatever the outcome."""
    contexts = []
    user = get_user_model().objects.get(pk=alice.pk)

    def _open(server: LiveServer | None = None, *, viewport=None, **options) -> SimpleNamespace:
        target = server or daphne_server
        context, page, watch = new_page(browser, target.url, viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        session_login(context, target.url, user)
        sent: list[dict] = []
        page.on(
            "websocket",
            lambda ws: ws.on("framesent", lambda p: sent.append(json.loads(p))) if "/ws/chat/" in ws.url else None,
        )
        return SimpleNamespace(context=context, page=page, watch=watch, url=target.url, sent=sent)

    yield _open
    for context in contexts:
        context.close()


def stored_turns(url: str, token: str, conv_id: str) -> list[dict]:
    status, body = api(url, "GET", f"/api/chat/conversations/{conv_id}", token)
    assert status == 200, body
    return body["turns"]


def sent_prompts(ui: SimpleNamespace) -> list[str]:
    return [frame["prompt"] for frame in ui.sent if frame.get("type") == "chat.send"]


def made_conversation(url: str, token: str, profile: str, *prompts: str) -> str:
    """A conversation of `profile` with `prompts` answered (REST), for a page to open."""
    status, created = api(url, "POST", "/api/chat/conversations", token, {"profile": profile})
    assert status == 201, created
    for prompt in prompts:
        path = f"/api/chat/conversations/{created['conv_id']}/messages?wait=1"
        status, turn = api(url, "POST", path, token, {"prompt": prompt})
        assert status == 200, turn
    return created["conv_id"]


def expect_running(page: Page) -> None:
    """The first turn is answering: its status, and a first delta on the page."""
    turn = page.get_by_test_id("turn").first
    expect(turn).to_have_attribute("data-status", "running")
    expect(turn.get_by_test_id("answer-text")).to_contain_text("You said")


# ---------------------------------------------------------------------------------------- 1. ended while away


def test_a_turn_interrupted_by_a_server_restart_shows_its_end_as_soon_as_the_tab_reconnects(
    open_ui, restartable, alice
):
    ui = open_ui(restartable)
    page = ui.page
    open_app(page)
    send(page, LONG_PROMPT)
    expect_running(page)
    turn = page.get_by_test_id("turn").first

    restartable.kill()  # the server goes away mid-answer (it cannot say how the turn ended)
    restartable.stop()  # (closes its log)
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Connection lost: reconnecting")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "reconnecting")
    expect(turn).to_have_attribute("data-status", "running")  # nobody knows yet how it ended
    shot(page, "server-away")

    assert len(turns_mark_interrupted()) == 1  # what `make run` does before it starts the server again
    restartable.start()
    expect(turn).to_have_attribute("data-status", "interrupted", timeout=BACK_MS)
    expect(banner).to_be_hidden()
    expect(turn.get_by_test_id("turn-status")).to_have_text("Interrupted")
    expect(turn.get_by_test_id("turn-error-text")).to_contain_text(
        "The server stopped while this answer was being written."
    )
    expect(turn).not_to_have_class(re.compile(r"\bis-streaming\b"))  # no cursor left blinking
    expect(page.get_by_test_id("stop")).to_be_hidden()
    shot(page, "turn-interrupted")
    stored = stored_turns(restartable.url, alice.token, current_conv_id(page))
    assert [t["status"] for t in stored] == ["interrupted"]
    ui.watch.allow(r"WebSocket connection to .* failed")  # the attempts while it was down
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 2. offline


def test_offline_a_banner_says_so_and_a_message_waits_in_a_pending_bubble_until_the_network_is_back(
    open_ui, restartable, alice
):
    ui = open_ui(restartable)
    page = ui.page
    open_app(page)
    send(page, LONG_PROMPT)
    expect_running(page)
    first = page.get_by_test_id("turn").first
    conv_id = current_conv_id(page)

    ui.context.set_offline(True)
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("You are offline")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    # The answer ends while the tab is away (the socket is closed: the page cannot hear of it).
    for _ in range(300):
        if Turn.objects.filter(conversation_id=conv_id, status="completed").exists():
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the turn did not complete on the server")
    expect(first).to_have_attribute("data-status", "running")

    send(page, "are you still there?")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_count(1)
    expect(pending.get_by_test_id("pending-text")).to_have_text("are you still there?")
    expect(pending).to_have_attribute("data-state", "waiting")
    expect(pending.get_by_test_id("pending-status")).to_have_text("Not sent yet: waiting for the connection")
    expect(page.get_by_test_id("composer-input")).to_have_value("")
    expect(page.get_by_test_id("turn")).to_have_count(1)
    assert sent_prompts(ui) == [LONG_PROMPT]  # nothing went out
    assert axe_violations(page) == []  # the banner and the pending bubble too
    shot(page, "offline-pending")

    ui.context.set_offline(False)
    expect(first).to_have_attribute("data-status", "completed")  # its end, as soon as the tab is back
    expect(banner).to_be_hidden()
    expect(pending).to_have_count(0)
    wait_turns(page, 2)
    expect(page.get_by_test_id("user-text")).to_have_text([LONG_PROMPT, "are you still there?"])
    stored = stored_turns(restartable.url, alice.token, conv_id)
    assert [(t["prompt"], t["status"]) for t in stored] == [
        (LONG_PROMPT, "completed"),
        ("are you still there?", "completed"),
    ]
    assert sent_prompts(ui) == [LONG_PROMPT, "are you still there?"]  # once each
    ui.watch.assert_clean()


def test_a_pending_message_that_cannot_be_sent_is_discarded_with_a_notice_and_its_text_kept(open_ui, alice):
    ui = open_ui()
    page = ui.page
    open_app(page)
    conv_id = current_conv_id(page)
    ui.context.set_offline(True)
    expect(page.get_by_test_id("connection-banner")).to_contain_text("You are offline")
    send(page, "a message that will not go")
    expect(page.get_by_test_id("pending-message")).to_have_count(1)

    Session.objects.all().delete()  # signed out meanwhile (elsewhere): the socket cannot come back
    ui.context.set_offline(False)
    unsent = page.get_by_test_id("unsent-notice")
    expect(unsent).to_contain_text("Not sent: “a message that will not go”. Your session has ended.")
    expect(unsent).to_contain_text("The text is back in the message box.")
    expect(page.get_by_test_id("pending-message")).to_have_count(0)
    expect(page.get_by_test_id("composer-input")).to_have_value("a message that will not go")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "closed")
    assert sent_prompts(ui) == []
    assert not Turn.objects.filter(conversation_id=conv_id).exists()

    # "Don't send" withdraws a pending message: it goes back to the message box, and nothing is sent.
    other = open_ui()
    open_app(other.page)
    other.context.set_offline(True)
    send(other.page, "never mind")
    other.page.get_by_test_id("pending-withdraw").click()
    expect(other.page.get_by_test_id("pending-message")).to_have_count(0)
    expect(other.page.get_by_test_id("composer-input")).to_have_value("never mind")
    other.context.set_offline(False)
    expect(other.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    assert sent_prompts(other) == []
    ui.watch.assert_clean()
    other.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 3. Stop


def test_stop_replaces_send_while_an_answer_runs(open_ui, restartable):
    ui = open_ui(restartable)
    page = ui.page
    open_app(page)
    send_button, stop = page.get_by_test_id("send"), page.get_by_test_id("stop")
    expect(send_button).to_be_visible()
    expect(stop).to_be_hidden()

    send(page, LONG_PROMPT)
    expect_running(page)
    expect(stop).to_be_visible()
    expect(send_button).to_be_hidden()  # in its place, not beside it
    shot(page, "stop")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(page.get_by_test_id("cancel")).to_have_count(0)

    stop.click()
    turn = page.get_by_test_id("turn").first
    expect(turn).to_have_attribute("data-status", "cancelled")
    expect(turn.get_by_test_id("turn-status")).to_have_text("Stopped")
    expect(send_button).to_be_visible()
    expect(stop).to_be_hidden()
    assert [f for f in ui.sent if f["type"] == "chat.cancel"] == [{"type": "chat.cancel"}]
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 4. one profile control


def test_one_picker_chooses_profile_scope_and_version_and_the_sidebar_shows_each_conversations_choice(open_ui, alice):
    user = get_user_model().objects.get(pk=alice.pk)
    profile_services.profile_update(registry_slug="default", slug="agent", changes={"description": "Agent, v2"})
    profile_services.label_set(registry_slug="default", slug="agent", name="production", version=1, actor=user)
    ui = open_ui()
    page = ui.page
    open_app(page)
    picker = page.get_by_test_id("profile-picker")
    expect(picker).to_have_accessible_name("Profile: Default · follows latest (v1)")
    expect(picker).to_have_attribute("data-scope", "default")
    for old in ("profile-select", "conversation-profile-select", "conversation-version-select"):
        expect(page.get_by_test_id(old)).to_have_count(0)  # one control, not three
    conv_id = current_conv_id(page)
    item = page.locator(f"[data-testid=conversation-item][data-conv-id='{conv_id}']")
    expect(item.get_by_test_id("conversation-choice")).to_have_text("My default (Default)")

    picker.click()
    panel = page.get_by_test_id("profile-panel")
    expect(panel).to_be_visible()
    versions = panel.get_by_test_id("picker-version")
    expect(versions.locator("option")).to_have_text(["Latest: follows new versions (now v1)", "Pinned to v1"])
    expect(panel.get_by_test_id("scope-default").locator("input")).to_be_checked()
    panel.locator("[data-testid=picker-profile][data-slug=agent] input").check()
    # Loaded when chosen, without a focus on the list first.
    expect(versions.locator("option")).to_have_text(
        ["Latest: follows new versions (now v2)", "production (now v1)", "Pinned to v2", "Pinned to v1"]
    )
    shot(page, "profile-picker")
    panel.get_by_test_id("scope-conversation").locator("input").check()
    versions.select_option("2")
    panel.get_by_test_id("picker-apply").click()
    expect(picker).to_have_accessible_name("Profile: Agent · pinned to v2")
    expect(picker).to_have_attribute("data-scope", "conversation")
    expect(picker).to_have_attribute("data-default", "default")  # the user's default is unchanged
    expect(item.get_by_test_id("conversation-choice")).to_have_text("Agent · pinned v2")
    ask(page, "hello from version two")
    expect(page.get_by_test_id("answer-marker")).to_have_attribute("data-profile-version", "2")

    choose_profile(page, "agent", scope="conversation", version="production")
    expect(picker).to_have_accessible_name("Profile: Agent · follows production (v1)")
    expect(item.get_by_test_id("conversation-choice")).to_have_text("Agent · production")

    # My default: this conversation follows it again, and so does every new one.
    choose_profile(page, "analyst", scope="default")
    expect(picker).to_have_accessible_name("Profile: Analyst · follows latest (v1)")
    expect(item.get_by_test_id("conversation-choice")).to_have_text("My default (Analyst)")
    assert api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", alice.token)[1]["profile_selection"] is None
    assert api(ui.url, "GET", "/api/chat/profile", alice.token)[1]["slug"] == "analyst"

    page.get_by_test_id("new-conversation").click()
    page.wait_for_function("id => window.__chat.app.conv.conv_id !== id", arg=conv_id)
    expect(picker).to_have_attribute("data-runtime-key", "analyst")
    page.reload()  # the choices are the server's: the same after a reload
    open_app(page, f"/#conv={conv_id}")
    expect(item.get_by_test_id("conversation-choice")).to_have_text("My default (Analyst)")
    expect(picker).to_have_accessible_name("Profile: Analyst · follows latest (v1)")
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 5. a phone


def test_on_a_phone_the_transcript_gets_three_quarters_of_the_height_with_the_picker_closed(
    open_ui, daphne_server, alice
):
    conv_id = made_conversation(daphne_server.url, alice.token, "agent", "What is 12 * 48?")
    for theme in ("light", "dark"):
        ui = open_ui(viewport=PHONE, color_scheme=theme)
        page = ui.page
        open_app(page, f"/#conv={conv_id}")
        expect(page.locator("html")).to_have_attribute("data-theme", theme)
        expect(page.get_by_test_id("turn")).to_have_count(1)
        messages = page.get_by_test_id("messages").bounding_box()
        assert messages["height"] >= 0.75 * PHONE["height"], messages
        picker = page.get_by_test_id("profile-picker")
        expect(picker).to_be_visible()
        expect(picker).to_be_in_viewport(ratio=1)
        toolbar = page.locator(".chat-toolbar").bounding_box()
        assert toolbar["height"] <= 56, toolbar  # one row: the list, the title, the state and the picker
        heading = page.get_by_test_id("conversation-heading").bounding_box()
        assert heading["width"] >= 100, heading  # the title stays readable beside the picker
        composer = page.get_by_test_id("composer").bounding_box()
        assert composer["y"] + composer["height"] <= PHONE["height"]

        assert axe_violations(page) == []
        shot(page, f"chat-phone-{theme}")
        picker.click()  # the panel comes up from the bottom, over the transcript
        panel = page.get_by_test_id("profile-panel")
        expect(panel).to_be_in_viewport(ratio=1)
        expect(panel.get_by_test_id("picker-version")).to_have_attribute("data-loaded", "agent")
        assert axe_violations(page) == []
        shot(page, f"profile-picker-phone-{theme}")
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(picker).to_be_focused()
        ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 6. plain words


def test_the_transcript_speaks_plain_words_and_keeps_names_codes_and_fingerprints_in_the_record(
    open_ui, daphne_server, alice
):
    assert api(daphne_server.url, "POST", "/api/chat/profiles", alice.token, UNREACHABLE)[0] == 201
    analyst = made_conversation(daphne_server.url, alice.token, "analyst", "What is 17.5% of 2,340?")
    failed = made_conversation(daphne_server.url, alice.token, "unreachable", "hello over there")
    ui = open_ui()
    page = ui.page
    open_app(page, f"/#conv={analyst}")
    expect(page.get_by_test_id("middleware-event")).to_have_text(["Suggested follow-ups"])

    choose_profile(page, "agent", scope="conversation")
    ask(page, "Mail 17.5% of 2,340 to ann@example.com")
    turn = page.get_by_test_id("turn").last
    expect(turn.get_by_test_id("middleware-event")).to_have_text(["Hid 1 e-mail address from the model", "Mode: plan"])
    expect(page.get_by_test_id("messages")).not_to_contain_text("agent_mode")
    stored = stored_turns(daphne_server.url, alice.token, analyst)[-1]
    fingerprint = stored["fingerprint"].removeprefix("sha256:")
    marker = turn.get_by_test_id("answer-marker")
    expect(turn.get_by_test_id("runtime-open")).to_have_accessible_name(re.compile(r"^Answered by agent v1 "))
    expect(marker).not_to_contain_text(fingerprint[:12])  # no fingerprint in the footer…
    turn.get_by_test_id("runtime-open").click()
    record = page.get_by_test_id("runtime-panel")
    expect(record).to_have_attribute("data-loaded", "true")
    expect(record.get_by_test_id("runtime-fingerprint")).to_contain_text(stored["fingerprint"])  # …but in the record
    expect(record.get_by_test_id("runtime-middleware-event").locator("code")).to_have_text(
        ["redact redacted", "agent_mode mode"]
    )
    page.keyboard.press("Escape")

    page.locator(f"[data-testid=conversation-item][data-conv-id='{failed}'] .conv-open").click()
    error = page.get_by_test_id("turn-error")
    expect(error.get_by_test_id("turn-error-text")).to_have_text("The model's server could not be reached.")
    expect(error).not_to_contain_text("127.0.0.1")
    expect(error).not_to_contain_text("connection_error")
    shot(page, "turn-failed-plain")
    error.get_by_test_id("turn-error-details").click()
    expect(record).to_have_attribute("data-loaded", "true")
    expect(record.get_by_test_id("runtime-error")).to_contain_text(
        "connection_error: could not reach the provider at 127.0.0.1:9"
    )
    ui.watch.assert_clean()


def test_titles_are_plain_text_and_conversations_are_grouped_by_day(open_ui, alice):
    now = datetime.now()
    for title, when in (
        ("Planned yesterday", now - timedelta(days=1)),
        ("An old one", now - timedelta(days=20)),
    ):
        stamp = int(when.replace(hour=12).timestamp() * 1000)
        conv = Conversation.objects.create(owner_id=alice.pk, mount="chat", title=title)
        Conversation.objects.filter(pk=conv.pk).update(created_at_ms=stamp, updated_at_ms=stamp)
        Turn.objects.create(
            conversation=conv, seq=1, prompt="hi", text="hello", status="completed", created_at_ms=stamp
        )
        turns_counted(conv)
    ui = open_ui()
    page = ui.page
    open_app(page)  # the newest one opens: "Planned yesterday"; "New" makes another
    first = current_conv_id(page)
    page.get_by_test_id("new-conversation").click()
    page.wait_for_function("id => window.__chat.app.conv.conv_id !== id", arg=first)
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    ask(page, "## **Bold** plan for `code` and [a link](https://example.com)")
    conv_id = current_conv_id(page)
    expect(page.get_by_test_id("conversation-heading")).to_have_text("Bold plan for code and a link")
    item = page.locator(f"[data-testid=conversation-item][data-conv-id='{conv_id}']")
    expect(item.get_by_test_id("conversation-title")).to_have_text("Bold plan for code and a link")
    assert Conversation.objects.get(pk=conv_id).title == "Bold plan for code and a link"

    old = (now - timedelta(days=20)).replace(hour=12)
    days = page.get_by_test_id("conversation-day")
    expect(days.get_by_test_id("conversation-day-title")).to_have_text(
        [
            "Today",
            "Yesterday",
            re.compile(rf"^({old.day} {old.strftime('%B')}|{old.strftime('%B')} {old.day})(,? {old.year})?$"),
        ]
    )
    expect(days.nth(0).get_by_test_id("conversation-title")).to_have_text(["Bold plan for code and a link"])
    expect(days.nth(1).get_by_test_id("conversation-title")).to_have_text(["Planned yesterday"])
    expect(days.nth(2).get_by_test_id("conversation-title")).to_have_text(["An old one"])
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 7. the inventory


def test_the_inventory_page_gives_the_chat_room_at_1280_px(open_ui, alice):
    ui = open_ui(viewport=DESKTOP)
    page = ui.page
    open_app(page, "/inventory/")
    chat = page.get_by_test_id("chat-panel").bounding_box()
    items = page.get_by_test_id("inventory-panel").bounding_box()
    assert chat["width"] >= 760, chat  # the list moved into a drawer; the items keep their own column
    assert items["width"] >= 360 and items["x"] >= chat["x"] + chat["width"] - 1, items
    expect(page.get_by_test_id("items-table")).to_be_visible()
    expect(page.get_by_test_id("item-row")).to_have_count(10)
    sidebar = page.get_by_test_id("sidebar")
    expect(sidebar).to_be_hidden()
    page.get_by_test_id("drawer-toggle").click()
    expect(sidebar).to_be_visible()
    expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()

    page.set_viewport_size({"width": 1600, "height": 900})  # wide enough for all three side by side
    expect(sidebar).to_be_visible()
    assert page.get_by_test_id("chat-panel").bounding_box()["width"] >= 760
    ui.watch.assert_clean()
