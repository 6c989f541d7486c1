"""The chat UI a person would choose for daily work (issue #10), in Debian's Chromium against real daphne:
a phone layout, every conversation reachable and searchable, delete and archive, full markdown through the
`openai` engine, message actions (copy, regenerate, edit-and-resend, retry, Esc), the runtime record one
click away, logout in another tab, the small fixes, and axe-core with no serious violation.

Every test fails on a console error, an uncaught page error or a JavaScript dialog (tests/e2e/browser.py).
Conversations the tests only need to exist are rows made with the ORM (committed: the server sees them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from chat.billing.budgets import budget_create
from chat.billing.prices import price_set
from chat.models import Conversation, Turn
from chat.services import conversation_create, now_ms
from profiles import services
from profiles.mounts import get_mount
from tests.chat.factories import turns_counted
from tests.chat.fake_openai import FakeOpenAIServer, remote_profile

from .browser import (
    DESKTOP,
    PHONE,
    TIMEOUT_MS,
    api,
    ask,
    at_end,
    axe_violations,
    choose_profile,
    current_conv_id,
    new_page,
    open_app,
    scroll_state,
    select_profile,
    send,
    session_login,
    shot,
    wait_ready,
    wait_turns,
)
from .helpers import make_user, seed
from .server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

MARKDOWN_ANSWER = """# Stock plan

