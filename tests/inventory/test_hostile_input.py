"""Hostile input on the inventory REST API, through the project's real URLconf: text the database or
the JSON encoder refuses is a 400 naming the field, an impossible SKU in the URL is a 404, a write
that races a delete is a 404, and every error under /inventory/api/ is JSON (500s included).

Runs on SQLite and, with DATABASE_URL pointing at PostgreSQL, on PostgreSQL.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from inventory import services, views
from inventory.models import Item, Sale

pytestmark = pytest.mark.django_db

API = "/inventory/api"


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def state() -> list[tuple]:
    return [
        *Item.objects.order_by("sku").values_list("sku", "name", "category", "tags", "qty"),
        ("sales", Sale.objects.count()),
    ]


def send(client: APIClient, method: str, url: str, raw: str):
    return client.generic(method, url, raw, content_type="application/json")


# --------------------------------------------------------------------------- impossible SKUs in the URL


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
@pytest.mark.parametrize("sku", ["a%00b", "%00", "A-1002%00"])
def test_a_sku_with_nul_in_the_url_is_a_404(seeded, writer_client, method, sku):
    before = state()
    response = getattr(writer_client, method)(f"{API}/items/{sku}", {"name": "x"}, format="json")
    assert response.status_code == 404, response.content
    assert error_of(response)["code"] == "not_found"
    assert state() == before


# --------------------------------------------------------------------------- unstorable text in bodies


ITEM = '{"sku": "H-1", "name": %s, "category": %s, "tags": %s, "price": "1.00", "cost": "0.50"}'
BAD_ITEMS = [
    (ITEM % ('"\\ud800"', '""', "[]"), "name"),
    (ITEM % ('"ok"', '"x\\udfff"', "[]"), "category"),
    (ITEM % ('"ok"', '""', '["fine", "\\ud83d"]'), "tags[1]"),
    (ITEM % ('"a\\u0000b"', '""', "[]"), "name"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_ITEMS, ids=[f for _, f in BAD_ITEMS])
def test_an_item_create_with_unstorable_text_is_a_400_naming_the_field(seeded, writer_client, raw, field):
    before = state()
    response = send(writer_client, "POST", f"{API}/items", raw)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid", field)
    assert state() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"name": "\\udc00"}', "name"),
        ('{"tags": ["\\ud800"]}', "tags[0]"),
        ('{"category": "\\u0000"}', "category"),
    ],
)
def test_an_item_update_with_unstorable_text_is_a_400_naming_the_field(seeded, writer_client, raw, field):
    before = state()
    response = send(writer_client, "PATCH", f"{API}/items/A-1002", raw)
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == field
    assert state() == before
    assert writer_client.get(f"{API}/items/A-1002").status_code == 200


@pytest.mark.parametrize("sku", ['"\\ud800"', '"A-1002\\udfff"'])
def test_a_sale_with_unstorable_text_is_a_400_naming_the_field(seeded, writer_client, sku):
    before = state()
    response = send(writer_client, "POST", f"{API}/sales", '{"sku": SKU, "qty": 1}'.replace("SKU", sku))
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "sku"
    assert state() == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_by_the_parser(seeded, writer_client, constant):
    before = state()
    raw = '{"sku": "H-2", "name": "n", "price": N, "cost": "0"}'.replace("N", constant)
    response = send(writer_client, "POST", f"{API}/items", raw)
    assert response.status_code == 400, response.content
    assert "not valid JSON" in error_of(response)["message"]
    assert state() == before


def test_the_services_refuse_unstorable_text_from_every_caller(seeded):
    """The admin and the assistant's tools call the services directly and catch InventoryError."""
    before = state()
    with pytest.raises(services.InventoryError) as exc:
        services.item_create(sku="H-3", name="\ud800", price=Decimal(1), cost=Decimal(0))
    assert exc.value.field == "name"
    with pytest.raises(services.ItemNotFound):
        services.item_update_qty(sku="A-1002\x00", delta=1)
    with pytest.raises(services.InventoryError) as exc:
        services.sale_record(sku="\udfff", qty=1)
    assert exc.value.field == "sku"
    assert state() == before


def test_a_search_for_unstorable_text_finds_nothing(seeded, api_client):
    from inventory.selectors import item_search

    assert item_search(query="\ud800") == []
    assert item_search(query="a\x00") == []
    response = api_client.get(f"{API}/items", {"search": "a\x00"})
    assert response.status_code in (200, 400)


