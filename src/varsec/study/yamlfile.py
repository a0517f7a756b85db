"""YAML reading with line numbers and hard limits, so every config error can point at the
offending line and no study file can exhaust the machine.

:func:`load_yaml` returns the plain Python data (``yaml.safe_load`` semantics, except that every
alias is an independent copy and merge keys ``<<`` follow the YAML merge spec: an explicit key
overrides a merged one, an earlier mapping in ``<<: [*a, *b]`` a later one) and a
:class:`LineMap` from key paths (tuples of keys and list indices) to 1-based line numbers.
Duplicate keys, which ``yaml.safe_load`` silently collapses, are an error here.

A study file is refused with one :class:`~varsec.errors.ConfigError` naming the file and the line
when it is larger than :data:`MAX_BYTES`, nests deeper than :data:`MAX_DEPTH`, or would build more
than :data:`MAX_NODES` nodes in all or more than :data:`MAX_ALIAS_NODES` through one alias (the
"billion laughs" bomb: nine levels of aliases in 370 bytes expand to 10^9 nodes). Nodes are
counted from the parse events alone, an alias at the full size of what it expands to, so the
refusal comes before any node is composed or built and costs at most :data:`MAX_NODES` events of
parsing (libyaml's parser when PyYAML has it, as for composing).

Lines are kept per source node, never per expanded path: :class:`LineMap` finds a path's line
by walking the node graph, so aliases cost no extra memory there either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
import yaml.constructor

from varsec.errors import ConfigError

PathKey = tuple[str | int, ...]

MAX_BYTES = 1_000_000  # size of a study file
MAX_NODES = 100_000  # nodes a document builds, aliases counted at their expanded size
MAX_ALIAS_NODES = 10_000  # nodes one alias may build
MAX_DEPTH = 64  # nesting of the expanded document
MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"


# libyaml's parser and composer when PyYAML has them (tens of times faster), else PyYAML's own.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Frame:
    """An open sequence or mapping during the budget pass."""

    __slots__ = ("anchor", "depth", "nodes")

    def __init__(self, anchor: str | None) -> None:
        self.anchor, self.nodes, self.depth = anchor, 1, 1


def _check_budget(text: str, source: str) -> None:
    """Count the nodes the document would build from its parse events alone (no node is
    composed): every alias at the full size of what it expands to. Raises the ConfigError of
    the first limit crossed, at the line of the node or alias that crosses it."""
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, depth)
    stack: list[_Frame] = []
    built = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            nodes, depth = _alias_size(event, sizes, stack, source)
        elif isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            nodes, depth = 1, 1
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = stack.pop()
            if frame.anchor is not None:
                sizes[frame.anchor] = (frame.nodes, frame.depth)
            _add(stack, frame.nodes - 1, frame.depth)  # its start event counted the 1
            continue
        else:
            continue
        built += nodes
        what = f"{source}:{event.start_mark.line + 1}: " + \
            (f"alias *{event.anchor}" if isinstance(event, yaml.AliasEvent) else "this node")
        if built > MAX_NODES:
            raise ConfigError(f"{what} brings the document over the {MAX_NODES:,} YAML nodes a "
                              "study file may build (aliases count at their expanded size).")
        if len(stack) + depth > MAX_DEPTH:
            raise ConfigError(f"{what} nests the document deeper than {MAX_DEPTH} levels.")
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append(_Frame(event.anchor))
            continue
        if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            sizes[event.anchor] = (1, 1)
        _add(stack, nodes, depth)


def _alias_size(event: yaml.AliasEvent, sizes: dict[str, tuple[int, int]], stack: list[_Frame],
                source: str) -> tuple[int, int]:
    where = f"{source}:{event.start_mark.line + 1}: alias *{event.anchor}"
    if any(frame.anchor == event.anchor for frame in stack):
        raise ConfigError(f"{where} refers to a node that contains it; recursive YAML is not "
                          "supported.")
    if event.anchor not in sizes:
        raise ConfigError(f"{where} refers to no anchor defined before it.")
    nodes, depth = sizes[event.anchor]
    if nodes > MAX_ALIAS_NODES:
        raise ConfigError(f"{where} expands to {nodes:,} YAML nodes, more than the "
                          f"{MAX_ALIAS_NODES:,} one alias may build (nested aliases multiply; a "
                          "study needs no such expansion).")
    return nodes, depth


def _add(stack: list[_Frame], nodes: int, depth: int) -> None:
    """Add a finished child to the innermost open collection."""
    if stack:
        stack[-1].nodes += nodes
        stack[-1].depth = max(stack[-1].depth, depth + 1)


Entries = dict[Any, tuple[int, yaml.Node]]  # key -> (line of the key, value node)


class _Builder(yaml.constructor.SafeConstructor):
    """Builds plain data from a composed (already bounded) node graph, one copy per alias."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.entries: dict[yaml.Node, Entries] = {}

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {key: self.build(value, (*path, key))
                    for key, (_, value) in self.mapping(node, path).items()}
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.construct_object(node, deep=True)

    def mapping(self, node: yaml.MappingNode, path: PathKey) -> Entries:
        """A mapping's keys in ``yaml.safe_load`` order, merged ``<<`` keys resolved (once per
        source node)."""
        known = self.entries.get(node)
        if known is not None:
            return known
        merged: Entries = {}
        explicit: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for source in reversed(self._merge_sources(value_node)):
                    merged.update(self.mapping(source, path))
                continue
            key = self._key(key_node)
            if key in explicit:
                raise ConfigError(f"{self.source}:{key_node.start_mark.line + 1}: "
                                  f"{format_path((*path, key))}: duplicate key {key!r}.")
            explicit[key] = (key_node.start_mark.line + 1, value_node)
        entries = {**merged, **explicit}
        self.entries[node] = entries
        return entries

    def _key(self, node: yaml.Node) -> Any:
        key = None
        if isinstance(node, yaml.ScalarNode):
            key = self.construct_scalar(node) if node.tag == VALUE_TAG else \
                self.construct_object(node, deep=True)
        if not isinstance(key, str | int | float | bool):
            shown = repr(key) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            raise ConfigError(f"{self.source}:{node.start_mark.line + 1}: mapping keys must be "
                              f"plain names, got {shown}.")
        return key

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.MappingNode)
                                                        for n in node.value):
            return list(node.value)
        raise ConfigError(f"{self.source}:{node.start_mark.line + 1}: a merge key '<<' takes a "
                          "mapping or a list of mappings.")


