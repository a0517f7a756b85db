"""YAML reading with line numbers, so every config error can point at the offending line.

:func:`load_yaml` returns the plain Python data (``yaml.safe_load`` semantics) and a map from
key paths (tuples of keys and list indices) to 1-based line numbers. Duplicate keys, which
``yaml.safe_load`` silently collapses, are an error here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
import yaml.constructor

from varsec.errors import ConfigError

PathKey = tuple[str | int, ...]


class _Constructor(yaml.constructor.SafeConstructor):
    """SafeConstructor that also records the line of every mapping key and sequence item."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.lines: dict[PathKey, int] = {}

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: mapping keys must be "
                        f"plain names, got {key!r}."
                    )
                if key in result:
                    where = format_path((*path, key))
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: {where}: duplicate key "
                        f"{key!r}."
                    )
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.construct_object(node, deep=True)


def format_path(path: PathKey) -> str:
    """``('attacks', 'insa', 'eps', 0)`` -> ``attacks.insa.eps[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def load_yaml_text(text: str, source: str = "<string>") -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML ``text``; returns ``(data, lines)`` (see the module docstring)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: not valid YAML ({problem}).") from None
    if node is None:
        return {}, {}
    constructor = _Constructor(source)
    try:
        data = constructor.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: {exc.problem}.") from None
    return data, constructor.lines


def load_yaml(path: str | Path) -> tuple[Any, dict[PathKey, int]]:
    """Read and parse a YAML file; a missing or unreadable file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from None
    return load_yaml_text(text, str(path))


__all__ = ["PathKey", "format_path", "load_yaml", "load_yaml_text"]
