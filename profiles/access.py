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
"""

from __future__ import annotations

from typing import Any

import rules
from django.contrib.auth.models import Group
from django.db.models import Exists, Expression, OuterRef, Q

USE_PROFILE = "profiles.use_profile"
EDIT_REGISTRY = "profiles.edit_registry"
CHANGE_PROFILE = "profiles.change_profile"
_GROUPS_CACHE = "_profiles_group_names"


def user_group_names(user: Any) -> frozenset[str]:
    """The names of the user's groups, read once per user object (like Django's permission cache: a
    request, or a turn, loads its user afresh)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, _GROUPS_CACHE, None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        setattr(user, _GROUPS_CACHE, cached)
    return cached


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


rules.add_perm(USE_PROFILE, sees_every_profile | in_visible_groups)
rules.add_perm(EDIT_REGISTRY, rules.is_superuser | registry_open_to_editors | in_editor_groups)


def can_use(user: Any, profile: Any) -> bool:
    """May `user` see and use `profile`? `user` None is the system (importer, seed, internal reads)."""
    return user is None or user.has_perm(USE_PROFILE, profile)


def can_edit(user: Any, registry: Any) -> bool:
    """May `user` (who has the model permissions) edit the profiles and settings of `registry`?"""
    return user is None or user.has_perm(EDIT_REGISTRY, registry)


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
