"""YAML import and export of registries in the reference format.

Import is all-or-nothing (one transaction through the same services as the API) and every error
names the file, the line and the field path. Export writes atomically and round-trips.

Files are read with `_StrictLoader`, PyYAML's SafeLoader restricted to what JSON can hold and to
bounded work: aliases are rationed (count, expanded size, no self-reference), nesting is capped,
duplicate keys, NaN/infinity and every tag but the core JSON-like ones are refused, and the input
is capped in size and node count. Each refusal names the line and the field path like any other import error.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import yaml
from django.db import transaction

from . import selectors, services
from .errors import ProfileError
from .models import Profile, Registry, default_protected_labels
from .validation import canonical_label, canonical_slug, parse_version, validate_profile_content

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


class ImportFailed(Exception):
    """Carries `file:line: path: reason`; nothing was written."""


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
                before = f" {_short(repr(change['from']))} ->" if "from" in change else ""
                after = f" {_short(repr(change['to']))}" if "to" in change else " (removed)"
                lines.append(f"    {change['op']} {change['path']}:{before}{after}")
        return lines


class _Lines:
    """Maps a field path (`registries.x.profiles.y.runtime.tools[0]`, `extensions[a.b@v1].items[1]`)
    to its line in the YAML file. Keys may contain dots (slugs like `v1.2`, extension keys), so the
    walk matches the longest key of each mapping rather than splitting on dots."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.root = node

    def line(self, path: str) -> int:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else 1
        rest = path
        while rest and node is not None:
            if rest.startswith("["):
                token, rest = rest[1 : rest.index("]")], rest[rest.index("]") + 1 :]
                node = self._child(node, token)
            else:
                rest = rest.removeprefix(".")
                node, rest = self._longest_key(node, rest)
            if node is not None:
                line = node.start_mark.line + 1
        return line

    @staticmethod
    def _child(node: yaml.Node, token: str) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode) and token.isdigit():
            index = int(token)
            return node.value[index] if index < len(node.value) else None
        if isinstance(node, yaml.MappingNode):
            return next((v for k, v in node.value if str(k.value).strip().lower() == token.lower()), None)
        return None

    @staticmethod
    def _longest_key(node: yaml.Node, rest: str) -> tuple[yaml.Node | None, str]:
        if not isinstance(node, yaml.MappingNode):
            return None, rest
        best = None
        for key, value in node.value:
            name = str(key.value).strip().lower()
            matches = rest.lower() == name or rest.lower().startswith((name + ".", name + "["))
            if matches and (best is None or len(name) > len(best[0])):
                best = (name, value)
        if best is None:
            return None, rest
        return best[1], rest[len(best[0]) :]


def _reason(exc: ProfileError) -> str:
    """The message without its field path (the import error names the full path itself)."""
    errors = getattr(exc, "errors", None)
    return errors[0][1] if errors else exc.message


MAX_INPUT_CHARS = 1024 * 1024  # 1 MiB of text; the seed is 3 KB
MAX_NODES = 100_000  # keys and values of a document (~65 MB and ~2 s to load; the seed has ~200)
MAX_DEPTH = 64  # nested lists/mappings, the document's own mapping included
MAX_ALIASES = 32  # alias uses (`*name`) per document
MAX_ALIAS_NODES = 2000  # nodes the aliases of a document expand to, summed

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{name}" for name in ("null", "bool", "int", "float", "str")}
_SEQ, _MAP, _MERGE = f"{_CORE}seq", f"{_CORE}map", f"{_CORE}merge"


class _Mark(Protocol):
    """A position in the input (PyYAML's `Mark`, or the C extension's)."""

    @property
    def line(self) -> int: ...


_CollectionNode = TypeVar("_CollectionNode", bound=yaml.CollectionNode)


