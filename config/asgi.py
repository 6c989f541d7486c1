"""ASGI entry point: HTTP through Django, websockets through Channels (origin-checked, authenticated)."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from chat.evaluations.runner import runner as evaluation_runner  # noqa: E402
from chat.mcp.serve import mcp_routes  # noqa: E402
from chat.mounts import CHAT_MOUNT  # noqa: E402
from chat.routing import websocket_urls  # noqa: E402
from chat.security import AllowedHostsOrigin, SessionOrTokenAuth  # noqa: E402
from chat.turns import bind_server_loop  # noqa: E402
from inventory.mounts import INVENTORY_MOUNT  # noqa: E402
from inventory.realtime import InventoryChangesConsumer  # noqa: E402

from .daphne_server import (  # noqa: E402
    close_oversized_messages_cleanly,
    format_debug_only_when_logged,
    leave_request_bodies_to_the_application,
)
from .threads import BoundedSyncThreads  # noqa: E402

close_oversized_messages_cleanly()
format_debug_only_when_logged()
leave_request_bodies_to_the_application()

websocket_app = AllowedHostsOrigin(
    SessionOrTokenAuth(
        URLRouter(
            [
                path("inventory/ws/items/", InventoryChangesConsumer.as_asgi()),
                *websocket_urls(INVENTORY_MOUNT),
                *websocket_urls(CHAT_MOUNT),
            ]
        )
    )
)

http_app = BoundedSyncThreads(django_asgi_app, size=settings.HTTP_SYNC_THREADS)
# `/mcp` and `/inventory/mcp`: every profile as an MCP tool (the SDK's server, beside Django).
mcp_and_http = mcp_routes(http_app, [INVENTORY_MOUNT, CHAT_MOUNT])
application = bind_server_loop(
    ProtocolTypeRouter({"http": mcp_and_http, "websocket": websocket_app}), evaluation_runner.bind
)

gc.freeze()  # start-up objects live forever: keep ~170,000 of them out of every full collection's scan
