import pytest
from rest_framework.test import APIClient

from inventory.models import Item, Sale

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.inventory.urls")]

API = "/inventory/api"


def skus(response) -> list[str]:
    return [row["sku"] for row in response.json()["results"]]


class TestAuth:
    def test_anonymous_refused(self, seeded):
        response = APIClient().get(f"{API}/items")
        assert response.status_code in (401, 403)


class TestItemList:
    def test_list_shape_and_default_order(self, seeded, api_client):
        response = api_client.get(f"{API}/items")
        assert response.status_code == 200
        body = response.json()
        assert (body["count"], body["next"], body["previous"]) == (10, None, None)
        assert body["results"][0] == {
            "sku": "A-1002",
            "name": "Keychain - Brass",
            "category": "Accessories",
            "tags": ["gift", "sale"],
            "qty": 2,
            "price": "9.99",
            "cost": "3.25",
        }
        assert skus(response) == sorted(skus(response))

    @pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning")
    def test_an_empty_ordering_keeps_pages_in_sku_order(self, seeded, api_client):
        pages = [api_client.get(f"{API}/items", {"ordering": ",", "page_size": 4, "page": n}) for n in (1, 2, 3)]

        listed = [sku for page in pages for sku in skus(page)]
        assert listed == sorted(Item.objects.values_list("sku", flat=True))

    def test_search(self, seeded, api_client):
        assert skus(api_client.get(f"{API}/items", {"search": "POPULAR"})) == ["B-2001", "C-3011", "D-4001"]
        assert skus(api_client.get(f"{API}/items", {"search": "brass"})) == ["A-1002"]

    def test_category_filter(self, seeded, api_client):
        assert skus(api_client.get(f"{API}/items", {"category": "kitchen"})) == ["B-2001", "B-2015"]

    def test_ordering(self, seeded, api_client):
        response = api_client.get(f"{API}/items", {"ordering": "-qty"})
        assert skus(response)[:2] == ["D-4001", "B-2001"]
        response = api_client.get(f"{API}/items", {"ordering": "price", "category": "Merch"})
        assert skus(response) == ["D-4001", "D-4002"]

    def test_bad_ordering(self, seeded, api_client):
        response = api_client.get(f"{API}/items", {"ordering": "cost"})
        assert response.status_code == 400
        assert "ordering" in str(response.json())

    def test_pagination(self, seeded, api_client):
        response = api_client.get(f"{API}/items", {"page_size": 3, "page": 2})
        body = response.json()
        assert body["count"] == 10
        assert skus(response) == ["A-1055", "B-2001", "B-2015"]
        assert "page=3" in body["next"]
        assert body["previous"]

    def test_page_size_capped(self, db, api_client):
        from .factories import ItemFactory

        ItemFactory.create_batch(230)
        assert len(api_client.get(f"{API}/items", {"page_size": 1000}).json()["results"]) == 200
        assert len(api_client.get(f"{API}/items").json()["results"]) == 50


