"""What the browser UI needs from the conversations API: search (`?q=`), archive, delete, one turn's full
runtime record, regenerate / retry / edit-and-resend (REST and websocket), middleware events kept with
the turn, sockets closed when their session logs out, and the pages' small fixes (API docs, favicon,
starters a user may not run, the admin link of a profile version).

Like test_conversations_api.py: DRF's APIClient, turns run inline (no server loop) unless a socket is
open; the caller (`chat_user`) is an ordinary user.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from chat import selectors, services
from chat.errors import ConversationForbidden
from chat.models import Conversation, ConversationEvent, Turn
from chat.turns import dispatcher

from .factories import ConversationFactory, TurnFactory, UserFactory, turns_counted

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

BASE = "/api/chat/conversations"


def create(api, prefix: str = "/", **body) -> dict:
    response = api.post(f"{prefix}api/chat/conversations", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def say(api, conv_id, prompt: str, prefix: str = "/") -> dict:
    response = api.post(f"{prefix}api/chat/conversations/{conv_id}/messages?wait=1", {"prompt": prompt}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def listing(api, **params) -> dict:
    response = api.get(BASE, params)
    assert response.status_code == 200, response.content
    return response.json()


def titles(body: dict) -> list[str]:
    return [c["title"] for c in body["results"]]


# --------------------------------------------------------------------------- search


def test_q_finds_conversations_by_title_prompt_or_answer_case_insensitively(chat_api, chat_user, other_user):
    create(chat_api, title="Budget review")
    second = create(chat_api, title="Trip")["conv_id"]
    say(chat_api, second, "Where should we go?")
    say(chat_api, second, "Tell me about Lisbon tramways")  # the word is in the second message only
    create(chat_api, title="Nothing here")
    theirs = ConversationFactory(owner=other_user, title="Lisbon budget")
    TurnFactory(conversation=theirs, prompt="lisbon")

    assert titles(listing(chat_api, q="lisbon")) == ["Trip"]
    assert titles(listing(chat_api, q="TRAMWAYS")) == ["Trip"]
    assert titles(listing(chat_api, q="budget")) == ["Budget review"]
    assert titles(listing(chat_api, q="offline")) == ["Trip"]  # the answers' text is searched too
    assert titles(listing(chat_api, q="")) == ["Nothing here", "Trip", "Budget review"]
    assert listing(chat_api, q="no such words")["count"] == 0


def test_q_is_parsed_and_bounded(chat_api):
    response = chat_api.get(BASE, {"q": "x" * 201})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "q"
    response = chat_api.get(BASE, {"archived": "maybe"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "archived"


def test_the_list_costs_the_same_queries_with_or_without_q_and_whatever_the_turns(chat_api, chat_user):
    def make(n_conversations: int, n_turns: int) -> None:
        for i in range(n_conversations):
            conversation = ConversationFactory(owner=chat_user, title=f"c{i} needle")
            Turn.objects.bulk_create(
                [
                    TurnFactory.build(conversation=conversation, seq=s, prompt=f"needle {s}")
                    for s in range(1, n_turns + 1)
                ]
            )
            turns_counted(conversation)

    def count(**params) -> int:
        with CaptureQueriesContext(connection) as queries:
            body = listing(chat_api, **params)
        assert body["count"] > 0
        return len(queries)

    make(2, 1)
    small = [count(), count(q="needle"), count(q="needle", page_size=100)]
    make(30, 20)
    large = [count(), count(q="needle"), count(q="needle", page_size=100)]
    assert small == large == [2, 2, 2]  # COUNT + one page, whatever the match or the page size


def test_the_list_says_how_many_turns_each_conversation_has(chat_api):
    empty = create(chat_api)["conv_id"]
    busy = create(chat_api)["conv_id"]
    say(chat_api, busy, "one")
    say(chat_api, busy, "two")

    counts = {c["conv_id"]: c["turn_count"] for c in listing(chat_api)["results"]}
    assert counts == {empty: 0, busy: 2}


def test_the_list_says_each_conversations_own_choice_for_the_sidebar(chat_api):
    """The sidebar names the profile each conversation uses now: its own ref (latest, a label, a pinned
    version) or none (it follows the user's default), from the list itself (no request per item)."""
    follows = create(chat_api)["conv_id"]
    latest = create(chat_api, profile="agent")["conv_id"]
    pinned = create(chat_api, profile="agent@1")["conv_id"]

    choices = {c["conv_id"]: c["profile_selection"] for c in listing(chat_api)["results"]}
    assert choices[follows] is None
    assert {k: choices[latest][k] for k in ("slug", "ref", "mode")} == {
        "slug": "agent",
        "ref": "agent",
        "mode": "follow",
    }
    assert {k: choices[pinned][k] for k in ("slug", "ref", "mode")} == {
        "slug": "agent",
        "ref": "agent@1",
        "mode": "pinned",
    }


# --------------------------------------------------------------------------- archive


def test_archive_moves_a_conversation_out_of_the_list_and_back(chat_api):
    kept = create(chat_api, title="kept")["conv_id"]
    archived = create(chat_api, title="old")["conv_id"]

    response = chat_api.patch(f"{BASE}/{archived}", {"archived": True}, format="json")
    assert response.status_code == 200
    assert response.json()["archived"] is True and isinstance(response.json()["archived_at_ms"], int)
    assert titles(listing(chat_api)) == ["kept"]
    assert titles(listing(chat_api, archived="true")) == ["old"]
    assert chat_api.get(f"{BASE}/{archived}").json()["archived"] is True  # still readable

    response = chat_api.patch(f"{BASE}/{archived}", {"archived": False, "title": "back"}, format="json")
    assert response.status_code == 200
    assert (response.json()["archived"], response.json()["title"]) == (False, "back")
    assert [c["conv_id"] for c in listing(chat_api)["results"]] == [archived, kept]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "title"), ({"archived": "soon"}, "archived"), ({"archived": True, "colour": "red"}, "colour")],
)
def test_a_patch_must_change_something_known(chat_api, body, field):
    conv_id = create(chat_api)["conv_id"]
    response = chat_api.patch(f"{BASE}/{conv_id}", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


# --------------------------------------------------------------------------- delete


def test_delete_removes_the_conversation_its_turns_and_events(chat_api):
    conv_id = create(chat_api)["conv_id"]
    say(chat_api, conv_id, "hello")
    kept = create(chat_api)["conv_id"]
    say(chat_api, kept, "stays")
    assert ConversationEvent.objects.filter(conversation_id=conv_id).exists()

    response = chat_api.delete(f"{BASE}/{conv_id}")

    assert response.status_code == 204
    assert not Conversation.objects.filter(pk=conv_id).exists()
    assert not Turn.objects.filter(conversation_id=conv_id).exists()
    assert not ConversationEvent.objects.filter(conversation_id=conv_id).exists()
    assert chat_api.get(f"{BASE}/{conv_id}").status_code == 404
    assert chat_api.delete(f"{BASE}/{conv_id}").status_code == 404
    assert Turn.objects.filter(conversation_id=kept).count() == 1  # nothing else went


def test_another_users_conversation_cannot_be_deleted(chat_api, other_user):
    foreign = ConversationFactory(owner=other_user)
    TurnFactory(conversation=foreign)

    response = chat_api.delete(f"{BASE}/{foreign.pk}")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Conversation.objects.filter(pk=foreign.pk).exists() and Turn.objects.filter(conversation=foreign).exists()
    with pytest.raises(ConversationForbidden):  # the service checks the owner too
        services.conversation_delete(conversation=foreign, user=UserFactory(username="carol"))


def test_delete_cancels_the_running_turn_first(chat_api, chat_user, monkeypatch):
    """The worker running the turn is asked to stop before anything is deleted, and the turn is marked
    cancelled in the deleting transaction: that worker's checkpoint and finish then write nothing."""
    conversation = ConversationFactory(owner=chat_user)
    running = TurnFactory(conversation=conversation, seq=1, status=Turn.Status.RUNNING, worker="w1")
    TurnFactory(conversation=conversation, seq=2, status=Turn.Status.QUEUED)
    Conversation.objects.filter(pk=conversation.pk).update(active_turn=running)
    asked = []

    async def request_cancel(conv_id):
        asked.append((str(conv_id), await database_sync_to_async(Turn.objects.filter(conversation_id=conv_id).count)()))
        return True

    monkeypatch.setattr(dispatcher, "request_cancel", request_cancel)
    assert chat_api.delete(f"{BASE}/{conversation.pk}").status_code == 204
    assert asked == [(str(conversation.pk), 2)]  # asked while its turns still existed
    assert not Turn.objects.filter(conversation_id=conversation.pk).exists()
    # What the worker would do next finds nothing to write.
    assert (
        services.turns_checkpoint(
            checkpoints=[services.Checkpoint(str(running.pk), str(conversation.pk), "partial", [])], worker="w1"
        )
        == set()
    )
    assert services.turn_finish(turn_id=running.pk, status="cancelled", text="partial", worker="w1").finished is False


def test_the_delete_service_cancels_open_turns_before_deleting(chat_user):
    conversation = ConversationFactory(owner=chat_user)
    running = TurnFactory(conversation=conversation, seq=1, status=Turn.Status.RUNNING)
    queued = TurnFactory(conversation=conversation, seq=2, status=Turn.Status.QUEUED)
    TurnFactory(conversation=conversation, seq=0, status=Turn.Status.COMPLETED)

    assert sorted(services.conversation_delete(conversation=conversation, user=chat_user)) == sorted(
        [str(running.pk), str(queued.pk)]
    )
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


async def test_deleting_over_rest_stops_a_running_turn_and_closes_the_sockets(open_ws, chat_user, settings, close_code):
    """A real turn running on this loop: the DELETE cancels it (the worker stops it), deletes the rows,
    and the conversation's open socket is told and closed (4410)."""
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.2
    communicator = await open_ws()
    hello = await communicator.receive_json_from(timeout=5)
    conv_id = hello["data"]["conv_id"]
    await communicator.send_json_to({"type": "chat.send", "prompt": "tell me a long story about everything"})
    while (await communicator.receive_json_from(timeout=5))["type"] != "llm.delta":
        pass
    assert dispatcher.live  # the turn runs here

    api = APIClient()
    api.force_authenticate(chat_user)
    response = await database_sync_to_async(api.delete)(f"{BASE}/{conv_id}")

    assert response.status_code == 204
    frames, code = await close_code(communicator)
    assert code == 4410
    assert [f["data"] for f in frames if f["type"] == "error"] == [
        {"code": "not_found", "message": "this conversation was deleted"}
    ]
    for _ in range(100):
        if not dispatcher.live:
            break
        await asyncio.sleep(0.02)
    assert not dispatcher.live  # stopped, not left streaming into nothing
    assert not await database_sync_to_async(Conversation.objects.filter(pk=conv_id).exists)()
    assert not await database_sync_to_async(Turn.objects.filter(conversation_id=conv_id).exists)()


# --------------------------------------------------------------------------- one turn's runtime record


def test_a_turn_carries_its_full_runtime_record_and_middleware_events(chat_api):
    conv_id = create(chat_api, profile="agent")["conv_id"]
    stored = say(chat_api, conv_id, "Mail the result to ann@example.com")

    response = chat_api.get(f"{BASE}/{conv_id}/turns/{stored['turn_id']}")

    assert response.status_code == 200
    turn = response.json()
    assert (turn["turn_id"], turn["profile_slug"], turn["registry"]) == (stored["turn_id"], "agent", "default")
    config = turn["runtime_config"]
    assert config["system_prompt"]
    assert config["engine_settings"]["ai-chat"]["ai-api-type"] == "offline"
    assert [(m["name"], m["id"]) for m in config["middlewares"]] == [("redact", None), ("agent_mode", None)]
    assert "modes" in config["middlewares"][1]["config"]  # each middleware with its config
    events = turn["middleware_events"]
    assert [(e["middleware"], e["event"]) for e in events] == [("redact", "redacted"), ("agent_mode", "mode")]
    assert events[0]["detail"] == {"counts": {"email": 1}}
    assert turn["replaces"] is None
    # The hydration carries the same record (what a reopened conversation shows).
    hydrated = chat_api.get(f"{BASE}/{conv_id}").json()["turns"][0]
    assert hydrated["middleware_events"] == events and hydrated["runtime_config"] == config


def test_a_turn_of_another_conversation_or_user_is_not_served(chat_api, other_user):
    conv_id = create(chat_api)["conv_id"]
    stored = say(chat_api, conv_id, "hi")
    other = create(chat_api)["conv_id"]
    foreign = TurnFactory(conversation=ConversationFactory(owner=other_user))

    assert chat_api.get(f"{BASE}/{other}/turns/{stored['turn_id']}").status_code == 404
    assert chat_api.get(f"{BASE}/{conv_id}/turns/{uuid.uuid4()}").status_code == 404
    assert chat_api.get(f"{BASE}/{foreign.conversation_id}/turns/{foreign.pk}").status_code == 403


# --------------------------------------------------------------------------- regenerate, retry, edit


def regenerate(api, conv_id, turn_id, **body):
    return api.post(f"{BASE}/{conv_id}/turns/{turn_id}/regenerate", body, format="json")


def test_regenerate_makes_a_new_turn_with_the_same_prompt_linked_to_the_one_it_replaces(chat_api):
    conv_id = create(chat_api)["conv_id"]
    say(chat_api, conv_id, "first")
    last = say(chat_api, conv_id, "second")

    response = regenerate(chat_api, conv_id, last["turn_id"])

    assert response.status_code == 202, response.content
    new_id = response.json()["turn_id"]
    turns = chat_api.get(f"{BASE}/{conv_id}").json()["turns"]
    assert [(t["prompt"], t["status"], t["replaces"]) for t in turns] == [
        ("first", "completed", None),
        ("second", "completed", None),
        ("second", "completed", last["turn_id"]),
    ]
    assert turns[2]["turn_id"] == new_id and turns[2]["runtime_key"] == "default"
    message = ConversationEvent.objects.get(turn_id=new_id, type="chat.message").frame
    assert message["data"] == {"turn_id": new_id, "text": "second", "replaces": last["turn_id"]}
    # The engine no longer sees the replaced turn: only the first exchange is history for what follows.
    conversation = Conversation.objects.get(pk=conv_id)
    assert [p for p, _ in selectors.conversation_history(conversation=conversation, before_seq=99, limit=10)] == [
        "first",
        "second",
    ]
    assert [t.seq for t in Turn.objects.filter(conversation=conversation, replaced_by__isnull=False)] == [2]


def test_edit_and_resend_replaces_the_last_prompt(chat_api):
    conv_id = create(chat_api)["conv_id"]
    last = say(chat_api, conv_id, "what is 2+2?")

    response = regenerate(chat_api, conv_id, last["turn_id"], prompt="what is 3+3?", idempotency_key="edit-1")
    again = regenerate(chat_api, conv_id, last["turn_id"], prompt="what is 3+3?", idempotency_key="edit-1")

    assert response.status_code == again.status_code == 202
    assert again.json() == {**response.json(), "created": False}
    turns = chat_api.get(f"{BASE}/{conv_id}").json()["turns"]
    assert [(t["prompt"], t["replaces"]) for t in turns] == [("what is 2+2?", None), ("what is 3+3?", last["turn_id"])]
    assert "what is 3+3?" in turns[1]["text"]


def test_only_the_last_finished_turn_can_be_replaced(chat_api, chat_user, other_user):
    conv_id = create(chat_api)["conv_id"]
    first = say(chat_api, conv_id, "first")
    say(chat_api, conv_id, "second")

    response = regenerate(chat_api, conv_id, first["turn_id"])
    assert (response.status_code, response.json()["error"]["code"]) == (409, "conflict")
    assert regenerate(chat_api, conv_id, uuid.uuid4()).status_code == 404
    assert regenerate(chat_api, conv_id, first["turn_id"], prompt="   ").status_code == 400
    assert regenerate(chat_api, conv_id, first["turn_id"], colour="red").status_code == 400

    running = ConversationFactory(owner=chat_user)
    turn = TurnFactory(conversation=running, seq=1, status=Turn.Status.RUNNING)
    response = regenerate(chat_api, running.pk, turn.pk)
    assert (response.status_code, response.json()["error"]["field"]) == (409, "turn_id")

    foreign = TurnFactory(conversation=ConversationFactory(owner=other_user), status=Turn.Status.COMPLETED)
    assert regenerate(chat_api, foreign.conversation_id, foreign.pk).status_code == 403
    assert Turn.objects.filter(conversation_id=conv_id).count() == 2


def test_retry_of_a_failed_turn(chat_api, chat_user):
    conversation = ConversationFactory(owner=chat_user)
    failed = TurnFactory(
        conversation=conversation,
        seq=1,
        prompt="try me",
        status=Turn.Status.FAILED,
        error={"code": "x", "message": "y"},
    )

    assert regenerate(chat_api, conversation.pk, failed.pk).status_code == 202
    retried = Turn.objects.get(conversation=conversation, seq=2)
    assert (retried.prompt, retried.status, retried.replaces_id) == ("try me", "completed", failed.pk)


async def test_chat_regenerate_over_the_socket(connected, frames_until):
    communicator, hello = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": "say it twice"})
    frames = await frames_until(communicator)
    first_id = next(f["data"]["turn_id"] for f in frames if f["type"] == "chat.message")

    await communicator.send_json_to({"type": "chat.regenerate", "turn_id": first_id})
    frames = await frames_until(communicator)
    message = next(f["data"] for f in frames if f["type"] == "chat.message")
    assert message["text"] == "say it twice" and message["replaces"] == first_id
    assert frames[-1]["type"] == "turn.completed"

    await communicator.send_json_to({"type": "chat.regenerate", "turn_id": message["turn_id"], "prompt": "say it once"})
    frames = await frames_until(communicator)
    assert next(f["data"] for f in frames if f["type"] == "chat.message")["text"] == "say it once"

    await communicator.send_json_to({"type": "chat.regenerate"})
    error = await communicator.receive_json_from(timeout=5)
    assert (error["type"], error["data"]["code"]) == ("error", "bad_frame")
    await communicator.send_json_to({"type": "chat.regenerate", "turn_id": first_id})
    error = await communicator.receive_json_from(timeout=5)
    assert (error["data"]["code"], error["data"]["field"]) == ("conflict", "turn_id")
    turns = await database_sync_to_async(lambda: list(Turn.objects.filter(conversation_id=hello["conv_id"])))()
    assert len(turns) == 3


# --------------------------------------------------------------------------- sessions and sockets


def _session_socket_headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode())]


