"""The attack registry: names -> attack methods, each declared once in its own file.

An :class:`AttackMethod` is a named pairing of a step rule (how the perturbation moves) and the
objective it maximises by default, with its declared settings (``params``: name ->
:class:`~varsec.params.Param`, the ``params:`` of a study attack) and the facts the study needs
(default steps, whether it takes a PGD-style ``alpha``, its family). A method registers itself
with :func:`register_attack`; the study schema, the attack stage, ``varsec attack`` and the
report read this registry instead of keeping their own lists of names, checks or defaults.

Objectives register under their study names with :func:`register_objective` and declare their
own settings (``kappa`` of the classifier objectives, INSA's ``users_per_step``), so an attack's
``params`` are checked against the rule's, the objective's and :data:`STAGE_PARAMS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from varsec.errors import ConfigError
from varsec.params import Param
from varsec.registry import import_submodules, load_plugins

STAGE_PARAMS: dict[str, Param] = {
    "batch_size": Param(128, int, low=1, doc="images per engine batch (promotion: 64)"),
}

# Objective names the schema accepts besides the registered ones: "auto" (chosen by the attack's
# kind and target) and "none" (c-SEMA: no objective at all).
AUTO = "auto"


class AttackMethod:
    """A registered attack. Subclasses set the class attributes and implement :meth:`rule`.

    ``objective``: the objective the attack always maximises (None: chosen by its target, a
    classifier, feature or BPR objective); ``family``: ``"promotion"`` for attacks on cold items
    through a two-stage ranker (AIP), None when the items decide; ``uses_alpha``: takes the
    study's ``alpha`` (PGD-style step); ``iterative``: has steps that can converge;
    ``step_unit``: what its step size counts (8-bit levels, or C&W-L2's tanh-space rate);
    ``uses_eps``: has an L-inf budget; ``gradient``: follows a gradient (can adapt to a
    defense), else ``how`` says what it does instead; ``needs_gradients``: backpropagates
    through the model it attacks (a white-box attack), so the model must be differentiable; a
    query-only attack (Square, which only scores uploads) and c-SEMA (no model) do not, and can
    audit a model that only answers scores; ``title``: its name in reports.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    objective: ClassVar[str | None] = None
    family: ClassVar[str | None] = None
    steps: ClassVar[int] = 10
    uses_alpha: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    step_unit: ClassVar[str] = "8-bit levels"
    uses_eps: ClassVar[bool] = True
    norm: ClassVar[str] = "linf"
    gradient: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = True
    how: ClassVar[str] = ""
    title: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    paper: ClassVar[str] = ""

    @classmethod
    def rule(cls, eps: float, steps: int, alpha: float | None,
             params: Mapping[str, Any]) -> Any:
        """The engine step rule at ``eps`` (8-bit levels) with every declared setting in
        ``params`` (call :meth:`build`, which fills in the defaults); None for an attack the
        engine does not run (c-SEMA)."""
        raise NotImplementedError

    @classmethod
    def settings(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The declared settings of the rule: ``params`` restricted to them, defaults filled."""
        return {name: params.get(name, spec.default) for name, spec in cls.params.items()}

    @classmethod
    def build(cls, eps: float, steps: int | None = None, alpha: float | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        """The step rule at ``eps`` with ``steps`` (default: the method's) and ``params``
        (the declared settings; the rest take their declared defaults, the only ones)."""
        return cls.rule(eps, cls.steps if steps is None else steps, alpha,
                        cls.settings(params or {}))


def rule_default(rule: Callable[..., Any], argument: str) -> Any:
    """The default a step rule's constructor gives ``argument``: a registered method takes its
    defaults from its rule, so the engine and the registry hold one value."""
    return inspect.signature(rule).parameters[argument].default


A = TypeVar("A", bound=type[AttackMethod])
_ATTACKS: dict[str, type[AttackMethod]] = {}
_ALIASES: dict[str, str] = {}
_OBJECTIVES: dict[str, type] = {}


def register_attack(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[A], A]:
    """Class decorator: register an :class:`AttackMethod` subclass under ``name`` (and
    ``aliases``, other names for it, e.g. the CLI's ``cw-l2`` for ``cw``)."""

    def decorate(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, AttackMethod)):
            raise TypeError(f"{cls!r} is not an AttackMethod subclass.")
        for key in (name, *aliases):
            owner = _ATTACKS.get(_ALIASES.get(key, key))
            if owner is not None and owner is not cls:
                raise ConfigError(f"attack name {key!r} is already registered.")
        cls.name, cls.aliases = name, tuple(aliases)
        cls.title = cls.__dict__.get("title") or name
        _ATTACKS[name] = cls
        _ALIASES.update({alias: name for alias in aliases})
        return cls

    return decorate


def register_objective(*names: str) -> Callable[[type], type]:
    """Class decorator: register an objective class under its study name(s); it declares its
    settings in a ``params`` class attribute (name -> Param)."""

    def decorate(cls: type) -> type:
        for name in names:
            if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
                raise ConfigError(f"objective name {name!r} is already registered.")
            _OBJECTIVES[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    """Import every module of ``varsec.attacks``: a method's file registers it."""
    import_submodules("varsec.attacks")
    load_plugins("varsec.attacks", "AttackMethod", lambda cls: issubclass(cls, AttackMethod),
                 _ATTACKS, register_attack)


def known_attacks() -> list[str]:
    """The registered attack names (aliases not included), sorted."""
    _load_builtins()
    return sorted(_ATTACKS)


def attack_names() -> list[str]:
    """Every name an attack can be given by: registered names and aliases, sorted."""
    _load_builtins()
    return sorted([*_ATTACKS, *_ALIASES])


def attack_method(name: str) -> type[AttackMethod]:
    """The method registered as ``name`` (or an alias of it); a ConfigError listing the known
    names otherwise."""
    _load_builtins()
    key = _ALIASES.get(name, name)
    if key not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r} (known: {', '.join(attack_names())}).")
    return _ATTACKS[key]


def known_objectives() -> list[str]:
    """The registered objective names, sorted."""
    _load_builtins()
    return sorted(_OBJECTIVES)


def objective_family(name: str | None) -> str | None:
    """The family of the objective ``name`` (``"promotion"``, ``"ranking"`` or None)."""
    return objective_fact(name, "family")


def objective_fact(name: str | None, fact: str, default: Any = None) -> Any:
    """A class attribute of the objective ``name`` (``default`` for none, ``auto``, ``none``):
    ``family``, ``per_user``, ..."""
    _load_builtins()
    cls = _OBJECTIVES.get(str(name))
    return getattr(cls, fact, default) if cls is not None else default


def objective_params(name: str | None) -> dict[str, Param]:
    """The settings the objective ``name`` declares ({} for none, ``auto`` and ``none``)."""
    _load_builtins()
    cls = _OBJECTIVES.get(str(name))
    return dict(getattr(cls, "params", {})) if cls is not None else {}


def declared_params(attack: str, objective: str | None) -> dict[str, Param]:
    """Everything a study attack's ``params`` may set: the method's, its objective's and the
    stage's (:data:`STAGE_PARAMS`)."""
    return {**STAGE_PARAMS, **objective_params(objective), **attack_method(attack).params}


def param_problems(attack: str, objective: str | None,
                   given: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(key, message) for every unknown name (key None lists them all) and bad value of
    ``given`` against :func:`declared_params`."""
    declared = declared_params(attack, objective)
    unknown = sorted(set(given) - set(declared))
    problems: list[tuple[str | None, str]] = []
    for key in unknown:
        problems.append((key, f"{attack} has no parameter {key!r} (known: "
                              f"{', '.join(sorted(declared))})."))
    for key, value in given.items():
        optional = value is None and key in declared and declared[key].default is None
        if key in declared and not optional and not declared[key].accepts(value):
            problems.append((key, f"must be {declared[key].expectation()}, got {value!r}."))
    return problems


__all__ = ["AUTO", "STAGE_PARAMS", "AttackMethod", "attack_method", "attack_names",
           "declared_params", "known_attacks", "known_objectives", "objective_fact",
           "objective_family", "objective_params", "param_problems", "register_attack",
           "register_objective", "rule_default"]
