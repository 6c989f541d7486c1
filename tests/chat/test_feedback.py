"""Feedback on answers (`PUT|DELETE …/conversations/{id}/turns/{turn_id}/feedback`) through both mounts:
set, replace, withdraw, shown on the turn reads, only by the conversation's owner, on finished turns
only, with field-path errors; and the per-version stats count it (turns run by the offline engine).

Like test_conversations_api.py: DRF's APIClient, a message with `?wait=1` runs its turn inline.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth import get_user_model

from chat.models import Turn, TurnFeedback
from profiles.models import Profile

from .factories import ConversationFactory, TurnFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]


def create(api, mount) -> str:
    response = api.post(mount.api("/conversations"), {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["conv_id"]


def say(api, mount, conv_id, prompt: str = "hello") -> str:
    response = api.post(mount.api(f"/conversations/{conv_id}/messages?wait=1"), {"prompt": prompt}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["turn_id"]


def feedback_url(mount, conv_id, turn_id) -> str:
    return mount.api(f"/conversations/{conv_id}/turns/{turn_id}/feedback")


def rate(api, mount, conv_id, turn_id, **body):
    """PUT the body as JSON text (escaped: a lone surrogate goes through as `\\ud800`, as a client sends it)."""
    return api.put(feedback_url(mount, conv_id, turn_id), json.dumps(body), content_type="application/json")


def withdraw(api, mount, conv_id, turn_id):
    return api.delete(feedback_url(mount, conv_id, turn_id))


def shown(api, mount, conv_id, turn_id) -> tuple[dict | None, dict | None]:
    """The turn's `feedback` as the turn read and the conversation read show it."""
    one = api.get(mount.api(f"/conversations/{conv_id}/turns/{turn_id}")).json()["feedback"]
    turns = api.get(mount.api(f"/conversations/{conv_id}")).json()["turns"]
    return one, next(t["feedback"] for t in turns if t["turn_id"] == turn_id)


@pytest.fixture
def answered(chat_api, mount) -> tuple[str, str]:
    """(conv_id, turn_id) of a conversation of the caller's with one finished answer."""
    conv_id = create(chat_api, mount)
    return conv_id, say(chat_api, mount, conv_id)


def test_put_rates_the_answer_and_the_turn_reads_show_it(chat_api, mount, answered):
    conv_id, turn_id = answered
    assert shown(chat_api, mount, conv_id, turn_id) == (None, None)

    response = rate(chat_api, mount, conv_id, turn_id, rating="up", comment="  spot on ")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"rating", "comment", "at_ms"}
    assert (body["rating"], body["comment"]) == ("up", "spot on")
    assert isinstance(body["at_ms"], int)
    assert shown(chat_api, mount, conv_id, turn_id) == (body, body)


def test_a_second_put_replaces_the_rating(chat_api, chat_user, mount, answered):
    conv_id, turn_id = answered
    first = rate(chat_api, mount, conv_id, turn_id, rating="up", comment="good").json()

    response = rate(chat_api, mount, conv_id, turn_id, rating="down")

    assert response.status_code == 200, response.content
    second = response.json()
    assert (second["rating"], second["comment"]) == ("down", "")  # PUT replaces: no comment sent, none kept
    assert second["at_ms"] >= first["at_ms"]
    assert TurnFeedback.objects.filter(turn_id=turn_id, user=chat_user).count() == 1
    assert shown(chat_api, mount, conv_id, turn_id) == (second, second)


def test_delete_withdraws_the_rating(chat_api, mount, answered):
    conv_id, turn_id = answered
    rate(chat_api, mount, conv_id, turn_id, rating="down")

    response = withdraw(chat_api, mount, conv_id, turn_id)

    assert response.status_code == 204
    assert not TurnFeedback.objects.exists()
    assert shown(chat_api, mount, conv_id, turn_id) == (None, None)
    assert withdraw(chat_api, mount, conv_id, turn_id).status_code == 204  # nothing left to withdraw


def test_another_users_conversation_is_answered_as_on_its_other_routes(chat_api, chat_user, other_user, mount):
    foreign = TurnFactory(
        conversation=ConversationFactory(owner=other_user, mount=mount.name), status=Turn.Status.COMPLETED
    )
    TurnFeedback.objects.create(turn=foreign, user=other_user, rating="up")
    conv_id = foreign.conversation_id
    read = chat_api.get(mount.api(f"/conversations/{conv_id}"))

    put = rate(chat_api, mount, conv_id, foreign.pk, rating="down")
    delete = withdraw(chat_api, mount, conv_id, foreign.pk)

    assert read.status_code == put.status_code == delete.status_code == 403
    assert put.json() == delete.json() == read.json()
    assert read.json()["error"]["code"] == "permission_denied"
    assert list(TurnFeedback.objects.values_list("user_id", "rating")) == [(other_user.pk, "up")]


