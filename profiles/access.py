"""Who may use which profile and who may edit which registry: the one place these rules live.

Both are object permissions of django-rules (`rules.permissions.ObjectPermissionBackend` in
`AUTHENTICATION_BACKENDS`), asked like any permission: `user.has_perm(USE_PROFILE, profile)` and
`user.has_perm(EDIT_REGISTRY, registry)`. The model permissions (`profiles.change_profile`, ...) stay
with Django's ModelBackend; these rules come on top of them.

- **Use** (see, select, resolve, run): a profile whose `visible_to_groups` is empty is everyone's; one
  that names groups is for their members, and for superusers and staff with `profiles.change_profile`
  (the people who edit profiles see them all). Group names match by name; a name no group has matches
  nobody (a restriction fails closed). Lists filter in the database with `visible_filter`, the same
  rule as a query.
- **Edit**: a registry whose `editor_groups` is empty may be edited by whoever has the model
  permissions (as before); one that names groups, only by their members (and superusers).
- **Write** (`WRITE_REGISTRY`): edit rights on a registry plus one of the model permissions that write
  profiles. Its writers see every slug of it, also of profiles they may not use: a create with a taken
  slug answers 409, so hiding the slug would hide nothing. Their lists show such a profile with its slug
  only (`restricted`), and naming it answers 403 rather than 404. Everyone else gets the 404 a missing
  profile gets. `write_filter` is the same rule as a query (the list is still one query).
"""

from __future__ import annotations

import json
from typing import Any

import rules
from django.contrib.auth.models import Group, Permission
from django.db.models import Aggregate, Exists, Expression, OuterRef, Q, Subquery, TextField, Value

from .errors import Forbidden
from .prepared import Param, Select

USE_PROFILE = "profiles.use_profile"
EDIT_REGISTRY = "profiles.edit_registry"
WRITE_REGISTRY = "profiles.write_registry"
APPROVE_REGISTRY = "profiles.approve_registry"
CHANGE_PROFILE = "profiles.change_profile"
# The model permissions that write profiles: any of them with edit rights on a registry makes a writer.
WRITE_PERMISSIONS = ("profiles.add_profile", CHANGE_PROFILE, "profiles.delete_profile")
_GROUPS_CACHE = "_profiles_group_names"
_GROUP_NAMES = Select(lambda: Group.objects.filter(user=Param("user_id")).values_list("name"))


