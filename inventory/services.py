"""Inventory writes and the domain errors: the one place stock changes.

The REST API, the admin, the page and the assistant's tools all call these functions, so every
client sees the same data and the same rules. Reads live in `inventory.selectors`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError
from django.dispatch import Signal
from django.utils import timezone

from profiles.errors import Conflict, InvalidInput, NotFound
from profiles.timestamps import now_ms
from profiles.validation import ensure_storable, storable_errors

from .models import Item, Sale

logger = logging.getLogger(__name__)

# Largest value of the qty column on every supported database (PostgreSQL `integer`).
MAX_QTY = 2_147_483_647
CENT = Decimal("0.01")
# Sale.total is DECIMAL(12, 2): a larger product would fail on PostgreSQL and break reads on SQLite.
MAX_TOTAL = Decimal("9999999999.99")
# Retries of the qty compare-and-set; only reached if the database takes no lock at all.
CAS_ATTEMPTS = 20

# Sent after the transaction that changed stock commits, with `skus=[...]` and `source=` ("api",
# "tool", "admin", "seed", ...). Receivers (the page's live updates) never see rolled-back writes.
inventory_changed = Signal()

if TYPE_CHECKING:
    # `User`: the AUTH_USER_MODEL, as django-stubs resolves `settings.AUTH_USER_MODEL`.
    from django.contrib.auth.models import AnonymousUser, User

# Who acts: a user, a user id (tools only know the id), or nobody (None or an anonymous user).
UserRef: TypeAlias = "User | AnonymousUser | int | None"


# --------------------------------------------------------------------------- errors


class InventoryError(InvalidInput, ValueError):
    """A domain error callers can show as is; `field` names the offending input when there is one.

    Part of the platform's one error hierarchy (`profiles.errors`): a 400 `invalid` unless a subclass
    is also a NotFound (404) or a Conflict (409); `profiles.api.errors` maps them to HTTP. The admin and
    the assistant's tools catch InventoryError."""

    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field if field is not None else type(self).field)


class ItemNotFound(InventoryError):
    """A request names a SKU that does not exist (e.g. in a sale): 400 on `sku`."""

    field = "sku"

    def __init__(self, sku: str) -> None:
        super().__init__(f"no item with SKU {sku!r}")
        self.sku = sku


class NoSuchItem(ItemNotFound, NotFound):
    """The item addressed (by its URL, or by a write in progress) does not exist, or was deleted
    meanwhile: 404."""


class InsufficientStock(InventoryError):
    field = "qty"

    def __init__(self, *, sku: str, requested: int, available: int) -> None:
        super().__init__(f"insufficient stock for {sku}: requested {requested}, only {available} available")
        self.sku = sku
        self.requested = requested
        self.available = available


class DuplicateSku(InventoryError):
    field = "sku"

    def __init__(self, sku: str) -> None:
        super().__init__(f"an item with SKU {sku!r} already exists (SKUs are case-insensitive)")
        self.sku = sku


class ItemInUse(InventoryError, Conflict):
    """Deleting an item that has sales would rewrite history; sales PROTECT their item: 409."""

    field = "sku"


# --------------------------------------------------------------------------- helpers


def inventory_notify(*, skus: Iterable[str], source: str) -> None:
    """Announce a write once the surrounding transaction commits (immediately outside one)."""
    skus = sorted(set(skus))

    def send() -> None:
        for receiver, response in inventory_changed.send_robust(sender=Item, skus=skus, source=source):
            if isinstance(response, Exception):
                logger.error("inventory_changed receiver %r failed", receiver, exc_info=response)

    transaction.on_commit(send)


def _user_ref(user: UserRef) -> User | None:
    """Services take a user or a user id (tools only know the id); a pk-only stub is enough for FKs."""
    if isinstance(user, AbstractBaseUser):
        return user if user.pk is not None else None
    if isinstance(user, int) and not isinstance(user, bool):
        return get_user_model()(pk=user)
    return None


