"""Profiles restricted to groups in conversations, over the websocket of both mounts.

A conversation runs a profile only while its user may use it: when a restriction (or leaving the group)
takes that away, the next turn switches to the registry default with `runtime.switched` reason
`access_revoked`, whether the conversation chose the profile itself or follows the user's selection. A
user without a selection of their own runs their group's default.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from chat.models import Conversation, Turn
from profiles import services
from profiles.access import forget_groups

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async


@pytest.fixture
def secret(mount, chat_user):
    """`secret` in the mount's registry for the group `support`, which `chat_user` (alice) is in."""
    chat_user.groups.add(Group.objects.create(name="support"))
    services.profile_create(
        registry_slug=mount.registry,
        slug="secret",
        runtime={"system_prompt": "You are a support desk assistant."},
        visible_to_groups=["support"],
    )


async def connect(open_ws, path: str, **query):
    communicator = await open_ws(path, **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def turn(communicator, frames_until, prompt: str = "hello") -> list[dict]:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt})
    frames = await frames_until(communicator)
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    return frames


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


async def leave_support(user) -> None:
    await db(lambda: user.groups.clear())()
    forget_groups(user)  # the test clients reuse this user object; a real request loads it afresh


async def restrict(registry: str, slug: str, groups: list[str]) -> None:
    await db(services.profile_update)(registry_slug=registry, slug=slug, changes={"visible_to_groups": groups})


@pytest.mark.parametrize("revoke", ["leave_group", "restrict_profile"])
async def test_losing_access_mid_conversation_switches_with_reason_access_revoked(
    mount, secret, chat_user, open_ws, frames_until, revoke
):
    conv_id = uuid.uuid4()
    communicator, hello = await connect(open_ws, mount.ws, conv_id=conv_id, profile="secret")
    assert hello["data"]["runtime_key"] == "secret"
    first = await turn(communicator, frames_until)
    assert not of_type(first, "runtime.switched")

    if revoke == "leave_group":
        await leave_support(chat_user)
    else:
        await restrict(mount.registry, "secret", ["managers"])
    frames = await turn(communicator, frames_until, "and now?")

    [switched] = of_type(frames, "runtime.switched")
    assert switched["reason"] == "access_revoked"
    assert switched["from"]["runtime_key"] == "secret"
    assert switched["to"]["runtime_key"] == mount.default_profile
    assert of_type(frames, "turn.started")[0]["runtime_key"] == mount.default_profile
    turns = await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()
    assert [t.runtime_key for t in turns] == ["secret", mount.default_profile]
    # Only the switch says so: the turn after it runs on without another switch, and a later change of
    # the default is a switch of its own.
    again = await turn(communicator, frames_until, "still there?")
    assert not of_type(again, "runtime.switched")
    await db(services.profile_update)(
        registry_slug=mount.registry, slug=mount.default_profile, changes={"description": "edited"}
    )
    later = await turn(communicator, frames_until, "and later?")
    assert of_type(later, "runtime.switched")[0]["reason"] == "profile_updated"


async def test_a_conversation_following_the_users_selection_switches_the_same_way(
    mount, secret, chat_user, chat_api, open_ws, frames_until
):
    response = await sync_to_async(chat_api.post)(mount.api("/profile"), {"slug": "secret"}, format="json")
    assert response.status_code == 200, response.content
    communicator, hello = await connect(open_ws, mount.ws)
    assert hello["data"]["runtime_key"] == "secret"
    await turn(communicator, frames_until)

    await leave_support(chat_user)
    frames = await turn(communicator, frames_until)

    [switched] = of_type(frames, "runtime.switched")
    assert (switched["reason"], switched["to"]["runtime_key"]) == ("access_revoked", mount.default_profile)
    current = (await sync_to_async(chat_api.get)(mount.api("/profile"))).json()
    assert current["stale_selection"] == {"registry": mount.registry, "slug": "secret"}


async def test_a_conversation_never_runs_a_profile_its_user_may_not_use(mount, secret, other_user, open_ws):
    """Whatever a stored conversation names, its runtime is resolved for its user on every turn."""
    from rest_framework.authtoken.models import Token

    token = await db(lambda: Token.objects.create(user=other_user).key)()
    conversation = await db(Conversation.objects.create)(
        owner=other_user, mount=mount.name, selected_registry=mount.registry, selected_profile="secret"
    )
    _, hello = await connect(open_ws, mount.ws, token=token, conv_id=conversation.pk)
    assert hello["data"]["runtime_key"] == mount.default_profile