def user_group_names(user: Any) -> frozenset[str]:
    """The names of the user's groups, read once per user object (like Django's permission cache: a
    request, or a turn, loads its user afresh)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, _GROUPS_CACHE, None)
    if cached is None:
        cached = frozenset(name for (name,) in _GROUP_NAMES.rows(user_id=user.pk))
        setattr(user, _GROUPS_CACHE, cached)
    return cached


class _GroupNamesJson(Aggregate):
    """The names aggregated into one JSON array, as text (SQLite's JSON_GROUP_ARRAY, PostgreSQL's JSON_AGG)."""

    function = "JSON_GROUP_ARRAY"
    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_AGG", template="%(function)s(%(expressions)s)::text")


def user_group_names_of(user_id: Any) -> Subquery:
    """The groups of the user `user_id` (an `OuterRef`) as a column of another statement (JSON text, NULL
    for none), for `remember_group_names`: a statement that loads a user can bring its groups along."""
    names = Group.objects.filter(user=user_id).order_by().values("user").annotate(names=_GroupNamesJson("name"))
    return Subquery(names.values("names"))


def remember_group_names(user: Any, names: str | None) -> None:
    """Cache what `user_group_names_of` read for `user` (as `user_group_names` would have read it)."""
    setattr(user, _GROUPS_CACHE, frozenset(json.loads(names)) if names else frozenset())


def forget_groups(user: Any) -> None:
    """Drop the cached group names (after the user's groups changed in the same process)."""
    if user is not None and hasattr(user, _GROUPS_CACHE):
        delattr(user, _GROUPS_CACHE)


@rules.predicate
def sees_every_profile(user: Any) -> bool:
    """Superusers, and staff who may change profiles: editors see what they edit."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or (user.is_staff and user.has_perm(CHANGE_PROFILE))


@rules.predicate
def in_visible_groups(user: Any, profile: Any) -> bool:
    if profile is None:
        return False
    groups = getattr(profile, "visible_to_groups", None) or []
    return not groups or bool(user_group_names(user) & set(groups))


@rules.predicate
def registry_open_to_editors(user: Any, registry: Any) -> bool:
    return registry is not None and not (registry.editor_groups or [])


@rules.predicate
def in_editor_groups(user: Any, registry: Any) -> bool:
    return registry is not None and bool(user_group_names(user) & set(registry.editor_groups or []))


@rules.predicate
def writes_profiles(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return any(user.has_perm(perm) for perm in WRITE_PERMISSIONS)


@rules.predicate
def in_approver_groups(user: Any, registry: Any) -> bool:
    return registry is not None and bool(user_group_names(user) & set(registry.approver_groups or []))


rules.add_perm(USE_PROFILE, sees_every_profile | in_visible_groups)
rules.add_perm(APPROVE_REGISTRY, rules.is_active & (rules.is_superuser | in_approver_groups))
rules.add_perm(EDIT_REGISTRY, rules.is_superuser | registry_open_to_editors | in_editor_groups)
rules.add_perm(WRITE_REGISTRY, writes_profiles & (rules.is_superuser | registry_open_to_editors | in_editor_groups))


def can_use(user: Any, profile: Any) -> bool:
    """May `user` see and use `profile`? `user` None is the system (importer, seed, internal reads)."""
    return user is None or user.has_perm(USE_PROFILE, profile)


def can_edit(user: Any, registry: Any) -> bool:
    """May `user` (who has the model permissions) edit the profiles and settings of `registry`?"""
    return user is None or user.has_perm(EDIT_REGISTRY, registry)


def can_approve(user: Any, registry: Any) -> bool:
    """May `user` approve label requests of `registry` (a member of its approver groups, or a superuser)?"""
    return user is not None and user.has_perm(APPROVE_REGISTRY, registry)


def require_editor(user: Any, registry: Any) -> None:
    """`can_edit`, or a 403 that says who may."""
    if not can_edit(user, registry):
        raise Forbidden(
            f"registry {registry.slug!r} is edited by the members of its editor groups only", field="registry"
        )


def can_write(user: Any, registry: Any) -> bool:
    """May `user` write profiles of `registry` (and so see every slug of it)?"""
    return user is None or user.has_perm(WRITE_REGISTRY, registry)


def visible_filter(user: Any) -> Q | Expression | None:
    """`USE_PROFILE` as a filter of Profile rows (a Q, or a negated `Exists` for an anonymous user), or
    None when the user sees every profile. One query whatever the number of groups: the user's group
    names are a subquery, not a Python list."""
    if user is None or sees_every_profile(user):
        return None
    from .models import ProfileGroupAccess  # models import this module's constants

    rows = ProfileGroupAccess.objects.filter(profile=OuterRef("pk"))
    if not getattr(user, "is_authenticated", False):
        return ~Exists(rows)
    names = Group.objects.filter(user=user).values("name")
    return ~Exists(rows) | Exists(rows.filter(group_name__in=names))


def write_filter(user: Any, registry: Any) -> Q | Expression:
    """`WRITE_REGISTRY` for one registry as a condition for a query of it (the profile list's rows), so
    telling writers apart costs no query of its own: ModelBackend's rule (an active user's own or group
    permissions) and the registry's editor groups, as subqueries."""
    if user is None:
        return Value(True)
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Value(False)
    if user.is_superuser:
        return Value(True)
    codenames = [perm.split(".", 1)[1] for perm in WRITE_PERMISSIONS]
    granted = Permission.objects.filter(content_type__app_label="profiles", codename__in=codenames)
    writes = Q(Exists(granted.filter(user=user))) | Q(Exists(granted.filter(group__user=user)))
    if registry.editor_groups:
        return writes & Q(Exists(Group.objects.filter(user=user, name__in=registry.editor_groups)))
    return writes
