"""What a turn or a request runs: the profile version a ref, a label (and its rollout arm), a user's
selection or a group default picks, its stack's base layers, and its resolution (`profiles.resolution`).
A fixed number of queries each; the hot ones compiled once (`profiles.prepared`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Q, Subquery

from ..access import can_use, user_group_names
from ..arms import RolloutSubject, pick_arm
from ..definitions import definitions
from ..errors import InvalidInput, NotFound, ProfileUnavailable, StackError
from ..models import Profile, ProfileLabel, ProfileRevision, ProfileSelection, Registry
from ..prepared import Param, Select
from ..resolution import Resolution, resolve_runtime
from ..stacking import Layer
from ..validation import LATEST, MAX_STACK_LAYERS, ProfileRef, canonical_slug, parse_profile_ref
from .catalog import profile_get, registry_get

_SELECTED_PROFILE = Select(
    lambda: (
        Profile.objects.select_related("registry", "registry__default_profile")
        .filter(registry__slug=Param("registry"), slug=Param("slug"))
        .order_by()[:1]
    )
)
_SELECTION = Select(
    lambda: ProfileSelection.objects.filter(user_id=Param("user_id"), mount=Param("mount")).order_by("pk")[:1]
)
# The registry a user without a selection gets their default from, with whether they have one (the
# common case reads once: most users never select).
_REGISTRY_UNLESS_SELECTED = Select(
    lambda: (
        Registry.objects.select_related("default_profile")
        .filter(slug=Param("slug"))
        .annotate(
            selection_id=Subquery(
                ProfileSelection.objects.filter(user_id=Param("user_id"), mount=Param("mount"))
                .order_by("pk")
                .values("pk")[:1]
            )
        )
        .order_by()[:1]
    )
)
_LABEL_STATE = Select(
    lambda: (
        ProfileLabel.objects.filter(profile_id=Param("profile_id"), name=Param("name"))
        .order_by("pk")
        .values_list("version", "rollout_id", "rollout__status", "rollout__arms", "rollout__sticky")[:1]
    )
)


@dataclass(frozen=True)
class ProfileAt:
    """A profile at the version a ref chose, with that version's own content."""

    registry: Registry
    profile: Profile
    ref: ProfileRef
    version: int
    runtime: dict[str, Any]
    policy: dict[str, Any]
    extensions: dict[str, Any]
    label: str | None  # the label followed: the ref's, or the registry's serving label for a plain slug
    stack: tuple[dict[str, Any], ...] = ()  # that version's base layers
    # The followed label's rollout, active or halted: {id, status, arms, sticky} (`profiles.rollouts`).
    label_rollout: dict[str, Any] | None = None
    # The rollout arm this version was chosen by: {id, label, version, weight} (`with_rollout_arm`).
    rollout: dict[str, Any] | None = None


def _label_state(profile: Profile, name: str) -> tuple[int, dict[str, Any] | None] | None:
    """A label's version and its rollout (active or halted), in one query (a join); None: no such label."""
    row = _LABEL_STATE.row(profile_id=profile.pk, name=name)
    if row is None:
        return None
    version, rollout_id, status, arms, sticky = row
    rollout = None if rollout_id is None else {"id": rollout_id, "status": status, "arms": arms, "sticky": sticky}
    return version, rollout


def _version_content(profile: Profile, version: int, *, field: str) -> dict[str, Any]:
    """What `version` of the profile says: the row itself for its latest version (no query), else its
    stored revision (one query)."""
    if version == profile.version:
        return {
            "runtime": profile.runtime,
            "policy": profile.policy,
            "extensions": profile.extensions,
            "stack": tuple(profile.stack or ()),
        }
    document = (
        ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version)
        .values_list("document", flat=True)
        .first()
    )
    if document is None:
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field=field)
    content: dict[str, Any] = {part: document.get(part) or {} for part in ("runtime", "policy", "extensions")}
    content["stack"] = tuple(document.get("stack") or ())
    return content


