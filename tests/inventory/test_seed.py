import io

import pytest
from django.core.management import call_command

from inventory.models import Item, Sale
from inventory.seed import seed_sale_id


def seed() -> str:
    out = io.StringIO()
    call_command("inventory_seed", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_seed_is_idempotent():
    first = seed()
    assert "10 item(s), 7 sale(s) created" in first
    assert (Item.objects.count(), Sale.objects.count()) == (10, 7)
    assert Sale.objects.get(pk=seed_sale_id("s1")).total == Sale.objects.first().total
    Item.objects.filter(sku="A-1002").update(qty=42)
    second = seed()
    assert "nothing to do" in second
    assert (Item.objects.count(), Sale.objects.count()) == (10, 7)
    assert Item.objects.get(sku="A-1002").qty == 42


@pytest.mark.django_db
def test_seed_creates_only_what_is_missing():
    seed()
    Sale.objects.filter(pk=seed_sale_id("s7")).delete()
    out = seed()
    assert "created sale s7" in out
    assert "created item" not in out
    assert Sale.objects.count() == 7


def test_sale_ids_are_stable():
    assert seed_sale_id("s1") == seed_sale_id("s1") != seed_sale_id("s2")
