"""End-to-end fixtures: a real daphne process against the test database.

Tests using `live_server` need committed data: they use `transactional_db` (the fixture does).
"""

from __future__ import annotations

import pytest

from .server import LiveServer


@pytest.fixture(scope="session")
def _live_server_process(django_db_setup, django_db_blocker):
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_server(_live_server_process, transactional_db) -> LiveServer:
    return _live_server_process