class TestItemDetail:
    def test_retrieve_case_insensitive(self, seeded, api_client):
        response = api_client.get(f"{API}/items/a-1002")
        assert response.status_code == 200
        assert response.json()["sku"] == "A-1002"

    def test_unknown(self, seeded, api_client):
        response = api_client.get(f"{API}/items/Z-404")
        assert response.status_code == 404
        assert "Z-404" in str(response.json())

    def test_reader_cannot_write(self, seeded, api_client):
        assert api_client.patch(f"{API}/items/A-1002", {"qty": 50}, format="json").status_code == 403
        assert api_client.delete(f"{API}/items/A-1021").status_code == 403
        payload = {"sku": "N-1", "name": "New", "price": "1.00", "cost": "0.50"}
        assert api_client.post(f"{API}/items", payload, format="json").status_code == 403
        assert Item.objects.get(sku="A-1002").qty == 2
        assert Item.objects.count() == 10

    def test_create(self, seeded, writer_client):
        payload = {
            "sku": "N-1",
            "name": "New",
            "category": "Misc",
            "tags": ["x"],
            "qty": 4,
            "price": "1.5",
            "cost": "0.5",
        }
        response = writer_client.post(f"{API}/items", payload, format="json")
        assert response.status_code == 201
        assert response.json() == {**payload, "price": "1.50", "cost": "0.50"}

    def test_create_duplicate_sku(self, seeded, writer_client):
        payload = {"sku": "a-1002", "name": "Dup", "price": "1.00", "cost": "0.50"}
        response = writer_client.post(f"{API}/items", payload, format="json")
        assert response.status_code == 400
        assert "sku" in str(response.json())

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"sku": "N-2", "name": "x", "price": "-1", "cost": "0"}, "price"),
            ({"sku": "N-2", "name": "x", "price": "1", "cost": "0", "qty": -1}, "qty"),
            ({"sku": "N 2/", "name": "x", "price": "1", "cost": "0"}, "sku"),
            ({"sku": "N-2", "name": "x", "price": "1.234", "cost": "0"}, "price"),
            ({"sku": "N-2", "name": "x", "price": "1", "cost": "0", "tags": "a"}, "tags"),
        ],
    )
    def test_create_invalid(self, seeded, writer_client, payload, field):
        response = writer_client.post(f"{API}/items", payload, format="json")
        assert response.status_code == 400
        assert field in str(response.json())
        assert Item.objects.count() == 10

    def test_partial_update(self, seeded, writer_client):
        response = writer_client.patch(f"{API}/items/a-1002", {"qty": 50, "tags": ["new"]}, format="json")
        assert response.status_code == 200
        assert (response.json()["qty"], response.json()["tags"], response.json()["name"]) == (
            50,
            ["new"],
            "Keychain - Brass",
        )
        assert Item.objects.get(sku="A-1002").qty == 50

    def test_full_update(self, seeded, writer_client):
        payload = {"sku": "A-1002", "name": "Brass key", "price": "10.00", "cost": "3.00"}
        response = writer_client.put(f"{API}/items/A-1002", payload, format="json")
        assert response.status_code == 200
        assert response.json()["name"] == "Brass key"

    def test_delete(self, seeded, writer_client):
        assert writer_client.delete(f"{API}/items/a-1021").status_code == 204
        assert not Item.objects.filter(sku="A-1021").exists()

    def test_delete_with_sales_conflicts(self, seeded, writer_client):
        assert writer_client.delete(f"{API}/items/A-1002").status_code == 409
        assert Item.objects.filter(sku="A-1002").exists()


