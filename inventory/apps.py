from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Inventory"

    def ready(self) -> None:
        """Register the inventory mount; offer the inventory tools and the artifacts middleware."""
        from profiles.definitions import definitions
        from profiles.mounts import register_mount

        from .mounts import INVENTORY_MOUNT

        register_mount(INVENTORY_MOUNT)  # idempotent: ready() may run again (tests, reloaders)

        from .middleware import MIDDLEWARE_DEFINITIONS
        from .tools import TOOL_DEFINITIONS

        definitions.register_many(MIDDLEWARE_DEFINITIONS)
        definitions.register_many(TOOL_DEFINITIONS)

        from .realtime import broadcast_change
        from .services import inventory_changed

        inventory_changed.connect(broadcast_change, dispatch_uid="inventory.realtime.broadcast_change")
