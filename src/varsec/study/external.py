"""Methods a study's factory builds (``kind: external``; an extractor: ``backbone: external``),
and the facts of every recommender a study names, read from its class.

One mechanism for the three kinds (:func:`varsec.registry.build_external`): the factory
``package.module:callable`` is imported and called with the section's keyword arguments
(recommenders: ``params``, plus ``seed`` and ``device`` when it takes them; extractors:
``backbone_options``; defenses: ``params``), and what it builds must be of the section's kind:

* a recommender: a :class:`varsec.recsys.Recommender` implementing ``_fit``, ``_score``,
  ``_build`` (later stages rebuild it from its checkpoint) and, when visual, ``_score_images``
  or ``_score_features``; its class facts (``visual``, ``needs_features``, ``differentiable``,
  ...) are the section's;
* an extractor: a :class:`varsec.vision.Backbone`, used as built (``training: none``);
* a defense: a :class:`varsec.defenses.InputTransform`, applied at one level (its own
  adaptive attacker: BPDA or EOT).

:func:`check_external` builds each one when the study is loaded (``varsec run --dry-run``
too), so a factory that does not import, is not callable, fails, or builds the wrong thing is
one problem with the file, line and YAML path, before any compute. The stages build it again.
varsec cannot hash foreign code: :func:`external_fields` is what keys such a stage besides its
arguments (the factory, the ``version`` the user bumps, the providing distribution's version).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from varsec.errors import ConfigError
from varsec.registry import EXTERNAL, build_external, external_key, load_factory

PathKey = tuple[Any, ...]
Problem = tuple[PathKey, str]


class Built(NamedTuple):
    """What validation keeps of a method a factory built: its class (whose facts the section
    has) and, for a backbone, whether it classifies. Never the object itself, so a study config
    stays small and picklable (the Ray executor ships it to its workers)."""

    cls: type
    num_classes: int | None = None
RECOMMENDER = "a varsec Recommender (a subclass of varsec.recsys.Recommender)"
BACKBONE = "a varsec Backbone (a subclass of varsec.vision.Backbone)"


def is_external(section: Any) -> bool:
    """Whether a recommender, extractor or defense section is built by a factory."""
    kind = getattr(section, "kind", None) or getattr(section, "backbone", None)
    return kind == EXTERNAL


def external_fields(section: Any) -> dict[str, Any]:
    """What keys the stages of ``section`` besides its config when varsec cannot hash its
    method: :func:`varsec.registry.external_key` of its factory and version ({} otherwise)."""
    factory = getattr(section, "factory", None) if is_external(section) else None
    return external_key(factory, getattr(section, "version", None))


# -- building -------------------------------------------------------------------------------------
def build_recommender(factory: str, params: dict[str, Any], seed: int = 0,
                      device: str = "cpu") -> Any:
    """The recommender ``factory`` builds with ``params`` (and the study's ``seed`` and
    ``device`` when it takes them), checked for the methods a study uses."""
    from varsec.recsys.base import Recommender, missing_methods

    model = build_external(factory, params, Recommender, RECOMMENDER,
                           {"seed": seed, "device": device})
    missing = missing_methods(type(model))
    if missing:
        raise ConfigError(f"factory {factory!r} built a {type(model).__name__}, which does not "
                          f"implement {', '.join(missing)} (see varsec.recsys.Recommender).")
    return model


def build_backbone(factory: str, options: dict[str, Any]) -> Any:
    """The backbone ``factory`` builds with ``options``."""
    from varsec.vision.base import Backbone

    return build_external(factory, options, Backbone, BACKBONE)


def build_transform(factory: str, params: dict[str, Any]) -> Any:
    """The input transform ``factory`` builds with ``params``."""
    from varsec.defenses.external import build_external_transform

    return build_external_transform(factory, params)


def import_factory(config: dict[str, Any]) -> None:
    """Import the module of a stage config's factory (if any), so the classes it defines are
    known (a checkpoint names its class) in a process that did not validate the study."""
    if config.get("factory"):
        load_factory(config["factory"])


# -- facts ----------------------------------------------------------------------------------------
def model_class(rec: Any) -> type | None:
    """The class whose facts recommender section ``rec`` has: its registered kind's, what its
    factory built, or the one its checkpoint holds (None for two-stage, and for a factory that
    failed: its own problem)."""
    if is_external(rec):
        return rec._built.cls if isinstance(rec._built, Built) else None
    if rec.kind in ("two-stage",):
        return None
    if getattr(rec, "checkpoint", None) is not None:  # a saved model: the class it holds
        from varsec.study.schema import saved_model_class

        return saved_model_class(rec.checkpoint)
    from varsec.recsys import RECOMMENDERS

    return RECOMMENDERS.get(rec.kind)  # None: a kind the schema reports as unknown itself


def has_facts(rec: Any, *facts: str) -> bool:
    """Whether recommender section ``rec``'s model has every fact (``visual``,
    ``needs_features``, ``pairwise``, ``item_to_item``, ``differentiable``)."""
    cls = model_class(rec)
    return cls is not None and all(getattr(cls, fact, False) for fact in facts)


def kind_text(rec: Any) -> str:
    """How a message names a recommender's kind: ``vbpr``, or ``MyModel (external)``."""
    cls = model_class(rec)
    return f"{cls.__name__} ({rec.kind})" if is_external(rec) and cls is not None else rec.kind