def ensure_storable_fields(**fields: Any) -> None:
    """Text the database or the JSON encoder would refuse (lone surrogates, NUL, NaN/Infinity) is an
    InventoryError on its field, before any lookup or message could echo it."""
    try:
        ensure_storable(fields, field="")
    except InvalidInput as exc:
        raise InventoryError(exc.message, field=exc.field) from None


def lookup_sku(sku: Any) -> str | None:
    """`sku` trimmed for a case-insensitive lookup, or None when no stored SKU can equal it (a SKU
    with NUL or a lone surrogate, which PostgreSQL or the driver would refuse as a parameter)."""
    text = sku.strip() if isinstance(sku, str) else ""
    return None if storable_errors(text, field="sku") else text


def _item_for_update(sku: str) -> Item:
    """The item row, locked where the database can (PostgreSQL); SQLite's IMMEDIATE mode locks the DB."""
    text = lookup_sku(sku)
    item = None if text is None else Item.objects.select_for_update().filter(sku__iexact=text).first()
    if item is None:
        raise ItemNotFound(sku)
    return item


def _lock_existing(item: Item, sku: str) -> None:
    """Lock the row of an item read earlier (outside this transaction); NoSuchItem if it was deleted
    meanwhile, instead of an UPDATE that matches no row (a 500) or a second delete."""
    if not Item.objects.select_for_update().filter(pk=item.pk).exists():
        raise NoSuchItem(sku)


def _record_history(item: Item, user: User | None, reason: str) -> None:
    """Conditional UPDATEs bypass save(), so write the history row ourselves."""
    item.refresh_from_db()
    Item.history.bulk_history_create([item], update=True, default_user=user, default_change_reason=reason)


def _check_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InventoryError(f"{field} must be an integer", field=field)
    return value


# --------------------------------------------------------------------------- stock


@dataclass(frozen=True)
class QtyUpdate:
    item: Item
    requested_delta: int
    applied_delta: int
    clamped: bool


def item_update_qty(*, sku: str, delta: int, user: UserRef = None, source: str = "api") -> QtyUpdate:
    """Add `delta` to the stock of `sku`; a decrease below zero stops at zero and says so."""
    delta = _check_int(delta, "delta")
    if delta == 0:
        raise InventoryError("delta must not be 0", field="delta")
    actor = _user_ref(user)
    with transaction.atomic():
        for _attempt in range(CAS_ATTEMPTS):
            item = _item_for_update(sku)
            new_qty = max(0, item.qty + delta)
            if new_qty > MAX_QTY:
                raise InventoryError(f"qty of {item.sku} would exceed {MAX_QTY}", field="delta")
            # Compare-and-set: correct even where the row lock above is a no-op.
            if Item.objects.filter(pk=item.pk, qty=item.qty).update(qty=new_qty, updated_at_ms=now_ms()):
                break
        else:
            raise InventoryError(f"stock of {item.sku} is changing too fast, try again", field="delta")
        applied = new_qty - item.qty
        _record_history(item, actor, f"qty {applied:+d} ({source})")
        inventory_notify(skus=[item.sku], source=source)
    return QtyUpdate(item=item, requested_delta=delta, applied_delta=applied, clamped=applied != delta)


