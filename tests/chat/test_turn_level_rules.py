"""Rules that rested on one unit test, checked again at turn level: through the real consumer
(`config.asgi.application`), the project's URL root and the database.

- a profile's middleware config (guardrail terms) reaches the running middleware, also after an edit;
- engine settings are part of the fingerprint a turn announces and records;
- the REST sale endpoint needs `inventory.add_sale` (and the chat tool its own `inventory.change_item`);
- a request can never override the base URL, even where the profile lets requests patch engine settings.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.models import Turn
from inventory.models import Item, Sale
from profiles import services
from tests.helpers import expected_fingerprint

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async
EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]
BASE_URL_OVERRIDE = {"step_settings_patch": {"openai-chat": {"openai-base-url": "http://attacker.example/v1"}}}
BASE_URL_FIELD = "request_overrides.step_settings_patch.openai-chat.openai-base-url"


def types(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames]


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


async def connect(open_ws, path: str = "/ws/chat/", **query) -> tuple[Any, dict]:
    communicator = await open_ws(path, **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def turn(communicator, frames_until, prompt: str, **extra: Any) -> list[dict]:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt, **extra})
    frames = await frames_until(communicator)
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    return frames


async def stored_turns(conv_id) -> list[Turn]:
    return await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()


def create_profile(slug: str, *, runtime: dict, policy: dict | None = None, registry: str = "default") -> None:
    services.profile_create(
        registry_slug=registry, slug=slug, display_name=slug.title(), runtime=runtime, policy=policy
    )


@pytest.fixture
def editor_api(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="editor", perms=EDITOR_PERMS))
    return client


# --------------------------------------------------------------------------- (a) middleware config at run time


def guardrail(terms: list[str]) -> dict:
    return {"name": "guardrail", "id": "g", "config": {"blocked_terms": terms, "message": "Not on this desk."}}


def refusal(frames: list[dict]) -> tuple[list[dict], dict]:
    blocked = [e for e in of_type(frames, "middleware.event") if e["event"] == "blocked"]
    return blocked, of_type(frames, "llm.final")[0]


async def test_a_profiles_guardrail_terms_reach_the_running_middleware_and_an_edit_applies_next_turn(
    open_ws, frames_until, editor_api
):
    runtime = {"system_prompt": "You are a guarded assistant.", "middlewares": [guardrail(["zebra crossing"])]}
    await db(create_profile)("guarded", runtime=runtime)
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="guarded")
    assert hello["data"]["middlewares"] == [{"name": "guardrail", "id": "g"}]

    refused = await turn(communicator, frames_until, "Where is the nearest Zebra  Crossing?")
    blocked, final = refusal(refused)
    assert blocked == [{"middleware": "guardrail", "id": "g", "event": "blocked", "detail": {"term": "zebra crossing"}}]
    assert (final["text"], final["stop_reason"]) == ("Not on this desk.", "refused")
    assert "llm.delta" not in types(refused)  # the engine never ran
    passed = await turn(communicator, frames_until, "Tell me about the moon landing")
    assert refusal(passed)[0] == [] and of_type(passed, "llm.final")[0]["stop_reason"] != "refused"

    # The term is changed through the REST API; the very next turn of the same socket uses the new one.
    response = await sync_to_async(editor_api.patch)(
        "/api/chat/profiles/guarded",
        {"runtime": {**runtime, "middlewares": [guardrail(["moon landing"])]}, "expected_version": 1},
        format="json",
    )
    assert response.status_code == 200, response.content
    refused_now = await turn(communicator, frames_until, "Tell me about the MOON landing")
    allowed_now = await turn(communicator, frames_until, "Where is the nearest zebra crossing?")

    blocked, final = refusal(refused_now)
    assert [e["detail"] for e in blocked] == [{"term": "moon landing"}]
    assert final["stop_reason"] == "refused"
    assert of_type(refused_now, "runtime.switched")[0]["reason"] == "profile_updated"
    assert refusal(allowed_now)[0] == []
    records = await stored_turns(hello["conv_id"])
    assert [t.profile_version for t in records] == [1, 1, 2, 2]
    assert records[0].text == records[2].text == "Not on this desk."


# --------------------------------------------------------------------------- (b) engine settings in the fingerprint


def documented_fingerprint(resolution: dict) -> str:
    """The README's fingerprint of a resolution, computed independently (`tests.helpers`)."""
    return expected_fingerprint(
        registry=resolution["registry"],
        profile=resolution["profile"],
        profile_version=resolution["profile_version"],
        runtime=resolution["effective_runtime"],
        engine=resolution["engine"]["settings"],
    )


