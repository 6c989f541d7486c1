from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Inventory"

    def ready(self) -> None:
        """Offer the inventory tools and the artifacts middleware to profiles and the runtime."""
        from profiles.definitions import definitions

        from .middleware import MIDDLEWARE_DEFINITIONS
        from .tools import TOOL_DEFINITIONS

        definitions.register_many(MIDDLEWARE_DEFINITIONS)
        definitions.register_many(TOOL_DEFINITIONS)

        from .realtime import broadcast_change
        from .services import inventory_changed

        inventory_changed.connect(broadcast_change, dispatch_uid="inventory.realtime.broadcast_change")