class TestSales:
    def test_list_newest_first(self, seeded, api_client):
        body = api_client.get(f"{API}/sales").json()
        assert body["count"] == 7
        assert [(s["date"], s["sku"], s["total"]) for s in body["results"][:3]] == [
            ("2026-02-10", "A-1002", "19.98"),
            ("2026-02-10", "B-2001", "24.99"),
            ("2026-02-09", "A-1002", "29.97"),
        ]

    def test_list_filter(self, seeded, api_client):
        body = api_client.get(f"{API}/sales", {"sku": "a-1002", "date_from": "2026-02-09"}).json()
        assert [s["total"] for s in body["results"]] == ["19.98", "29.97"]

    def test_retrieve(self, seeded, api_client):
        sale = Sale.objects.first()
        assert api_client.get(f"{API}/sales/{sale.pk}").json()["id"] == str(sale.pk)

    def test_post_records(self, seeded, writer_client):
        response = writer_client.post(f"{API}/sales", {"sku": "c-3011", "qty": 2, "date": "2026-02-11"}, format="json")
        assert response.status_code == 201
        body = response.json()
        assert body["sale"]["sku"] == "C-3011"
        assert (body["sale"]["date"], body["sale"]["qty"], body["sale"]["total"]) == ("2026-02-11", 2, "29.98")
        assert body["item"]["qty"] == 6
        assert Item.objects.get(sku="C-3011").qty == 6
        assert Sale.objects.get(pk=body["sale"]["id"]).created_by.username == "writer"

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"sku": "A-1002", "qty": 3}, "qty"),  # insufficient stock
            ({"sku": "A-1021", "qty": 1}, "qty"),  # out of stock
            ({"sku": "Z-9", "qty": 1}, "sku"),  # unknown
            ({"sku": "A-1002", "qty": 0}, "qty"),
            ({"sku": "A-1002", "qty": "many"}, "qty"),
            ({"sku": "A-1002", "qty": 1, "date": "10/02/2026"}, "date"),
            ({"qty": 1}, "sku"),
        ],
    )
    def test_post_rejected_changes_nothing(self, seeded, writer_client, payload, field):
        before = list(Item.objects.values_list("sku", "qty"))
        response = writer_client.post(f"{API}/sales", payload, format="json")
        assert response.status_code == 400
        assert field in str(response.json())
        assert list(Item.objects.values_list("sku", "qty")) == before
        assert Sale.objects.count() == 7

    def test_post_needs_permission(self, seeded, api_client):
        response = api_client.post(f"{API}/sales", {"sku": "D-4001", "qty": 1}, format="json")
        assert response.status_code == 403
        assert Item.objects.get(sku="D-4001").qty == 20


class TestReport:
    def test_check_figures(self, seeded, api_client):
        response = api_client.get(f"{API}/report")
        assert response.status_code == 200
        body = response.json()
        assert {k: body[k] for k in ("threshold", "since", "sku_count", "total_units")} == {
            "threshold": 3,
            "since": None,
            "sku_count": 10,
            "total_units": 59,
        }
        assert (body["retail_value"], body["cost_basis"], body["potential_profit"]) == ("816.41", "256.00", "560.41")
        assert (body["low_stock_count"], body["out_of_stock_count"], body["sales_total"]) == (5, 2, "189.82")
        assert [i["sku"] for i in body["low_stock"]] == ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]
        assert [i["sku"] for i in body["out_of_stock"]] == ["A-1021", "C-3010"]
        assert len(body["recent_sales"]) == 7

    def test_since_and_threshold(self, seeded, api_client):
        body = api_client.get(f"{API}/report", {"threshold": 0, "since": "2026-02-08"}).json()
        assert (body["since"], body["sales_total"], body["low_stock_count"]) == ("2026-02-08", "169.83", 2)

    @pytest.mark.parametrize(
        ("params", "field"),
        [({"threshold": "-1"}, "threshold"), ({"threshold": "x"}, "threshold"), ({"since": "2026-02-30"}, "since")],
    )
    def test_bad_params(self, seeded, api_client, params, field):
        response = api_client.get(f"{API}/report", params)
        assert response.status_code == 400
        assert field in str(response.json())


class TestUpdatesKeepStock:
    def test_put_without_qty_keeps_stock(self, seeded, writer_client):
        payload = {"sku": "D-4001", "name": "Stickers", "price": "4.99", "cost": "1.20"}
        assert writer_client.put(f"{API}/items/D-4001", payload, format="json").json()["qty"] == 20

    def test_patch_does_not_overwrite_a_concurrent_sale(self, seeded, writer_client, monkeypatch):
        """A sale between reading the item and saving the edit must survive the edit."""
        from inventory import selectors, services, views

        def get_then_sell(*, sku):
            item = selectors.item_get(sku=sku)
            services.sale_record(sku=sku, qty=5)
            return item

        monkeypatch.setattr(views, "item_get", get_then_sell)
        response = writer_client.patch(f"{API}/items/D-4001", {"name": "Stickers"}, format="json")
        assert response.json()["qty"] == 15
        assert Item.objects.get(sku="D-4001").qty == 15
