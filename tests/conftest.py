"""Project-wide test fixtures."""

import pytest
from asgiref.sync import SyncToAsync


@pytest.fixture
def sent_to_threads(monkeypatch) -> list[object]:
    """Every callable handed to a thread through `sync_to_async`."""
    handed: list[object] = []
    original = SyncToAsync.__call__

    async def recording(self, *args, **kwargs):
        handed.append(self.func)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", recording)
    return handed


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_runtime_cache():
    """Runtime cache counters are asserted on; each test starts from an empty cache."""
    from chat.composition import runtime_cache

    runtime_cache.clear()
    yield
    runtime_cache.clear()


@pytest.fixture(autouse=True)
def _fresh_price_and_budget_tables():
    """The price and budget tables are kept per process (read again after a while): each test's database
    has its own, and a table loaded by an earlier test must not go stale in the middle of this one."""
    from chat.billing import budgets, prices

    prices.table.clear()
    budgets.table.clear()
    yield
    prices.table.clear()
    budgets.table.clear()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """DRF throttles count in the cache; user ids repeat across tests, so counts must not."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_sequence_counters():
    """Sequence counters are per process; each test's database starts again from 0."""
    from chat import sequencer

    sequencer.reset()
    yield
    sequencer.reset()


@pytest.fixture(scope="session", autouse=True)
def _close_pool_connections():
    """The chat thread pools keep their database connections: close them before the test database
    is dropped (PostgreSQL refuses while connections are open)."""
    yield
    from chat import aio

    aio.shutdown()