Here is the **plan** for next week, with a [reference](https://example.com/stock).

| SKU | Name | Qty |
|:----|:-----|----:|
| A-1002 | Keychain - Brass | 2 |
| B-2015 | Mug - Hand-thrown | 3 |

> Reorder when the quantity is at or below the threshold.

- Accessories
  - Keychains
    1. Brass
    2. Steel
- Home

```python
def reorder(qty, threshold=3):
    return qty <= threshold
```
"""
CODE = "def reorder(qty, threshold=3):\n    return qty <= threshold"


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def alice(daphne_server):
    """Seed registries and inventory; a superuser (staff: the admin link) with a DRF token."""
    seed()
    return make_user("alice", superuser=True)


@pytest.fixture
def bob(alice):
    """A plain user: no inventory.change_item, not staff."""
    return make_user("bob")


@pytest.fixture
def open_ui(browser, daphne_server) -> Iterator[Callable[..., SimpleNamespace]]:
    """open_ui(user, viewport=..., server=..., **context options): a fresh context signed in as `user`,
    with the chat socket's client frames recorded (`sent`)."""
    contexts = []

    def _open(user, *, viewport=None, server: LiveServer | None = None, **options) -> SimpleNamespace:
        target = server or daphne_server
        context, page, watch = new_page(browser, target.url, viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        session_login(context, target.url, get_user_model().objects.get(pk=user.pk))
        sent: list[dict] = []
        page.on(
            "websocket",
            lambda ws: ws.on("framesent", lambda p: sent.append(json.loads(p))) if "/ws/chat/" in ws.url else None,
        )
        return SimpleNamespace(context=context, page=page, watch=watch, url=target.url, sent=sent, user=user)

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def make_conversation(user, *, title: str = "", prompts: tuple[str, ...] = (), mount: str = "chat", age_min: int = 0):
    """A conversation with finished turns (rows only, as if answered by the default profile)."""
    stamp = now_ms() - age_min * 60_000
    conversation = Conversation.objects.create(
        owner_id=user.pk,
        mount=mount,
        title=title,
        current_runtime_key="default" if prompts else "",
    )
    Conversation.objects.filter(pk=conversation.pk).update(created_at_ms=stamp, updated_at_ms=stamp)
    for seq, prompt in enumerate(prompts, start=1):
        Turn.objects.create(
            conversation=conversation,
            seq=seq,
            prompt=prompt,
            text=f"(offline · concise assistant) You said: “{prompt}”.",
            status=Turn.Status.COMPLETED,
            registry="default",
            profile_slug="default",
            profile_version=1,
            runtime_key="default",
            fingerprint="sha256:" + "ab" * 32,
            engine={"provider": "offline", "model": "offline-v1", "history_turns": 20},
            created_at_ms=stamp + seq,
            started_at_ms=stamp + seq,
            finished_at_ms=stamp + seq + 120,
        )
    turns_counted(conversation)
    return conversation


def turn_ids(page: Page) -> list[str]:
    return page.get_by_test_id("turn").evaluate_all("nodes => nodes.map(n => n.dataset.turnId)")


def clipboard(page: Page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def wait_sent(ui: SimpleNamespace, kind: str, count: int = 1) -> list[dict]:
    for _ in range(TIMEOUT_MS // 50):
        frames = [f for f in ui.sent if f.get("type") == kind]
        if len(frames) >= count:
            return frames
        ui.page.wait_for_timeout(50)
    raise AssertionError(f"{kind}: {ui.sent}")


def stored_turns(ui: SimpleNamespace, conv_id: str) -> list[dict]:
    status, body = api(ui.url, "GET", f"/api/chat/conversations/{conv_id}", ui.user.token)
    assert status == 200, body
    return body["turns"]


# ---------------------------------------------------------------------------------------- 1. phone layout


PHONE_PROMPTS = [
    "What is 17.5% of 2,340?",
    "Compare two options and recommend one",
    "What is 12 * 48?",
    "Summarise the findings in two lines",
    "What is sqrt(2) rounded to 3 places?",
    "Which option is cheaper over a year?",
    "What is 19% of 1,250?",
    "List the risks",
    "What is 3 ** 7?",
]


def test_phone_layout_keeps_the_composer_in_view_after_a_long_conversation(open_ui, daphne_server, alice):
    other = make_conversation(alice, title="Another one", age_min=5)
    body = {"profile": "analyst", "title": "Budget check"}
    status, created = api(daphne_server.url, "POST", "/api/chat/conversations", alice.token, body)
    assert status == 201
    conv_id = created["conv_id"]
    for prompt in PHONE_PROMPTS:  # nine real turns (tools, suggestions), then the tenth live
        path = f"/api/chat/conversations/{conv_id}/messages?wait=1"
        assert api(daphne_server.url, "POST", path, alice.token, {"prompt": prompt})[0] == 200
    ui = open_ui(alice, viewport=PHONE)
    page = ui.page
    open_app(page, f"/#conv={conv_id}")
    ask(page, "What is 15% of 480?")
    expect(page.get_by_test_id("turn")).to_have_count(10)

    # The transcript is the only thing that scrolls; the page itself does not.
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight + 1")
    state = scroll_state(page)
    assert state["height"] > state["client"] * 2, state  # ten turns do not fit: the transcript scrolls
    assert at_end(state), state  # it followed the answer to its end
    composer = page.get_by_test_id("composer").bounding_box()
    assert composer["y"] >= 0 and composer["y"] + composer["height"] <= PHONE["height"], composer
    assert composer["width"] >= PHONE["width"] - 20
    last = page.get_by_test_id("turn").last.bounding_box()
    assert last["y"] + last["height"] <= composer["y"] + 1, (last, composer)  # the last line is not behind it
    messages = page.get_by_test_id("messages").bounding_box()
    assert messages["y"] + messages["height"] <= composer["y"] + 1
    expect(page.get_by_test_id("conversation-heading")).to_have_text("Budget check")
    shot(page, "chat-phone")

    # Reopened, it starts at the latest message.
    page.reload()
    wait_ready(page)
    page.wait_for_function(
        "() => { const m = document.querySelector('[data-testid=messages]');"
        " return m.scrollHeight - m.scrollTop - m.clientHeight <= 2 && m.scrollHeight > m.clientHeight * 2; }"
    )

    # The conversation list is a drawer behind a button; the open conversation is marked in it.
    sidebar = page.get_by_test_id("sidebar")
    expect(sidebar).to_be_hidden()
    page.get_by_test_id("drawer-toggle").click()
    expect(sidebar).to_be_visible()
    expect(sidebar).to_be_in_viewport(ratio=0.99)  # slid in completely
    active = page.locator(f"[data-testid=conversation-item][data-conv-id='{conv_id}']")
    expect(active).to_have_attribute("data-active", "true")
    expect(active.locator(".conv-open")).to_have_attribute("aria-current", "true")
    page.locator(f"[data-testid=conversation-item][data-conv-id='{other.pk}'] .conv-open").click()
    expect(sidebar).to_be_hidden()  # choosing closes the drawer
    expect(page.get_by_test_id("conversation-heading")).to_have_text("Another one")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    page.get_by_test_id("drawer-toggle").click()
    page.get_by_test_id("drawer-backdrop").click(position={"x": PHONE["width"] - 10, "y": 400})
    expect(sidebar).to_be_hidden()
    ui.watch.assert_clean()


def test_inventory_page_on_a_phone_has_chat_and_items_as_tabs(open_ui, alice):
    ui = open_ui(alice, viewport=PHONE)
    page = ui.page
    open_app(page, "/inventory/")
    chat, items = page.get_by_test_id("tab-chat"), page.get_by_test_id("tab-items")
    expect(chat).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("composer")).to_be_visible()
    expect(page.get_by_test_id("items-table")).to_be_hidden()

    items.click()
    expect(items).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("items-table")).to_be_visible()
    expect(page.get_by_test_id("item-row")).to_have_count(10)
    expect(page.get_by_test_id("composer")).to_be_hidden()
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight + 1")
    shot(page, "inventory-phone-items")

    page.keyboard.press("ArrowLeft")  # the tabs follow the arrow keys
    expect(chat).to_have_attribute("aria-selected", "true")
    expect(chat).to_be_focused()
    ask(page, "record a sale of 1 A-1002")
    items.click()  # the table was refreshed while it was hidden
    expect(page.locator("[data-testid=item-row][data-sku='A-1002'] [data-testid=item-qty]")).to_have_attribute(
        "data-qty", "1"
    )
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 2. all conversations


def test_sixty_conversations_are_all_reachable_and_search_finds_a_later_message(open_ui, alice, bob):
    made = [make_conversation(alice, title=f"Topic {n:02d}", age_min=200 - n) for n in range(1, 61)]
    oldest = made[0]
    target = made[20]
    Turn.objects.create(
        conversation=target, seq=1, prompt="hello there", text="hi", status="completed", created_at_ms=now_ms()
    )
    Turn.objects.create(
        conversation=target,
        seq=2,
        prompt="Plan the zebra-crossing repaint",
        text="ok",
        status="completed",
        created_at_ms=now_ms(),
    )
    turns_counted(target)
    make_conversation(bob, title="Topic zebra of bob")

    ui = open_ui(alice)
    page = ui.page
    open_app(page, f"/#conv={oldest.pk}")  # by URL: far beyond the first page of the list
    items = page.get_by_test_id("conversation-item")
    marked = page.locator(f"[data-testid=conversation-item][data-conv-id='{oldest.pk}']")
    expect(marked).to_have_attribute("data-active", "true")
    expect(page.get_by_test_id("conversation-heading")).to_have_text("Topic 01")
    expect(page.get_by_test_id("conversation-count")).to_have_text("60 total")
    assert 30 <= items.count() < 60

    # Infinite scroll: the list loads the next pages as it is scrolled to its end.
    conv_list = page.get_by_test_id("conversation-list")
    for _ in range(10):
        if items.count() == 60:
            break
        conv_list.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        page.wait_for_timeout(150)
    expect(items).to_have_count(60)
    ids = items.evaluate_all("nodes => nodes.map(n => n.dataset.convId)")
    assert sorted(ids) == sorted(str(c.pk) for c in made)  # each once, none missing
    expect(page.get_by_test_id("conversations-more")).to_have_count(0)
    expect(marked).to_have_attribute("data-active", "true")

    # The search asks the server (?q=): a word of the second message finds its conversation.
    search = page.get_by_test_id("conversation-search")
    search.fill("ZEBRA")
    expect(items).to_have_count(1)
    expect(items.get_by_test_id("conversation-title")).to_have_text("Topic 21")
    expect(page.get_by_test_id("conversation-count")).to_have_text("1 found")
    items.locator(".conv-open").click()
    expect(page.get_by_test_id("user-text")).to_have_text(["hello there", "Plan the zebra-crossing repaint"])
    search.fill("no such thing anywhere")
    expect(page.get_by_test_id("conversations-empty")).to_have_text("No conversations match.")
    search.press("Escape")
    expect(search).to_have_value("")
    expect(items).to_have_count(30)
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 3. delete and archive


def test_delete_and_archive_with_confirmation_and_new_reuses_an_empty_conversation(open_ui, alice, bob):
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    items = page.get_by_test_id("conversation-item")
    expect(items).to_have_count(1)
    first = current_conv_id(page)

    page.get_by_test_id("new-conversation").click()  # still empty: "New" keeps it
    expect(items).to_have_count(1)
    assert current_conv_id(page) == first
    ask(page, "something to keep")
    page.get_by_test_id("new-conversation").click()
    page.wait_for_function("id => window.__chat.app.conv.conv_id !== id", arg=first)
    second = current_conv_id(page)
    expect(items).to_have_count(2)
    page.locator(f"[data-conv-id='{first}'] .conv-open").click()
    expect(page.get_by_test_id("turn")).to_have_count(1)
    page.get_by_test_id("new-conversation").click()  # an empty one exists: reused, not piled up
    page.wait_for_function("id => window.__chat.app.conv.conv_id === id", arg=second)
    expect(items).to_have_count(2)

    # Delete asks first; Cancel keeps it.
    row = page.locator(f"[data-testid=conversation-item][data-conv-id='{first}']")
    row.hover()
    row.get_by_test_id("delete-conversation").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("“something to keep” and all its messages will be deleted for good.")
    dialog.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(items).to_have_count(2)
    assert api(ui.url, "GET", f"/api/chat/conversations/{first}", alice.token)[0] == 200

    page.locator(f"[data-conv-id='{first}'] .conv-open").click()  # deleting the open one opens another
    row.hover()
    row.get_by_test_id("delete-conversation").click()
    page.get_by_test_id("confirm-ok").click()
    expect(row).to_have_count(0)
    page.wait_for_function("id => window.__chat.app.conv && window.__chat.app.conv.conv_id === id", arg=second)
    assert api(ui.url, "GET", f"/api/chat/conversations/{first}", alice.token)[0] == 404
    assert not Turn.objects.filter(conversation_id=first).exists()

    # Another user's conversation: the API refuses to delete it.
    theirs = make_conversation(bob, title="bob's", prompts=("private",))
    status, body = api(ui.url, "DELETE", f"/api/chat/conversations/{theirs.pk}", alice.token)
    assert (status, body["error"]["code"]) == (403, "permission_denied")
    assert Conversation.objects.filter(pk=theirs.pk).exists()

    # Archive: out of the recent list, listed under "Archived", and back.
    ask(page, "archive me later")
    keep = make_conversation(alice, title="stays")
    page.reload()
    wait_ready(page)
    row = page.locator(f"[data-testid=conversation-item][data-conv-id='{second}']")
    row.hover()
    row.get_by_test_id("archive-conversation").click()
    expect(row).to_have_count(0)
    page.wait_for_function("id => window.__chat.app.conv && window.__chat.app.conv.conv_id === id", arg=str(keep.pk))
    assert api(ui.url, "GET", f"/api/chat/conversations/{second}", alice.token)[1]["archived"] is True
    page.get_by_test_id("show-archived").click()
    expect(items).to_have_count(1)
    expect(items.get_by_test_id("conversation-title")).to_have_text("archive me later")
    items.first.hover()
    items.first.get_by_test_id("unarchive-conversation").click()
    expect(page.get_by_test_id("conversations-empty")).to_have_text("No archived conversations.")
    page.get_by_test_id("show-recent").click()
    expect(page.locator(f"[data-testid=conversation-item][data-conv-id='{second}']")).to_have_count(1)
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 4. markdown (openai engine)


def test_markdown_answer_from_the_openai_engine_is_rendered_highlighted_and_copyable(open_ui, alice, fake_openai):
    remote_profile(fake_openai, "remote")
    pieces = [MARKDOWN_ANSWER[i : i + 40] for i in range(0, len(MARKDOWN_ANSWER), 40)]
    fake_openai.stream_text(pieces)
    ui = open_ui(alice, permissions=["clipboard-read", "clipboard-write"])
    page = ui.page
    open_app(page)
    select_profile(page, "remote")
    expect(page.get_by_test_id("engine-label")).to_have_text("openai · fake-model")
    ask(page, "Plan the stock for next week")

    answer = page.get_by_test_id("answer-text").last
    expect(answer.locator("h3")).to_have_text("Stock plan")  # "#" one level below the page's own headings
    expect(answer.locator("strong")).to_have_text("plan")
    link = answer.locator("a")
    expect(link).to_have_attribute("href", "https://example.com/stock")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    table = answer.locator("table")
    expect(table.locator("th")).to_have_text(["SKU", "Name", "Qty"])
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").first.locator("td")).to_have_text(["A-1002", "Keychain - Brass", "2"])
    expect(table.locator("th").nth(2)).to_have_class(re.compile(r"\balign-right\b"))
    expect(answer.locator("blockquote")).to_contain_text("Reorder when the quantity")
    expect(answer.locator("ul > li > ul > li > ol > li")).to_have_text(["Brass", "Steel"])
    block = answer.get_by_test_id("code-block")
    expect(block).to_have_attribute("data-lang", "python")
    expect(block.locator(".code-lang")).to_have_text("python")
    expect(block.locator("code .hljs-keyword").first).to_have_text("def")
    assert block.locator("code").inner_text().strip() == CODE
    assert fake_openai.requests[-1].body["model"] == "fake-model"

    block.get_by_test_id("code-copy").click()
    expect(block.get_by_test_id("code-copy")).to_have_attribute("data-copied", "true")
    assert clipboard(page).strip() == CODE
    turn = page.get_by_test_id("turn").last
    turn.hover()
    turn.get_by_test_id("copy-answer").click()
    assert clipboard(page) == MARKDOWN_ANSWER.strip()  # the markdown source, as ChatGPT copies it
    turn.get_by_test_id("copy-prompt").click()
    assert clipboard(page) == "Plan the stock for next week"
    answer.scroll_into_view_if_needed()
    shot(page, "markdown-answer")
    ui.watch.assert_clean()


def test_the_view_follows_a_stream_until_the_user_scrolls_up_then_offers_jump_to_latest(open_ui, alice, fake_openai):
    remote_profile(fake_openai, "remote")
    long_answer = "\n\n".join(f"Paragraph {n}: " + "words " * 30 for n in range(1, 25))
    fake_openai.stream_text([long_answer[i : i + 60] for i in range(0, len(long_answer), 60)], chunk_delay=0.05)
    conv = make_conversation(alice, title="Following", prompts=("one", "two", "three"))
    ui = open_ui(alice, viewport=PHONE)
    page = ui.page
    open_app(page, f"/#conv={conv.pk}")
    select_profile(page, "remote")
    jump = page.get_by_test_id("jump-latest")
    expect(jump).to_be_hidden()

    send(page, "Tell me everything")
    page.wait_for_function("() => document.body.innerText.includes('Paragraph 3')")
    assert at_end(scroll_state(page))  # following the stream
    page.get_by_test_id("messages").evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    expect(jump).to_be_visible()
    page.wait_for_function("() => document.body.innerText.includes('Paragraph 12')")
    assert scroll_state(page)["top"] < 5  # the stream did not pull the reader down

    jump.click()
    expect(jump).to_be_hidden()
    wait_turns(page, 4)
    page.wait_for_timeout(100)
    assert at_end(scroll_state(page))  # following again to the end of the answer
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 5. message actions


def test_regenerate_and_edit_and_resend_replace_the_last_turn(open_ui, alice):
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    ask(page, "first question")
    conv_id = current_conv_id(page)
    first = page.get_by_test_id("turn").first
    expect(first.get_by_test_id("user-time")).to_have_text("just now")
    exact = first.get_by_test_id("user-time").get_attribute("title")
    assert exact and re.search(r"\d{4}", exact), exact  # the exact time on hover
    assert first.get_by_test_id("user-time").get_attribute("datetime").endswith("Z")

    first.get_by_test_id("regenerate").click()
    wait_turns(page, 2)
    assert wait_sent(ui, "chat.regenerate")[0]["turn_id"] == turn_ids(page)[0]
    turns = stored_turns(ui, conv_id)
    assert [(t["prompt"], t["replaces"]) for t in turns] == [
        ("first question", None),
        ("first question", turns[0]["turn_id"]),
    ]
    expect(first).to_have_attribute("data-replaced", "true")
    expect(first.get_by_test_id("user-text")).to_be_hidden()  # folded away behind its toggle
    first.get_by_test_id("replaced-toggle").click()
    expect(first.get_by_test_id("user-text")).to_be_visible()
    expect(first.get_by_test_id("regenerate")).to_be_hidden()  # only the last turn offers it

    last = page.get_by_test_id("turn").last
    last.hover()
    last.get_by_test_id("edit-prompt").click()
    box = last.get_by_test_id("edit-input")
    expect(box).to_be_focused()
    expect(box).to_have_value("first question")
    box.fill("an edited question")
    box.press("Enter")
    wait_turns(page, 3)
    turns = stored_turns(ui, conv_id)
    assert [(t["prompt"], t["replaces"]) for t in turns][2] == ("an edited question", turns[1]["turn_id"])
    expect(page.get_by_test_id("turn").last.get_by_test_id("answer-text")).to_contain_text("an edited question")
    expect(page.locator("[data-testid=turn][data-replaced=true]")).to_have_count(2)

    page.reload()  # stored: the replaced turns are folded again
    wait_ready(page)
    expect(page.locator("[data-testid=turn][data-replaced=true]")).to_have_count(2)
    expect(page.get_by_test_id("turn").last.get_by_test_id("regenerate")).to_be_visible()
    ui.watch.assert_clean()


def test_retry_a_failed_turn_and_esc_stops_a_running_one(open_ui, alice, fake_openai):
    remote_profile(fake_openai, "remote")
    fake_openai.error(500, "the model is down")
    fake_openai.stream_text(["Back ", "up ", "again."])
    fake_openai.stream_text([f"word{n} " for n in range(200)], chunk_delay=0.05)
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    select_profile(page, "remote")
    send(page, "are you there?")
    wait_turns(page, 1, "failed")
    failed = page.get_by_test_id("turn").first
    marker = failed.get_by_test_id("answer-marker")
    expect(marker).to_contain_text("Failed on")
    expect(marker).not_to_contain_text("Answered by")
    expect(marker).to_have_attribute("data-runtime-key", "remote")

    failed.get_by_test_id("retry").click()
    wait_turns(page, 1, "completed")
    retried = page.get_by_test_id("turn").last
    expect(retried.get_by_test_id("answer-text")).to_have_text("Back up again.")
    expect(retried.get_by_test_id("answer-marker")).to_contain_text("Answered by")
    turns = stored_turns(ui, current_conv_id(page))
    assert [(t["status"], t["prompt"], t["replaces"]) for t in turns] == [
        ("failed", "are you there?", None),
        ("completed", "are you there?", turns[0]["turn_id"]),
    ]

    send(page, "count to two hundred")
    running = page.get_by_test_id("turn").last
    expect(running.get_by_test_id("answer-text")).to_contain_text("word3")
    page.get_by_test_id("composer-input").focus()
    page.keyboard.press("Escape")
    expect(running).to_have_attribute("data-status", "cancelled")
    assert wait_sent(ui, "chat.cancel") == [{"type": "chat.cancel"}]
    expect(running.get_by_test_id("answer-marker")).to_contain_text("Stopped on")
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 6. runtime truth


def test_the_runtime_record_is_one_click_away_and_middleware_events_come_back(open_ui, alice, bob):
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    choose_profile(page, "agent", scope="conversation")
    ask(page, "Mail 17.5% of 2,340 to ann@example.com")
    turn = page.get_by_test_id("turn").last
    events = turn.get_by_test_id("middleware-event")
    expect(events).to_have_count(2)
    live_events = events.all_inner_texts()

    opener = turn.get_by_test_id("runtime-open")
    expect(opener).to_contain_text("Answered by")
    opener.click()
    panel = page.get_by_test_id("runtime-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-loaded", "true")
    stored = stored_turns(ui, current_conv_id(page))[-1]
    expect(panel.get_by_test_id("runtime-profile")).to_have_text("default / agent")
    expect(panel.get_by_test_id("runtime-version")).to_contain_text("v1")
    expect(panel.get_by_test_id("runtime-fingerprint")).to_contain_text(stored["fingerprint"])
    expect(panel.get_by_test_id("runtime-engine")).to_contain_text("offline · offline-v1")
    assert (
        json.loads(panel.get_by_test_id("runtime-settings-json").inner_text())
        == stored["runtime_config"]["engine_settings"]
    )
    expect(panel.get_by_test_id("runtime-middleware")).to_have_count(2)
    mode = panel.locator("[data-testid=runtime-middleware][data-name=agent_mode]")
    assert "modes" in json.loads(mode.get_by_test_id("runtime-middleware-config").inner_text())
    expect(panel.get_by_test_id("runtime-tools")).to_have_text("calculator, current_time")
    expect(panel.get_by_test_id("runtime-overrides")).to_have_text("none")
    expect(panel.get_by_test_id("runtime-usage")).to_contain_text(f"total {stored['usage']['total_tokens']} tokens")
    expect(panel.get_by_test_id("runtime-duration")).to_contain_text("ms")
    link = panel.get_by_test_id("runtime-admin-link")
    expect(link).to_have_attribute("href", "/runtime/profile-version/default/agent/1/")
    shot(page, "runtime-record")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(opener).to_be_focused()
    admin = ui.context.new_page()
    admin.goto(link.get_attribute("href"))
    expect(admin).to_have_url(re.compile(r"/admin/profiles/profile/\d+/versions/1/$"))
    admin.close()

    page.reload()  # the middleware events are stored with the turn
    wait_ready(page)
    expect(page.get_by_test_id("turn").last.get_by_test_id("middleware-event")).to_have_text(live_events)

    plain = open_ui(bob)  # not staff: no admin link
    open_app(plain.page)
    ask(plain.page, "hello")
    plain.page.get_by_test_id("runtime-open").click()
    expect(plain.page.get_by_test_id("runtime-panel")).to_have_attribute("data-loaded", "true")
    expect(plain.page.get_by_test_id("runtime-admin-link")).to_have_count(0)
    ui.watch.assert_clean()
    plain.watch.assert_clean()


def test_an_answer_served_by_a_rollout_arm_names_it_in_its_runtime_record(open_ui, alice):
    services.profile_update(registry_slug="default", slug="agent", changes={"description": "v2"}, source="import")
    services.label_set(registry_slug="default", slug="agent", name="production", version=1, source="import")
    canary = {"arms": [{"version": 1, "weight": 0}, {"version": 2, "weight": 100}]}
    owner = get_user_model().objects.get(pk=alice.pk)
    rollout = services.rollout_set(registry_slug="default", slug="agent", name="production", body=canary, actor=owner)
    conversation = conversation_create(owner=owner, mount=get_mount("chat"), profile="agent@production")
    ui = open_ui(alice)
    open_app(ui.page, f"/#conv={conversation.pk}")

    ask(ui.page, "hello")
    ui.page.get_by_test_id("turn").last.get_by_test_id("runtime-open").click()

    panel = ui.page.get_by_test_id("runtime-panel")
    expect(panel).to_have_attribute("data-loaded", "true")
    expect(panel.get_by_test_id("runtime-version")).to_contain_text("v2")
    expect(panel.get_by_test_id("runtime-rollout")).to_have_text(
        f"arm v2 (100%) of the production rollout #{rollout.pk}"
    )
    ui.watch.assert_clean()


def test_a_turn_over_budget_is_not_sent_and_the_page_names_the_budget_and_its_reset(open_ui, alice):
    owner = get_user_model().objects.get(pk=alice.pk)
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=1000, output_usd_per_mtok=1000, actor=owner)
    budget_create(scope={"type": "user", "id": owner.pk}, amount_usd="0.000001", period="day", actor=owner)
    ui = open_ui(alice)
    open_app(ui.page)
    ask(ui.page, "first")  # admitted: nothing was spent yet

    send(ui.page, "second")

    refusal = ui.page.get_by_test_id("unsent-notice")
    expect(refusal).to_contain_text("daily budget of user")
    expect(refusal).to_contain_text("it resets")
    expect(ui.page.get_by_test_id("composer-input")).to_have_value("second")
    ui.watch.assert_clean()


def test_keys_and_usage_show_spend_budgets_and_make_and_revoke_a_key_shown_once(open_ui, alice):
    owner = get_user_model().objects.get(pk=alice.pk)
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=1000, output_usd_per_mtok=1000, actor=owner)
    budget_create(scope={"type": "user", "id": owner.pk}, amount_usd="5", period="month", actor=owner)
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    ask(page, "What is 2+2?")

    page.get_by_test_id("account-open").click()
    panel = page.get_by_test_id("account-panel")
    expect(panel).to_have_attribute("data-loaded", "true")
    expect(panel.get_by_test_id("usage-total")).to_contain_text("1 turns")
    expect(panel.get_by_test_id("usage-row")).to_contain_text("default/default")
    expect(panel.get_by_test_id("budget")).to_contain_text("Monthly budget of user")
    expect(panel.get_by_test_id("budget")).to_contain_text("resets")
    panel.get_by_test_id("key-name").fill("report bot")
    panel.get_by_test_id("key-scopes").fill("analyst, agent@production")
    panel.get_by_test_id("key-rpm").fill("30")
    panel.get_by_test_id("key-create").click()

    secret = panel.get_by_test_id("key-secret-value")
    expect(secret).to_contain_text("sk-")
    row = panel.get_by_test_id("key-row")
    expect(row).to_contain_text("report bot")
    expect(row).to_contain_text("analyst, agent@production")
    expect(row).to_contain_text("30 requests/min")
    assert secret.inner_text() not in row.inner_text()  # the list never shows it
    row.get_by_test_id("key-revoke").click()
    expect(panel.get_by_test_id("key-status")).to_have_text("revoked")
    expect(panel.get_by_test_id("key-secret")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 7. what was seen


def test_logging_out_in_one_tab_ends_the_chat_in_every_tab(open_ui, alice):
    ui = open_ui(alice)
    first = ui.page
    open_app(first)
    second = ui.context.new_page()
    open_app(second, "/inventory/")

    second.get_by_test_id("logout").click()
    expect(second).to_have_url(re.compile(r"/accounts/login/$"))

    expect(first.get_by_test_id("connection-status")).to_have_attribute("data-state", "closed")
    expect(first.get_by_test_id("error-notice").last).to_contain_text("Your session has ended")
    expect(first.get_by_test_id("sign-in-again")).to_have_attribute("href", re.compile(r"^/accounts/login/\?next="))
    expect(first.get_by_test_id("composer-input")).to_be_disabled()
    assert first.evaluate("window.__chat.app.send('still there?')") is False
    ui.watch.assert_clean()


def test_the_profile_that_answers_is_described_and_unusable_starters_are_not_offered(open_ui, alice, bob):
    conv = Conversation.objects.create(
        owner_id=bob.pk, mount="chat", selected_registry="default", selected_profile="analyst"
    )
    ui = open_ui(bob)
    page = ui.page
    open_app(page, f"/#conv={conv.pk}")
    picker = page.get_by_test_id("profile-picker")
    expect(picker).to_have_attribute("data-default", "default")  # the user's own profile
    expect(picker).to_have_attribute("data-runtime-key", "analyst")
    expect(picker).to_have_attribute("data-scope", "conversation")  # this conversation's own choice
    expect(picker).to_have_accessible_name("Profile: Analyst · follows latest (v1)")
    expect(page.get_by_test_id("empty-state-profile")).to_have_text(re.compile(r"^Analyst answers: Investigation"))
    expect(page.get_by_test_id("starter-chip")).to_have_text(
        ["Compare two options and recommend one", "What is 17.5% of 2,340?"]
    )

    # A starter that would run a tool bob may not use (inventory.change_item) is not offered to him.
    open_app(page, "/inventory/")
    expect(page.get_by_test_id("starter-chip")).to_have_text(["Which items are low on stock?"])
    boss = open_ui(alice)
    open_app(boss.page, "/inventory/")
    expect(boss.page.get_by_test_id("starter-chip")).to_have_text(
        ["Which items are low on stock?", "Record a sale of 2 A-1002"]
    )
    ui.watch.assert_clean()
    boss.watch.assert_clean()


def test_the_stale_profile_warning_is_shown_once_with_the_display_name(open_ui, alice):
    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    select_profile(page, "agent")
    assert api(ui.url, "DELETE", "/api/chat/profiles/agent", alice.token)[0] == 204
    page.evaluate("localStorage.removeItem('profile-chat:selection:alice:chat')")  # only the names seen remain

    page.reload()
    wait_ready(page)
    notice = page.get_by_test_id("profile-notice")
    expect(notice.locator(".notice-text")).to_have_text(
        "Profile 'Agent' is no longer available; using the default 'Default'."
    )
    page.reload()
    wait_ready(page)
    expect(notice).to_be_hidden()  # said once
    ui.watch.assert_clean()


def test_pages_have_a_heading_a_favicon_docs_behind_login_and_a_remembered_theme(
    browser, daphne_server, open_ui, alice
):
    context, page, watch = new_page(browser, daphne_server.url)
    try:
        page.goto("/api/docs/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/api/docs/$"))
        expect(page.locator("h1")).to_have_text("Sign in")
        response = page.request.get("/favicon.ico")
        assert response.ok and response.headers["content-type"].startswith("image/svg+xml")
        assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
        watch.assert_clean()
    finally:
        context.close()

    ui = open_ui(alice)
    page = ui.page
    open_app(page)
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("h1")).to_contain_text("New conversation")
    toggle = page.get_by_test_id("theme-toggle")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    open_app(page, "/inventory/")  # remembered on the next page
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background != "rgb(245, 246, 250)"
    expect(page.locator("h1")).to_have_count(1)
    page.get_by_test_id("theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    ui.watch.assert_clean()


# ---------------------------------------------------------------------------------------- 8. accessibility


def test_no_serious_accessibility_violation_in_either_theme_on_desktop_and_phone(
    browser, daphne_server, open_ui, alice
):
    conv_id = api(daphne_server.url, "POST", "/api/chat/conversations", alice.token, {"profile": "analyst"})[1][
        "conv_id"
    ]
    for prompt in ("What is 17.5% of 2,340?", "Compare `a` and **b**"):
        status, _ = api(
            daphne_server.url,
            "POST",
            f"/api/chat/conversations/{conv_id}/messages?wait=1",
            alice.token,
            {"prompt": prompt},
        )
        assert status == 200
    inventory = api(daphne_server.url, "POST", "/inventory/api/chat/conversations", alice.token, {})[1]["conv_id"]
    status, _ = api(
        daphne_server.url,
        "POST",
        f"/inventory/api/chat/conversations/{inventory}/messages?wait=1",
        alice.token,
        {"prompt": "which items are low on stock?"},
    )
    assert status == 200

    found: dict[str, list[str]] = {}
    for viewport_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for theme in ("light", "dark"):
            # Dark comes from the system preference on the desktop and from the header's toggle on the phone.
            toggled = viewport_name == "phone" and theme == "dark"
            scheme = "light" if toggled else theme
            anonymous, login, watch = new_page(browser, daphne_server.url, viewport=viewport, color_scheme=scheme)
            login.goto("/accounts/login/")
            if toggled:
                login.get_by_test_id("theme-toggle").click()
                expect(login.locator("html")).to_have_attribute("data-theme", "dark")
            expect(login.locator("h1")).to_have_count(1)
            found[f"login {viewport_name} {theme}"] = axe_violations(login)
            watch.assert_clean()
            anonymous.close()

            ui = open_ui(alice, viewport=viewport, color_scheme=scheme)
            page = ui.page
            open_app(page, f"/#conv={conv_id}")
            if toggled:
                page.get_by_test_id("theme-toggle").click()
            expect(page.locator("html")).to_have_attribute("data-effective-theme", theme)
            expect(page.get_by_test_id("turn")).to_have_count(2)
            expect(page.locator("h1")).to_have_count(1)
            found[f"chat {viewport_name} {theme}"] = axe_violations(page)
            page.get_by_test_id("runtime-open").first.click()
            expect(page.get_by_test_id("runtime-panel")).to_have_attribute("data-loaded", "true")
            found[f"runtime panel {viewport_name} {theme}"] = axe_violations(page)
            page.keyboard.press("Escape")
            if viewport_name == "phone":
                page.get_by_test_id("drawer-toggle").click()
                expect(page.get_by_test_id("sidebar")).to_be_visible()
                found[f"drawer {viewport_name} {theme}"] = axe_violations(page)
                page.keyboard.press("Escape")
            open_app(page, f"/inventory/#conv={inventory}")
            expect(page.get_by_test_id("artifact-table")).to_be_visible()
            expect(page.locator("h1")).to_have_count(1)
            found[f"inventory {viewport_name} {theme}"] = axe_violations(page)
            if viewport_name == "phone":
                page.get_by_test_id("tab-items").click()
                found[f"inventory items {viewport_name} {theme}"] = axe_violations(page)
            ui.watch.assert_clean()
            if viewport_name == "phone" and theme == "dark":
                shot(page, "inventory-phone-dark")
    # The harness itself reports what it should: an image without a text alternative is a critical violation.
    page.evaluate("document.body.append(Object.assign(document.createElement('img'), {src: '/static/favicon.svg'}))")
    assert any(" image-alt:" in problem for problem in axe_violations(page))
    serious = [f"{where}: {problem}" for where, problems in found.items() for problem in problems]
    assert serious == [], "\n".join(serious)
    assert len(found) == 20
