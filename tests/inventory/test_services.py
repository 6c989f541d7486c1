import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory import selectors, services
from inventory.models import Item, Sale
from inventory.serializers import item_data, report_data
from inventory.services import (
    DuplicateSku,
    InsufficientStock,
    InventoryError,
    ItemInUse,
    ItemNotFound,
    inventory_changed,
)

from .factories import ItemFactory, SaleFactory, UserFactory

LOW_STOCK_ORDER = ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]


def skus(items) -> list[str]:
    return [item.sku for item in items]


@pytest.mark.django_db
class TestReport:
    def test_check_figures(self, seeded):
        report = selectors.inventory_report()
        assert report.sku_count == 10
        assert report.total_units == 59
        assert report.retail_value == Decimal("816.41")
        assert report.cost_basis == Decimal("256.00")
        assert report.potential_profit == Decimal("560.41")
        assert report.low_stock_count == 5
        assert skus(report.low_stock) == LOW_STOCK_ORDER
        assert report.out_of_stock_count == 2
        assert skus(report.out_of_stock) == ["A-1021", "C-3010"]
        assert report.sales_total == Decimal("189.82")
        assert [(s.date.isoformat(), s.item.sku) for s in report.recent_sales][:2] == [
            ("2026-02-10", "A-1002"),
            ("2026-02-10", "B-2001"),
        ]
        assert len(report.recent_sales) == 7

    def test_since(self, seeded):
        report = selectors.inventory_report(since=dt.date(2026, 2, 8))
        assert report.sales_total == Decimal("169.83")
        assert len(report.recent_sales) == 6
        assert all(s.date >= dt.date(2026, 2, 8) for s in report.recent_sales)

    def test_shape(self, seeded):
        data = report_data(selectors.inventory_report(since=dt.date(2026, 2, 8)))
        assert data["since"] == "2026-02-08"
        assert data["retail_value"] == "816.41"
        assert data["cost_basis"] == "256.00"
        assert data["potential_profit"] == "560.41"
        assert data["sales_total"] == "169.83"
        assert data["low_stock"][0] == {
            "sku": "A-1021",
            "name": "Keychain - Silver",
            "category": "Accessories",
            "tags": ["gift"],
            "qty": 0,
            "price": "8.99",
            "cost": "2.80",
        }
        assert set(data["recent_sales"][0]) == {"id", "date", "sku", "qty", "total"}
        assert data["recent_sales"][0]["total"] == "19.98"

    def test_recent_sales_capped_at_ten(self, seeded):
        item = Item.objects.get(sku="D-4001")
        for day in range(1, 6):
            SaleFactory(item=item, date=dt.date(2026, 3, day))
        assert len(selectors.inventory_report().recent_sales) == 10
        assert selectors.inventory_report().recent_sales[0].date == dt.date(2026, 3, 5)

    def test_empty_inventory(self, db):
        report = selectors.inventory_report()
        assert (report.sku_count, report.total_units, report.retail_value, report.sales_total) == (
            0,
            0,
            Decimal("0.00"),
            Decimal("0.00"),
        )

    def test_bad_threshold(self, db):
        with pytest.raises(InventoryError) as exc:
            selectors.inventory_report(threshold=-1)
        assert exc.value.field == "threshold"