def profile_at(*, registry: Registry, profile: Profile, ref: ProfileRef, field: str = "slug") -> ProfileAt:
    """The version `ref` addresses and its content. No query for the latest version reached by a plain
    slug (without a serving label) or `@latest`; one for a label (with its rollout); one more for an older
    version. A label's rollout is applied later, for a subject (`with_rollout_arm`)."""
    version, label, rollout = profile.version, None, None
    if ref.version is not None:
        version = ref.version
    elif ref.label == LATEST:
        label = LATEST
    elif ref.label:
        found = _label_state(profile, ref.label)
        if found is None:
            raise NotFound(f"profile {profile.slug!r} has no label {ref.label!r}", field=field)
        (version, rollout), label = found, ref.label
    elif registry.serve_label:
        found = _label_state(profile, registry.serve_label)
        if found is not None:
            (version, rollout), label = found, registry.serve_label
    content = _version_content(profile, version, field=field)
    return ProfileAt(
        registry=registry, profile=profile, ref=ref, version=version, label=label, label_rollout=rollout, **content
    )


def with_rollout_arm(at: ProfileAt, subject: RolloutSubject | None) -> ProfileAt:
    """`at` as the subject gets it: when the label it followed has an active rollout, at the version of the
    subject's arm (one query when that is another version than the label's). Pinned refs never get here
    with a rollout; a halted rollout serves the label's own version."""
    rollout = at.label_rollout
    if rollout is None or rollout["status"] != "active" or subject is None:
        return at
    arm = pick_arm(rollout_id=rollout["id"], arms=rollout["arms"], sticky=rollout["sticky"], subject=subject)
    if arm is None:
        return at
    served = {"id": rollout["id"], "label": at.label, "version": arm["version"], "weight": arm["weight"]}
    if arm["version"] == at.version:
        return replace(at, rollout=served)
    content = _version_content(at.profile, arm["version"], field="slug")
    return replace(at, version=arm["version"], rollout=served, **content)


def _pick_profile(registry: Registry, ref: ProfileRef | None, *, field: str = "slug", user: Any = None) -> ProfileAt:
    if ref is not None:
        profile = profile_get(registry=registry, slug=ref.slug, user=user, field=field)
        return profile_at(registry=registry, profile=profile, ref=ref, field=field)
    fallback = registry.default_profile or Profile.objects.filter(registry=registry, slug="default").first()
    if fallback is None:
        raise InvalidInput("profile slug is required and registry has no default", field="profile.slug")
    fallback.registry = registry
    return profile_at(registry=registry, profile=fallback, ref=ProfileRef(fallback.slug))


def profile_resolve(
    *,
    registry_slug: str,
    profile_slug: str | None = None,
    request_overrides: Any = None,
    field: str = "slug",
    user: Any = None,
    subject: RolloutSubject | None = None,
) -> Resolution:
    """Registry (404) -> profile (a ref: `slug`, `slug@3`, `slug@label`), else the default, else `default`,
    else 400 -> that version's content (a rollout's arm for `subject`, by default the user) and its base
    layers -> overrides -> fingerprint.

    `user`: a profile they may not use is a 404 like a missing one (None: no check, the system's own).
    Two queries for a plain slug of a profile without a stack whatever the number of registries or
    profiles (see `profile_at` for refs, `stack_layers` for stacks).
    """
    registry = registry_get(registry_slug)
    ref = parse_profile_ref(profile_slug, field=field) if profile_slug is not None else None
    at = _pick_profile(registry, ref, field=field, user=user)
    if subject is None and getattr(user, "is_authenticated", False):
        subject = RolloutSubject(user_id=user.pk)
    return profile_resolve_at(at=at, request_overrides=request_overrides, field=field, subject=subject)


