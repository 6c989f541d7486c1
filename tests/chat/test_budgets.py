"""Budgets (#20, point 3): staff cap what the turns of a user, a group's members, a profile or an API key may
cost per day, month or in total. A turn is admitted while what the period spent plus what turns under way
reserved is below the amount; a refusal names the budget and when it resets (HTTP 429 `budget_exceeded`,
the gateway's OpenAI error, a websocket `error` frame with the socket open), and stores nothing. Real
turns (the offline engine at a set price); concurrent submissions in real threads (stage 2: PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from chat.billing.budgets import budget_create, budget_used, period_end_ms, table
from chat.billing.prices import price_set
from chat.models import Budget, Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_create, turn_submit
from profiles import keys
from profiles.models import AuditEvent
from tests.helpers import in_threads

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]


@pytest.fixture
def staff(db):
    return UserFactory(username="finance", is_staff=True)


@pytest.fixture
def priced(staff):
    """Offline turns cost money: a prompt token ten cents (a turn costs under a dollar)."""
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=100_000, output_usd_per_mtok=0, actor=staff)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def say(api: APIClient, conv_id: str, prompt: str = "What is 2+2?"):
    return api.post(f"/api/chat/conversations/{conv_id}/messages?wait=1", {"prompt": prompt}, format="json")


def new_conversation(api: APIClient, profile: str = "default") -> str:
    return api.post("/api/chat/conversations", {"profile": profile}, format="json").json()["conv_id"]


def budget(staff, kind: str, scope_id, amount: float, period: str = "month") -> Budget:
    return budget_create(scope={"type": kind, "id": scope_id}, amount_usd=amount, period=period, actor=staff)


def test_a_user_budget_admits_turns_until_it_is_spent_then_429_naming_it(priced, staff, chat_user, chat_api):
    conv = new_conversation(chat_api)
    first = say(chat_api, conv)
    cost = Turn.objects.get(pk=first.json()["turn_id"]).usage["cost_usd"]
    budget(staff, "user", chat_user.pk, cost * 1.5)

    second = say(chat_api, conv)
    third = say(chat_api, conv)

    assert second.status_code == 200 and cost > 0
    assert third.status_code == 429, third.content
    error = third.json()["error"]
    assert error["code"] == "budget_exceeded" and error["scope"] == {"type": "user", "id": str(chat_user.pk)}
    assert error["period"] == "month" and error["resets_at_ms"] == period_end_ms("month")
    assert "monthly budget of user" in error["message"] and "resets" in error["message"]
    assert int(third["Retry-After"]) >= 1
    assert Turn.objects.filter(conversation_id=conv).count() == 2  # the refused turn stored nothing


def test_group_profile_and_key_budgets_apply_to_their_turns_only(priced, staff, chat_user, chat_api):
    group = Group.objects.create(name="support")
    chat_user.groups.add(group)
    other = UserFactory(username="outsider")
    budget(staff, "group", "support", 0.000001)
    spent = say(chat_api, new_conversation(chat_api))  # admitted: nothing was spent yet
    refused = say(chat_api, new_conversation(chat_api))
    allowed = say(client_for(other), new_conversation(client_for(other)))
    Budget.objects.all().delete()

    table.clear()
    budget(staff, "profile", "default/analyst", 0.000001)
    on_analyst = say(client_for(other), new_conversation(client_for(other), "analyst"))
    on_default = say(client_for(other), new_conversation(client_for(other), "default"))

    assert spent.status_code == 200
    assert refused.status_code == 429 and refused.json()["error"]["scope"] == {"type": "group", "id": "support"}
    assert allowed.status_code == 200
    assert (on_default.status_code, on_analyst.status_code) == (200, 200)  # nothing spent on analyst yet
    second = say(client_for(other), new_conversation(client_for(other), "analyst"))
    assert second.status_code == 429 and second.json()["error"]["scope"]["type"] == "profile"


def test_a_key_budget_answers_the_gateway_with_an_openai_429(priced, staff, chat_user):
    made = keys.key_create(owner=chat_user, name="bot", scopes=["*"])
    budget(staff, "key", made.key.pk, 0.000001, period="day")
    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=f"Bearer {made.secret}")
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}

    first = gateway.post("/v1/chat/completions", body, format="json")
    second = gateway.post("/v1/chat/completions", body, format="json")

    assert first.status_code == 200, first.content
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "budget_exceeded" and second.json()["error"]["type"] == "rate_limit_error"
    assert "daily budget of key" in second.json()["error"]["message"]


async def test_a_socket_gets_an_error_frame_naming_the_budget_and_stays_open(
    priced, staff, chat_user, connected, frames_until
):
    await database_sync_to_async(budget)(staff, "user", chat_user.pk, 0.000001, "day")
    communicator, _ = await connected(conv_id=uuid.uuid4())
    await communicator.send_json_to({"type": "chat.send", "prompt": "first"})
    await frames_until(communicator)

    await communicator.send_json_to({"type": "chat.send", "prompt": "second"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error" and error["data"]["code"] == "budget_exceeded"
    assert error["data"]["scope"] == {"type": "user", "id": str(chat_user.pk)} and error["data"]["resets_at_ms"]
    await communicator.send_json_to({"type": "ws.ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.pong"


def test_budgets_over_rest_are_staffs_checked_and_audited(staff, chat_user, chat_api):
    api = client_for(staff)
    made = api.post(
        "/api/budgets", {"scope": {"type": "user", "id": chat_user.pk}, "amount_usd": 5, "period": "day"}, format="json"
    )
    listed = api.get("/api/budgets").json()
    refused = [
        (api.post("/api/budgets", body, format="json"), field)
        for body, field in [
            ({"scope": {"type": "planet", "id": 1}, "amount_usd": 5, "period": "day"}, "scope.type"),
            ({"scope": {"type": "user", "id": 99999}, "amount_usd": 5, "period": "day"}, "scope.id"),
            ({"scope": {"type": "group", "id": "nobody"}, "amount_usd": 5, "period": "day"}, "scope.id"),
            ({"scope": {"type": "user", "id": chat_user.pk}, "amount_usd": 0, "period": "day"}, "amount_usd"),
            ({"scope": {"type": "user", "id": chat_user.pk}, "amount_usd": "NaN", "period": "day"}, "amount_usd"),
            ({"scope": {"type": "user", "id": chat_user.pk}, "amount_usd": 5, "period": "week"}, "period"),
        ]
    ]
    duplicate = api.post(
        "/api/budgets", {"scope": {"type": "user", "id": chat_user.pk}, "amount_usd": 9, "period": "day"}, format="json"
    )

    assert made.status_code == 201, made.content
    assert made.json()["used_usd"] == 0 and made.json()["resets_at_ms"] == period_end_ms("day")
    assert [b["scope"] for b in listed] == [{"type": "user", "id": str(chat_user.pk)}]
    assert [(r.status_code, r.json()["error"].get("field")) for r, _ in refused] == [(400, f) for _, f in refused]
    assert duplicate.status_code == 409
    # Others read the budgets that apply to them.
    assert [b["scope"]["type"] for b in chat_api.get("/api/budgets").json()] == ["user"]
    assert client_for(UserFactory(username="stranger")).get("/api/budgets").json() == []
    assert chat_api.post("/api/budgets", {}, format="json").status_code == 403
    assert api.delete(f"/api/budgets/{made.json()['id']}").status_code == 204
    assert [e.action for e in AuditEvent.objects.filter(object_type="budget").order_by("id")] == [
        "budget.created",
        "budget.deleted",
    ]


@pytest.mark.concurrency
def test_concurrent_submissions_never_overspend_by_more_than_one_reservation(priced, staff, chat_user, chat_api):
    warm = say(chat_api, new_conversation(chat_api))  # what a turn of `default` costs: the estimate
    cost = Turn.objects.get(pk=warm.json()["turn_id"]).usage["cost_usd"]
    limit = budget(staff, "user", chat_user.pk, cost * 5.5)
    conversations = [conversation_create(owner=chat_user, mount=CHAT_MOUNT, profile="default") for _ in range(20)]

    results = in_threads(20, lambda i: turn_submit(conversation=conversations[i], user=chat_user, prompt="go"))

    admitted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(admitted) == 5, results
    assert {type(r).__name__ for r in refused} == {"BudgetExceeded"}
    used = budget_used(limit)
    assert used == pytest.approx(cost * 6) and used - float(limit.amount_usd) <= cost


def test_an_owner_caps_a_new_key_with_its_budget_in_one_step(priced, chat_user, chat_api):
    made = chat_api.post(
        "/api/keys", {"name": "capped", "scopes": ["*"], "budget_usd": 0.000001, "budget_period": "day"}, format="json"
    )
    bad = chat_api.post(
        "/api/keys", {"name": "wrong", "scopes": ["*"], "budget_usd": 1, "budget_period": "week"}, format="json"
    )
    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=f"Bearer {made.json()['key']}")
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}

    assert made.status_code == 201, made.content
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "budget_period"
    assert [k["name"] for k in chat_api.get("/api/keys").json()] == ["capped"]  # the refused one made no key
    mine = chat_api.get("/api/budgets").json()
    assert [(b["scope"], b["period"]) for b in mine] == [({"type": "key", "id": str(made.json()["id"])}, "day")]
    assert gateway.post("/v1/chat/completions", body, format="json").status_code == 200
    assert gateway.post("/v1/chat/completions", body, format="json").json()["error"]["code"] == "budget_exceeded"
