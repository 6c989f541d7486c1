"""`chat.asyncviews.AsyncAPIView`: handlers on the event loop; a JSON answer is rendered there too, so
Django does not hand the response to the request's thread to render it."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response

from chat.aio import run_db
from chat.asyncviews import AsyncAPIView
from tests.config.asgi import fetch
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def renders(handed: list[object]) -> list[object]:
    return [func for func in handed if getattr(func, "__name__", "") == "render"]


async def test_a_json_answer_is_rendered_on_the_loop_not_on_the_requests_thread(sent_to_threads):
    user = await run_db(UserFactory)
    token = (await run_db(Token.objects.create, user=user)).key

    status, headers, body = await fetch("/v1/models", headers=[(b"authorization", f"Bearer {token}".encode())])

    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["object"] == "list"
    assert renders(sent_to_threads) == []


async def test_an_error_answer_is_rendered_on_the_loop_with_its_json_body(sent_to_threads):
    status, _, body = await fetch("/v1/models", headers=[(b"authorization", b"Bearer not-a-token")])

    assert status == 401
    assert json.loads(body)["error"]
    assert renders(sent_to_threads) == []


class _Both(AsyncAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]

    async def get(self, request):
        return Response({"answer": 42})


async def test_a_template_rendered_answer_is_left_to_django():
    view = _Both.as_view()

    as_json = await view(RequestFactory().get("/", HTTP_ACCEPT="application/json"))
    as_html = await view(RequestFactory().get("/", HTTP_ACCEPT="text/html"))

    assert as_json.render is None and json.loads(as_json.content) == {"answer": 42}
    assert callable(as_html.render) and not as_html.is_rendered