class LineMap(Mapping[PathKey, int]):
    """1-based line of every key path of a loaded document: a mapping key's line, a list item's
    first line, the document's first line for ``()``. Looked up by walking the source nodes."""

    def __init__(self, root: yaml.Node | None = None,
                 entries: dict[yaml.Node, Entries] | None = None) -> None:
        self._root = root
        self._entries = entries or {}

    def get(self, path: PathKey, default: Any = None) -> Any:  # type: ignore[override]
        """The line of ``path``, or ``default`` when the document has no such path."""
        node = self._root
        if node is None:
            return default
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                try:
                    entry = self._entries.get(node, {}).get(part)
                except TypeError:  # an unhashable part
                    entry = None
                if entry is None:
                    return default
                line, node = entry
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and \
                    not isinstance(part, bool) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return default
        return line

    def __getitem__(self, path: PathKey) -> int:
        line = self.get(tuple(path))
        if line is None:
            raise KeyError(path)
        return line

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and self.get(path) is not None

    def __iter__(self) -> Iterator[PathKey]:
        """Every path, each source node once (an alias's contents under its first path)."""
        if self._root is None:
            return
        seen: set[int] = set()
        stack: list[tuple[PathKey, yaml.Node]] = [((), self._root)]
        while stack:
            path, node = stack.pop()
            yield path
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                stack += [((*path, k), v) for k, (_, v) in self._entries.get(node, {}).items()]
            elif isinstance(node, yaml.SequenceNode):
                stack += [((*path, i), v) for i, v in enumerate(node.value)]

    def __len__(self) -> int:
        return sum(1 for _ in self)


def format_path(path: PathKey) -> str:
    """``('attacks', 'insa', 'eps', 0)`` -> ``attacks.insa.eps[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        _check_budget(text, source)
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: not valid YAML ({problem}).") from None


def load_yaml_text(text: str, source: str = "<string>") -> tuple[Any, LineMap]:
    """Parse YAML ``text`` within the limits; returns ``(data, lines)`` (see the module doc)."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters is more than the {MAX_BYTES:,} a "
                          "study file may hold.")
    node = _compose(text, source)
    if node is None:
        return {}, LineMap()
    builder = _Builder(source)
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: {exc.problem}.") from None
    return data, LineMap(node, builder.entries)


def load_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse a YAML file; a missing, unreadable or too large file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        from varsec.io import not_a_file_message

        raise ConfigError(not_a_file_message(path, "no such study file"))
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is more than the {MAX_BYTES:,} a study "
                              "file may hold.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from None
    return load_yaml_text(text, str(path))


__all__ = ["MAX_ALIAS_NODES", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "LineMap", "PathKey",
           "format_path", "load_yaml", "load_yaml_text"]
