"""Django's middlewares on the event loop (config.middleware), through the project's real ASGI
application: an async view's request makes no thread round trip for their hooks, while what reads or
writes the session or parses a form still runs on the request's thread (a login is saved, CSRF holds)."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.utils.deprecation import MiddlewareMixin
from rest_framework.authtoken.models import Token

from chat.aio import run_db
from tests.factories import PASSWORD, UserFactory

from .asgi import fetch

pytestmark = pytest.mark.django_db(transaction=True)
FORM = (b"content-type", b"application/x-www-form-urlencoded")


def middleware_hooks(handed: list[object]) -> list[str]:
    return [
        f"{type(owner).__name__}.{func.__name__}"  # type: ignore[attr-defined]
        for func in handed
        if isinstance(owner := getattr(func, "__self__", None), MiddlewareMixin)
    ]


def cookie(headers: dict[str, str], name: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    for line in headers.get("set-cookie", "").splitlines():
        jar.load(line)
    return jar[name].value


async def test_an_async_api_request_runs_no_middleware_hook_on_a_thread(sent_to_threads):
    user = await run_db(UserFactory)
    token = (await run_db(Token.objects.create, user=user)).key

    status, _, _ = await fetch("/v1/models", headers=[(b"authorization", f"Bearer {token}".encode())])

    assert status == 200
    assert middleware_hooks(sent_to_threads) == []


async def test_a_login_under_asgi_checks_csrf_and_saves_its_session_on_the_thread(sent_to_threads):
    await run_db(UserFactory, username="admin1", is_staff=True, is_superuser=True)
    status, headers, page = await fetch("/admin/login/")
    csrf = cookie(headers, "csrftoken")
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert status == 200 and form_token

    body = urlencode(
        {"username": "admin1", "password": PASSWORD, "csrfmiddlewaretoken": form_token[1].decode(), "next": "/admin/"}
    )
    status, headers, _ = await fetch(
        "/admin/login/",
        method="POST",
        headers=[FORM, (b"cookie", f"csrftoken={csrf}".encode())],
        body=body.encode(),
    )
    assert status == 302, headers
    session = cookie(headers, "sessionid")
    # The form was checked and the new session saved by the request's thread, not on the loop.
    assert {"Csrf.process_view", "Sessions.process_response"} <= set(middleware_hooks(sent_to_threads))

    status, _, page = await fetch("/admin/", headers=[(b"cookie", f"sessionid={session}".encode())])
    assert status == 200
    assert b"admin1" in page


async def test_a_form_post_without_its_csrf_token_is_refused_under_asgi():
    await run_db(UserFactory, username="admin2", is_staff=True, is_superuser=True)
    body = urlencode({"username": "admin2", "password": PASSWORD}).encode()

    status, _, _ = await fetch("/admin/login/", method="POST", headers=[FORM], body=body)

    assert status == 403
