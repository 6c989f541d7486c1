"""Prepared statements (`profiles.prepared`): the ORM's own SQL and row decoding, compiled once per
connection. Run on SQLite in stage 1 and again on PostgreSQL in stage 2 (`backends`)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from profiles.models import Profile, ProfileSelection, Registry
from profiles.prepared import Insert, Param, Select, Update, UpdateReturning, inserts_held

from .factories import ProfileFactory, RegistryFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends]

BY_REF = Select(
    lambda: Profile.objects.select_related("registry", "registry__default_profile").filter(
        registry__slug=Param("registry"), slug=Param("slug")
    )[:1]
)
SLUGS = Select(
    lambda: Profile.objects.filter(registry_id=Param("registry_id")).order_by("slug").values_list("slug", "runtime"),
    limit="limit",
)
DESCRIBE = Update(
    lambda: Registry.objects.filter(slug=Param("slug")),
    description=Param("description"),
    group_defaults=Param("group_defaults"),
)


@pytest.fixture
def registry() -> Registry:
    registry = RegistryFactory(slug="prep")
    for slug in ("alpha", "beta", "gamma"):
        ProfileFactory(registry=registry, slug=slug, runtime={"system_prompt": f"I am {slug}", "tools": ["calculator"]})
    return Registry.objects.get(pk=registry.pk)


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The SELECT statements Django compiles (as_sql of a query compiler), on any thread."""
    seen: list[str] = []
    original = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        sql, params = original(self, *args, **kwargs)
        seen.append(sql)
        return sql, params

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    return seen


def test_a_select_gives_the_instances_its_queryset_gives_with_their_related_rows(registry):
    expected = (
        Profile.objects.select_related("registry", "registry__default_profile")
        .filter(registry__slug="prep", slug="beta")
        .first()
    )

    found = BY_REF.first(registry="prep", slug="beta")

    assert found is not None and expected is not None
    assert {f.attname: getattr(found, f.attname) for f in Profile._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Profile._meta.concrete_fields
    }
    assert found.runtime == {"system_prompt": "I am beta", "tools": ["calculator"]}  # JSON decoded
    with CaptureQueriesContext(connection) as queries:
        assert found.registry.slug == "prep"
        assert found.registry.default_profile == expected.registry.default_profile
    assert not queries.captured_queries  # loaded with the row, like select_related
    assert found._state.adding is False and found._state.db == "default"
    assert BY_REF.first(registry="prep", slug="missing") is None


def test_the_statement_is_compiled_once_per_connection_and_runs_again_with_new_values(registry, compiles):
    statement = Select(lambda: Profile.objects.filter(registry__slug=Param("registry"), slug=Param("slug"))[:1])
    assert [statement.first(registry="prep", slug=slug).slug for slug in ("alpha", "beta", "gamma")] == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert len(compiles) == 1

    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(statement.first(registry="prep", slug="beta").slug))
    thread.start()
    thread.join()
    assert other == ["beta"]
    assert len(compiles) == 2  # another thread's connection compiles its own


def test_rows_come_converted_like_values_list_and_the_limit_is_a_value(registry):
    assert SLUGS.rows(registry_id=registry.pk, limit=2) == list(
        Profile.objects.filter(registry=registry).order_by("slug").values_list("slug", "runtime")[:2]
    )
    assert [slug for slug, _ in SLUGS.rows(registry_id=registry.pk, limit=10)] == ["alpha", "beta", "gamma"]


def test_an_update_saves_values_as_their_fields_would_and_counts_the_rows(registry):
    defaults = [{"group": "support", "profile": "beta"}]

    assert DESCRIBE(slug="prep", description="Prepared", group_defaults=defaults) == 1
    assert DESCRIBE(slug="nobody", description="x", group_defaults=[]) == 0

    stored = Registry.objects.get(pk=registry.pk)
    assert (stored.description, stored.group_defaults) == ("Prepared", defaults)


def test_a_param_set_to_none_stores_null(registry):
    other = RegistryFactory(slug="other")
    ProfileFactory(registry=other, slug="kept")
    clear = Update(lambda: Registry.objects.filter(slug=Param("slug")), default_profile=Param("default"))
    assert registry.default_profile_id is not None

    assert clear(slug="prep", default=None) == 1

    assert Registry.objects.get(pk=registry.pk).default_profile_id is None
    assert Registry.objects.get(pk=other.pk).default_profile_id is not None  # other rows untouched


def test_params_in_an_annotations_subquery_bind_like_the_outer_ones(registry):
    """A value a subquery filters on is a `Param` too (the resolution's registry with the user's selection)."""
    with_profile = Select(
        lambda: (
            Registry.objects.filter(slug=Param("slug"))
            .annotate(
                named=Subquery(
                    Profile.objects.filter(registry_id=OuterRef("pk"), slug=Param("profile"))
                    .order_by()
                    .values("slug")[:1]
                )
            )
            .order_by()[:1]
        )
    )

    assert with_profile.first(slug="prep", profile="beta").named == "beta"
    assert with_profile.first(slug="prep", profile="nope").named is None


