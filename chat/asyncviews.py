"""DRF views whose handlers are coroutines on the server's event loop: a request that waits for a turn
holds no thread. DRF's own request pipeline (authentication, permissions, throttles) runs on the
database pool; a JSON answer is rendered on the loop."""

from __future__ import annotations

import inspect
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.api.mounted import release_after_render

from .aio import run_db


# An APIView whose handlers are coroutines (DRF's `dispatch` is synchronous only). A comment: drf-spectacular
# would publish a docstring here as the description of every operation without one of its own.
class AsyncAPIView(APIView):
    async def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await run_db(self.initial, request, *args, **kwargs)  # authentication, permissions, throttles
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return rendered_here(self.response)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            response.add_post_render_callback(release_after_render)
        return response


def rendered_here(response: Any) -> Any:
    """A DRF response in JSON rendered now, on the loop: Django renders a response that has a callable
    `render` on the request's thread (`BaseHandler._get_response_async`), a round trip for what is only
    `json.dumps` of data the handler already built. Other renderers (the browsable API's templates) are
    left to Django."""
    if isinstance(response, Response) and getattr(response.accepted_renderer, "format", None) == "json":
        response.render()
        response.render = None  # type: ignore[assignment,method-assign]  # rendered: nothing left for Django to do
    return response
