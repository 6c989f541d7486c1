"""Statements the ORM builds and compiles once per connection, then runs again with new values.

Building a queryset and compiling it to SQL costs more CPU than SQLite or PostgreSQL take to run the
small statements of the turn path (about 0.2-0.5 ms each, a dozen per turn: most of a turn's CPU). A
prepared statement is written as a queryset whose changing values are `Param`s; its SQL, and what
decodes its rows into model instances (select_related included) or tuples, is kept per database
connection, and each call binds its values the way the field would have prepared them. The statement,
its cursor (query logging and counting see it), row conversion and transaction behaviour are the
ORM's own; only the building and compiling are not repeated.

A `Param` stands for a value that is never None (`= NULL` is never true; write that filter as a
constant). Rows come in SELECT order: the values' fields, then the annotations.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections, router
from django.db.models import AutoField, BigAutoField, Expression, Model, QuerySet, SmallAutoField
from django.db.models.lookups import Lookup
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]
from django.db.models.sql.subqueries import UpdateQuery
from django.db.models.sql.where import WhereNode

M = TypeVar("M", bound=Model)


class Param(Expression):
    """A value bound when the prepared statement runs: one placeholder in the SQL."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.prepare: Callable[[Any, Any], Any] | None = None  # set from the field it is compared with or saved to

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if self.prepare is None:
            raise TypeError(f"Param({self.name!r}) is neither compared with a field nor saved to one")
        return "%s", [_Slot(self.name, self.prepare)]


@dataclass(frozen=True)
class _Slot:
    name: str
    prepare: Callable[[Any, Any], Any]


def _lookup_params(node: Any) -> None:
    """Give each `Param` of a WHERE tree (its subqueries' included) the preparation of the field it is
    compared with."""
    if isinstance(node, WhereNode):
        for child in node.children:
            _lookup_params(child)
        return
    _subquery_params(node)
    if isinstance(node, Lookup) and isinstance(node.rhs, Param):
        field = node.lhs.output_field

        def prepare(value: Any, connection: Any, field: Any = field) -> Any:
            return field.get_db_prep_value(value, connection, prepared=False)

        node.rhs.prepare = prepare


def _subquery_params(expression: Any) -> None:
    """The `Param`s in the filters of the subqueries an expression holds (an annotation, a lookup's side)."""
    query = getattr(expression, "query", None)
    if query is not None and isinstance(getattr(query, "where", None), WhereNode):
        _lookup_params(query.where)
        for annotation in query.annotations.values():
            _subquery_params(annotation)
    for source in getattr(expression, "get_source_expressions", lambda: [])():
        if source is not None:
            _subquery_params(source)


@dataclass
class _Compiled:
    sql: str
    params: list[Any]
    decode: Callable[[list[Any], Any], Any]  # (row, connection) -> the row as the caller gets it

    def bind(self, values: dict[str, Any], connection: Any) -> list[Any]:
        return [p.prepare(values[p.name], connection) if isinstance(p, _Slot) else p for p in self.params]


class _Statement:
    """The compiled form per connection (a thread's own): compiled on first use there, under a lock."""

    def __init__(self) -> None:
        self._compiled: weakref.WeakKeyDictionary[Any, _Compiled] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._alias: str | None = None

    def _compile(self, connection: Any) -> _Compiled:
        raise NotImplementedError

    def _alias_of(self) -> str:
        raise NotImplementedError

    def _execute(self, values: dict[str, Any]) -> tuple[Any, _Compiled, Any]:
        if self._alias is None:
            self._alias = self._alias_of()
        connection = connections[self._alias]
        compiled = self._compiled.get(connection)
        if compiled is None:
            with self._lock:
                compiled = self._compile(connection)
                self._compiled[connection] = compiled
        cursor = connection.cursor()
        cursor.execute(compiled.sql, compiled.bind(values, connection))
        return cursor, compiled, connection


