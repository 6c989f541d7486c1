from decimal import Decimal

import factory

from inventory.models import Item, Sale
from tests.factories import UserFactory

__all__ = ["ItemFactory", "SaleFactory", "UserFactory"]


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    sku = factory.Sequence(lambda n: f"T-{n:04d}")
    name = factory.Sequence(lambda n: f"Test item {n}")
    category = "Test"
    tags = factory.LazyFunction(list)
    qty = 10
    price = Decimal("5.00")
    cost = Decimal("2.00")


class SaleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sale

    item = factory.SubFactory(ItemFactory)
    qty = 1
    date = factory.Faker("date_object")
    total = factory.LazyAttribute(lambda sale: sale.item.price * sale.qty)
