"""API keys on the OpenAI-compatible API (#20, points 1 and 4), in-process through both mounts: a key
acts as its owner limited to its scopes (`/v1/models` lists what it covers, another model is a 403
`model_not_allowed`, a model the owner may not see stays a 404), expired, revoked and rotated-out
secrets are a 401, and a key's `rpm`/`tpm` are enforced with OpenAI's `x-ratelimit-*` headers and a 429
with `Retry-After` (here on the database; the Redis script and two workers are in tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import Conversation, KeyRateHit, Turn
from profiles import keys, services
from profiles.timestamps import now_ms

from .factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_inventory", "fast_turns"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators"),
]

MOUNTS = [pytest.param("", "default", id="chat"), pytest.param("/inventory", "inventory", id="inventory")]


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def issue(owner, scopes: list[str], **limits: Any) -> str:
    return keys.key_create(owner=owner, name="ci", scopes=scopes, **limits).secret


def complete(client: APIClient, model: str, prefix: str = ""):
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return client.post(f"{prefix}/v1/chat/completions", body, format="json")


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.mark.parametrize(("prefix", "registry"), MOUNTS)
def test_a_key_lists_and_uses_only_the_models_its_scopes_cover(chat_user, prefix, registry):
    client = bearer(issue(chat_user, ["analyst", f"{registry}/default@production"]))
    services.label_set(registry_slug=registry, slug="default", name="production", version=1, source="import")

    listed = client.get(f"{prefix}/v1/models")
    allowed = complete(client, "analyst@1", prefix)
    labelled = complete(client, "default@production", prefix)
    plain = complete(client, "default", prefix)

    assert listed.status_code == 200, listed.content
    assert [m["id"] for m in listed.json()["data"]] == ["analyst", "default@production"]
    assert allowed.status_code == 200 and labelled.status_code == 200, (allowed.content, labelled.content)
    assert plain.status_code == 403 and error_code(plain) == "model_not_allowed"
    assert "'ci'" in plain.json()["error"]["message"]
    turns = Turn.objects.filter(conversation__owner=chat_user).order_by("created_at_ms")
    assert [(t.profile_slug, t.api_key_id is not None) for t in turns] == [("analyst", True), ("default", True)]
    assert Conversation.objects.filter(owner=chat_user).count() == 2  # the refused one stored nothing


def test_a_star_key_covers_what_its_owner_may_use_and_invisible_models_stay_404(chat_user):
    client = bearer(issue(chat_user, ["*"]))
    services.profile_create(registry_slug="default", slug="staff-only", visible_to_groups=["staff"], source="import")
    narrow = bearer(issue(chat_user, ["analyst"]))

    every = [m["id"] for m in client.get("/v1/models").json()["data"]]
    hidden = complete(narrow, "staff-only")

    assert "analyst" in every and "default" in every and "staff-only" not in every
    assert hidden.status_code == 404 and error_code(hidden) == "model_not_found"
    assert narrow.get("/v1/models/default").status_code == 403
    assert narrow.get("/v1/models/analyst").json()["id"] == "analyst"


def test_expired_revoked_and_rotated_out_secrets_are_refused_with_401(chat_user):
    expiring = keys.key_create(owner=chat_user, name="soon", scopes=["*"], expires_at_ms=now_ms() + 60_000)
    revoked = keys.key_create(owner=chat_user, name="gone", scopes=["*"])
    rotated = keys.key_create(owner=chat_user, name="old", scopes=["*"])
    keys.key_revoke(key_id=revoked.key.pk, actor=chat_user)
    fresh = keys.key_rotate(key_id=rotated.key.pk, actor=chat_user)
    type(expiring.key).objects.filter(pk=expiring.key.pk).update(expires_at_ms=now_ms() - 1)

    answers = {
        name: bearer(secret).get("/v1/models")
        for name, secret in (
            ("expired", expiring.secret),
            ("revoked", revoked.secret),
            ("rotated out", rotated.secret),
            ("unknown", "sk-" + "x" * 43),
            ("rotated in", fresh.secret),
        )
    }

    assert {name: r.status_code for name, r in answers.items()} == {
        "expired": 401,
        "revoked": 401,
        "rotated out": 401,
        "unknown": 401,
        "rotated in": 200,
    }
    assert answers["revoked"].json()["error"]["type"] == "authentication_error"
    assert "revoked" in answers["revoked"].json()["error"]["message"]


def test_a_deactivated_owner_takes_their_keys_down_with_them(chat_user):
    secret = issue(chat_user, ["*"])
    type(chat_user).objects.filter(pk=chat_user.pk).update(is_active=False)

    assert bearer(secret).get("/v1/models").status_code == 401


# --------------------------------------------------------------------------- per-minute limits


def test_rpm_admits_that_many_requests_a_minute_then_429_with_retry_after(chat_user):
    client = bearer(issue(chat_user, ["*"], rpm=3))

    answers = [client.get("/v1/models") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a["x-ratelimit-limit-requests"] == "3" for a in answers)
    refused = answers[-1]
    assert error_code(refused) == "rate_limit_exceeded" and refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["x-ratelimit-reset-requests"].endswith("s")
    assert (
        "'ci'" in refused.json()["error"]["message"] and "3 requests per minute" in refused.json()["error"]["message"]
    )


def test_a_minute_later_the_window_has_room_again(chat_user):
    key = keys.key_create(owner=chat_user, name="ci", scopes=["*"], rpm=1)
    client = bearer(key.secret)
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models").status_code == 429

    KeyRateHit.objects.filter(key_id=key.key.pk).update(at_ms=now_ms() - 61_000)

    assert client.get("/v1/models").status_code == 200
    assert KeyRateHit.objects.filter(key_id=key.key.pk).count() == 1  # the old rows went


def test_tpm_counts_the_tokens_of_finished_turns(chat_user):
    client = bearer(issue(chat_user, ["*"], tpm=10))

    first = complete(client, "default")
    second = complete(client, "default")

    assert first.status_code == 200, first.content
    used = first.json()["usage"]["total_tokens"]
    assert used >= 10  # the offline answer alone passes this small budget
    assert first["x-ratelimit-limit-tokens"] == "10" and first["x-ratelimit-remaining-tokens"] == "10"
    assert second.status_code == 429 and error_code(second) == "rate_limit_exceeded"
    assert second["x-ratelimit-remaining-tokens"] == "0"
    assert "10 tokens per minute" in second.json()["error"]["message"]


def test_a_key_without_limits_writes_no_rate_rows_and_sends_no_rate_headers(chat_user):
    client = bearer(issue(chat_user, ["*"]))

    answer = complete(client, "default")

    assert answer.status_code == 200
    assert not any(name.startswith("x-ratelimit") for name in answer.headers)
    assert KeyRateHit.objects.count() == 0


def test_the_projects_tokens_still_work_and_have_no_key_limits(chat_token):
    client = bearer(chat_token)

    assert client.get("/v1/models").status_code == 200
    assert complete(client, "default").status_code == 200


def test_a_key_acts_as_its_owner_only(chat_user):
    other = UserFactory(username="other")
    mine = bearer(issue(chat_user, ["*"]))
    complete(bearer(issue(other, ["*"])), "default")

    conversations = mine.get("/api/chat/conversations")

    assert conversations.status_code in (401, 403)  # a key opens the OpenAI-compatible API only
    assert Turn.objects.filter(conversation__owner=other).count() == 1


def test_an_unreachable_redis_is_a_503_with_retry_after_never_an_unlimited_key(chat_user, settings):
    from chat import limits

    client = bearer(issue(chat_user, ["*"], rpm=100))
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there: the limits' Redis is away
    limits._redis.cache_clear()
    try:
        refused = client.get("/v1/models")
    finally:
        limits._redis.cache_clear()

    assert refused.status_code == 503, refused.content
    assert refused.json()["error"]["type"] == "server_error" and int(refused["Retry-After"]) >= 1
