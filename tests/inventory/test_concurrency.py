"""Real threads on a real database: concurrent sales of the same item never oversell.

Runs on SQLite (IMMEDIATE transactions serialise writers) and on PostgreSQL when DATABASE_URL
points at it (the conditional UPDATE re-checks stock under the row lock).
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from inventory.models import Item, Sale
from inventory.services import InsufficientStock, item_update_qty, sale_record

pytestmark = pytest.mark.concurrency


def hammer(workers: int, action) -> tuple[list, list]:
    start = threading.Barrier(workers)
    successes: list = []
    failures: list = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            start.wait()
            outcome = action(n)
            with lock:
                successes.append(outcome)
        except Exception as exc:  # collected and asserted on below
            with lock:
                failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return successes, failures


@pytest.mark.django_db(transaction=True)
def test_concurrent_sales_never_oversell():
    Item.objects.create(sku="RACE-1", name="Contended", qty=5, price=Decimal("2.50"), cost=Decimal("1.00"))
    successes, failures = hammer(10, lambda n: sale_record(sku="race-1", qty=1))
    assert len(successes) == 5
    assert len(failures) == 5
    assert all(isinstance(exc, InsufficientStock) for exc in failures), failures
    assert Item.objects.get(sku="RACE-1").qty == 0
    assert Sale.objects.filter(item__sku="RACE-1").count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_adjustments_are_not_lost():
    Item.objects.create(sku="RACE-2", name="Adjusted", qty=3, price=Decimal("1.00"), cost=Decimal("0.50"))
    successes, failures = hammer(8, lambda n: item_update_qty(sku="RACE-2", delta=1 if n % 2 else -1))
    assert failures == []
    assert len(successes) == 8
    final = Item.objects.get(sku="RACE-2").qty
    assert final == 3 + sum(result.applied_delta for result in successes)
    assert final >= 0