class Select(_Statement, Generic[M]):
    """A SELECT written as a queryset (`build()` returns it, with `Param`s for the values that change).
    `objects(**values)`: model instances when the queryset gives instances; `rows(**values)`: tuples when
    it is a `values_list()`/`values()` queryset. `limit`: the name of a value that is the statement's LIMIT
    (the ORM would write a slice's bounds into the SQL itself)."""

    def __init__(self, build: Callable[[], QuerySet[M, Any]], *, limit: str | None = None) -> None:
        super().__init__()
        self.build, self.limit = build, limit

    def _alias_of(self) -> str:
        return self.build().db

    def _compile(self, connection: Any) -> _Compiled:
        queryset = self.build()
        _lookup_params(queryset.query.where)
        for annotation in queryset.query.annotations.values():
            _subquery_params(annotation)
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        params = list(params)
        if self.limit is not None:
            sql += " LIMIT %s"
            params.append(_Slot(self.limit, lambda value, connection: int(value)))
        select, col_count = compiler.select, compiler.col_count
        converters = list(compiler.get_converters([s[0] for s in select[0:col_count]]).items())

        def convert(row: Any, connection: Any) -> list[Any]:
            row = list(row[0:col_count])
            for pos, (convs, expression) in converters:
                value = row[pos]
                for converter in convs:
                    value = converter(value, expression, connection)
                row[pos] = value
            return row

        klass_info = compiler.klass_info
        if klass_info is None or queryset.query.values_select or queryset._fields is not None:  # type: ignore[attr-defined]
            return _Compiled(sql, params, lambda row, connection: tuple(convert(row, connection)))
        model, db = klass_info["model"], queryset.db
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        init_list = [f[0].target.attname for f in select[start:end]]
        populators = get_related_populators(klass_info, select, db)
        annotations = list(compiler.annotation_col_map.items())

        def instance(row: Any, connection: Any) -> Model:
            row = convert(row, connection)
            obj = model.from_db(db, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            for name, pos in annotations:
                setattr(obj, name, row[pos])
            return obj

        return _Compiled(sql, params, instance)

    def objects(self, **values: Any) -> list[M]:
        cursor, compiled, connection = self._execute(values)
        with cursor:
            return [compiled.decode(row, connection) for row in cursor.fetchall()]

    def first(self, **values: Any) -> M | None:
        found = self.objects(**values)
        return found[0] if found else None

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of a `values_list()` statement, as tuples."""
        return self.objects(**values)  # type: ignore[return-value]  # decoded as tuples

    def row(self, **values: Any) -> tuple[Any, ...] | None:
        """The first row of a `values_list()` statement, or None."""
        found = self.rows(**values)
        return found[0] if found else None


class Update(_Statement):
    """An UPDATE of the rows of a queryset (`build()`, with `Param`s in its filters) setting `changes`
    (constants or `Param`s). Calling it returns the number of rows it changed."""

    returning: str | None = None

    def __init__(self, build: Callable[[], QuerySet[Any, Any]], **changes: Any) -> None:
        super().__init__()
        self.build, self.changes = build, changes

    def _alias_of(self) -> str:
        queryset = self.build()
        queryset._for_write = True  # type: ignore[attr-defined]
        return queryset.db

    def _compile(self, connection: Any) -> _Compiled:
        query: Any = self.build().query.chain(UpdateQuery)
        query.add_update_values(self.changes)
        query.annotations = {}
        _lookup_params(query.where)
        for field, _model, value in query.values:
            if isinstance(value, Param):

                def prepare(v: Any, connection: Any, field: Any = field) -> Any:
                    return field.get_db_prep_save(v, connection)

                value.prepare = prepare
        sql, params = query.get_compiler(connection=connection).as_sql()
        params = list(params)
        if self.returning is not None:  # the changed row's own column, as the UPDATE left it
            column = query.model._meta.get_field(self.returning).column
            sql += f" RETURNING {connection.ops.quote_name(column)}"
        return _Compiled(sql, params, lambda row, connection: row)

    def __call__(self, **values: Any) -> int:
        cursor, _, _ = self._execute(values)
        with cursor:
            return int(cursor.rowcount)


class UpdateReturning(Update):
    """An `Update` whose changed rows each return the value of their field `returning` after the change
    (SQLite 3.35+, PostgreSQL). On PostgreSQL that is the newest row even when the UPDATE waited for its
    lock (a subquery would read other rows as of the statement's start)."""

    def __init__(self, build: Callable[[], QuerySet[Any, Any]], returning: str, **changes: Any) -> None:
        super().__init__(build, **changes)
        self.returning = returning

    def returned(self, **values: Any) -> tuple[Any] | None:
        """Run the UPDATE; `(value,)` of `returning` in the first row it changed, None when it changed none."""
        cursor, _, _ = self._execute(values)
        with cursor:
            rows = cursor.fetchall()
        return (rows[0][0],) if rows else None


class Insert(Generic[M]):
    """INSERTs of new `model` instances, as many rows per statement as the backend takes: every concrete
    column but an auto-increment key (which the instances do not get back: no RETURNING), values prepared
    by their fields as `save()` would. The statement is what `bulk_create` writes, without its compiling
    (on PostgreSQL, many rows go as one array per column: `_unnest`); no signals are sent (like
    `bulk_create`). The instances are marked saved.

    `holdable`: inside `inserts_held()` its rows wait for the block's `flush` (the caller's promise: no
    statement of the block reads, changes or deletes them before, unless `flush_held()` runs first)."""

    def __init__(self, model: type[M], *, holdable: bool = False) -> None:
        self.model = model
        self.holdable = holdable
        self.fields = [
            f
            for f in model._meta.concrete_fields
            if not (f.primary_key and isinstance(f, AutoField | BigAutoField | SmallAutoField))
        ]
        self._heads: dict[str, tuple[str, str]] = {}
        self._unnests: dict[str, str] = {}

    def __call__(self, objs: list[M]) -> list[M]:
        if not objs:
            return objs
        held = _held.rows if self.holdable else None
        if held is not None:
            held.setdefault(self, []).extend(objs)
            alias = router.db_for_write(self.model)
            for obj in objs:
                obj._state.adding, obj._state.db = False, alias
            return objs
        return self._insert(objs)

    def _insert(self, objs: list[M]) -> list[M]:
        alias = router.db_for_write(self.model)
        connection = connections[alias]
        head = self._heads.get(alias)
        if head is None:
            head = self._heads[alias] = (
                f"INSERT INTO {self._table(connection)} VALUES ",  # noqa: S608 - names from the model
                "(" + ", ".join(["%s"] * len(self.fields)) + ")",
            )
        start, row = head
        with connection.cursor() as cursor:
            if len(objs) > 1 and connection.vendor == "postgresql":
                columns = [[f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs] for f in self.fields]
                cursor.execute(self._unnest(alias, connection), columns)
            else:
                size = max(1, connection.ops.bulk_batch_size(self.fields, objs))
                for at in range(0, len(objs), size):
                    batch = objs[at : at + size]
                    params = [
                        f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in batch for f in self.fields
                    ]
                    cursor.execute(start + ", ".join([row] * len(batch)), params)
        for obj in objs:
            obj._state.adding, obj._state.db = False, alias
        return objs

    def _table(self, connection: Any) -> str:
        quote = connection.ops.quote_name
        return f"{quote(self.model._meta.db_table)} ({', '.join(quote(f.column) for f in self.fields)})"

    def _unnest(self, alias: str, connection: Any) -> str:
        """Many rows on PostgreSQL: one array per column, the same statement whatever their number. A
        VALUES list of N rows is a new statement for each N, with N x columns parameters: psycopg then
        parses its text again on every call (its cache keeps statements of at most 50 parameters), which
        took a third of a busy writer's batches, and PostgreSQL plans it again."""
        sql = self._unnests.get(alias)
        if sql is None:
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in self.fields)
            sql = self._unnests[alias] = f"INSERT INTO {self._table(connection)} SELECT * FROM unnest({arrays})"  # noqa: S608
        return sql


class _Held(threading.local):
    rows: dict[Insert[Any], list[Any]] | None = None


_held = _Held()


class HeldInserts:
    """The rows of holdable `Insert`s made in an `inserts_held()` block, until `flush`."""

    def __init__(self, rows: dict[Insert[Any], list[Any]]) -> None:
        self.rows = rows

    def flush(self) -> None:
        """Each Insert's held rows in as few statements as the backend takes, Inserts in the order of their
        first rows (foreign keys are checked at the commit)."""
        while self.rows:
            insert = next(iter(self.rows))
            insert._insert(self.rows.pop(insert))


def flush_held() -> None:
    """Insert now the rows held so far on this thread, for a read in an `inserts_held()` block that must
    see them (a sum over the rows a rule spans). Outside a block, or with nothing held: nothing to do."""
    if _held.rows:
        HeldInserts(_held.rows).flush()


@contextlib.contextmanager
def inserts_held() -> Iterator[HeldInserts]:
    """On this thread, holdable `Insert`s hold their rows until the block calls `flush()` (rows not
    flushed when it ends are dropped: the block failed). For a group of small writes that each insert a
    row or two: one multi-row statement per table for all of them."""
    if _held.rows is not None:
        raise RuntimeError("inserts are held already")
    held = HeldInserts({})
    _held.rows = held.rows
    try:
        yield held
    finally:
        _held.rows = None


__all__ = ["HeldInserts", "Insert", "Param", "Select", "Update", "UpdateReturning", "flush_held", "inserts_held"]