@pytest.mark.django_db
class TestSearch:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("a-10", ["A-1002", "A-1021", "A-1033", "A-1055"]),  # sku, any case
            ("BRASS", ["A-1002"]),  # name
            ("kitchen", ["B-2001", "B-2015"]),  # category
            ("Eco", ["D-4002"]),  # tag
            ("popular", ["B-2001", "C-3011", "D-4001"]),  # tag on several
            ("gift", ["A-1002", "A-1021", "C-3011"]),
            ("nothing-like-this", []),
            ("  mug  ", ["B-2001", "B-2015"]),  # surrounding blanks ignored
        ],
    )
    def test_matches(self, seeded, query, expected):
        assert skus(selectors.item_search(query=query)) == expected

    def test_does_not_match_across_fields(self, seeded):
        # "Brass" is the end of the name and "Accessories" the category: no match across them.
        assert selectors.item_search(query="brassaccessories") == []
        assert selectors.item_search(query="brass\naccessories") == []

    def test_wildcards_are_literal(self, seeded):
        assert selectors.item_search(query="%") == []
        assert selectors.item_search(query="_") == []

    def test_unicode_case_insensitive(self, db):
        ItemFactory(sku="U-1", name="Crème Brûlée Mug", tags=["Ärger"])
        assert skus(selectors.item_search(query="CRÈME")) == ["U-1"]
        assert skus(selectors.item_search(query="ärg")) == ["U-1"]

    def test_search_text_follows_edits(self, db):
        item = ItemFactory(sku="E-1", tags=["old"])
        services.item_update(item=item, tags=["fresh"])
        assert skus(selectors.item_search(query="fresh")) == ["E-1"]
        assert selectors.item_search(query="old") == []

    @pytest.mark.parametrize(("limit", "count"), [(0, 1), (-5, 1), (3, 3), (20, 20), (500, 200), (10_000, 200)])
    def test_limit_clamped(self, db, limit, count):
        ItemFactory.create_batch(210, name="widget")
        assert len(selectors.item_search(query="widget", limit=limit)) == count

    def test_default_limit(self, db):
        ItemFactory.create_batch(25, name="widget")
        assert len(selectors.item_search(query="widget")) == 20


@pytest.mark.django_db
class TestGetAndLowStock:
    def test_get_case_insensitive(self, seeded):
        assert selectors.item_get(sku="a-1002").sku == "A-1002"

    def test_get_unknown(self, seeded):
        with pytest.raises(ItemNotFound, match="no item with SKU 'Z-9'") as exc:
            selectors.item_get(sku="Z-9")
        assert exc.value.field == "sku"
        assert isinstance(exc.value, ValueError)

    def test_low_stock_order(self, seeded):
        assert skus(selectors.items_low_stock()) == LOW_STOCK_ORDER
        assert skus(selectors.items_low_stock(threshold=0)) == ["A-1021", "C-3010"]
        assert len(selectors.items_low_stock(threshold=100)) == 10


@pytest.mark.django_db
class TestUpdateQty:
    def test_increase(self, seeded):
        result = services.item_update_qty(sku="a-1002", delta=5)
        assert (result.item.qty, result.applied_delta, result.clamped) == (7, 5, False)
        assert Item.objects.get(sku="A-1002").qty == 7

    def test_clamped_at_zero(self, seeded):
        result = services.item_update_qty(sku="A-1002", delta=-10)
        assert result.item.qty == 0
        assert (result.requested_delta, result.applied_delta, result.clamped) == (-10, -2, True)
        assert Item.objects.get(sku="A-1002").qty == 0

    def test_exact_decrease_not_clamped(self, seeded):
        result = services.item_update_qty(sku="A-1002", delta=-2)
        assert (result.item.qty, result.clamped) == (0, False)

    @pytest.mark.parametrize("delta", [0, 1.5, "3", True])
    def test_bad_delta(self, seeded, delta):
        with pytest.raises(InventoryError) as exc:
            services.item_update_qty(sku="A-1002", delta=delta)
        assert exc.value.field == "delta"
        assert Item.objects.get(sku="A-1002").qty == 2

    def test_unknown_sku(self, db):
        with pytest.raises(ItemNotFound):
            services.item_update_qty(sku="nope", delta=1)

    def test_history_attributed(self, seeded):
        user = UserFactory()
        services.item_update_qty(sku="A-1002", delta=3, user=user.pk, source="tool")
        latest = Item.objects.get(sku="A-1002").history.first()
        assert (latest.qty, latest.history_type, latest.history_user_id) == (5, "~", user.pk)