class _Refused(yaml.YAMLError):
    """Well-formed YAML that the import does not accept, at `path` (line `line`)."""

    def __init__(self, path: str, mark: _Mark, reason: str) -> None:
        super().__init__(reason)
        self.path, self.line, self.reason = path, mark.line + 1, reason


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _not_json(tag: str) -> str:
    name = f"!!{tag.removeprefix(_CORE)}" if tag.startswith(_CORE) else tag
    if name == "!!timestamp":
        return "a date or time is not a JSON value (quote it to keep it as text)"
    return f"{_short(name)} is not allowed: only strings, numbers, booleans, null, lists and mappings"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses, while composing, whatever is not plain bounded JSON-like data.

    The composer tracks the field path of the node being composed (in the notation of the other
    import errors), the nesting depth, the anchors still open (an alias to one would make a cycle)
    and, per anchor, how many nodes its node expands to and how deep it nests, so that an alias is
    charged for its whole expansion before anything is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path = ""  # of the node being composed
        self._keys: list[Any] = []  # the raw keys/indexes leading to it
        self._depth = 0  # lists/mappings open around it
        self._in_key = False
        self._open: set[str] = set()
        self._expansion: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, nesting) of its node
        self._last = (1, 0)  # (nodes, nesting) of the node composed last
        self._nodes = 0
        self._aliases = 0
        self._alias_nodes = 0

    def _refuse(self, mark: _Mark | None, reason: str) -> NoReturn:
        assert mark is not None  # the parser marks every event and node
        raise _Refused(self._path, mark, reason)

    def _child_path(self, key: str) -> str:
        """Keys of a profile's `extensions` read `extensions[a.b@v1]`, like the validation errors."""
        keys = self._keys
        if len(keys) >= 3 and keys[-1] == "extensions" and keys[-3] == "profiles":
            return f"{self._path}[{key}]"
        return f"{self._path}.{key}" if self._path else key

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        """The value of a scalar, refused unless it is a finite JSON-like one."""
        if node.tag not in _SCALAR_TAGS:
            self._refuse(node.start_mark, _not_json(node.tag))
        try:
            value = self.yaml_constructors[node.tag](self, node)
        except (ValueError, KeyError, TypeError, OverflowError):  # `!!int x`, `!!bool maybe`, 5,000 digits
            self._refuse(node.start_mark, f"{_short(node.value)!r} is not a valid {node.tag.removeprefix(_CORE)}")
        if isinstance(value, float) and not math.isfinite(value):
            self._refuse(node.start_mark, "NaN and infinity are not JSON numbers")
        return value

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._charge_alias(event)
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self._refuse(event.start_mark, f"more than {MAX_NODES} keys and values")
        if isinstance(event, yaml.CollectionStartEvent) and self._depth >= MAX_DEPTH:
            self._refuse(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        return super().compose_node(parent, index)

    def _charge_alias(self, event: yaml.AliasEvent) -> None:
        anchor = event.anchor
        assert anchor is not None  # an alias always names its anchor
        if anchor in self._open:
            self._refuse(event.start_mark, f"alias *{_short(anchor)} refers to a node that contains it")
        if anchor not in self.anchors:
            return  # PyYAML reports the undefined alias
        nodes, nesting = self._expansion.get(anchor, (1, 0))
        self._aliases += 1
        self._alias_nodes += nodes
        if self._aliases > MAX_ALIASES:
            self._refuse(event.start_mark, f"more than {MAX_ALIASES} aliases")
        if self._alias_nodes > MAX_ALIAS_NODES:
            self._refuse(event.start_mark, f"aliases expand to more than {MAX_ALIAS_NODES} nodes")
        if self._depth + nesting > MAX_DEPTH:
            self._refuse(event.start_mark, f"alias *{_short(anchor)} nests deeper than {MAX_DEPTH} levels")
        self._last = (nodes, nesting)

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:  # type: ignore[override]  # stub bug: `anchor` is a name, not a dict
        node = super().compose_scalar_node(anchor)  # type: ignore[arg-type]  # the same stub bug
        if not self._in_key:  # keys are checked by the mapping, with their own path
            self._scalar(node)
        self._last = (1, 0)
        return node

    def _open_collection(self, node_class: type[_CollectionNode], expected: str, anchor: str | None) -> _CollectionNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(node_class, None, start.implicit)
        if tag != expected:  # !!set, !!omap, !!pairs, !!python/..., !custom
            self._refuse(start.start_mark, _not_json(tag))
        node = node_class(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
            self._open.add(anchor)
        self._depth += 1
        return node

    def _close_collection(self, node: yaml.CollectionNode, anchor: str | None, nodes: int, nesting: int) -> None:
        node.end_mark = self.get_event().end_mark
        self._depth -= 1
        self._last = (nodes, nesting + 1)
        if anchor is not None:
            self._open.discard(anchor)
            self._expansion[anchor] = self._last

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:  # type: ignore[override]  # stub bug: `anchor` is a name, not a dict
        node = self._open_collection(yaml.SequenceNode, _SEQ, anchor)
        path, nodes, nesting = self._path, 1, 0
        while not self.check_event(yaml.SequenceEndEvent):
            index = len(node.value)
            self._path = f"{path}[{index}]"
            self._keys.append(index)
            node.value.append(self.compose_node(node, index))
            self._keys.pop()
            nodes, nesting = nodes + self._last[0], max(nesting, self._last[1])
        self._path = path
        self._close_collection(node, anchor, nodes, nesting)
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:  # type: ignore[override]  # stub bug: `anchor` is a name, not a dict
        node = self._open_collection(yaml.MappingNode, _MAP, anchor)
        path, nodes, nesting = self._path, 1, 0
        first_line: dict[Any, int] = {}
        while not self.check_event(yaml.MappingEndEvent):
            event = self.peek_event()
            if isinstance(event, yaml.CollectionStartEvent):
                self._refuse(event.start_mark, "a mapping key must be a plain value, not a list or mapping")
            self._in_key = True
            key = self.compose_node(node, None)
            self._in_key = False
            if not isinstance(key, yaml.ScalarNode):  # an alias of a list or mapping
                self._refuse(event.start_mark, "a mapping key must be a plain value, not a list or mapping")
            if key.tag == _MERGE:  # `<<: *base` merges another mapping in: keys would come from elsewhere
                self._refuse(key.start_mark, "merge keys (<<) are not allowed: write the keys out")
            self._path = self._child_path(_short(str(key.value), 80))
            identity = self._scalar(key)
            if identity in first_line:
                self._refuse(key.start_mark, f"duplicate key (first on line {first_line[identity]})")
            first_line[identity] = key.start_mark.line + 1
            self._keys.append(key.value)
            value = self.compose_node(node, key)
            self._keys.pop()
            self._path = path
            node.value.append((key, value))
            nodes, nesting = nodes + 1 + self._last[0], max(nesting, self._last[1])
        self._close_collection(node, anchor, nodes, nesting)
        return node


def _load(text: str, label: str) -> tuple[Any, _Lines]:
    if len(text) > MAX_INPUT_CHARS:
        raise ImportFailed(f"{label}:1: (document): longer than {MAX_INPUT_CHARS} characters")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise ImportFailed(f"{label}:{exc.line}: {exc.path or '(document)'}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ImportFailed(f"{label}:{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    return data, _Lines(node)


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
    data, lines = _load(text, label)
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
