"""Optimistic concurrency under REAL concurrency: threads, each with its own client and DB connection.

Runs on SQLite (the default: IMMEDIATE transactions + the conditional UPDATE) and on PostgreSQL
(`DATABASE_URL=postgres://...`: row locks). No sleeps: a barrier releases the writers together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from profiles.models import Profile, ProfileRevision, Registry

from .factories import EditorFactory, ProfileFactory, RegistryFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

URL = "/api/chat/profiles/shared?registry=race"
JOIN_TIMEOUT = 90


@pytest.fixture
def shared() -> Profile:
    registry = RegistryFactory(slug="race")
    ProfileFactory(registry=registry, slug="anchor")  # the default, so `shared` can be anything
    return ProfileFactory(registry=registry, slug="shared", description="start")


@pytest.fixture
def editor_user():
    return EditorFactory(username="racer")


def run_in_threads(count: int, work: Callable[[int, APIClient], Any], user) -> list[Any]:
    """Start `count` threads that wait on one barrier, then call work(i, own client). Re-raise failures."""
    barrier = threading.Barrier(count, timeout=JOIN_TIMEOUT)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def target(i: int) -> None:
        try:
            client = APIClient()
            client.force_authenticate(user=user)
            barrier.wait()
            results[i] = work(i, client)
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=target, args=(i,), name=f"writer-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    if failures:
        raise failures[0]
    return results


def test_two_concurrent_patches_with_the_same_expected_version_one_wins_one_conflicts(shared, editor_user):
    registry_before = Registry.objects.get(slug="race").version

    def write(i: int, client: APIClient):
        response = client.patch(URL, {"description": f"writer {i}", "expected_version": 1}, format="json")
        return response.status_code, response.json()

    results = run_in_threads(2, write, editor_user)

    assert sorted(status for status, _ in results) == [200, 409]
    winner = next(i for i, (status, _) in enumerate(results) if status == 200)
    loser_error = next(body for status, body in results if status == 409)["error"]
    assert (loser_error["code"], loser_error["expected"], loser_error["actual"]) == ("version_conflict", 1, 2)

    profile = Profile.objects.get(registry__slug="race", slug="shared")
    assert profile.version == 2
    assert profile.description == f"writer {winner}"
    assert results[winner][1]["description"] == f"writer {winner}"
    assert list(
        ProfileRevision.objects.filter(profile_id_at_write=profile.pk)
        .order_by("version")
        .values_list("version", flat=True)
    ) == [1, 2]
    assert Registry.objects.get(slug="race").version == registry_before + 1


def test_concurrent_read_modify_write_with_retries_loses_no_update(shared, editor_user):
    writers = 8
    registry_before = Registry.objects.get(slug="race").version

    def append_word(i: int, client: APIClient) -> int:
        for conflicts in range(500):
            current = client.get(URL)
            assert current.status_code == 200
            document = current.json()
            response = client.patch(
                URL,
                {
                    "description": f"{document['description']} word{i}",
                    "expected_version": document["metadata"]["version"],
                },
                format="json",
            )
            if response.status_code == 200:
                return conflicts
            assert response.status_code == 409, response.content
            assert response.json()["error"]["code"] == "version_conflict"
        raise AssertionError(f"writer {i} never got its update in")

    run_in_threads(writers, append_word, editor_user)

    profile = Profile.objects.get(registry__slug="race", slug="shared")
    words = profile.description.split()
    assert words[0] == "start"
    assert sorted(words[1:]) == sorted(f"word{i}" for i in range(writers))
    assert profile.version == 1 + writers
    assert ProfileRevision.objects.filter(profile_id_at_write=profile.pk).count() == 1 + writers
    assert Registry.objects.get(slug="race").version == registry_before + writers


def test_concurrent_creates_of_the_first_profile_leave_exactly_one_default(editor_user):
    RegistryFactory(slug="race")

    def create(i: int, client: APIClient) -> int:
        return client.post("/api/chat/profiles?registry=race", {"slug": f"p{i}"}, format="json").status_code

    assert run_in_threads(4, create, editor_user) == [201, 201, 201, 201]
    registry = Registry.objects.get(slug="race")
    assert registry.default_profile is not None
    assert registry.default_profile.registry_id == registry.pk
    # one create took the empty registry (+2: create and default), the three others +1 each
    assert registry.version == 1 + 2 + 3