async def test_profiles_differing_only_by_an_engine_setting_run_turns_under_different_fingerprints(
    open_ws, frames_until, chat_api
):
    base = {"system_prompt": "You are a sampling assistant.", "tools": ["calculator"]}
    for slug, temperature in (("cool", 0.1), ("warm", 1.3)):
        runtime = {**base, "step_settings_patch": {"ai-chat": {"ai-temperature": temperature}}}
        await db(create_profile)(slug, runtime=runtime)

    resolved = {}
    for slug in ("cool", "warm"):
        response = await sync_to_async(chat_api.post)(f"/api/chat/profiles/{slug}/resolve", {}, format="json")
        assert response.status_code == 200, response.content
        resolved[slug] = response.json()
    cool, warm = resolved["cool"], resolved["warm"]
    # Everything but the engine setting is the same ...
    assert cool["effective_runtime"]["system_prompt"] == warm["effective_runtime"]["system_prompt"]
    assert cool["effective_runtime"]["tools"] == warm["effective_runtime"]["tools"]
    assert cool["profile_version"] == warm["profile_version"] == 1
    assert (
        cool["engine"]["settings"]["ai-chat"]["ai-temperature"],
        warm["engine"]["settings"]["ai-chat"]["ai-temperature"],
    ) == (0.1, 1.3)
    # ... and the fingerprints differ: each hashes its engine settings (a profile's patch is also in its
    # effective runtime, so the documented computation is what shows the settings themselves count).
    assert cool["fingerprint"] != warm["fingerprint"]
    assert [documented_fingerprint(r) for r in (cool, warm)] == [cool["fingerprint"], warm["fingerprint"]]

    for slug, expected in resolved.items():
        communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile=slug)
        frames = await turn(communicator, frames_until, "what is 2 + 3?")
        [started] = of_type(frames, "turn.started")
        assert hello["data"]["fingerprint"] == started["fingerprint"] == expected["fingerprint"], slug
        [record] = await stored_turns(hello["conv_id"])
        assert record.fingerprint == expected["fingerprint"], slug


async def test_a_server_engine_default_is_in_the_fingerprint_of_the_next_turn(
    open_ws, frames_until, chat_api, settings
):
    settings.OPENAI_BASE_URL = "http://llm-one.internal/v1"
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="analyst")
    first = await turn(communicator, frames_until, "hello")

    settings.OPENAI_BASE_URL = "http://llm-two.internal/v1"  # the lowest layer of engine settings
    second = await turn(communicator, frames_until, "hello again")

    before, after = (of_type(frames, "turn.started")[0]["fingerprint"] for frames in (first, second))
    assert before == hello["data"]["fingerprint"] != after
    [switched] = of_type(second, "runtime.switched")
    assert (switched["from"]["fingerprint"], switched["to"]["fingerprint"]) == (before, after)
    records = await stored_turns(hello["conv_id"])
    assert [r.fingerprint for r in records] == [before, after]
    now = (await sync_to_async(chat_api.post)("/api/chat/profiles/analyst/resolve", {}, format="json")).json()
    assert now["fingerprint"] == after
    assert now["engine"]["settings"]["openai-chat"]["openai-base-url"] == "http://llm-two.internal/v1"


# --------------------------------------------------------------------------- (c) the sale permission


def sell(user, sku: str = "D-4001", qty: int = 1):
    client = APIClient()
    client.force_authenticate(user)
    return client.post("/inventory/api/sales", {"sku": sku, "qty": qty}, format="json")  # the project's URL root


