"""The inventory app's mount of the shared platform: under /inventory/, registry `inventory`.

Declared here, registered by `inventory.apps.InventoryConfig.ready()`.
"""

from profiles.mounts import Mount, Panel

from .selectors import LOW_STOCK_THRESHOLD

INVENTORY_MOUNT = Mount(
    name="inventory",
    prefix="inventory/",
    default_registry="inventory",
    title="Inventory",
    empty_state="Ask about your inventory",
    panel=Panel(
        template="inventory/panel.html",
        stylesheet="inventory/inventory.css",
        module="inventory/inventory.js",
        options=(("api_base", "/inventory/api/"), ("low_stock_threshold", LOW_STOCK_THRESHOLD)),
    ),
)