def sale_record(*, sku: str, qty: int, date: dt.date | None = None, user: UserRef = None, source: str = "api") -> Sale:
    """Sell `qty` units of `sku` at its current price; never oversells, changes nothing on error.

    The decrement is a conditional UPDATE (`qty >= requested`), so two concurrent sales cannot both
    take the last unit on SQLite (where select_for_update is a no-op) or PostgreSQL.
    """
    qty = _check_int(qty, "qty")
    if qty <= 0:
        raise InventoryError("qty must be at least 1", field="qty")
    if date is not None and not isinstance(date, dt.date):
        raise InventoryError("date must be a date (YYYY-MM-DD)", field="date")
    ensure_storable_fields(sku=sku)
    actor = _user_ref(user)
    with transaction.atomic():
        item = _item_for_update(sku)
        total = (item.price * qty).quantize(CENT)
        if total > MAX_TOTAL:
            raise InventoryError(
                f"a sale totalling {total} exceeds the largest storable total {MAX_TOTAL}", field="qty"
            )
        taken = Item.objects.filter(pk=item.pk, qty__gte=qty).update(qty=F("qty") - qty, updated_at_ms=now_ms())
        if not taken:
            available = Item.objects.filter(pk=item.pk).values_list("qty", flat=True).first() or 0
            raise InsufficientStock(sku=item.sku, requested=qty, available=available)
        _record_history(item, actor, f"sale of {qty} ({source})")
        sale = Sale.objects.create(
            item=item,
            qty=qty,
            date=date or timezone.localdate(),
            total=total,
            created_by=actor,
        )
        inventory_notify(skus=[item.sku], source=source)
    return sale


# --------------------------------------------------------------------------- item CRUD


ITEM_FIELDS = ("sku", "name", "category", "tags", "qty", "price", "cost")


def _save_item(
    item: Item,
    actor: User | None,
    source: str,
    *,
    update_fields: Iterable[str] | None = None,
    old_sku: str | None = None,
) -> Item:
    """Validate and save; an update writes only the given fields, so it cannot undo a concurrent sale."""
    if actor is not None:
        item._history_user = actor
    try:
        with transaction.atomic():
            if update_fields is not None:
                _lock_existing(item, old_sku or item.sku)
            try:
                item.full_clean(exclude=["search_text"], validate_constraints=False)
            except ValidationError as exc:
                key, messages = next(iter(exc.message_dict.items()))
                raise InventoryError(messages[0], field=None if key == NON_FIELD_ERRORS else key) from exc
            if Item.objects.filter(sku__iexact=item.sku).exclude(pk=item.pk).exists():
                raise DuplicateSku(item.sku)
            if update_fields is None:
                item.save()
            else:
                item.save(update_fields=update_fields)
                item.refresh_from_db()
    except IntegrityError as exc:  # a concurrent create of the same SKU
        raise DuplicateSku(item.sku) from exc
    inventory_notify(skus=[item.sku, *([old_sku] if old_sku else [])], source=source)
    return item


def item_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    cost: Decimal,
    category: str = "",
    tags: list[str] | None = None,
    qty: int = 0,
    user: UserRef = None,
    source: str = "api",
) -> Item:
    """Create an item; a SKU that differs only in case from an existing one is a duplicate."""
    ensure_storable_fields(sku=sku, name=name, category=category, tags=tags)
    item = Item(
        sku=sku, name=name, category=category, tags=[] if tags is None else tags, qty=qty, price=price, cost=cost
    )
    return _save_item(item, _user_ref(user), source)


def item_update(*, item: Item, user: UserRef = None, source: str = "api", **fields: Any) -> Item:
    """Set any of ITEM_FIELDS; an absolute qty here is an edit by a user allowed to change items."""
    unknown = set(fields) - set(ITEM_FIELDS)
    if unknown:
        raise InventoryError(f"unknown item fields: {', '.join(sorted(unknown))}")
    ensure_storable_fields(**fields)
    old_sku = item.sku
    for name, value in fields.items():
        setattr(item, name, value)
    return _save_item(
        item, _user_ref(user), source, update_fields=fields, old_sku=old_sku if old_sku != item.sku else None
    )


def item_delete(*, item: Item, user: UserRef = None, source: str = "api") -> None:
    """Delete an item that has no sales; NoSuchItem if it is already gone."""
    actor = _user_ref(user)
    if actor is not None:
        item._history_user = actor
    try:
        with transaction.atomic():
            _lock_existing(item, item.sku)
            item.delete()
    except ProtectedError as exc:
        raise ItemInUse(f"{item.sku} has recorded sales and cannot be deleted") from exc
    inventory_notify(skus=[item.sku], source=source)