def test_a_turn_not_in_the_conversation_is_404_on_turn_id(chat_api, chat_user, mount, answered):
    conv_id, _ = answered
    elsewhere = say(chat_api, mount, create(chat_api, mount))

    for turn_id in (elsewhere, uuid.uuid4()):
        for response in (
            rate(chat_api, mount, conv_id, turn_id, rating="up"),
            withdraw(chat_api, mount, conv_id, turn_id),
        ):
            assert response.status_code == 404, response.content
            assert response.json()["error"]["field"] == "turn_id"
    assert not TurnFeedback.objects.exists()


@pytest.mark.parametrize("status", [Turn.Status.QUEUED, Turn.Status.RUNNING])
def test_an_unfinished_turn_is_409(chat_api, chat_user, mount, status):
    turn = TurnFactory(conversation=ConversationFactory(owner=chat_user, mount=mount.name), seq=1, status=status)

    response = rate(chat_api, mount, turn.conversation_id, turn.pk, rating="up")

    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "conflict"
    assert response.json()["error"]["field"] == "turn_id"
    assert not TurnFeedback.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": "meh"}, "rating"),
        ({"rating": "UP"}, "rating"),
        ({"rating": None}, "rating"),
        ({}, "rating"),
        ({"comment": "why"}, "rating"),
        ({"rating": "up", "stars": 5}, "stars"),
        ({"rating": "up", "comment": "x" * 2001}, "comment"),
        ({"rating": "up", "comment": ["a list"]}, "comment"),
        ({"rating": "up", "comment": "lone \ud800 surrogate"}, "comment"),
    ],
)
def test_a_bad_body_is_400_on_its_field_and_stores_nothing(chat_api, mount, answered, body, field):
    conv_id, turn_id = answered

    response = rate(chat_api, mount, conv_id, turn_id, **body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert not TurnFeedback.objects.exists()


def test_a_long_comment_up_to_the_limit_is_kept(chat_api, mount, answered):
    conv_id, turn_id = answered

    response = rate(chat_api, mount, conv_id, turn_id, rating="down", comment="y" * 2000)

    assert response.status_code == 200, response.content
    assert TurnFeedback.objects.get().comment == "y" * 2000


def test_the_version_stats_count_the_thumbs_of_its_turns(chat_api, mount):
    conv_id = create(chat_api, mount)
    turns = [say(chat_api, mount, conv_id, f"question {n}") for n in range(4)]
    version = Turn.objects.get(pk=turns[0]).profile_version
    stats = mount.api(f"/profiles/{mount.default_profile}/stats?registry={mount.registry}")
    one = mount.api(f"/profiles/{mount.default_profile}/versions/{version}/stats?registry={mount.registry}")

    def thumbs(url: str) -> tuple[int, int]:
        response = chat_api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        row = body if isinstance(body, dict) else next(r for r in body if r["version"] == version)
        return row["thumbs_up"], row["thumbs_down"]

    assert thumbs(stats) == thumbs(one) == (0, 0)
    for turn_id, rating in zip(turns, ["up", "up", "down", "up"], strict=True):
        assert rate(chat_api, mount, conv_id, turn_id, rating=rating).status_code == 200
    rate(chat_api, mount, conv_id, turns[1], rating="down")  # replaced: counted once, as its new rating
    withdraw(chat_api, mount, conv_id, turns[3])  # withdrawn: not counted

    assert thumbs(stats) == thumbs(one) == (1, 2)


def test_the_admin_versions_page_shows_each_versions_ratings(chat_api, mount, client):
    conv_id = create(chat_api, mount)
    turns = [say(chat_api, mount, conv_id, f"question {n}") for n in range(3)]
    for turn_id, rating in zip(turns, ["up", "down", "up"], strict=True):
        rate(chat_api, mount, conv_id, turn_id, rating=rating)
    profile = Profile.objects.get(registry__slug=mount.registry, slug=mount.default_profile)
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(f"/admin/profiles/profile/{profile.pk}/versions/")

    assert page.status_code == 200
    assert "2 good · 1 bad" in page.content.decode()