def test_an_update_returning_gives_the_changed_rows_field_as_changed_and_none_when_none_changed(registry):
    describe = UpdateReturning(
        lambda: Registry.objects.filter(slug=Param("slug")), "description", description=Param("description")
    )

    assert describe.returned(slug="prep", description="one") == ("one",)
    assert describe.returned(slug="nobody", description="x") is None  # no row changed
    assert Registry.objects.get(pk=registry.pk).description == "one"


def test_an_insert_writes_every_row_in_as_many_statements_as_the_backend_takes(monkeypatch):
    users = [get_user_model().objects.create(username=f"u{i}") for i in range(5)]
    rows = [ProfileSelection(user=u, mount="chat", registry_slug="default", profile_slug=u.username) for u in users]
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)

    with CaptureQueriesContext(connection) as queries:
        Insert(ProfileSelection)(rows)

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    # PostgreSQL takes any number of rows as one array per column; elsewhere 2 + 2 + 1.
    assert len(inserts) == (1 if connection.vendor == "postgresql" else 3)
    assert sorted(ProfileSelection.objects.values_list("profile_slug", flat=True)) == [u.username for u in users]
    assert all(row._state.adding is False for row in rows)


def test_on_postgresql_many_rows_are_one_statement_whatever_their_number_and_every_value_round_trips():
    """One array per column: the statement's text (what psycopg parses, and caches only up to 50
    parameters) is the same for 2 rows and for 70, and awkward values come back as they went in."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's arrays (stage 2)")
    insert = Insert(Registry)
    awkward = ['{a,"b"}', 'it\'s \\ a "quote"', "NULL", "", "é ✓ \n tab\t"]

    def registries(prefix: str, count: int) -> list[Registry]:
        return [
            Registry(
                slug=f"{prefix}-{i}",
                description=awkward[i % len(awkward)],
                version=i + 1,
                tags=[{"k": awkward[i % len(awkward)], "n": i / 2, "none": None}] if i % 2 else [],
                required_approvals=i % 3,
            )
            for i in range(count)
        ]

    statements: list[tuple[str, int]] = []  # as psycopg gets them: the text and the number of parameters

    def seen(execute, sql, params, many, context):
        statements.append((sql, len(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(seen):
        insert(registries("two", 2))
        insert(registries("many", 70))

    assert len(statements) == 2 and statements[0] == statements[1]
    assert statements[0][1] == len(insert.fields)
    for expected in registries("many", 70):
        stored = Registry.objects.get(slug=expected.slug)
        assert (stored.description, stored.version, stored.tags, stored.required_approvals) == (
            expected.description,
            expected.version,
            expected.tags,
            expected.required_approvals,
        )
        assert stored.default_profile_id is None  # a column with no value in any row
    assert Registry.objects.filter(slug__startswith="two-").count() == 2


def test_held_inserts_wait_for_the_flush_and_go_out_in_one_statement_per_table_in_first_use_order():
    users = [get_user_model().objects.create(username=f"h{i}") for i in range(3)]
    selections, registries = Insert(ProfileSelection, holdable=True), Insert(Registry, holdable=True)
    at_once = Insert(ProfileSelection)

    with CaptureQueriesContext(connection) as queries, inserts_held() as held:
        for user in users:
            registries([Registry(slug=f"held-{user.username}")])
            selections([ProfileSelection(user=user, mount="chat", registry_slug="default", profile_slug="a")])
        at_once([ProfileSelection(user=users[0], mount="inventory", registry_slug="default", profile_slug="b")])
        before_flush = [q["sql"].split()[2] for q in queries.captured_queries]
        held.flush()

    tables = [q["sql"].split()[2] for q in queries.captured_queries]
    assert before_flush == ['"profiles_profileselection"']  # the insert that is not holdable, at once
    assert tables == [*before_flush, '"profiles_registry"', '"profiles_profileselection"']
    assert Registry.objects.filter(slug__startswith="held-").count() == 3
    assert ProfileSelection.objects.filter(mount="chat").count() == 3


def test_held_inserts_not_flushed_are_dropped_and_holding_ends_with_the_block():
    registries = Insert(Registry, holdable=True)

    with pytest.raises(RuntimeError, match="stop"), inserts_held():
        registries([Registry(slug="dropped")])
        raise RuntimeError("stop")
    registries([Registry(slug="after")])

    assert list(Registry.objects.filter(slug__in=["dropped", "after"]).values_list("slug", flat=True)) == ["after"]


def test_a_param_that_is_neither_compared_nor_saved_is_refused(registry):
    loose = Select(lambda: Profile.objects.annotate(x=Param("x")).values_list("x"))
    with pytest.raises(TypeError, match="neither compared with a field nor saved"):
        loose.rows(x=1)


def test_on_postgresql_parameters_are_bound_by_the_server_and_json_round_trips(registry):
    """`DB_SERVER_SIDE_BINDING` (on by default): parameters go to PostgreSQL apart from the statement, so
    psycopg does not quote every value (a frame, a runtime record) into the SQL text in Python."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's parameter binding (stage 2)")
    awkward = [{"it's": 'a "quoted" \\ value', "n": 1.5, "none": None}]

    assert DESCRIBE(slug="prep", description="O'Brien's", group_defaults=awkward) == 1

    with connection.cursor() as cursor:
        assert type(cursor.cursor).__name__ == "ServerBindingCursor"
    stored = Registry.objects.get(slug="prep")
    assert (stored.description, stored.group_defaults) == ("O'Brien's", awkward)
