"""The inventory app's mount of the shared platform: under /inventory/, registry `inventory`."""

from profiles.mounts import Mount, register_mount

INVENTORY_MOUNT = register_mount(
    Mount(name="inventory", prefix="inventory/", default_registry="inventory", title="Inventory")
)