def profile_resolve_at(
    *, at: ProfileAt, request_overrides: Any = None, field: str = "slug", subject: RolloutSubject | None = None
) -> Resolution:
    """Resolution of a version the caller has already loaded (at the subject's rollout arm, if its label
    has an active rollout): no query for a profile without a stack; a stacked one loads its base layers
    (`stack_layers`). A stored stack that does not resolve (older data: the services refuse to write one)
    is `ProfileUnavailable` (409 on `field`, the input that named the profile), never a 400 about the
    caller's input."""
    at = with_rollout_arm(at, subject)
    try:
        layers = stack_layers(registry=at.registry.slug, slug=at.profile.slug, stack=at.stack) if at.stack else []
        return resolve_runtime(
            registry=at.registry.slug,
            profile=at.profile.slug,
            profile_version=at.version,
            runtime=at.runtime,
            policy=at.policy,
            extensions=at.extensions,
            request_overrides=request_overrides,
            server_defaults=definitions.engine.server_defaults(),
            ref=str(at.ref),
            label=at.label,
            base_layers=layers,
            rollout=at.rollout,
            label_rollout=at.label_rollout,
        )
    except StackError as exc:
        name = f"{at.registry.slug}/{at.profile.slug}"
        version = "" if at.version == at.profile.version else f" (version {at.version})"
        cause = f"{exc.field}: {exc.errors[0][1]}" if exc.errors else exc.message
        raise ProfileUnavailable(
            f"profile {name}{version} cannot be used: its stack does not resolve ({cause}); "
            "an editor must fix its stack, or choose another profile",
            field=field,
            profile={
                "registry": at.registry.slug,
                "slug": at.profile.slug,
                "version": at.version,
                "ref": str(at.ref),
                "label": at.label,
            },
        ) from None


# --------------------------------------------------------------------------- stacks


def stack_layers(*, registry: str, slug: str, stack: Any, field: str = "stack", user: Any = None) -> list[Layer]:
    """The base layers of profile `registry/slug` whose stack is `stack` (entries `{registry, slug,
    version?}`, as `validation.validate_stack` gives them), bases first: each entry's own stack before
    it, depth first; a layer reached twice (same registry, slug and version) is applied once, where it
    first appears. An entry without a version is what a plain slug gets (the serving label's version,
    else the latest).

    Refused with a 400 on `stack[i]` (the entry of this profile that leads there): a layer that does not
    exist (or, with `user`, that they may not see), a cycle, more than `MAX_STACK_LAYERS` layers. Use
    rights are not needed otherwise: a layer nobody may select may still be a base. One query per
    stack read (this one and each layer's own), plus one per pinned old version or serving label."""
    layers: list[Layer] = []
    seen: set[tuple[str, str, int]] = set()
    top = (registry, slug)

    def expand(entries: Any, path: tuple[tuple[str, str], ...], at_field: str | None) -> None:
        keys = [(entry["registry"], entry["slug"]) for entry in entries]
        query = Q()
        for reg, layer_slug in keys:
            query |= Q(registry__slug=reg, slug=layer_slug)
        found = (
            {(p.registry.slug, p.slug): p for p in Profile.objects.select_related("registry").filter(query)}
            if keys
            else {}
        )
        for index, entry in enumerate(entries):
            where = at_field or f"{field}[{index}]"
            key = (entry["registry"], entry["slug"])
            name = f"{key[0]}/{key[1]}"
            if key in path:
                chain = " -> ".join(f"{r}/{s}" for r, s in (*path[path.index(key) :], key))
                raise StackError(f"stacking {name} makes a cycle: {chain}", field=where)
            profile = found.get(key)
            if profile is None or not can_use(user, profile):
                raise StackError(f"layer {name} not found", field=where)
            ref = ProfileRef(profile.slug, version=entry.get("version"))
            try:
                at = profile_at(registry=profile.registry, profile=profile, ref=ref, field=where)
            except NotFound:
                raise StackError(f"layer {name} has no version {entry.get('version')}", field=where) from None
            if at.stack:
                expand(at.stack, (*path, key), where)
            identity = (key[0], key[1], at.version)
            if identity in seen:
                continue
            seen.add(identity)
            layers.append(Layer(key[0], key[1], at.version, at.runtime, at.policy, at.extensions))
            if len(layers) > MAX_STACK_LAYERS:
                raise StackError(f"a lineage holds at most {MAX_STACK_LAYERS} base layers", field=where)

    expand(list(stack or ()), (top,), None)
    return layers


