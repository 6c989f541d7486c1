"""API keys end to end (#20): a key made over REST drives the official `openai` SDK against a real
daphne: it lists and uses only the models its scopes cover (the SDK raises `PermissionDeniedError` with
`model_not_allowed` for another), a revoked or rotated-out secret is an `AuthenticationError`, and a
key's `rpm` answers the SDK's `RateLimitError` with OpenAI's headers. Two workers on PostgreSQL + Redis
admit exactly `rpm` requests between them (the `scaleout` test at the end, stage 2 of `make test`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
from django.conf import settings
from django.db import connection
from openai import AsyncOpenAI, OpenAI

from .helpers import ApiUser, http, make_user, seed
from .server import LiveServer, worker_pair

pytestmark = pytest.mark.e2e


def sdk(server: LiveServer, secret: str, prefix: str = "") -> OpenAI:
    return OpenAI(
        api_key=secret,
        base_url=f"{server.url}{prefix}/v1",
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=60),
    )


async def issue(server: LiveServer, user: ApiUser, **body) -> dict:
    async with http(server, user) as rest:
        response = await rest.post("/api/keys", json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    return response.json()


async def rest_call(server: LiveServer, user: ApiUser, method: str, path: str) -> int:
    async with http(server, user) as rest:
        return (await rest.request(method, path)).status_code


@pytest.fixture
def owner(server) -> ApiUser:
    seed()
    return make_user("keyholder")


@pytest.fixture
def scoped(server, owner) -> Iterator[tuple[dict, OpenAI]]:
    key = asyncio.run(issue(server, owner, scopes=["analyst"], rpm=50))
    with sdk(server, key["key"]) as client:
        yield key, client


def test_the_sdk_sees_and_uses_only_what_the_key_covers(server, scoped):
    _, client = scoped

    models = [m.id for m in client.models.list()]
    answer = client.chat.completions.create(model="analyst", messages=[{"role": "user", "content": "2+2?"}])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-profile", messages=[{"role": "user", "content": "hi"}])

    assert models == ["analyst"]
    assert answer.choices[0].message.content and answer.model == "analyst"
    assert refused.value.code == "model_not_allowed"
    raw = client.models.with_raw_response.list()
    assert raw.headers["x-ratelimit-limit-requests"] == "50"
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < 50


def test_revoked_and_rotated_out_secrets_are_authentication_errors(server, owner, scoped):
    key, client = scoped
    assert asyncio.run(rest_call(server, owner, "POST", f"/api/keys/{key['id']}/rotate")) == 200
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    fresh = asyncio.run(issue(server, owner, scopes=["*"]))
    with sdk(server, fresh["key"], "/inventory") as other:
        assert "inventory" in [m.id for m in other.models.list()]
        assert asyncio.run(rest_call(server, owner, "DELETE", f"/api/keys/{fresh['id']}")) == 204
        with pytest.raises(openai.AuthenticationError):
            other.models.list()


def test_rpm_answers_the_sdk_a_rate_limit_error_with_retry_after(server, owner):
    key = asyncio.run(issue(server, owner, scopes=["*"], rpm=2))
    with sdk(server, key["key"]) as client:
        client.models.list()
        client.models.list()
        with pytest.raises(openai.RateLimitError) as refused:
            client.models.list()

    assert refused.value.code == "rate_limit_exceeded"
    headers = refused.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0" and 1 <= int(headers["retry-after"]) <= 60


# --------------------------------------------------------------------------- two workers


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker) -> Iterator[tuple[LiveServer, LiveServer]]:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.fail("the scale-out limits need PostgreSQL and Redis (stage 2 of `make test`)", pytrace=False)
    with worker_pair({"REDIS_URL": settings.REDIS_URL}) as pair:
        yield pair


async def spread(workers: tuple[LiveServer, ...], secret: str, count: int, call) -> list[int]:
    """`call(client)` `count` times at once, alternating between the workers: 200, or 429 (`RateLimitError`)."""
    clients = [
        AsyncOpenAI(
            api_key=secret,
            base_url=f"{worker.url}/v1",
            max_retries=0,
            http_client=httpx.AsyncClient(trust_env=False, timeout=60),
        )
        for worker in workers
    ]

    async def one(n: int) -> int:
        try:
            await call(clients[n % len(clients)])
        except openai.RateLimitError:
            return 429
        return 200

    try:
        return await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        for client in clients:
            await client.close()


@pytest.mark.scaleout
def test_two_workers_admit_exactly_rpm_requests_between_them(two_workers, transactional_db):
    seed()
    holder = make_user("limited")
    first = two_workers[0]
    key = asyncio.run(issue(first, holder, scopes=["*"], rpm=10))

    statuses = asyncio.run(spread(two_workers, key["key"], 30, lambda client: client.models.list()))

    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses


@pytest.mark.scaleout
def test_two_workers_never_overspend_a_key_budget_by_more_than_one_reservation(two_workers, transactional_db):
    from django.contrib.auth import get_user_model

    from chat.billing.budgets import budget_create, budget_used
    from chat.billing.prices import price_set
    from chat.models import Turn

    seed()
    holder = make_user("budgeted", staff=True)
    staff = get_user_model().objects.get(pk=holder.pk)
    price_set(api_type="offline", model="offline-v1", input_usd_per_mtok=1000, output_usd_per_mtok=1000, actor=staff)
    first = two_workers[0]
    key = asyncio.run(issue(first, holder, scopes=["*"]))
    body = {"model": "default", "messages": [{"role": "user", "content": "What is 6*7?"}]}
    with sdk(first, key["key"]) as client:
        client.chat.completions.create(**body)  # what one of these turns costs: the estimate
    cost = Turn.objects.get(api_key_id=key["id"]).usage["cost_usd"]
    limit = budget_create(scope={"type": "key", "id": key["id"]}, amount_usd=cost * 5.5, period="day", actor=staff)

    statuses = asyncio.run(spread(two_workers, key["key"], 20, lambda client: client.chat.completions.create(**body)))

    assert statuses.count(200) == 5 and statuses.count(429) == 15, statuses
    spent = budget_used(limit)
    assert spent == pytest.approx(cost * 6) and spent - float(limit.amount_usd) <= cost