@pytest.mark.django_db
class TestRecordSale:
    def test_records_and_decrements(self, seeded):
        user = UserFactory()
        sale = services.sale_record(sku="c-3011", qty=3, date=dt.date(2026, 2, 11), user=user)
        assert sale.total == Decimal("44.97")
        assert (sale.item.sku, sale.qty, sale.date, sale.created_by_id) == ("C-3011", 3, dt.date(2026, 2, 11), user.pk)
        assert Item.objects.get(sku="C-3011").qty == 5
        assert selectors.inventory_report().sales_total == Decimal("234.79")

    def test_defaults_to_today(self, seeded):
        assert services.sale_record(sku="D-4001", qty=1).date == timezone.localdate()

    def test_sells_the_last_units(self, seeded):
        services.sale_record(sku="A-1002", qty=2)
        assert Item.objects.get(sku="A-1002").qty == 0

    def test_insufficient_stock_changes_nothing(self, seeded):
        before = (Item.objects.get(sku="A-1002").qty, Sale.objects.count(), Item.history.count())
        with pytest.raises(InsufficientStock, match="requested 3, only 2 available") as exc:
            services.sale_record(sku="A-1002", qty=3)
        assert exc.value.field == "qty"
        after = (Item.objects.get(sku="A-1002").qty, Sale.objects.count(), Item.history.count())
        assert after == before

    def test_out_of_stock(self, seeded):
        with pytest.raises(InsufficientStock):
            services.sale_record(sku="A-1021", qty=1)

    def test_a_total_too_large_to_store_is_refused_and_changes_nothing(self, seeded):
        Item.objects.filter(sku="B-2001").update(price=Decimal("9999999999.99"))
        with pytest.raises(InventoryError, match="exceeds the largest storable total") as exc:
            services.sale_record(sku="B-2001", qty=2)
        assert exc.value.field == "qty"
        assert (Item.objects.get(sku="B-2001").qty, Sale.objects.count()) == (14, 7)
        assert selectors.inventory_report().sales_total == Decimal("189.82")  # reads still work

    @pytest.mark.parametrize("qty", [0, -1, 2.0, "1"])
    def test_bad_qty(self, seeded, qty):
        with pytest.raises(InventoryError) as exc:
            services.sale_record(sku="A-1002", qty=qty)
        assert exc.value.field == "qty"
        assert Sale.objects.count() == 7

    def test_unknown_sku(self, seeded):
        with pytest.raises(ItemNotFound):
            services.sale_record(sku="Z-1", qty=1)
        assert Sale.objects.count() == 7


@pytest.mark.django_db
class TestItemCrud:
    def test_create_duplicate_ignoring_case(self, seeded):
        with pytest.raises(DuplicateSku):
            services.item_create(sku="a-1002", name="x", price=Decimal(1), cost=Decimal(1))

    def test_stored_as_written(self, db):
        item = services.item_create(sku="x-9", name="X", price=Decimal("1.5"), cost=Decimal(1), tags=["a"])
        assert item_data(item) == {
            "sku": "x-9",
            "name": "X",
            "category": "",
            "tags": ["a"],
            "qty": 0,
            "price": "1.50",
            "cost": "1.00",
        }

    def test_db_rejects_negative_qty(self, db):
        from django.db import IntegrityError, transaction

        item = ItemFactory()
        with pytest.raises(IntegrityError), transaction.atomic():
            Item.objects.filter(pk=item.pk).update(qty=-1)

    def test_db_rejects_case_duplicate(self, db):
        from django.db import IntegrityError, transaction

        ItemFactory(sku="AB-1")
        with pytest.raises(IntegrityError), transaction.atomic():
            Item.objects.create(sku="ab-1", name="dup", price=1, cost=1)

    def test_delete_with_sales_refused(self, seeded):
        with pytest.raises(ItemInUse):
            services.item_delete(item=Item.objects.get(sku="A-1002"))
        services.item_delete(item=Item.objects.get(sku="A-1021"))
        assert not Item.objects.filter(sku="A-1021").exists()


@pytest.mark.django_db
class TestChangedSignal:
    def test_sent_after_commit(self, seeded, django_capture_on_commit_callbacks):
        calls = []

        def receiver(sender, **kwargs):
            calls.append(kwargs)

        inventory_changed.connect(receiver)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                services.sale_record(sku="A-1002", qty=1, source="tool")
                assert calls == []  # not before commit
            assert calls == [{"signal": inventory_changed, "skus": ["A-1002"], "source": "tool"}]
        finally:
            inventory_changed.disconnect(receiver)

    def test_not_sent_on_failure(self, seeded, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks() as callbacks, pytest.raises(InsufficientStock):
            services.sale_record(sku="A-1002", qty=99)
        assert callbacks == []


@pytest.mark.django_db
@pytest.mark.parametrize("tags", [[1], "gift", [""], {"a": 1}])
def test_tags_must_be_strings(tags):
    with pytest.raises(InventoryError) as exc:
        services.item_create(sku="T-1", name="x", price=Decimal(1), cost=Decimal(1), tags=tags)
    assert exc.value.field == "tags"
    assert not Item.objects.exists()
