"""`manage.py inventory_seed`: add the reference items and sales that are missing (idempotent)."""

from typing import Any

from django.core.management.base import BaseCommand

from inventory.seed import seed_inventory


class Command(BaseCommand):
    help = "Create the reference inventory items and sales that do not exist yet; never changes existing rows."

    def handle(self, *args: Any, **options: Any) -> None:
        result = seed_inventory()
        for sku in result.items_created:
            self.stdout.write(f"created item {sku}")
        for key in result.sales_created:
            self.stdout.write(f"created sale {key}")
        if result.changed:
            summary = f"{len(result.items_created)} item(s), {len(result.sales_created)} sale(s) created"
            self.stdout.write(self.style.SUCCESS(f"inventory seed: {summary}"))
        else:
            self.stdout.write("inventory seed: nothing to do, all items and sales already present")