# --------------------------------------------------------------------------- a write racing a delete


@pytest.fixture
def deleted_after_lookup(monkeypatch):
    """The item is read (by the view's lookup), then deleted before the service writes."""
    real = views.item_get

    def lookup_then_delete(*, sku):
        item = real(sku=sku)
        Item.objects.filter(pk=item.pk).delete()
        return item

    monkeypatch.setattr(views, "item_get", lookup_then_delete)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("patch", {"name": "late"}),
        ("put", {"sku": "A-1021", "name": "late", "price": "1.00", "cost": "0.50"}),
        ("delete", None),
    ],
)
def test_a_write_to_an_item_deleted_meanwhile_is_a_404(seeded, writer_client, deleted_after_lookup, method, body):
    response = getattr(writer_client, method)(f"{API}/items/A-1021", body, format="json")
    assert response.status_code == 404, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("not_found", "sku")
    assert not Item.objects.filter(sku="A-1021").exists()


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_patch_racing_delete_never_answers_500(writer):
    """Real threads, real HTTP path: each round one PATCH and one DELETE of the same fresh item."""
    statuses: list[tuple[str, int]] = []
    lock = threading.Lock()

    def run(method: str, sku: str, start: threading.Barrier) -> None:
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(user=writer)
        try:
            start.wait()
            if method == "patch":
                response = client.patch(f"{API}/items/{sku}", {"name": "renamed"}, format="json")
            else:
                response = client.delete(f"{API}/items/{sku}")
            with lock:
                statuses.append((method, response.status_code))
        finally:
            connection.close()

    for n in range(12):
        sku = f"RACE-{n}"
        Item.objects.create(sku=sku, name="Doomed", qty=1, price=Decimal("1.00"), cost=Decimal("0.50"))
        start = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(m, sku, start)) for m in ("patch", "delete")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

    assert len(statuses) == 24
    assert {code for method, code in statuses if method == "patch"} <= {200, 404}, statuses
    assert {code for method, code in statuses if method == "delete"} <= {204, 404}, statuses
    assert not Item.objects.filter(sku__startswith="RACE-").exists()


# --------------------------------------------------------------------------- JSON errors under /inventory/api/


@pytest.mark.parametrize("path", ["/nope", "/sales/not-a-uuid", "/items/A-1002/extra"])
def test_an_unrouted_inventory_api_url_is_a_json_404(seeded, api_client, path):
    response = api_client.get(f"{API}{path}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert error_of(response)["code"] == "not_found"


def test_an_unhandled_error_in_the_inventory_api_is_a_json_500_without_details(seeded, reader, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(views, "inventory_report", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=reader)
    response = client.get(f"{API}/report")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert error_of(response)["code"] == "server_error"
    assert "secret" not in response.content.decode()


def test_domain_errors_keep_their_status_and_field(seeded, writer_client):
    """One mapping for every domain error: 400 with field, 404 for the addressed item, 409 in use."""
    sale = writer_client.post(f"{API}/sales", {"sku": "A-1002", "qty": 99}, format="json")
    assert (sale.status_code, error_of(sale)["field"]) == (400, "qty")
    unknown = writer_client.post(f"{API}/sales", {"sku": "Z-9", "qty": 1}, format="json")
    assert (unknown.status_code, error_of(unknown)["field"]) == (400, "sku")
    missing = writer_client.get(f"{API}/items/Z-404")
    assert (missing.status_code, error_of(missing)["code"]) == (404, "not_found")
    in_use = writer_client.delete(f"{API}/items/A-1002")
    assert (in_use.status_code, error_of(in_use)["code"]) == (409, "conflict")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/inventory/api/sales", {"sku": "A-1002", "quantity": 1, "qty": 1}, "quantity"),
        (
            "post",
            "/inventory/api/items",
            {"sku": "Z-9001", "name": "n", "price": "1.00", "cost": "1.00", "stock": 5},
            "stock",
        ),
        ("patch", "/inventory/api/items/A-1002", {"nmae": "typo"}, "nmae"),
    ],
)
def test_an_unknown_body_key_is_a_400_naming_it_and_sells_or_writes_nothing(
    seeded, writer_client, method, path, body, field
):
    before = (list(Item.objects.order_by("sku").values_list("sku", "qty", "name")), Sale.objects.count())
    response = getattr(writer_client, method)(path, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert (list(Item.objects.order_by("sku").values_list("sku", "qty", "name")), Sale.objects.count()) == before
