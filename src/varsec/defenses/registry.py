"""The defense registry: names -> defenses, each declared once in its own file.

A defense registers itself with :func:`register_defense`: an input transform
(:class:`~varsec.defenses.base.InputTransform`, swept over one declared parameter, its
``strength``) or a workflow described by a :class:`DefenseMethod` (adversarial training of the
extractor, the reconstruction network with its detector). Each says what the study needs to
know: the parameter it sweeps and its default sweep, whether it acts on the images (``pixel``),
whether it is trained (``trained``) and the attacker that knows it (``adaptive``: BPDA, EOT,
detector-aware, or none). The study schema and stages read this registry instead of keeping
their own lists of names, strengths and checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from varsec.errors import ConfigError
from varsec.params import Param
from varsec.registry import import_submodules, load_plugins


@dataclass
class FitResult:
    """What a trained defense's :meth:`DefenseMethod.fit` returns: result records (``metric``,
    ``value``, ``protocol``, ``n`` and labels such as ``attack`` and ``eps``) and a summary for
    the stage's info."""

    records: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class DefenseMethod:
    """A registered defense: its facts and the one interface the study's stages talk to
    (input transforms carry the same class attributes and methods).

    ``fit`` trains it into a directory (a no-op for what is not ``trained``); ``defender``
    returns the function uint8 images -> (defended uint8 images, share a detector flags or
    None); ``adaptive_attack`` wraps an attack objective into the attacker that knows it
    (objective, engine hook).

    ``strength``: the declared parameter a study sweeps (None: no sweep); ``default_sweep``:
    its levels when a study gives none, weakest first; ``pixel``: acts on the images (an input
    transform or the reconstruction network; adversarial training changes the extractor
    instead); ``trained``: fitted in a stage of its own; ``adaptive``: the attacker that knows it
    (``bpda``, ``eot``, ``detector-aware``; None: none is defined); ``label``: its name in words.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    strength: ClassVar[str | None] = None
    default_sweep: ClassVar[tuple[float, ...]] = ()
    pixel: ClassVar[bool] = True
    trained: ClassVar[bool] = False
    adaptive: ClassVar[str | None] = None
    params: ClassVar[dict[str, Param]] = {}
    paper: ClassVar[str] = ""

    @classmethod
    def fit(cls, out: Path, dataset: Any, model: Any, extractor: Any, params: dict[str, Any],
            seed: int, device: str, detection_eps: list[float] | None = None,
            log: Callable[[str], None] | None = None) -> FitResult:
        """Train the defense into ``out`` (nothing to train by default)."""
        return FitResult()

    @classmethod
    def defender(cls, *, strength: Any, params: dict[str, Any], seed: int,
                 fitted: Path | None, device: str) -> Callable[[Any], Any]:
        """uint8 images -> (defended uint8 images, share flagged or None)."""
        raise ConfigError(f"the {cls.label or cls.name} defense does not act on images.")

    @classmethod
    def adaptive_attack(cls, objective: Any, *, strength: Any, params: dict[str, Any],
                        fitted: Path | None, device: str) -> tuple[Any, Any]:
        """(objective, engine hook) of the attacker that knows this defense."""
        raise ConfigError(f"the {cls.label or cls.name} defense has no adaptive attacker.")


D = TypeVar("D", bound=type)
_DEFENSES: dict[str, type] = {}


def register_defense(name: str) -> Callable[[D], D]:
    """Class decorator: register a defense (an InputTransform subclass or a DefenseMethod
    subclass) under ``name``."""

    def decorate(cls: D) -> D:
        if not isinstance(cls, type) or not hasattr(cls, "strength"):
            raise TypeError(f"{cls!r} is not a defense class (InputTransform or DefenseMethod).")
        if name in _DEFENSES and _DEFENSES[name] is not cls:
            raise ConfigError(f"defense name {name!r} is already registered.")
        cls.name = name  # type: ignore[attr-defined]
        _DEFENSES[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    """Import every module of ``varsec.defenses``: a method's file registers it."""
    import_submodules("varsec.defenses")
    load_plugins("varsec.defenses", "defense", lambda cls: hasattr(cls, "strength"),
                 _DEFENSES, register_defense)


def known_defenses() -> list[str]:
    """The registered defense names, sorted."""
    _load_builtins()
    return sorted(_DEFENSES)


def defense_class(name: str) -> Any:
    """The class registered as ``name``; a ConfigError listing the known names otherwise."""
    _load_builtins()
    if name not in _DEFENSES:
        raise ConfigError(f"unknown defense {name!r} (known: {', '.join(sorted(_DEFENSES))}).")
    return _DEFENSES[name]


def is_transform(name: str) -> bool:
    """Whether ``name`` is an input transform (built at a strength, applied to pixels)."""
    from varsec.defenses.base import InputTransform

    return issubclass(defense_class(name), InputTransform)


def build_transform(name: str, strength: Any, **options: Any) -> Any:
    """The input transform ``name`` with its ``strength`` parameter at ``strength`` (whole
    numbers for integer parameters) and any further declared ``options``."""
    cls = defense_class(name)
    if cls.strength is None or not is_transform(name):
        raise ConfigError(f"the {cls.label or name} defense has no strength to sweep.")
    spec = cls.params[cls.strength]
    if spec.kind is int and not isinstance(strength, bool) and \
            isinstance(strength, int | float) and float(strength).is_integer():
        strength = int(strength)
    return cls(**{cls.strength: strength}, **options)


def strength_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a strength of the defense ``name`` (None when it is): the class's
    own checks of its swept parameter, before anything is computed."""
    cls = defense_class(name)
    if cls.strength is None:
        return f"a {name} defense has no strength sweep."
    try:
        build_transform(name, value)
    except ConfigError as exc:
        return str(exc)
    return None


__all__ = ["DefenseMethod", "FitResult", "build_transform", "defense_class", "is_transform",
           "known_defenses", "register_defense", "strength_problem"]
