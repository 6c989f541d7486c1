"""YAML import and export of registries in the reference format.

Import is all-or-nothing (one transaction through the same services as the API) and every error
names the file, the line and the field path (files are read by `profiles.yamlload`). Export writes
atomically and round-trips.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from . import selectors, services
from .errors import ProfileError
from .models import Profile, Registry, default_protected_labels
from .validation import canonical_label, canonical_slug, parse_version, validate_profile_content
from .yamlload import MAX_INPUT_CHARS, ImportFailed, load_document, short

PROFILE_KEYS = {"slug", *services.EDITABLE_FIELDS, "labels", "label_moves"}
REGISTRY_KEYS = {
    "slug",
    "display_name",
    "description",
    "default_profile_slug",
    "profiles",
    "protected_labels",
    "serve_label",
    "editor_groups",
    "group_defaults",
    "required_approvals",
    "approver_groups",
}
# Registry settings imported once its profiles are in, with what an absent key means under `replace`.
ACCESS_KEYS: dict[str, Any] = {
    "editor_groups": [],
    "group_defaults": [],
    "required_approvals": 0,
    "approver_groups": [],
}


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    label_moves: list[str] = field(default_factory=list)
    # What the import does (or, in a dry run, would do), in file order: one entry per registry change,
    # profile and label move: {"action", "target", "diff"?, "label"?, "from"?, "to"?}.
    plan: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changes(self) -> bool:
        return any(entry["action"] != "unchanged" for entry in self.plan)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted, {len(self.label_moves)} label moves"
        )

    def plan_lines(self) -> list[str]:
        """The plan as text: `create reg/slug`, `update reg/slug` with one line per diff entry, ..."""
        lines = []
        for entry in self.plan:
            if entry["action"] == "label move":
                lines.append(f"label move {entry['target']}@{entry['label']}: {entry['from']} -> {entry['to']}")
                continue
            lines.append(f"{entry['action']} {entry['target']}")
            for change in entry.get("diff", []):
                before = f" {short(repr(change['from']))} ->" if "from" in change else ""
                after = f" {short(repr(change['to']))}" if "to" in change else " (removed)"
                lines.append(f"    {change['op']} {change['path']}:{before}{after}")
        return lines


def _reason(exc: ProfileError) -> str:
    """The message without its field path (the import error names the full path itself)."""
    errors = getattr(exc, "errors", None)
    return errors[0][1] if errors else exc.message


def _registries(data: Any) -> tuple[dict[str, Any], str]:
    """Accept `registries: {...}` or a single registry document; return (registries, path prefix)."""
    if not isinstance(data, dict):
        raise ProfileError("the document must be a mapping with `registries` or a single registry", field="")
    if "registries" in data:
        regs = data["registries"]
        if not isinstance(regs, dict):
            raise ProfileError("must be a mapping of registry slug -> registry", field="registries")
        return regs, "registries."
    if "slug" not in data:
        raise ProfileError("a single registry document needs a `slug`", field="slug")
    return {data["slug"]: data}, ""


def _check_keys(obj: Any, allowed: set[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProfileError("must be a mapping", field=path)
    for key in obj:
        if key not in allowed:
            raise ProfileError(f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}", field=f"{path}.{key}")
    return obj


def import_text(
    text: str, *, label: str, replace: bool = False, source: str = "import", dry_run: bool = False
) -> ImportReport:
    """All or nothing. `dry_run`: do everything, report the plan, then roll it all back."""
    data, lines = load_document(text, label)
    try:
        with transaction.atomic():
            regs, prefix = _registries(data)
            report = ImportReport(dry_run=dry_run)
            stacked: list[tuple[str, str, str]] = []  # (registry, slug, path) of the profiles with a stack
            for raw_slug, reg in regs.items():
                path = f"{prefix}{raw_slug}" if prefix else ""
                _import_registry(raw_slug, reg, path, replace=replace, source=source, report=report, stacked=stacked)
            # Stacks are checked once every profile of the file is in: a layer may come later in the file.
            for registry, slug, ppath in stacked:
                try:
                    services.stack_check(registry_slug=registry, slug=slug)
                except ProfileError as exc:
                    raise ProfileError(_reason(exc), field=f"{ppath}.{exc.field}") from None
            if dry_run:
                transaction.set_rollback(True)
            return report
    except ProfileError as exc:
        where = exc.field or ""
        raise ImportFailed(f"{label}:{lines.line(where)}: {where or '(document)'}: {exc.message}") from None


def _import_registry(
    raw_slug: str,
    reg: Any,
    path: str,
    *,
    replace: bool,
    source: str,
    report: ImportReport,
    stacked: list[tuple[str, str, str]],
) -> None:
    def at(sub: str) -> str:
        return f"{path}.{sub}" if path else sub

    reg = _check_keys(reg or {}, REGISTRY_KEYS, path or "registry")
    try:
        slug = canonical_slug(reg.get("slug", raw_slug), field="slug")
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at("slug")) from None
    registry = Registry.objects.filter(slug=slug).first()
    created_registry = registry is None
    # The same defaults on create and on replace, so re-importing an unchanged file changes nothing.
    names = {
        "display_name": reg.get("display_name") or slug,
        "description": reg.get("description") or "",
        "protected_labels": reg.get("protected_labels", default_protected_labels()),
        "serve_label": reg.get("serve_label") or "",
    }
    try:
        if registry is None:
            registry = services.registry_create(slug=slug, source=source, **names)
            report.plan.append({"action": "create", "target": slug})
        elif replace:
            before = registry.version
            registry = services.registry_update(slug=slug, source=source, **names)
            if registry.version != before:
                report.plan.append({"action": "update", "target": slug})
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at(exc.field or "slug")) from None
    profiles = reg.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ProfileError("must be a mapping of profile slug -> profile", field=at("profiles"))
    seen: set[str] = set()
    default_slug = reg.get("default_profile_slug")
    if created_registry and isinstance(default_slug, str):
        # The first profile of a new registry becomes its default until the file's is set, and a default
        # must be everyone's: the file's default goes first.
        wanted = default_slug.strip().lower()
        profiles = dict(sorted(profiles.items(), key=lambda item: str(item[0]).strip().lower() != wanted))
    for raw_profile_slug, body in profiles.items():
        ppath = at(f"profiles.{raw_profile_slug}")
        body = _check_keys(body or {}, PROFILE_KEYS, ppath)
        try:
            pslug = canonical_slug(body.get("slug", raw_profile_slug), field="slug")
            seen.add(pslug)
            content: dict[str, Any] = {k: body.get(k) for k in ("runtime", "policy", "extensions")}
            access: dict[str, Any] = {
                "stack": body.get("stack") or [],
                "visible_to_groups": body.get("visible_to_groups") or [],
            }
            # The same defaults as on create, so re-importing an unchanged file changes nothing.
            text: dict[str, Any] = {
                "display_name": body.get("display_name") or pslug,
                "description": body.get("description") or "",
            }
            existing = Profile.objects.filter(registry=registry, slug=pslug).first()
            label = f"{slug}/{pslug}"
            if existing is None:
                services.profile_create(
                    registry_slug=slug, slug=pslug, source=source, check_stack=False, **text, **content, **access
                )
                report.created.append(label)
                report.plan.append({"action": "create", "target": label})
            elif replace:
                before = existing.version
                updated = services.profile_update(
                    registry_slug=slug,
                    slug=pslug,
                    changes={**text, **content, **access},
                    source=source,
                    change="imported",
                    check_stack=False,
                )
                if updated.version != before:
                    report.updated.append(label)
                    diff = selectors.profile_versions_diff(profile=updated, old=before, new=updated.version)
                    report.plan.append({"action": "update", "target": label, "diff": diff})
                else:
                    report.unchanged.append(label)
                    report.plan.append({"action": "unchanged", "target": label})
            else:
                # Kept as stored, but a file that holds an invalid profile is refused all the same.
                validate_profile_content(**content)
                services.validate_access(access, registry=slug)
                report.unchanged.append(label)
                report.plan.append({"action": "unchanged", "target": label})
            if (existing is None or replace) and access["stack"]:
                stacked.append((slug, pslug, ppath))
            if existing is None or replace:
                _import_labels(slug, pslug, body, source=source, replace=replace, report=report)
        except ProfileError as exc:
            raise ProfileError(_reason(exc), field=f"{ppath}.{exc.field}" if exc.field else ppath) from None
    try:
        if default_slug and (replace or created_registry):
            services.registry_set_default(registry_slug=slug, slug=default_slug)
        elif default_slug:  # kept as stored, but it must name a profile
            selectors.profile_get(registry=registry, slug=default_slug)
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at("default_profile_slug")) from None
    _import_access(slug, reg, at, replace=replace, report=report)
    if replace:
        registry.refresh_from_db()
        stale = [p.slug for p in Profile.objects.filter(registry=registry).exclude(slug__in=seen).order_by("slug")]
        for stale_slug in _dependents_first(slug, stale):
            if registry.is_default(Profile.objects.get(registry=registry, slug=stale_slug).pk):
                continue
            services.profile_delete(registry_slug=slug, slug=stale_slug, source=source)
            report.deleted.append(f"{slug}/{stale_slug}")


def _import_access(slug: str, reg: dict[str, Any], at: Any, *, replace: bool, report: ImportReport) -> None:
    """The registry's `editor_groups`, `group_defaults` and approval settings (once its profiles are in).
    Without `replace`, each is set when the registry has none yet (what is missing is created); with it,
    as the file says."""
    registry = Registry.objects.get(slug=slug)
    changes: dict[str, Any] = {}
    for key, empty in ACCESS_KEYS.items():
        value = reg.get(key)
        if replace:
            changes[key] = value or empty
        elif value and not getattr(registry, key):
            changes[key] = value
    if not changes:
        return
    before = registry.version
    try:
        updated = services.registry_update(slug=slug, source="import", **changes)
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at(exc.field or "")) from None
    if updated.version != before and not any(e.get("target") == slug for e in report.plan):
        report.plan.append({"action": "update", "target": slug})


def _dependents_first(registry: str, slugs: list[str]) -> list[str]:
    """Profiles to delete, each after the ones among them that stack it (a base is deleted last)."""
    stacks = dict(Profile.objects.filter(registry__slug=registry, slug__in=slugs).values_list("slug", "stack"))
    ordered: list[str] = []
    pending = list(slugs)
    while pending:
        ready = [
            s
            for s in pending
            if not any(
                e.get("registry") == registry and e.get("slug") == s for o in pending if o != s for e in stacks[o]
            )
        ]
        if not ready:  # a cycle cannot be stored; keep the order and let the service explain
            return ordered + pending
        ordered += ready
        pending = [s for s in pending if s not in ready]
    return ordered


def _import_labels(
    registry: str, slug: str, body: dict[str, Any], *, source: str, replace: bool, report: ImportReport
) -> None:
    """Point the profile's labels where the file says (`labels: {name: version}`); with `replace`, remove
    the ones it does not name. `label_moves` in a file is the exported history: the target records its
    own moves, so it is read for nothing but its shape."""
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise ProfileError("must be a mapping of label name -> version", field="labels")
    moves = body.get("label_moves") or []
    if not isinstance(moves, list):
        raise ProfileError("must be a list of moves", field="label_moves")
    profile = Profile.objects.get(registry__slug=registry, slug=slug)
    current = {label.name: label.version for label in selectors.label_list(profile=profile)}
    wanted: dict[str, int] = {}
    for name, version in labels.items():
        try:
            name = canonical_label(name, field=f"labels.{name}")
            wanted[name] = parse_version(version, field=f"labels.{name}")
        except ProfileError as exc:
            raise ProfileError(_reason(exc), field=exc.field) from None
    target = f"{registry}/{slug}"
    for name, version in sorted(wanted.items()):
        if current.get(name) == version:
            continue
        try:
            services.label_set(registry_slug=registry, slug=slug, name=name, version=version, source=source)
        except ProfileError as exc:
            raise ProfileError(_reason(exc), field=f"labels.{name}") from None
        report.label_moves.append(f"{target}@{name}")
        report.plan.append(
            {"action": "label move", "target": target, "label": name, "from": current.get(name), "to": version}
        )
    if replace:
        for name in sorted(set(current) - set(wanted)):
            services.label_delete(registry_slug=registry, slug=slug, name=name, source=source)
            report.label_moves.append(f"{target}@{name}")
            report.plan.append(
                {"action": "label move", "target": target, "label": name, "from": current[name], "to": None}
            )


def import_file(
    path: str | Path, *, replace: bool = False, source: str = "import", dry_run: bool = False
) -> ImportReport:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_INPUT_CHARS + 1)  # never more than the bound (import_text refuses it)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed(f"{path}: cannot read: {exc}") from None
    return import_text(text, label=str(path), replace=replace, source=source, dry_run=dry_run)


# --------------------------------------------------------------------------- export


def export_data(*, registry: str | None = None) -> dict[str, Any]:
    registries = Registry.objects.select_related("default_profile").order_by("slug")
    if registry is not None:
        registries = registries.filter(slug=canonical_slug(registry, field="registry"))
    out: dict[str, Any] = {}
    for reg in registries:
        out[reg.slug] = {
            "slug": reg.slug,
            "display_name": reg.display_name,
            "description": reg.description,
            "default_profile_slug": reg.default_profile.slug if reg.default_profile is not None else None,
            "protected_labels": list(reg.protected_labels or []),
            "serve_label": reg.serve_label,
            # Present when set (a file without them reads as before).
            **({"editor_groups": list(reg.editor_groups)} if reg.editor_groups else {}),
            **({"group_defaults": [dict(e) for e in reg.group_defaults]} if reg.group_defaults else {}),
            **({"required_approvals": reg.required_approvals} if reg.required_approvals else {}),
            **({"approver_groups": list(reg.approver_groups)} if reg.approver_groups else {}),
            "profiles": {
                p.slug: _export_profile(p)
                for p in reg.profiles.order_by("slug").prefetch_related("labels", "label_moves")
            },
        }
    return {"registries": out}


def _export_profile(profile: Profile) -> dict[str, Any]:
    document: dict[str, Any] = {
        "display_name": profile.display_name,
        "description": profile.description,
        "runtime": profile.runtime,
        "policy": profile.policy,
        "extensions": profile.extensions,
    }
    if profile.stack:
        document["stack"] = profile.stack
    if profile.visible_to_groups:
        document["visible_to_groups"] = profile.visible_to_groups
    labels = {label.name: label.version for label in profile.labels.all()}
    if labels:
        document["labels"] = labels
    moves = sorted(profile.label_moves.all(), key=lambda m: (m.at_ms, m.pk))
    if moves:
        document["label_moves"] = [
            {"name": m.name, "from_version": m.from_version, "to_version": m.to_version, "by": m.by, "at_ms": m.at_ms}
            for m in moves
        ]
    return document


def export_text(*, registry: str | None = None) -> str:
    return yaml.safe_dump(export_data(registry=registry), sort_keys=True, allow_unicode=True, default_flow_style=False)


def export_file(path: str | Path, *, registry: str | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    text = export_text(registry=registry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
