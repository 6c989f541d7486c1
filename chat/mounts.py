"""The chat app's mount of the shared platform: at the site root, registry `default`.

Declared here, registered by `chat.apps.ChatConfig.ready()`: `get_mount("chat")` works as soon as
Django is set up (shell, management commands, workers), whether or not `config.urls` was imported.
"""

from profiles.mounts import Mount

CHAT_MOUNT = Mount(name="chat", prefix="", default_registry="default", title="Chat")