@pytest.mark.usefixtures("seeded_inventory")
def test_the_rest_sale_endpoint_needs_add_sale():
    stock = Item.objects.get(sku="D-4001").qty
    sales = Sale.objects.count()
    without = UserFactory(username="clerk-without", perms=["inventory.change_item", "inventory.add_item"])
    with_perm = UserFactory(username="clerk-with", perms=["inventory.add_sale"])

    refused = sell(without)
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "permission_denied"
    assert (Item.objects.get(sku="D-4001").qty, Sale.objects.count()) == (stock, sales)

    accepted = sell(with_perm, qty=2)
    assert accepted.status_code == 201, accepted.content
    assert (Item.objects.get(sku="D-4001").qty, Sale.objects.count()) == (stock - 2, sales + 1)


@pytest.mark.usefixtures("seeded_inventory")
async def test_the_sale_tool_runs_as_the_connected_user_with_its_own_permission(open_ws, frames_until):
    """The chat tool writes through the same service as REST and checks `inventory.change_item` (README's
    tool table): `add_sale` alone, enough for REST, is not enough in a turn."""

    async def record_sale_as(username: str, perms: list[str]) -> dict:
        user = await db(UserFactory)(username=username, perms=perms)
        token = await db(lambda: Token.objects.create(user=user).key)()
        communicator, _ = await connect(
            open_ws, "/inventory/ws/chat/", token=token, conv_id=uuid.uuid4(), profile="inventory"
        )
        frames = await turn(communicator, frames_until, "record a sale of 1 D-4001")
        [result] = of_type(frames, "tool.result")
        assert result["name"] == "inventory_record_sale"
        return result

    def stock_and_sales() -> tuple[int, int]:
        return Item.objects.get(sku="D-4001").qty, Sale.objects.count()

    stock, sales = await db(stock_and_sales)()
    denied = await record_sale_as("sale-only", ["inventory.add_sale"])
    assert denied["error"] == "permission denied: inventory.change_item required"
    assert await db(stock_and_sales)() == (stock, sales)

    done = await record_sale_as("stock-keeper", ["inventory.change_item"])
    assert "error" not in done, done
    assert done["result"]["item"]["qty"] == stock - 1
    assert await db(stock_and_sales)() == (stock - 1, sales + 1)


# --------------------------------------------------------------------------- (d) the base URL is never per request


OPEN_ENGINE_POLICY = {"allow_overrides": True, "allowed_override_keys": ["step_settings_patch"]}


async def test_a_request_cannot_override_the_base_url_over_the_websocket_or_rest(open_ws, frames_until, chat_api):
    runtime = {
        "system_prompt": "You are an open assistant.",
        "step_settings_patch": {"ai-chat": {"ai-temperature": 0.5}},
    }
    await db(create_profile)("open", runtime=runtime, policy=OPEN_ENGINE_POLICY)
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="open")

    # The policy really lets requests patch engine settings ...
    allowed = await turn(
        communicator,
        frames_until,
        "hi",
        request_overrides={"step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}}},
    )
    assert of_type(allowed, "turn.started")[0]["fingerprint"] != hello["data"]["fingerprint"]

    # ... but not the base URL, alone or next to an allowed field.
    for overrides in (
        BASE_URL_OVERRIDE,
        {"step_settings_patch": {**BASE_URL_OVERRIDE["step_settings_patch"], "ai-chat": {"ai-temperature": 0.3}}},
    ):
        await communicator.send_json_to({"type": "chat.send", "prompt": "hi", "request_overrides": overrides})
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error", error
        assert (error["data"]["code"], error["data"]["field"]) == ("policy_violation", BASE_URL_FIELD)
    await communicator.send_json_to({"type": "ws.ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.pong"  # no turn started in between
    [record] = await stored_turns(hello["conv_id"])
    assert record.overrides_applied == {"step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}}}

    response = await sync_to_async(chat_api.post)(
        "/api/chat/profiles/open/resolve", {"request_overrides": BASE_URL_OVERRIDE}, format="json"
    )
    assert response.status_code == 403, response.content
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == ("policy_violation", BASE_URL_FIELD)
    allowed_rest = await sync_to_async(chat_api.post)(
        "/api/chat/profiles/open/resolve",
        {"request_overrides": {"step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}}}},
        format="json",
    )
    assert allowed_rest.status_code == 200, allowed_rest.content
    assert "attacker" not in allowed_rest.content.decode()