async def test_a_user_without_a_selection_runs_their_group_default(mount, secret, open_ws, frames_until):
    await db(services.registry_update)(slug=mount.registry, group_defaults=[{"group": "support", "profile": "secret"}])
    communicator, hello = await connect(open_ws, mount.ws)
    assert hello["data"]["runtime_key"] == "secret"
    frames = await turn(communicator, frames_until)
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "secret"


# --------------------------------------------------------------------------- choosing a hidden profile


async def test_creating_a_conversation_with_a_hidden_profile_is_404(mount, secret, other_user):
    client = APIClient()
    client.force_authenticate(other_user)
    response = await sync_to_async(client.post)(mount.api("/conversations"), {"profile": "secret"}, format="json")
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


async def test_opening_a_socket_with_a_hidden_profile_is_refused_like_an_unknown_one(
    mount, secret, other_user, open_ws, close_code
):
    from rest_framework.authtoken.models import Token

    token = await db(lambda: Token.objects.create(user=other_user).key)()
    hidden = await open_ws(mount.ws, token=token, conv_id=uuid.uuid4(), profile="secret")
    unknown = await open_ws(mount.ws, token=token, conv_id=uuid.uuid4(), profile="no-such-profile")
    (hidden_frames, hidden_code), (unknown_frames, unknown_code) = await close_code(hidden), await close_code(unknown)
    assert hidden_code == unknown_code
    assert [f["data"]["code"] for f in hidden_frames] == [f["data"]["code"] for f in unknown_frames] == ["not_found"]
    assert not await db(Conversation.objects.filter(owner=other_user).exists)()


async def test_profile_select_of_a_hidden_profile_is_an_error_like_an_unknown_one(mount, secret, other_user, open_ws):
    from rest_framework.authtoken.models import Token

    token = await db(lambda: Token.objects.create(user=other_user).key)()
    communicator, _ = await connect(open_ws, mount.ws, token=token, conv_id=uuid.uuid4())
    await communicator.send_json_to({"type": "profile.select", "slug": "secret"})
    hidden = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "profile.select", "slug": "no-such-profile"})
    unknown = await communicator.receive_json_from(timeout=5)
    assert hidden["type"] == unknown["type"] == "error"
    assert hidden["data"]["code"] == unknown["data"]["code"] == "not_found"


# --------------------------------------------------------------------------- a writer of the registry


@pytest.fixture
def writer_token(other_user) -> str:
    """`other_user` (outside `support`) may write profiles: they see every slug of the registry."""
    from rest_framework.authtoken.models import Token

    from tests.factories import grant

    grant(other_user, ["profiles.add_profile", "profiles.change_profile"])
    return Token.objects.create(user=other_user).key


async def test_a_writer_outside_the_group_is_told_it_is_restricted_not_unknown(mount, secret, writer_token, open_ws):
    communicator, _ = await connect(open_ws, mount.ws, token=writer_token, conv_id=uuid.uuid4())
    await communicator.send_json_to({"type": "profile.select", "slug": "secret"})
    refused = await communicator.receive_json_from(timeout=5)
    assert (refused["type"], refused["data"]["code"]) == ("error", "permission_denied")
    assert "restricted to groups you are not in" in refused["data"]["message"]


async def test_a_writer_who_loses_access_falls_back_like_anyone(mount, chat_user, open_ws, frames_until):
    """A restriction that takes the profile from a writer switches their conversation with
    `access_revoked`, as for any user (their 403 is a kind of "may not use")."""
    from tests.factories import grant

    await db(grant)(chat_user, ["profiles.add_profile"])
    await db(services.profile_create)(registry_slug=mount.registry, slug="open-desk")
    communicator, hello = await connect(open_ws, mount.ws, conv_id=uuid.uuid4(), profile="open-desk")
    assert hello["data"]["runtime_key"] == "open-desk"
    await turn(communicator, frames_until)

    await restrict(mount.registry, "open-desk", ["managers"])
    frames = await turn(communicator, frames_until, "and now?")

    [switched] = of_type(frames, "runtime.switched")
    assert (switched["reason"], switched["to"]["runtime_key"]) == ("access_revoked", mount.default_profile)
