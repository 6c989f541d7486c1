"""The OpenAPI schema tells the truth: schemathesis fuzzes every operation of the schema `/api/schema/`
serves, in-process through Django's WSGI handler on the test database, once as a superuser and once as
a plain user (each with a DRF token), and checks every response: no 5xx, only documented statuses,
bodies, content types and headers as documented.

Every operation x role is a test of its own on a fresh, seeded database (`transactional_db`: the chat
views reach the database from channels' thread pools). Generation is derandomized with a fixed seed,
so every run sends the same requests. Besides the generated values, path parameters are often drawn
from what the seed holds (profile slugs, SKUs, sale ids, a conversation of the caller's) and a few
bodies from valid ones, so the success paths (and 409/412/429) are reached, not only 404s.

`FUZZ_MAX_EXAMPLES` (env, default 12) sets the generated cases per operation and `FUZZ_SEED` the seed;
`make fuzz` runs more cases.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inventory.seed import ITEMS, SALES, seed_sale_id

# The chat tests' seed fixtures: the seed registries (`default`, `inventory`), the inventory demo data
# and short offline-engine pauses (a message runs a whole turn before the response).
from tests.chat.conftest import fast_turns, seeded_inventory, seeded_registries  # noqa: F401

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
SEED = int(os.environ.get("FUZZ_SEED") or 20_240_601)
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))
MIN_CASES = 1000  # both roles together, at the default MAX_EXAMPLES


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx: object, value: object) -> bytes:
    """A dataset import's body (JSON lines): a generated string as it is, anything else as one line."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_inventory", "fast_turns"),
    # A page of an unordered list is not stable: treat Django's warning about it as a failure.
    pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning"),
]

# One conversation of the caller's per mount, created with these ids for each test.
CONVERSATIONS = {"chat": uuid.UUID(int=1), "inventory": uuid.UUID(int=2)}
KNOWN_PATH_VALUES = {
    "slug": ["default", "analyst", "agent", "inventory"],
    "version": [1, 2],
    "sku": [item[0] for item in ITEMS],
    "id": [str(seed_sale_id(sale[0])) for sale in SALES],
    "conv_id": [str(conv_id) for conv_id in CONVERSATIONS.values()],
}


def _both_mounts(label: str, strategy) -> dict:
    """`label` (a chat-mount route) and its inventory-mount twin, with the same body strategy."""
    method, path = label.split(" ", 1)
    return {label: strategy, f"{method} /inventory{path}": strategy}


ITEM_BODY = st.fixed_dictionaries(
    {
        "sku": st.from_regex(r"\AFZ-[0-9]{1,6}\Z"),
        "name": st.sampled_from(["Fuzz widget", "Gadget"]),
        "price": st.sampled_from(["1.00", "9.99", "0"]),
        "cost": st.sampled_from(["0.50", "0"]),
    },
    optional={"qty": st.integers(0, 100), "category": st.sampled_from(["", "Fuzz"]), "tags": st.just(["fuzz"])},
)
# Valid bodies mixed into the generated ones, so writes also succeed (and then conflict).
VALID_BODIES = {
    **_both_mounts("POST /api/chat/profile", st.fixed_dictionaries({"slug": st.sampled_from(["analyst", "default"])})),
    **_both_mounts(
        "POST /api/chat/profiles",
        st.fixed_dictionaries({"slug": st.from_regex(r"\Afz-[a-z0-9]{1,6}\Z"), "display_name": st.just("Fuzz")}),
    ),
    **_both_mounts("PATCH /api/chat/profiles/{slug}", st.fixed_dictionaries({"description": st.text(max_size=40)})),
    **_both_mounts("PATCH /api/chat/conversations/{conv_id}", st.fixed_dictionaries({"title": st.text(max_size=40)})),
    **_both_mounts(
        "POST /api/chat/conversations/{conv_id}/messages",
        st.fixed_dictionaries({"prompt": st.sampled_from(["What is 17.5% of 2,340?", "hello"])}),
    ),
    **_both_mounts(
        "POST /v1/chat/completions",
        st.fixed_dictionaries(
            {
                "model": st.sampled_from(["default", "analyst"]),
                "messages": st.just([{"role": "user", "content": "hello"}]),
                "stream": st.booleans(),
            }
        ),
    ),
    "POST /inventory/api/items": ITEM_BODY,
    "PUT /inventory/api/items/{sku}": ITEM_BODY,
    "POST /inventory/api/sales": st.fixed_dictionaries(
        {"sku": st.sampled_from(KNOWN_PATH_VALUES["sku"]), "qty": st.integers(1, 3)}
    ),
}
# Versions that exist (or nearly): with `If-Match`, the writes answer 412 as well as 400.
IF_MATCH_VALUES = st.fixed_dictionaries({"If-Match": st.sampled_from(['"1"', '"2"', "3", 'W/"1"'])})

