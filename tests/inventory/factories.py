from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from inventory.models import Item, Sale


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        """UserFactory(perms=["inventory.change_item"]) grants those permissions."""
        for perm in extracted or []:
            app_label, codename = perm.split(".")
            self.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


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
