"""The chat app's mount of the shared platform: at the site root, registry `default`."""

from profiles.mounts import Mount, register_mount

CHAT_MOUNT = register_mount(Mount(name="chat", prefix="", default_registry="default", title="Chat"))