# --------------------------------------------------------------------------- the current profile


@dataclass(frozen=True)
class CurrentProfile:
    at: ProfileAt
    source: str  # "selection" | "group_default" | "default"
    # The stored selection that no longer resolves (gone, or the user may no longer use it), so the UI
    # can say what happened.
    stale_selection: dict[str, str] | None = None
    group: str | None = None  # the group whose default it is (`source` "group_default")
    # The selection fell back because the user may no longer use its profile.
    access_revoked: bool = False

    @property
    def registry(self) -> Registry:
        return self.at.registry

    @property
    def profile(self) -> Profile:
        return self.at.profile


def user_default(*, user: Any, registry: Registry) -> tuple[ProfileAt, str | None]:
    """What `user` gets in `registry` without a selection of their own: the profile of the first entry of
    the registry's `group_defaults` whose group they are in (and that they may use), else the registry
    default. Returns it and the group (None for the registry default). No query without group defaults."""
    entries = registry.group_defaults or []
    if entries and user is not None:
        groups = user_group_names(user)
        wanted = [entry for entry in entries if entry["group"] in groups]
        if wanted:
            profiles = {
                p.slug: p for p in Profile.objects.filter(registry=registry, slug__in=[e["profile"] for e in wanted])
            }
            for entry in wanted:
                profile = profiles.get(entry["profile"])
                if profile is not None and can_use(user, profile):
                    profile.registry = registry
                    return profile_at(registry=registry, profile=profile, ref=ProfileRef(profile.slug)), entry["group"]
    return _pick_profile(registry, None), None


def current_profile(*, user: Any, mount: str, default_registry: str) -> CurrentProfile:
    """The user's stored selection for this mount; else their first group's default; else the registry
    default. A selection that no longer resolves (its profile, or the label or version it names, is gone,
    or the user may no longer use it) falls back the same way and says so (`stale_selection`)."""
    selection: ProfileSelection | None = None
    registry: Registry | None = None
    revoked = False
    if getattr(user, "is_authenticated", False):
        unselected = _REGISTRY_UNLESS_SELECTED.first(
            slug=canonical_slug(default_registry, field="registry"), user_id=user.pk, mount=mount
        )
        if unselected is not None and unselected.selection_id is None:
            registry = unselected
        else:
            selection = _SELECTION.first(user_id=user.pk, mount=mount)
    if selection is not None:
        profile = _SELECTED_PROFILE.first(registry=selection.registry_slug, slug=selection.profile_slug)
        if profile is not None and not can_use(user, profile):
            revoked = True
        elif profile is not None:
            try:
                ref = parse_profile_ref(profile.slug, at=selection.profile_at)
                at = profile_at(registry=profile.registry, profile=profile, ref=ref)
            except (InvalidInput, NotFound):
                pass
            else:
                return CurrentProfile(at=at, source="selection")
    if registry is None:
        try:
            registry = registry_get(selection.registry_slug if selection else default_registry)
        except NotFound:  # the selected registry itself is gone
            registry = registry_get(default_registry)
    stale = None
    if selection is not None:
        stale = {"registry": selection.registry_slug, "slug": selection.profile_slug}
        if selection.profile_at:
            stale["ref"] = f"{selection.profile_slug}@{selection.profile_at}"
    at, group = user_default(user=user, registry=registry)
    return CurrentProfile(
        at=at,
        source="group_default" if group else "default",
        stale_selection=stale,
        group=group,
        access_revoked=revoked,
    )