async def test_logging_out_closes_every_socket_of_the_session(open_ws, chat_user, close_code):
    browser = Client()
    await database_sync_to_async(browser.force_login)(chat_user)
    headers = _session_socket_headers(browser)
    first = await open_ws(token=None, headers=headers)
    second = await open_ws(token=None, headers=headers)
    token_socket = await open_ws()  # the same user with a token: not this session
    for communicator in (first, second, token_socket):
        assert communicator.accepted
        assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.hello"

    response = await database_sync_to_async(browser.post)("/accounts/logout/")
    assert response.status_code == 302

    for communicator in (first, second):
        frames, code = await close_code(communicator)
        assert code == 4401
        assert frames[-1]["data"] == {"code": "not_authenticated", "message": "you have logged out"}
    await token_socket.send_json_to({"type": "ws.ping"})
    assert (await token_socket.receive_json_from(timeout=5))["type"] == "ws.pong"


async def test_a_socket_whose_session_ended_cannot_send(open_ws, chat_user, close_code):
    browser = Client()
    await database_sync_to_async(browser.force_login)(chat_user)
    communicator = await open_ws(token=None, headers=_session_socket_headers(browser))
    hello = await communicator.receive_json_from(timeout=5)
    await database_sync_to_async(lambda: Session.objects.all().delete())()  # expired, or flushed elsewhere

    await communicator.send_json_to({"type": "chat.send", "prompt": "still there?"})

    frames, code = await close_code(communicator)
    assert code == 4401
    assert frames[-1]["data"]["code"] == "not_authenticated"
    assert not await database_sync_to_async(Turn.objects.filter(conversation_id=hello["conv_id"]).exists)()


