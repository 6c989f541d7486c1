"""The inventory app's mount of the shared platform: under /inventory/, registry `inventory`.

Declared here, registered by `inventory.apps.InventoryConfig.ready()`.
"""

from profiles.mounts import Mount

INVENTORY_MOUNT = Mount(name="inventory", prefix="inventory/", default_registry="inventory", title="Inventory")
