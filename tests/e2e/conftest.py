"""End-to-end fixtures: a real daphne process against the test database.

Tests using `daphne_server` need committed data: they use `transactional_db` (the fixture does).
(Not called `live_server`: pytest-django's autouse helper claims a fixture of that name.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import CHROMIUM, launch
from .helpers import make_user, seed
from .own_servers import OwnPostgres, OwnRedis
from .server import LiveServer

_SERVERS_BEFORE = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item.stash[_SERVERS_BEFORE] = len(LiveServer.started)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the end of the log of each daphne it started and of those still running
    from before (the shared one): the server's side of a failure is otherwise lost with CI's work tree."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        before = item.stash.get(_SERVERS_BEFORE, 0)
        running = [s for s in LiveServer.started[:before] if s.process is not None and s.process.poll() is None]
        for server in running + LiveServer.started[before:]:
            report.sections.append((f"daphne :{server.port} log (end)", server.log_tail()))


@pytest.fixture(scope="package")
def _live_server_process(django_db_setup, django_db_blocker):
    """Stopped when the tests of this package are done: its timers (lease sweeps, queue restarts, the
    webhook sender) act on the shared test database and would take work from the tests that follow."""
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def daphne_server(_live_server_process, transactional_db) -> LiveServer:
    return _live_server_process


@pytest.fixture
def server(daphne_server) -> LiveServer:
    """The live server with the demo data (registries and inventory) committed."""
    seed()
    return daphne_server


@pytest.fixture
def alice(server):
    """A plain user with a DRF token."""
    return make_user("alice")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (no browser download), per module: the async-safety
    guard lifted below must not stay lifted for the tests of other modules."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make browser` installs it (browser tests never skip)")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of these tests (fixtures,
    # database flush) are still plain synchronous code, so Django's async-safety guard is lifted here.
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own (tests/e2e/own_servers.py), started, with an empty
    database at `own_postgres.url` (`migrate_database(own_postgres.url)` migrates it). The test may
    stop, pause and restart it; it is closed (stopped, its files removed) whatever the outcome."""
    with OwnPostgres() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of this test's own (no persistence), started, at `own_redis.url`; closed in
    teardown whatever the outcome."""
    with OwnRedis() as server:
        yield server
