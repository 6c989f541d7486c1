"""The docs run: one seeded server for every page, and a summary of what ran and what is marked not run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.docs.runner import seed_database
from tests.e2e.server import LiveServer

# The test server runs every page within a minute: more token requests than a reader makes, and the
# token throttle counts per client address (AUTH_TOKEN_RATE, 20/min by default).
SERVER_ENV = {"AUTH_TOKEN_RATE": "1000/min", "CHAT_REST_TURN_RATE": "1000/min"}


@pytest.fixture(scope="session")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = time.monotonic()
    url = seed_database(tmp_path_factory.mktemp("docs-db"))
    server = LiveServer(env={"DATABASE_URL": url, **SERVER_ENV}).start()
    server.database_url = url  # type: ignore[attr-defined]
    server.setup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    blocks = [
        value
        for kind in ("passed", "failed")
        for report in terminalreporter.stats.get(kind, [])
        if getattr(report, "when", "") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "docs_block"
    ]
    if not blocks:
        return
    not_run = [b for b in blocks if b["not_run"] is not None]
    ran = [b for b in blocks if b["not_run"] is None]
    terminalreporter.section("docs blocks")
    setup = max(b["setup_seconds"] for b in blocks)
    terminalreporter.write_line(
        f"{len(ran)} block(s) run in {sum(b['seconds'] for b in ran):.1f} s (a seeded server started in "
        f"{setup:.1f} s), {len(not_run)} marked not run:"
    )
    pages: dict[str, float] = {}
    for block in ran:
        pages[block["page"]] = pages.get(block["page"], 0.0) + block["seconds"]
    terminalreporter.write_line("  " + ", ".join(f"{name} {secs:.1f} s" for name, secs in pages.items()))
    for block in not_run:
        terminalreporter.write_line(f"  SKIPPED {block['where']}: {block['not_run']}")
