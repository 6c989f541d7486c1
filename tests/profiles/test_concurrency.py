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


# --------------------------------------------------------------------------- stacks across registries


def _stack_state() -> tuple[set[tuple[str, str]], list[str]]:
    """The stored stack edges (registry/slug -> registry/slug) and the layers that name no profile."""
    from profiles.models import Profile

    profiles = {
        (reg, slug): stack for reg, slug, stack in Profile.objects.values_list("registry__slug", "slug", "stack")
    }
    edges, dangling = set(), []
    for (reg, slug), stack in profiles.items():
        for entry in stack or []:
            target = (entry.get("registry") or reg, entry["slug"])
            if target not in profiles:
                dangling.append(f"{reg}/{slug} -> {target[0]}/{target[1]}")
            edges.add((f"{reg}/{slug}", f"{target[0]}/{target[1]}"))
    return edges, dangling


def _has_cycle(edges: set[tuple[str, str]]) -> bool:
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    seen, on_path = set(), set()

    def visit(node: str) -> bool:
        if node in on_path:
            return True
        if node in seen:
            return False
        seen.add(node)
        on_path.add(node)
        found = any(visit(nxt) for nxt in graph.get(node, []))
        on_path.discard(node)
        return found

    return any(visit(node) for node in list(graph))


def test_concurrent_stack_writes_across_registries_store_no_cycle_and_no_dangling_layer(editor_user):
    """Two writers in two registries at once, 25 rounds: `a` stacks on `b` while `b` stacks on `a` (a
    cycle if both land), and `a` stacks on `c` while `c` is deleted (a dangling layer if both land)."""
    from profiles import services

    from .factories import ProfileFactory, RegistryFactory

    left, right = RegistryFactory(slug="left"), RegistryFactory(slug="right")
    ProfileFactory(registry=left, slug="anchor")
    ProfileFactory(registry=right, slug="anchor")
    problems = []
    for round_ in range(25):
        ProfileFactory(registry=left, slug="a")
        ProfileFactory(registry=right, slug="b")
        ProfileFactory(registry=right, slug="c")
        writes = (
            [
                lambda: services.profile_update(
                    registry_slug="left", slug="a", changes={"stack": [{"registry": "right", "slug": "b"}]}
                ),
                lambda: services.profile_update(
                    registry_slug="right", slug="b", changes={"stack": [{"registry": "left", "slug": "a"}]}
                ),
            ]
            if round_ % 2 == 0
            else [
                lambda: services.profile_update(
                    registry_slug="left", slug="a", changes={"stack": [{"registry": "right", "slug": "c"}]}
                ),
                lambda: services.profile_delete(registry_slug="right", slug="c"),
            ]
        )

        def work(i: int, client: APIClient, writes=writes):
            try:
                writes[i]()
                return "ok"
            except Exception as exc:  # the loser is refused: a 400 or 409 kind of error
                return type(exc).__name__

        run_in_threads(2, work, editor_user)
        edges, dangling = _stack_state()
        if _has_cycle(edges) or dangling:
            problems.append((round_, sorted(edges), dangling))
        for reg, slug in (("left", "a"), ("right", "b"), ("right", "c")):  # the next round starts clean
            Profile.objects.filter(registry__slug=reg, slug=slug).update(stack=[])
        Profile.objects.filter(slug__in=["a", "b", "c"]).delete()
    assert problems == []
