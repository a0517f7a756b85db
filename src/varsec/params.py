"""Declared parameters: one mechanism for every method's settings.

A method (recommender, input transform, step rule, objective, defense, config) declares its
parameters as ``params: ClassVar[dict[str, Param]]``: default, type, admissible range or choices
and a one-line description. :func:`check_params` validates given values against the declaration
(unknown names and bad values are one sentence each, a :class:`~varsec.errors.ConfigError`) and
fills in the defaults; :func:`describe` lists the declaration for help texts and
``varsec study schema``.

Single values outside a declaration (a function argument, a config field) are checked with
:func:`check_int`, :func:`check_number`, :func:`check_choice` or :func:`check_value`, which
build a :class:`Param` on the spot, so every message reads the same:
``"<name> must be <what is expected>, got <value>."`` (``"<owner> parameter <name> ..."`` when
an owner is given).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from varsec.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter: its default, type and admissible range or choices.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open`` make them strict.
    """

    default: Any
    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def expectation(self) -> str:
        """What a valid value looks like, as words ("an integer >= 1")."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                dict: "a mapping"}
        words = noun.get(self.kind, f"a {self.kind.__name__}")
        if self.low is not None:
            words += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            words += f"{' and' if self.low is not None else ''} "
            words += f"{'<' if self.high_open else '<='} {self.high:g}"
        return words

    def accepts(self, value: Any) -> bool:
        """True when ``value`` has the right type and lies in range."""
        if not _has_kind(value, self.kind):
            return False
        if self.choices is not None:
            return value in self.choices
        if self.kind in (int, float):
            if not math.isfinite(value):
                return False
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return False
            if self.high is not None and (
                value >= self.high if self.high_open else value > self.high
            ):
                return False
        return True

    def plain(self, value: Any) -> Any:
        """``value`` as a plain Python object of this kind (numpy scalars converted), so
        hyperparameters serialise and compare cleanly; ``None`` stays ``None``."""
        if value is None:
            return None
        if self.kind in (float, int, bool, dict):
            return self.kind(value)
        return value


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False
    if kind is int:
        return isinstance(value, int | np.integer)
    if kind is float:
        return isinstance(value, int | float | np.integer | np.floating)
    return isinstance(value, kind)


def bad_value(owner: str, name: str, spec: Param, value: Any) -> str:
    """The one-sentence message for a value ``spec`` does not accept."""
    return _sentence(f"{owner} parameter {name}", spec, value)


def _sentence(subject: str, spec: Param, value: Any, hint: str = "") -> str:
    return f"{subject} must be {spec.expectation()}{hint}, got {value!r}."


def unknown_names(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> str:
    """The message for parameters ``owner`` does not declare ('' when every name is known)."""
    unknown = sorted(set(given) - set(declared))
    if not unknown:
        return ""
    known = ", ".join(sorted(declared)) or "none"
    names = ", ".join(repr(n) for n in unknown)
    return f"{owner} has no parameter {names} (known: {known})."


def check_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict:
    """``given`` checked against ``declared`` with the defaults filled in, as plain values; the
    first unknown name or bad value raises a ConfigError (one sentence).

    A parameter whose default is ``None`` is optional: ``None`` is accepted for it.
    """
    message = unknown_names(owner, declared, given)
    if message:
        raise ConfigError(message)
    values = {}
    for name, spec in declared.items():
        value = given.get(name, spec.default)
        if value is None and spec.default is None:
            values[name] = None  # an optional parameter left unset
            continue
        if not spec.accepts(value):
            raise ConfigError(bad_value(owner, name, spec, value))
        values[name] = spec.plain(value)
    return values


def describe(declared: Mapping[str, Param]) -> list[dict[str, Any]]:
    """One record per declared parameter: name, default, what a valid value is, description."""
    return [{"name": name, "default": spec.default, "expects": spec.expectation(),
             "doc": spec.doc} for name, spec in declared.items()]


def check_value(value: Any, name: str, spec: Param, *, owner: str | None = None,
                hint: str = "") -> Any:
    """``value`` as a plain Python value when ``spec`` accepts it, else a ConfigError.

    The message is ``"<name> must be <spec.expectation()><hint>, got <value!r>."``, its subject
    ``"<owner> parameter <name>"`` when ``owner`` is given; ``hint`` (e.g. ``" (the PGD
    steps)"``) says what the value is for.
    """
    if not spec.accepts(value):
        subject = name if owner is None else f"{owner} parameter {name}"
        raise ConfigError(_sentence(subject, spec, value, hint))
    return spec.plain(value)


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None,
              owner: str | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` when it is an integer in ``[low, high]`` (either bound may be
    left out), else a ConfigError that states the bounds and the value given.

    numpy integers are accepted; ``bool`` and floats (even ``2.0``) are not.
    """
    return check_value(value, name, Param(None, int, low=low, high=high), owner=owner, hint=hint)


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, owner: str | None = None,
                 hint: str = "") -> float:
    """``value`` as a ``float`` when it is a finite number within the bounds, else a
    ConfigError ("lr must be a number > 0, got 0.").

    Bounds are inclusive unless ``low_open`` / ``high_open`` make them strict. Integers and
    numpy scalars are accepted; ``bool``, NaN and infinities are not.
    """
    spec = Param(None, float, low=low, high=high, low_open=low_open, high_open=high_open)
    return check_value(value, name, spec, owner=owner, hint=hint)


def check_choice(value: Any, name: str, choices: Sequence[Any], *,
                 owner: str | None = None) -> Any:
    """``value`` when it is one of ``choices`` (as a plain value), else a ConfigError
    ("mode must be one of 'standard', 'pgd-at', got 'fgsm'.").

    When every choice has one type, a value of another type is refused (``True`` is not
    ``1``).
    """
    options = tuple(choices)
    kinds = {type(c) for c in options}
    kind = kinds.pop() if len(kinds) == 1 else object
    return check_value(value, name, Param(None, kind, choices=options), owner=owner)


def plain_fields(instance: Any) -> None:
    """Replace numpy scalars in a (frozen) dataclass's fields by the equal Python values.

    The checks accept numpy scalars; a config keeps plain values so it serialises to JSON and
    compares cleanly. Python values are left as given (an ``int`` rate stays an ``int``).
    """
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if isinstance(value, np.generic):
            object.__setattr__(instance, field.name, value.item())


def field_defaults(config: type) -> dict[str, Any]:
    """The defaults of a config dataclass's fields (a ``default_factory`` called), for a
    command line offering them as options: the dataclass stays the one place they are
    written."""
    defaults = {}
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


__all__ = [
    "Param",
    "bad_value",
    "check_choice",
    "check_int",
    "check_number",
    "check_params",
    "check_value",
    "describe",
    "field_defaults",
    "plain_fields",
    "unknown_names",
]