# --------------------------------------------------------------------------- pages


def test_api_docs_send_an_anonymous_browser_to_the_login_page(client, chat_user):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs/"
    client.force_login(chat_user)
    assert client.get("/api/docs/").status_code == 200


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
    assert (settings.BASE_DIR / "static" / "favicon.svg").read_text().startswith("<svg")


@pytest.mark.usefixtures("seeded_inventory")
def test_starters_needing_a_permission_the_user_lacks_are_not_offered(client, chat_user):
    client.force_login(chat_user)
    config = client.get("/inventory/").context["page_config"]
    assert config["unavailable_starters"] == {"inventory/inventory": ["Record a sale of 2 A-1002"]}
    assert client.get("/").context["page_config"]["unavailable_starters"] == {}

    clerk = UserFactory(username="clerk", perms=["inventory.change_item"])
    client.force_login(clerk)
    assert client.get("/inventory/").context["page_config"]["unavailable_starters"] == {}


def test_staff_open_a_turns_profile_version_in_the_admin(client, chat_user):
    staff = UserFactory(username="root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    config = client.get("/").context["page_config"]
    assert config["admin_profile_version_url"] == "/runtime/profile-version/REGISTRY/SLUG/0/"

    response = client.get("/runtime/profile-version/default/analyst/1/")
    assert response.status_code == 302
    assert response["Location"].endswith("/versions/1/") and "/admin/profiles/profile/" in response["Location"]
    assert client.get(response["Location"]).status_code == 200
    assert client.get("/runtime/profile-version/default/nope/1/").status_code == 404

    client.force_login(chat_user)
    assert client.get("/").context["page_config"]["admin_profile_version_url"] is None
    response = client.get("/runtime/profile-version/default/analyst/1/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
