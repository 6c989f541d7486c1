"""Access revoked mid-conversation, end to end: a real daphne process, a real websocket client, and the
restriction written by an editor through the HTTP API while the conversation is open. Both mounts."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from profiles import services
from tests.e2e.helpers import hello, http, make_user, new_conv_id, of_type, run_turn, seed, ws_connect
from tests.e2e.server import LiveServer

pytestmark = pytest.mark.e2e

EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker):
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(live, transactional_db) -> LiveServer:
    seed()
    return live


@pytest.fixture
def people(server):
    """alice (in `support`), and an editor who restricts profiles through the API."""
    alice = make_user("alice")
    get_user_model().objects.get(pk=alice.pk).groups.add(Group.objects.create(name="support"))
    return alice, make_user("editor", perms=EDITOR_PERMS, staff=True)


MOUNTS = [("", "", "default", "default"), ("/inventory", "inventory/", "inventory", "inventory")]


@pytest.mark.parametrize(("prefix", "ws_prefix", "registry", "default"), MOUNTS, ids=["chat", "inventory"])
async def test_revoking_access_mid_conversation_switches_the_next_turn_with_access_revoked(
    server, people, prefix, ws_prefix, registry, default
):
    alice, editor = people
    await database_sync_to_async(services.profile_create)(
        registry_slug=registry,
        slug="secret",
        runtime={"system_prompt": "You are a support desk assistant."},
        visible_to_groups=["support"],
    )
    async with ws_connect(server, alice, conv_id=new_conv_id(), prefix=ws_prefix, profile="secret") as ws:
        first = await hello(ws)
        assert first["data"]["runtime_key"] == "secret"
        frames = await run_turn(ws, "hello")
        assert not of_type(frames, "runtime.switched")

        async with http(server, editor) as client:
            response = await client.patch(
                f"{prefix}/api/chat/profiles/secret", json={"visible_to_groups": ["managers"]}
            )
            assert response.status_code == 200, response.text
            async with http(server, alice) as alice_client:
                hidden = await alice_client.get(f"{prefix}/api/chat/profiles/secret")
                assert hidden.status_code == 404

        frames = await run_turn(ws, "and now?")

    [switched] = of_type(frames, "runtime.switched")
    assert switched["data"]["reason"] == "access_revoked"
    assert switched["data"]["from"]["runtime_key"] == "secret"
    assert switched["data"]["to"]["runtime_key"] == default
    assert of_type(frames, "turn.started")[0]["data"]["runtime_key"] == default
    assert frames[-1]["type"] == "turn.completed"