def built_backbone(section: Any) -> Built | None:
    """What validation kept of an external extractor (None: not external, or it failed)."""
    built = section._built if is_external(section) else None
    return built if isinstance(built, Built) else None


# -- validation -----------------------------------------------------------------------------------
def check_external(config: Any) -> list[Problem]:
    """Build every external method of ``config`` and check its section (module docstring):
    one problem per failure, at the section's ``factory`` (or the key at fault)."""
    problems: list[Problem] = []
    seed, device = (config.seeds or [0])[0], config.device
    for name, rec in config.recommenders.items():
        problems += _check_section(("recommenders", name), rec, rec.kind, "kind",
                                   lambda r: build_recommender(r.factory, r.params, seed, device))
    for name, ext in config.extractors.items():
        problems += _check_extractor(("extractors", name), ext)
    for name, defense in config.defenses.items():
        problems += _check_section(("defenses", name), defense, defense.kind, "kind",
                                   lambda d: build_transform(d.factory, d.params))
        if is_external(defense) and defense.strengths:
            problems.append((("defenses", name, "strengths"), "an external defense runs as its "
                             "factory builds it, at one level; for several, give one entry "
                             "per level with its params."))
    return problems


def _check_extractor(here: PathKey, ext: Any) -> list[Problem]:
    problems = _check_section(here, ext, ext.backbone, "backbone",
                              lambda e: build_backbone(e.factory, e.backbone_options))
    if is_external(ext):
        if ext.checkpoint is not None:
            problems.append(((*here, "checkpoint"), "an external backbone comes from its "
                             "factory; remove the checkpoint."))
        if ext.training != "none":
            problems.append(((*here, "training"), "an external backbone is used as its factory "
                             "builds it (varsec does not train it); set training: none."))
    return problems


def _check_section(here: PathKey, section: Any, kind: str, key: str,
                   build: Any) -> list[Problem]:
    """The factory of one section: present exactly when the kind is external, and building."""
    if not is_external(section):
        if section.factory is not None:
            return [((*here, "factory"), f"only {key}: {EXTERNAL} is built by a factory; this "
                     f"{key} is {kind!r} (remove factory, or set {key}: {EXTERNAL}).")]
        return []
    if section.factory is None:
        return [((*here, "factory"), f"{key}: {EXTERNAL} needs factory: 'package.module:"
                 "callable' that builds it.")]
    if section._built is None:
        try:
            built = build(section)
            section._built = Built(type(built), getattr(built, "num_classes", None))
        except ConfigError as exc:
            section._built = str(exc)  # kept: the facts of a failed factory are none
    if isinstance(section._built, str):
        return [((*here, "factory"), section._built)]
    return []


def white_box_problem(attack_kind: str, model: str, rec: Any) -> str | None:
    """Why a white-box attack cannot go through recommender ``model`` (None when it can)."""
    from varsec.attacks.registry import attack_method

    cls = model_class(rec)
    if cls is None or not attack_method(attack_kind).needs_gradients or cls.differentiable:
        return None
    return (f"{attack_kind} is a white-box attack: it backpropagates through {model!r}, a "
            f"query-only {kind_text(rec)} model (scores, no gradients); audit it with a "
            "query-only attack (square on the insa or probe-rank objective) or csema.")


__all__ = ["Built", "build_backbone", "build_recommender", "build_transform", "built_backbone",
           "check_external", "external_fields", "has_facts", "import_factory", "is_external",
           "kind_text", "model_class", "white_box_problem"]
