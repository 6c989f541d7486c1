"""Prices, cost and usage (#20, point 2), through real turns: staff set prices per engine and model
(REST or the admin; a price is a new row effective from a time), every turn stores `usage.cost_usd` at
the price in force when it started (0 for the offline engine until priced, null for an unpriced model),
per-version stats and the gateway's `usage` carry it, and `GET /api/usage` sums turns, tokens and cost per
user, group, profile, key or day (staff: everyone's; others: their own)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from chat.billing.prices import price_set
from chat.models import Price, Turn
from profiles import keys
from profiles.models import AuditEvent
from profiles.timestamps import now_ms

from .factories import UserFactory
from .fake_openai import FakeOpenAIServer, remote_profile

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_registries", "fast_turns"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators"),
]


@pytest.fixture
def staff(db):
    return UserFactory(username="finance", is_staff=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def say(api: APIClient, prompt: str = "What is 2+2?") -> Turn:
    conv = api.post("/api/chat/conversations", {}, format="json").json()["conv_id"]
    answer = api.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": prompt}, format="json")
    assert answer.status_code == 200, answer.content
    return Turn.objects.get(pk=answer.json()["turn_id"])


def expected(turn: Turn, inp: float, out: float) -> float:
    usage = turn.usage
    return round((usage["prompt_tokens"] * inp + usage["completion_tokens"] * out) / 1_000_000, 6)


def test_staff_set_prices_and_a_turn_costs_the_price_in_force_when_it_started(staff, chat_api):
    put = client_for(staff).put(
        "/api/prices/offline/offline-v1", {"input_usd_per_mtok": 3, "output_usd_per_mtok": "15"}, format="json"
    )
    later = now_ms() + 3_600_000
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=100, output_usd_per_mtok=100,
              effective_from_ms=later, actor=staff)  # fmt: skip

    turn = say(chat_api)

    assert put.status_code == 200, put.content
    assert put.json()["input_usd_per_mtok"] == "3.000000" and put.json()["created_by"] == "finance"
    assert turn.usage["cost_usd"] == expected(turn, 3, 15) > 0
    assert next(p["effective_from_ms"] for p in chat_api.get("/api/prices").json()) == later
    assert AuditEvent.objects.filter(action="price.set", actor_username="finance").count() == 2


def test_unpriced_models_cost_zero_offline_and_unknown_elsewhere(chat_api):
    offline = say(chat_api)
    with FakeOpenAIServer() as fake:
        fake.stream_text(["four"])
        remote_profile(fake)
        conv = chat_api.post("/api/chat/conversations", {"profile": "remote"}, format="json").json()["conv_id"]
        answer = chat_api.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": "2+2?"}, format="json")

    assert offline.usage["cost_usd"] == 0.0
    assert answer.json()["status"] == "completed" and answer.json()["usage"]["cost_usd"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_usd_per_mtok": -1, "output_usd_per_mtok": 1}, "input_usd_per_mtok"),
        ({"input_usd_per_mtok": "NaN", "output_usd_per_mtok": 1}, "input_usd_per_mtok"),
        ({"input_usd_per_mtok": 1, "output_usd_per_mtok": "lots"}, "output_usd_per_mtok"),
        ({"input_usd_per_mtok": 1, "output_usd_per_mtok": 1, "effective_from_ms": -5}, "effective_from_ms"),
        ({"input_usd_per_mtok": 1}, "output_usd_per_mtok"),
    ],
)
def test_a_bad_price_is_refused_on_its_field(staff, body, field):
    response = client_for(staff).put("/api/prices/openai/gpt-x", json.dumps(body), content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert Price.objects.count() == 0


def test_only_staff_set_prices(chat_api):
    response = chat_api.put(
        "/api/prices/openai/gpt-x", {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}, format="json"
    )

    assert response.status_code == 403 and Price.objects.count() == 0


def test_stats_and_the_gateways_usage_carry_the_cost(staff, chat_api, chat_token):
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=2, output_usd_per_mtok=8, actor=staff)
    turn = say(chat_api)
    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_token}")

    completion = gateway.post(
        "/v1/chat/completions", {"model": "default", "messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    stats = {s["version"]: s for s in chat_api.get("/api/chat/profiles/default/stats").json()}

    assert completion.json()["usage"]["cost_usd"] == expected(Turn.objects.get(pk=completion["X-Turn-Id"]), 2, 8)
    assert stats[1]["cost_usd"] == round(turn.usage["cost_usd"] + completion.json()["usage"]["cost_usd"], 6)


def test_usage_is_summed_per_user_profile_key_and_day_for_staff_and_own_for_others(staff, chat_user, chat_api):
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=1, output_usd_per_mtok=1, actor=staff)
    mine = [say(chat_api), say(chat_api)]
    other = UserFactory(username="bob")
    theirs = say(client_for(other))
    secret = keys.key_create(owner=chat_user, name="bot", scopes=["*"]).secret
    gateway = APIClient()
    gateway.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    gateway.post(
        "/v1/chat/completions", {"model": "analyst", "messages": [{"role": "user", "content": "1+1"}]}, format="json"
    )
    keyed = Turn.objects.get(api_key_id__isnull=False)

    def report(user, group_by: str) -> dict:
        response = client_for(user).get(f"/api/usage?group_by={group_by}")
        assert response.status_code == 200, response.content
        return {row["key"]: row for row in response.json()["rows"]} | {"total": response.json()["total"]}

    by_user = report(staff, "user")
    assert (by_user["alice"]["turns"], by_user["bob"]["turns"]) == (3, 1)
    assert by_user["bob"]["cost_usd"] == theirs.usage["cost_usd"]
    assert by_user["total"]["turns"] == 4
    by_profile = report(staff, "profile")
    assert by_profile["default/analyst"]["turns"] == 1 and by_profile["default/default"]["turns"] == 3
    by_key = report(staff, "key")
    assert by_key[f"{keyed.api_key_id}: bot"]["turns"] == 1 and by_key[None]["turns"] == 3
    assert next(iter(report(staff, "day"))).count("-") == 2  # an ISO date
    own = report(chat_user, "user")
    assert set(own) == {"alice", "total"} and own["total"]["turns"] == 3
    assert own["alice"]["tokens_in"] == sum(t.usage["prompt_tokens"] for t in [*mine, keyed])
    assert client_for(staff).get("/api/usage?group_by=planet").status_code == 400


def test_the_admin_adds_a_price_through_the_service(staff, client):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)

    added = client.post(
        "/admin/chat/price/add/",
        {"api_type": "anthropic", "model": "claude-x", "input_usd_per_mtok": "3", "output_usd_per_mtok": "15"},
    )

    assert added.status_code == 302, added.content.decode()[:2000]
    price = Price.objects.get()
    assert (price.model, price.created_by) == ("claude-x", "root") and price.effective_from_ms > 0
    assert AuditEvent.objects.filter(action="price.set", actor_username="root").exists()
    assert client.get(f"/admin/chat/price/{price.pk}/change/").status_code == 200  # a view, not a form


def test_a_turn_that_cannot_be_prepared_fails_with_internal_error_instead_of_waiting_for_ever(chat_api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the price table")

    monkeypatch.setattr("chat.billing.prices.table.rate", broken)
    conv = chat_api.post("/api/chat/conversations", {}, format="json").json()["conv_id"]

    answer = chat_api.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": "hi"}, format="json")

    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"]["code"] == "internal_error"


def test_the_admin_usage_report_sums_per_user_and_per_profile(staff, chat_api, client):
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=1, output_usd_per_mtok=1, actor=staff)
    say(chat_api)
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)

    listing = client.get("/admin/chat/price/").content.decode()
    by_user = client.get("/admin/chat/price/usage/").content.decode()
    by_profile = client.get("/admin/chat/price/usage/?group_by=profile").content.decode()

    assert 'data-testid="usage-link"' in listing
    assert "<td>alice</td>" in by_user and "<strong>user</strong>" in by_user
    assert "<td>default/default</td>" in by_profile
