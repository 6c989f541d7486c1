"""The strict, bounded YAML reader of registry imports.

Files are read with `StrictLoader`, PyYAML's SafeLoader restricted to what JSON can hold and to
bounded work: aliases are rationed (count, expanded size, no self-reference), nesting is capped,
duplicate keys, NaN/infinity and every tag but the core JSON-like ones are refused, and the input
is capped in size and node count. Each refusal names the line and the field path like any other
import error (`FieldLines` finds the line of a field path).
"""

from __future__ import annotations

import math
from typing import Any, NoReturn, Protocol, TypeVar

import yaml


class ImportFailed(Exception):
    """Carries `file:line: path: reason`; nothing was written."""


class FieldLines:
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


class Refused(yaml.YAMLError):
    """Well-formed YAML that the import does not accept, at `path` (line `line`)."""

    def __init__(self, path: str, mark: _Mark, reason: str) -> None:
        super().__init__(reason)
        self.path, self.line, self.reason = path, mark.line + 1, reason


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _not_json(tag: str) -> str:
    name = f"!!{tag.removeprefix(_CORE)}" if tag.startswith(_CORE) else tag
    if name == "!!timestamp":
        return "a date or time is not a JSON value (quote it to keep it as text)"
    return f"{short(name)} is not allowed: only strings, numbers, booleans, null, lists and mappings"


class StrictLoader(yaml.SafeLoader):
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
        raise Refused(self._path, mark, reason)

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
            self._refuse(node.start_mark, f"{short(node.value)!r} is not a valid {node.tag.removeprefix(_CORE)}")
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
            self._refuse(event.start_mark, f"alias *{short(anchor)} refers to a node that contains it")
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
            self._refuse(event.start_mark, f"alias *{short(anchor)} nests deeper than {MAX_DEPTH} levels")
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
            self._path = self._child_path(short(str(key.value), 80))
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


def load_document(text: str, label: str) -> tuple[Any, FieldLines]:
    if len(text) > MAX_INPUT_CHARS:
        raise ImportFailed(f"{label}:1: (document): longer than {MAX_INPUT_CHARS} characters")
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except Refused as exc:
        raise ImportFailed(f"{label}:{exc.line}: {exc.path or '(document)'}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ImportFailed(f"{label}:{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    return data, FieldLines(node)
