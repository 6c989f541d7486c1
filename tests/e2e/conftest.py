"""End-to-end fixtures: a real daphne process against the test database.

Tests using `daphne_server` need committed data: they use `transactional_db` (the fixture does).
(Not called `live_server`: pytest-django's autouse helper claims a fixture of that name.)
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
def daphne_server(_live_server_process, transactional_db) -> LiveServer:
    return _live_server_process
