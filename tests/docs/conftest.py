"""The docs run: one seeded server for every page, and a summary of what ran and what is marked not run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.docs.runner import Outcome, seed_database
from tests.e2e.server import LiveServer

_outcomes: list[Outcome] = []
_setup_seconds: list[float] = []
# The test server runs every page within a minute: more token requests than a reader makes, and the
# token throttle counts per client address (AUTH_TOKEN_RATE, 20/min by default).
SERVER_ENV = {"AUTH_TOKEN_RATE": "1000/min", "CHAT_REST_TURN_RATE": "1000/min"}


@pytest.fixture(scope="session")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = time.monotonic()
    url = seed_database(tmp_path_factory.mktemp("docs-db"))
    server = LiveServer(env={"DATABASE_URL": url, **SERVER_ENV}).start()
    server.database_url = url  # type: ignore[attr-defined]
    _setup_seconds.append(time.monotonic() - started)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def docs_outcomes() -> list[Outcome]:
    return _outcomes


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _outcomes:
        return
    not_run = [o for o in _outcomes if o.block.not_run is not None]
    ran = [o for o in _outcomes if o.block.not_run is None]
    seconds = sum(o.seconds for o in ran)
    terminalreporter.section("docs blocks")
    setup = f" (a seeded server started in {_setup_seconds[0]:.1f} s)" if _setup_seconds else ""
    terminalreporter.write_line(f"{len(ran)} block(s) run in {seconds:.1f} s{setup}, {len(not_run)} marked not run:")
    pages: dict[str, float] = {}
    for outcome in ran:
        pages[outcome.block.page] = pages.get(outcome.block.page, 0.0) + outcome.seconds
    terminalreporter.write_line("  " + ", ".join(f"{name} {secs:.1f} s" for name, secs in pages.items()))
    for outcome in not_run:
        terminalreporter.write_line(f"  SKIPPED {outcome.block.where}: {outcome.block.not_run}")
