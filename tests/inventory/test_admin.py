import json

import pytest
from django.contrib.auth import get_user_model

from inventory.models import Item, Sale

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.inventory.urls")]


@pytest.fixture
def admin_client(client, seeded):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_changelists_render(admin_client):
    assert admin_client.get("/admin/inventory/item/", {"q": "brass"}).status_code == 200
    assert admin_client.get("/admin/inventory/sale/").status_code == 200
    item = Item.objects.get(sku="A-1002")
    assert admin_client.get(f"/admin/inventory/item/{item.pk}/history/").status_code == 200


def test_add_sale_goes_through_the_service(admin_client):
    item = Item.objects.get(sku="C-3011")
    response = admin_client.post("/admin/inventory/sale/add/", {"item": item.pk, "qty": 3, "date": "2026-02-11"})
    assert response.status_code == 302, response.content
    sale = Sale.objects.filter(item=item, date="2026-02-11").get()
    assert str(sale.total) == "44.97"
    assert sale.created_by.username == "boss"
    assert Item.objects.get(sku="C-3011").qty == 5


def test_admin_oversell_is_a_form_error(admin_client):
    item = Item.objects.get(sku="A-1002")
    response = admin_client.post("/admin/inventory/sale/add/", {"item": item.pk, "qty": 5, "date": "2026-02-11"})
    assert response.status_code == 200
    assert b"insufficient stock" in response.content
    assert Item.objects.get(sku="A-1002").qty == 2
    assert Sale.objects.count() == 7


def test_admin_item_respects_case_insensitive_sku(admin_client):
    data = {"sku": "a-1002", "name": "Dup", "category": "", "tags": "[]", "qty": 1, "price": "1.00", "cost": "1.00"}
    response = admin_client.post("/admin/inventory/item/add/", data)
    assert response.status_code == 200
    assert b"already exists" in response.content
    assert Item.objects.count() == 10


def _item_form(item: Item, **changes) -> dict:
    data = {"sku": item.sku, "name": item.name, "category": item.category, "tags": json.dumps(item.tags)}
    data |= {"qty": item.qty, "price": str(item.price), "cost": str(item.cost), "loaded_qty": item.qty}
    return data | changes  # as the browser posts it: what the form showed when it was loaded


def test_an_admin_edit_writes_only_its_fields_and_is_attributed(admin_client):
    """A sale made while the form was open must survive saving the form (qty was not edited)."""
    item = Item.objects.get(sku="C-3011")
    form = _item_form(item, name="Candle - Soy Small")
    Item.objects.filter(pk=item.pk).update(qty=1)  # a sale elsewhere, after the form was loaded
    response = admin_client.post(f"/admin/inventory/item/{item.pk}/change/", form)
    assert response.status_code == 302, response.content
    saved = Item.objects.get(pk=item.pk)
    assert (saved.name, saved.qty) == ("Candle - Soy Small", 1)
    assert saved.history.first().history_user.username == "boss"


def test_an_item_added_in_the_admin_is_created_by_the_service(admin_client):
    data = {
        "sku": "E-5001",
        "name": "Pin",
        "category": "Merch",
        "tags": '["new"]',
        "qty": 4,
        "price": "6.50",
        "cost": "1.75",
    }
    response = admin_client.post("/admin/inventory/item/add/", data)
    assert response.status_code == 302, response.content
    created = Item.objects.get(sku="E-5001")
    assert (created.qty, created.tags, created.search_text.startswith("e-5001")) == (4, ["new"], True)
    assert created.history.first().history_user.username == "boss"


def test_an_admin_stock_edit_over_a_changed_stock_is_refused(admin_client):
    item = Item.objects.get(sku="C-3011")
    form = _item_form(item, qty=20)
    Item.objects.filter(pk=item.pk).update(qty=1)  # a sale elsewhere, after the form was loaded
    response = admin_client.post(f"/admin/inventory/item/{item.pk}/change/", form)
    assert response.status_code == 200
    assert b"the stock changed to 1 while this form was open" in response.content
    assert Item.objects.get(pk=item.pk).qty == 1


def test_an_item_deleted_while_its_admin_form_was_open_is_a_form_error_not_a_500(seeded):
    from inventory.admin import ItemAdminForm

    item = Item.objects.filter(sales__isnull=True).order_by("sku").first()
    form = ItemAdminForm(instance=item, data=_item_form(item, name="Renamed"))
    Item.objects.filter(pk=item.pk).delete()  # another admin deleted it after this form was loaded
    assert not form.is_valid()
    assert form.errors == {"sku": [f"sku: no item with SKU '{item.sku}'"]}
    assert not Item.objects.filter(sku=item.sku).exists()