CASES: Counter[tuple[str, str]] = Counter()  # (role, operation) -> cases sent


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "deterministic": True,
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                # The token is sent explicitly; random `Authorization` / `sessionid` values would only
                # turn the case into an anonymous request.
                "with-security-parameters": False,
            },
        }
    )


def load_schema() -> schemathesis.BaseSchema:
    """The schema `/api/schema/` serves (the same generator and renderer), bound to Django's WSGI
    handler. Built at import, so every operation is a test item of its own: schemathesis' lazy
    `from_fixture` loader does not work with pytest 9's node ids, and `from_wsgi` would need a
    signed-in user before the test database exists (`test_served_schema_is_the_fuzzed_one` checks
    that the served schema is this one)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(raw, config=fuzz_config())
    loaded.app = get_wsgi_application()
    return loaded


schema = load_schema()


@schema.hook
def before_generate_path_parameters(context, strategy):
    """Often address what exists (the seed's profiles, items, sales; the caller's conversations)."""
    names = re.findall(r"{(\w+)}", context.operation.path)
    if not names or any(name not in KNOWN_PATH_VALUES for name in names):
        return strategy
    known = st.fixed_dictionaries({name: st.sampled_from(KNOWN_PATH_VALUES[name]) for name in names})
    return st.one_of(strategy, known)


@schema.hook
def before_generate_body(context, strategy):
    valid = VALID_BODIES.get(f"{context.operation.method.upper()} {context.operation.path}")
    return strategy if valid is None else st.one_of(strategy, valid)


@schema.hook
def before_generate_headers(context, strategy):
    if any(parameter.name == "If-Match" for parameter in context.operation.headers):
        return st.one_of(strategy, IF_MATCH_VALUES)
    return strategy


@pytest.fixture(params=["admin", "user"])
def fuzz_role(request) -> str:
    return request.param


@pytest.fixture
def fuzz_user(fuzz_role, transactional_db):
    from django.contrib.auth import get_user_model

    from chat.mounts import CHAT_MOUNT
    from chat.services import conversation_create
    from inventory.mounts import INVENTORY_MOUNT

    users = get_user_model().objects
    if fuzz_role == "admin":
        user = users.create_superuser("fuzz-admin", "admin@example.com", "fuzz")
    else:
        user = users.create_user("fuzz-user", "user@example.com", "fuzz")
    for mount in (CHAT_MOUNT, INVENTORY_MOUNT):
        conversation_create(owner=user, mount=mount, conv_id=CONVERSATIONS[mount.name], title="fuzz")
    return user


@pytest.fixture
def auth_headers(fuzz_user) -> dict[str, str]:
    from rest_framework.authtoken.models import Token

    return {"Authorization": f"Token {Token.objects.create(user=fuzz_user).key}"}


@schema.parametrize()
# The fixtures (user, token, seed) hold for all the cases of one operation on purpose: its cases share
# one database, which they change as clients would.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case, auth_headers, fuzz_role):
    CASES[fuzz_role, case.operation.label] += 1
    case.call_and_validate(headers=auth_headers, checks=CHECKS)


def test_served_schema_is_the_fuzzed_one(admin_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert json.loads(response.content) == schema.raw_schema


def test_enough_cases_were_fuzzed():
    operations = {result.ok().label for result in schema.get_all_operations()}
    # Every operation, as both roles (run the whole module: a narrower selection fails here).
    assert set(CASES) == {(role, label) for role in ("admin", "user") for label in operations}
    assert sum(CASES.values()) >= MIN_CASES, sorted(CASES.items())
