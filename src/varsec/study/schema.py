"""The study schema: one YAML file describes a whole attack/defense grid (DESIGN.md section 9).

Every key is typed, has a default and a one-line description (``varsec study schema`` prints them
all as commented YAML). Unknown keys, wrong types, out-of-range values and references to models
the study does not define are reported as ONE :class:`~varsec.errors.ConfigError` that names the
file, the line and the YAML path of the offending key, before any computation starts::

    study.yaml:31: attacks.insa.recommender: 'vbpr2' is not a recommender of this study
    (known: vbpr, amr).

Epsilons are in 8-bit levels everywhere (``eps: 8`` means 8/255; 1 <= eps <= 255).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from varsec.errors import ConfigError, VarsecError, VarsecWarning
from varsec.registry import EXTERNAL, check_factory_spec
from varsec.study.external import (
    built_backbone,
    check_external,
    external_fields,
    has_facts,
    is_external,
    kind_text,
    white_box_problem,
)
from varsec.study.yamlfile import PathKey, format_path, load_yaml, load_yaml_text

PROFILES = ("quick", "default", "paper")
STAGE_KINDS = ("data", "extractor", "recommender", "attack", "defense", "evaluation")
TRAINING_MODES = ("standard", "pgd-at", "free-at", "curriculum-at", "none")


class RegisteredKinds(Sequence[str]):
    """The registered recommender kinds whose class has every fact in ``facts`` (class
    attributes of :class:`varsec.recsys.Recommender`: ``visual``, ``needs_features``,
    ``pairwise``, ``item_to_item``), sorted, then ``extra``.

    A read-only tuple-like view of the registry, read on each use (so models registered later
    count): the registry lives in varsec.recsys, which loads torch, and importing the schema
    must not.
    """

    def __init__(self, *facts: str, extra: tuple[str, ...] = ()) -> None:
        self.facts, self.extra = facts, extra

    def names(self) -> tuple[str, ...]:
        """The kinds as a tuple."""
        from varsec.recsys import known_recommenders, recommender_class

        kinds = [name for name in known_recommenders()
                 if all(getattr(recommender_class(name), fact) for fact in self.facts)]
        return (*kinds, *self.extra)

    def __getitem__(self, index: Any) -> Any:
        return self.names()[index]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self.names())

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RegisteredKinds | tuple | list):
            return self.names() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (equal to tuples, so not hashable)

    def __repr__(self) -> str:
        return repr(self.names())


# The pipeline of two registered models (varsec.recsys.two_stage), a recommender kind of studies.
TWO_STAGE = "two-stage"
RECOMMENDER_KINDS = RegisteredKinds(extra=(TWO_STAGE, EXTERNAL))
VISUAL_KINDS = RegisteredKinds("visual")
FEATURE_KINDS = RegisteredKinds("needs_features")  # take features from an extractor
BPR_KINDS = RegisteredKinds("visual", "pairwise")  # what the BPR objective attacks
ITEM2ITEM_KINDS = RegisteredKinds("item_to_item")  # what item-to-item attacks are evaluated on
ATTACK_ITEMS = ("auto", "cold", "category", "pairs", "all")
METRICS = ("HR", "NDCG", "Recall", "MRR", "AUC")
# A name the user chooses; it also names files and folders of the run, so no separator, no dot,
# no trailing newline (\Z, not $) and short enough for a file name that joins several.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
NAME_RULE = ("start with a letter and hold only letters, digits, '-' and '_' "
             "(64 characters at most)")
# The value of a recommender's ``extractor`` that means "the catalog's own features".
CATALOG_FEATURES = "catalog"
# Sections keyed by a name the user chooses; each name also names files and folders of the run.
NAMED_SECTIONS = ("extractors", "recommenders", "attacks", "defenses")


class Lines(typing.Protocol):
    """Line numbers by YAML path (a dict, or :class:`~varsec.study.yamlfile.LineMap`)."""

    def get(self, path: PathKey, default: Any = None) -> Any:
        """The 1-based line of ``path``, or ``default``."""


# -- field types ----------------------------------------------------------------------------------
def _check_eps(value: float) -> float:
    # The bounds of varsec.vision.perturbation.check_eps (not imported here: it pulls in torch).
    if not (math.isfinite(value) and 1 <= value <= 255):
        raise ValueError(
            f"must lie in [1, 255] 8-bit levels (8 means 8/255; rounding to uint8 undoes a "
            f"budget below one level), got {value:g}"
        )
    return float(value)


def _registered(value: str, lookup: Callable[[str], Any]) -> str:
    """``value`` when ``lookup`` (a registry's, or a file reader's) accepts it; its one-sentence
    error otherwise."""
    try:
        lookup(value)
    except VarsecError as exc:
        raise ValueError(str(exc).rstrip(".")) from None
    return value


def _check_defense_kind(value: str) -> str:
    """A defense kind is any registered defense name (``varsec.defenses.registry``)."""
    from varsec.defenses.registry import defense_class

    return _registered(value, defense_class)


def defense_fact(kind: str, fact: str) -> Any:
    """A class attribute of the registered defense ``kind`` (``pixel``, ``trained``,
    ``adaptive``, ``strength``)."""
    from varsec.defenses.registry import defense_class

    return getattr(defense_class(kind), fact)


def _check_attack_kind(value: str) -> str:
    """An attack kind is any registered attack name (``varsec.attacks.registry``)."""
    from varsec.attacks.registry import attack_method

    return _registered(value, attack_method)


def _check_objective(value: str) -> str:
    """``auto`` or a registered objective name."""
    from varsec.attacks.registry import AUTO, known_objectives

    if value != AUTO and value not in known_objectives():
        raise ValueError(f"unknown objective {value!r} (known: "
                         f"{', '.join([AUTO, *known_objectives()])})")
    return value


def is_promotion(kind: str) -> bool:
    """Whether the attack ``kind`` promotes cold items through a two-stage ranker (AIP)."""
    from varsec.attacks.registry import attack_method

    return attack_method(kind).family == "promotion"


def promotes(attack: AttackSection) -> bool:
    """Whether ``attack`` promotes cold items through a two-stage ranker: its objective does
    (INSA's, the probes' ranks of a query-only attack), or its kind does (EXPA, c-SEMA) when it
    keeps the kind's own objective and goes through a recommender. On an extractor (or, for
    c-SEMA, on no model) such a kind is a feature attack, or a pasted inset, like any other."""
    from varsec.attacks.registry import objective_family

    objective = attack_objective(attack)
    if objective_family(objective) == "promotion":
        return True
    return bool(attack.recommender) and promotion_kind(attack)


def promotion_kind(attack: AttackSection) -> bool:
    """Whether ``attack`` is a promotion kind (EXPA, c-SEMA, INSA) with its own objective."""
    from varsec.attacks.registry import attack_method

    method = attack_method(attack.kind)
    return method.family == "promotion" and attack_objective(attack) == method.objective


def _check_step(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= 255):
        raise ValueError(f"a step size must lie in (0, 255] 8-bit levels, got {value:g}")
    return float(value)


def _as_list(value: Any) -> Any:
    """Accept a single name where a list of names is expected."""
    if value is None:
        return []
    return [value] if isinstance(value, str | int | float) else value


ALPHA_RULE_RE = re.compile(r"^eps\s*/\s*(steps|[0-9]+(?:\.[0-9]+)?)$")


def _check_alpha(value: float | str) -> float | str:
    """A PGD step size: a number of 8-bit levels, or a rule ``eps/<n>`` / ``eps/steps``."""
    if isinstance(value, str):
        match = ALPHA_RULE_RE.match(value.strip())
        if match is None or (match.group(1) != "steps" and float(match.group(1)) <= 0):
            raise ValueError(f"a step size must be a number of 8-bit levels, eps/<n> (e.g. "
                             f"eps/6) or eps/steps, got {value!r}")
        return f"eps/{match.group(1)}"
    return _check_step(value)


def resolve_alpha(alpha: float | str | None, eps: float, steps: int) -> float | None:
    """The PGD step size in 8-bit levels of ``alpha`` (a number, ``eps/<n>`` or ``eps/steps``)
    at budget ``eps``; None (the step rule's default, 2.5 * eps / steps) when not given."""
    if alpha is None or not isinstance(alpha, str):
        return alpha
    divisor = alpha.split("/", 1)[1]
    return eps / (max(1, steps) if divisor == "steps" else float(divisor))


def _item_id(value: Any) -> Any:
    """An item id: a string, or a number as YAML reads an unquoted id (kept as its text)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Eps = Annotated[float, AfterValidator(_check_eps)]
StepSize = Annotated[float, AfterValidator(_check_step)]
AlphaSize = Annotated[float | str, AfterValidator(_check_alpha)]
NameList = Annotated[list[str], BeforeValidator(_as_list)]
EpsList = Annotated[list[Eps], BeforeValidator(_as_list)]
PositiveInt = Annotated[int, Field(ge=1)]
ItemIds = list[Annotated[str, BeforeValidator(_item_id)]]


def _check_factory(value: str | None) -> str | None:
    return None if value is None else check_factory_spec(value)


Factory = Annotated[str | None, AfterValidator(_check_factory)]


def _factory_field(arguments: str) -> Any:
    return Field(None, description=f"{EXTERNAL} only: 'package.module:callable' that varsec "
                 f"imports and calls with {arguments} as keyword arguments to build the "
                 "method (README, 'Auditing your own model')")


def _version_field() -> Any:
    return Field(None, description="a label you change whenever the method's code or weights "
                 "change outside varsec (external, http: varsec cannot hash foreign code); it "
                 "keys the cache of its stages")


class Section(BaseModel):
    """Base of every section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=False)


class BuildableSection(Section):
    """A section whose method an external factory may build (``kind: external``); validation
    keeps the class of what the factory built (:class:`varsec.study.external.Built`)."""

    _built: Any = PrivateAttr(default=None)


# -- sections -------------------------------------------------------------------------------------
class DatasetSection(Section):
    """Where the items and interactions come from and how they are split."""

    source: str = Field("fashion-mnist", description="a named source (fashion-mnist) or a path "
                        "in any supported format (varsec data info --help)")
    profile: Literal["quick", "default", "paper"] = Field(
        "quick", description="scale of the simulation: quick (tests), default (the demo), "
        "paper (the papers' sizes, for a GPU)")
    seed: int = Field(0, ge=0, description="seed of the interaction simulator and of the split")
    split: Literal["latest", "random"] = Field(
        "latest", description="leave-one-out: hold out each user's latest or a random "
        "interaction as its test item")
    validation: bool = Field(True, description="also hold out one validation interaction per "
                             "user (early stopping, model selection)")
    k_core: int = Field(5, ge=1, description="drop users with fewer interactions than this")
    reviews: str | None = Field(None, description="VBPR format: the reviews JSON(.gz) that holds "
                                "the interactions")
    features: str | None = Field(None, description="Tradesy format: the image features file")
    trust_pickle: bool = Field(False, description="allow loading a DVBPR .npy (it is a pickle)")
    allow_outside: bool | None = Field(None, description="folder format: allow items.csv to "
                                       "name images outside the dataset folder (null = no)")
    image_size: int | None = Field(
        None, ge=8, le=512, description="serve the kept items' images at size x size pixels "
        "(Pillow bicubic, uint8, resampled once with the data); null = native; simulated "
        "styles come from the native pixels")
    mode: Literal["L", "RGB"] | None = Field(
        None, description="serve the images as grey (L) or colour (RGB; grey is repeated to 3 "
        "channels); null = native")
    n_users: int | None = Field(None, ge=1, description="simulated sources: users to simulate "
                                "(null = the profile's)")
    n_warm_items: int | None = Field(None, ge=5, description="simulated sources: warm items "
                                     "(null = the profile's; keeps a resampled catalog small)")
    n_cold_items: int | None = Field(None, ge=1, description="simulated sources: cold items "
                                     "(null = the profile's)")
    popularity_look_correlation: float | None = Field(
        None, ge=0, le=1, description="simulated sources: how far popularity follows looks (0 "
        "or null: Zipf ranks dealt at random, as by default; up to 1: ranked by the shoppers' "
        "mean appeal of each item's category and look)")
    as_is: bool = Field(
        False, description="use the source exactly as it opens: a catalog without "
        "interactions gets no simulated shoppers and a dataset is not split again; on a bare "
        "catalog only attacks that need no interactions run (classifier, feature and c-SEMA "
        "with a hook item id), with evaluation: false (what varsec attack does)")


# Dataset keys that leave the data stage's config (and cache key) when null: studies without
# them keep the cache of runs made before they existed.
DATASET_OPTIONAL = ("allow_outside", "image_size", "mode", "n_users", "n_warm_items",
                    "n_cold_items", "popularity_look_correlation")


def simulation_sizes(dataset: DatasetSection) -> dict[str, int]:
    """The simulation-profile sizes a dataset section overrides (``n_users``, ...)."""
    return {key: getattr(dataset, key) for key in ("n_users", "n_warm_items", "n_cold_items")
            if getattr(dataset, key) is not None}


class ExtractorSection(BuildableSection):
    """A feature extractor / classifier backbone and how it is trained (DESIGN.md section 4)."""

    backbone: str = Field("fmnist-cnn", description="registered backbone name (fmnist-cnn, "
                          "efficientnet-lite0, resnet50, alexnet, vgg16), or external (built "
                          "by factory, used as built: training none)")
    backbone_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the backbone (external: of "
        "its factory), e.g. widths")
    factory: Factory = _factory_field("backbone_options")
    version: str | None = _version_field()
    checkpoint: str | None = Field(None, description="an existing backbone checkpoint (.pt) to "
                                   "use instead of training one")
    training: Literal["standard", "pgd-at", "free-at", "curriculum-at", "none"] = Field(
        "standard", description="standard, pgd-at (Madry), free-at (Shafahi), curriculum-at "
        "(thesis) or none (the backbone's own weights)")
    train_on: Literal["source", "dataset"] = Field(
        "source", description="train on the whole source catalog or only the study's items")
    epochs: int = Field(5, ge=1, description="training epochs (free-at runs epochs / replays)")
    batch_size: int = Field(128, ge=1, description="minibatch size")
    lr: float = Field(0.05, gt=0, description="learning rate (cosine schedule)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd (Nesterov) or adam")
    eps: Eps = Field(8.0, description="adversarial-training budget in 8-bit levels")
    steps: int = Field(7, ge=1, description="PGD steps of adversarial training "
                       "(curriculum-at: the top K)")
    replays: int = Field(4, ge=1, description="free-at: replays m of each minibatch")
    max_train: int | None = Field(None, ge=1, description="train on at most this many items "
                                  "(quick runs)")
    catalog_half: Literal[0, 1] | None = Field(None, description="a transfer attacker's "
                                               "surrogate: train on one seeded half of the "
                                               "training catalog (0 or 1; the other half is "
                                               "the other surrogate's), null = all of it")
    seed_offset: int = Field(0, ge=0, description="train with the study seed plus this (a "
                             "surrogate trained with another seed)")
    layer: str | None = Field(None, description="feature layer the recommenders use "
                              "(default: the backbone's)")
    eval_eps: EpsList = Field(default_factory=list, description="after training, PGD-20 "
                              "accuracy on the test part at each of these eps")
    eval_limit: int | None = Field(1000, ge=1, description="robustness is measured on a seeded "
                                   "sample of this many test items")
    options: dict[str, Any] = Field(default_factory=dict, description="further training "
                                    "settings (fields of varsec.vision.TrainConfig)")
    features: bool = Field(True, description="extract the catalog's features and measure the "
                           "classifier (eval_eps); false: keep only the backbone, for attacks "
                           "with evaluation: false that read no features (varsec attack)")

    @model_validator(mode="after")
    def _external_untrained(self) -> ExtractorSection:
        """An external backbone is used as its factory builds it unless training is given."""
        if self.backbone == EXTERNAL and "training" not in self.model_fields_set:
            self.training = "none"
        return self


def _check_recommender_kind(value: str) -> str:
    """A registered recommender name or alias (an alias becomes the name it stands for, so both
    give the same stages), two-stage, external, or the class a saved recommender's checkpoint
    holds (see :meth:`RecommenderSection._kind_from_checkpoint`)."""
    if value in (TWO_STAGE, EXTERNAL):
        return value
    from varsec.recsys import RECOMMENDERS

    klass = RECOMMENDERS.get(value)
    if klass is not None and klass.name is not None:
        return klass.name
    if _saved_classes.get(value) is not None:
        return value
    raise ValueError(f"unknown recommender kind {value!r} (known: "
                     f"{', '.join(RECOMMENDER_KINDS)})")


# Unregistered recommender classes met in checkpoints, by class name (their study kind).
_saved_classes: dict[str, type] = {}


def checkpoint_kind(path: str) -> str:
    """The study kind of the recommender saved in ``path``: its registered name, or the class
    name of a class registered under none (a model defined in the caller's own code). Raises
    the recommender layer's one-sentence ModelError when ``path`` is no such checkpoint."""
    klass = _checkpoint_class(path, *_stat_key(path))
    from varsec.recsys import RECOMMENDERS

    if klass.name is not None and RECOMMENDERS.get(klass.name) is klass:
        return klass.name
    _saved_classes[klass.__name__] = klass
    return klass.__name__


def _stat_key(path: str) -> tuple[int, int]:
    try:
        stat = Path(path).stat()
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _checkpoint_class(path: str, size: int, mtime_ns: int) -> Any:
    """The class of a recommender checkpoint (memoised by path, size and mtime: the schema
    reads each file once per change)."""
    from varsec.recsys import checkpoint_class

    return checkpoint_class(path)


def saved_model_class(path: str) -> Any:
    """The class of the recommender saved in ``path`` (read once per change of the file)."""
    return _checkpoint_class(path, *_stat_key(path))


class RecommenderSection(BuildableSection):
    """A recommender (DESIGN.md section 5)."""

    kind: Annotated[str, AfterValidator(_check_recommender_kind)] = Field(
        "bpr-mf", description="a registered recommender (varsec.recsys.known_recommenders(); "
        "built in: bpr-mf, vbpr, amr, dvbpr, alexrank, knn = visual item-kNN, http = a model "
        "behind an endpoint), two-stage (AIP: BPR candidates + a visual ranker) or external "
        "(built by factory)")
    extractor: str | None = Field(None, description="extractor whose features the model uses "
                                  "(feature-based models: vbpr, amr, alexrank, knn); 'catalog' = "
                                  "the catalog's own")
    params: dict[str, Any] = Field(default_factory=dict, description="hyperparameters of the "
                                   "model, e.g. factors, epochs, lr (seed and device come from "
                                   "the study)")
    first_stage: str | None = Field(None, description="two-stage: the recommender that picks "
                                    "the candidate set (a bpr-mf)")
    ranker: str | None = Field(None, description="two-stage: the visual recommender that ranks "
                               "the candidates")
    k: int = Field(100, ge=1, description="two-stage: candidate set size K (AIP uses 1000)")
    observed_users: float = Field(1.0, gt=0, le=1, description="a surrogate's view: the share "
                                  "of users (a seeded sample) whose train interactions the model "
                                  "is fitted on, as an attacker who observes only some accounts "
                                  "(1 = all); attack it and evaluate another with evaluate: for "
                                  "a transfer attack")
    factory: Factory = _factory_field("params (and seed, device when it takes them)")
    version: str | None = _version_field()
    checkpoint: str | None = Field(None, description="a saved varsec recommender file "
                                   "(Recommender.save) used as it is instead of fitting one: its "
                                   "kind comes from the file, its sha256 keys the stage; "
                                   "extractor names the study extractor attached as its image "
                                   "-> feature map")

    @model_validator(mode="before")
    @classmethod
    def _kind_from_checkpoint(cls, data: Any) -> Any:
        """A saved recommender's ``kind`` is the class its checkpoint holds (a ``kind`` given
        as well must name it); an unreadable checkpoint is reported at its own key."""
        if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), str):
            return data
        try:
            kind = checkpoint_kind(data["checkpoint"])
        except VarsecError:
            return data  # the checkpoint field's own check says what is wrong
        given = data.get("kind")
        if given is not None and given != kind and _kind_class(given) is not \
                _kind_class(kind):
            raise ValueError(f"kind {given!r} differs from the {kind} its checkpoint holds; "
                             "leave kind out")
        return {**data, "kind": kind}

    @field_validator("checkpoint")
    @classmethod
    def _readable_checkpoint(cls, value: str | None) -> str | None:
        return value if value is None else _registered(value, checkpoint_kind)


def _kind_class(kind: Any) -> Any:
    """The class a recommender kind (a registered name or alias, or a saved class name) is."""
    from varsec.recsys import RECOMMENDERS

    return RECOMMENDERS.get(kind) or _saved_classes.get(kind)


class PaperBudget(Section):
    """The budget the paper ran an attack with, shown beside the one used (nothing runs it)."""

    steps: int | None = Field(None, ge=1, description="the paper's iterations (INSA: epochs)")
    step_size: float | None = Field(None, gt=0, description="the paper's step size converted "
                                    "to 8-bit levels (a rate in [0, 1] units x 255)")
    users_per_step: int | None = Field(None, ge=1, description="INSA: the paper's users per "
                                       "minibatch")
    note: str = Field("", description="where the paper gives it, e.g. AIP sec 5.2.2")


class DiagnoseSection(Section):
    """A sweep the study runs to diagnose a claim that does not hold at the attack's own budget:
    the same attack (same targets, items and step rule) at more eps and, optionally, more
    steps. Its rows carry the attack label ``<attack>+diagnose``; no claim rests on them, and
    the report says, per claim not held, the smallest eps of the sweep at which it holds."""

    eps: EpsList = Field(default_factory=list, description="the eps of the sweep, 8-bit levels")
    steps: int | None = Field(None, ge=1, description="its iterations (default: the attack's)")
    targets: NameList = Field(default_factory=list, description="the attack's recommenders or "
                              "extractors it sweeps (default: every one)")


class AttackSection(Section):
    """An attack run at every eps of its list against every model it targets (section 7).

    Every step size is in 8-bit levels, like eps (``alpha``, ``params.lr`` of insa / expa /
    cw-linf); a paper's rate in [0, 1] pixel units is multiplied by 255. The exception is the
    ``params.lr`` of ``cw`` (C&W-L2), Adam's rate on the tanh-space variable, not a pixel step.
    """

    kind: Annotated[str, AfterValidator(_check_attack_kind)] = Field(
        "pgd", description="a registered attack: fgsm, pgd, pgd-l2, adam, cw (cw-l2), cw-linf "
        "(engines), insa, expa, csema (AIP), bpr-untargeted (Yin), ... (the list of attacks "
        "below gives each one's params)")
    objective: Annotated[str, AfterValidator(_check_objective)] = Field(
        "auto", description="what the engine maximises: classifier-targeted, "
        "classifier-untargeted, feature-l2, feature-cosine, insa, bpr (every item image "
        "once, over the training triplets), bpr-per-user (each user's sampled list attacked "
        "for that user, 002's evaluation-time reading); auto picks the attack's own "
        "objective, or the paper's for its target")
    eps: EpsList = Field(default_factory=lambda: [8.0], description="L-inf budgets in 8-bit "
                         "levels, one run each (csema ignores it)")
    steps: int | None = Field(None, ge=0, description="iterations: PGD-k, Adam steps (expa), "
                              "C&W iterations per binary-search round; insa: epochs over the "
                              "users, each epoch one Adam step per minibatch of "
                              "params.users_per_step users (default: the attack's own, listed "
                              "at the end)")
    alpha: AlphaSize | None = Field(None, description="fgsm / pgd step size in 8-bit levels, "
                                    "or eps/<n> (TAaMR: eps/6) or eps/steps (the thesis' PGD-k) "
                                    "(default: the attack's own rule, Madry's for pgd)")
    recommender: NameList = Field(default_factory=list, description="recommender(s) attacked "
                                  "through (insa, expa, csema, bpr-untargeted, objective bpr)")
    extractor: NameList = Field(default_factory=list, description="extractor(s) attacked "
                                "(classifier and feature objectives)")
    items: Literal["auto", "cold", "category", "pairs", "all"] = Field(
        "auto", description="what is attacked: cold items (AIP), a source category (TAaMR), "
        "random (attack, target) pairs (thesis) or all items (Yin)")
    n_items: int | None = Field(None, ge=1, description="how many items / pairs are attacked "
                                "(default: evaluation.cold_items, the category, or all)")
    source_category: str | None = Field(None, description="the category the attacker pushes, "
                                        "e.g. Sandal; auto = the least popular category by "
                                        "training interactions (001)")
    target_category: str | None = Field(None, description="the (popular) category it is "
                                        "disguised as, e.g. Sneaker; auto = the most popular "
                                        "category by training interactions (001)")
    threat: Literal["poisoning", "evasion"] | None = Field(
        None, description="category attacks: poisoning (001: VBPR / AMR are trained on the "
        "attacked catalog's features, CHR@K of that model vs the clean-trained one) or evasion "
        "(the attacked features swapped into the clean-trained model); null = poisoning for "
        "category attacks")
    hook_item: str = Field("most-popular", description="expa / csema: the hook item's id, or "
                           "most-popular")
    evaluate: NameList = Field(default_factory=list, description="models the attacked images "
                               "are measured on: recommenders, and for category or item-to-item "
                               "attacks extractors too (the extractor's classifier judges a "
                               "category attack's success, its visual kNN an item-to-item "
                               "one); default: every recommender built on the target. A model "
                               "the attack was not crafted on measures a transfer attack (rows "
                               "keep crafted_on). An attack on several extractors evaluates, per "
                               "extractor, the listed models built on it and every listed one "
                               "built on none of them")
    params: dict[str, Any] = Field(default_factory=dict, description="engine settings: lr "
                                   "(insa / expa / cw-linf: Adam's step in 8-bit levels; cw: "
                                   "Adam's rate in tanh space), users_per_step (insa), c, "
                                   "binary_steps, random_start, ... (each attack's, with its "
                                   "default, listed at the end)")
    paper_budget: PaperBudget | None = Field(None, description="the paper's budget (steps, "
                                             "step_size in 8-bit levels, note), reported "
                                             "beside the one used")
    save_images: int = Field(8, ge=0, description="adversarial PNGs kept per run for the report")
    diagnose: DiagnoseSection | None = Field(None, description="a sweep over larger eps (and "
                                             "steps) that says what a claim not held here would "
                                             "take: rows labelled <attack>+diagnose, the "
                                             "report's Diagnosis table; null = none")
    item_ids: ItemIds | None = Field(None, description="attack exactly these catalog item ids, "
                                     "in this order, instead of the family's own choice: the "
                                     "cold items a promotion attack pushes, the items of a "
                                     "category attack, the attack items of item-to-item pairs "
                                     "(each pulled towards hook_item) or the items a ranking "
                                     "attack poisons; null = the family's choice")
    chunk: int | None = Field(None, ge=1, description="with item_ids and evaluation: false: "
                              "attack them in stages of this many items, each cached on its "
                              "own (a killed run loses at most one chunk); null = one stage")
    evaluation: bool = Field(True, description="evaluate recommenders on the attacked images; "
                             "false: only the attack stage runs (its success and image "
                             "measures, and its per-item table), as varsec attack runs it, and "
                             "what only an evaluation needs is not asked for (a two-stage "
                             "recommender for promotion, a source category, a model at all for "
                             "c-SEMA)")

    @model_validator(mode="after")
    def _default_steps(self) -> AttackSection:
        """``steps`` not given: the registered attack's default."""
        if self.steps is None:
            from varsec.attacks.registry import attack_method

            self.steps = attack_method(self.kind).steps
        return self


def diagnosis_attack(attack: AttackSection) -> AttackSection | None:
    """The attack as its ``diagnose`` sweep runs it (None when it has none)."""
    sweep = attack.diagnose
    if sweep is None:
        return None
    return attack.model_copy(update={"eps": list(sweep.eps), "diagnose": None,
                                     "steps": sweep.steps or attack.steps})


class DefenseSection(BuildableSection):
    """A defense swept over its strengths (DESIGN.md section 8)."""

    kind: Annotated[str, AfterValidator(_check_defense_kind)] = Field(
        "jpeg", description="a registered defense: jpeg, bit-depth, median, resize-pad (input "
        "transforms), adversarial-training (robust extractors), reconstruction (Yin), external "
        "(an input transform built by factory), ... (the list of defenses below gives each "
        "one's strength and default sweep)")
    strengths: list[float] = Field(default_factory=list, description="levels swept: JPEG "
                                   "qualities, bits, median windows, resize ratios; [] = the "
                                   "kind's default sweep")
    attacks: NameList = Field(default_factory=list, description="attacks it is applied to "
                              "(default: every pixel attack of the study)")
    adaptive: bool | list[str] = Field(False, description="also run those attacks (true) or the "
                                       "listed ones through the defense: BPDA (jpeg, bit-depth, "
                                       "median), EOT (resize-pad), detector-aware "
                                       "(reconstruction); robust means robust to that attacker")
    extractor: NameList = Field(default_factory=list, description="adversarial-training: the "
                                "robust extractors this entry stands for")
    clean: bool = Field(True, description="also apply it to clean images (what the defense "
                        "costs clean recommendation quality)")
    params: dict[str, Any] = Field(default_factory=dict, description="reconstruction: fields "
                                   "of varsec.defenses.DefenseConfig (width, blocks, "
                                   "recon_epochs, ...) and detection_eps, random_resize_pad, "
                                   "adaptive_penalty, adaptive_margin, eot_samples; resize-pad: "
                                   "eot_samples; external: the factory's keyword arguments")
    factory: Factory = _factory_field("params")
    version: str | None = _version_field()

    def adapts(self, attack: str) -> bool:
        """True when ``attack`` is also run adaptively through this defense."""
        return self.adaptive is True or (isinstance(self.adaptive, list) and
                                         attack in self.adaptive)

    def sweep(self) -> list[float | None]:
        """The strengths this defense runs at (one None run for kinds without a sweep)."""
        if self.strengths:
            return list(self.strengths)
        from varsec.defenses.registry import defense_class

        return list(defense_class(self.kind).default_sweep) or [None]


class ProtocolSection(Section):
    """One ranking protocol."""

    kind: Literal["full", "sampled"] = Field("full", description="full: rank among all items; "
                                             "sampled: among n random negatives")
    negatives: int = Field(100, ge=1, description="sampled: negatives per user "
                           "(Yin uses 20, NCF 100)")

    @property
    def name(self) -> str:
        """``full`` or ``sampled-<n>`` (the protocol column of the results table)."""
        return "full" if self.kind == "full" else f"sampled-{self.negatives}"


class EvaluationSection(Section):
    """Metrics, cut-offs, protocols and statistics (DESIGN.md section 6)."""

    metrics: list[Literal["HR", "NDCG", "Recall", "MRR", "AUC"]] = Field(
        default_factory=lambda: list(METRICS), description="ranking metrics reported")
    ks: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20],
                                  description="cut-offs N of HR@N, NDCG@N, Recall@N")
    protocols: list[ProtocolSection] = Field(
        default_factory=lambda: [ProtocolSection(kind="full"),
                                 ProtocolSection(kind="sampled", negatives=100)],
        description="ranking protocols, reported side by side")
    cold_items: int = Field(100, ge=1, description="cold items injected per two-stage "
                            "evaluation (AIP: 1000)")
    chr_k: int = Field(20, ge=1, description="K of the category hit ratio CHR@K (TAaMR: 20)")
    rank_min: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 10, 100],
                                        description="item-to-item success: the attack item "
                                        "ranks within rank_min of the target's neighbours")
    max_users: int | None = Field(None, ge=1, description="evaluate a seeded sample of at most "
                                  "this many users")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples per confidence interval "
                           "(0 = no intervals)")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    test: Literal["wilcoxon", "ttest"] = Field("wilcoxon", description="paired significance "
                                               "test behind the claims")
    significance: float = Field(0.05, gt=0, lt=1, description="p-value below which a paired "
                                "difference counts as real")


class StageResources(Section):
    """What one stage asks of a Ray cluster."""

    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per stage")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per stage")


class ExecutorSection(Section):
    """Where stages run."""

    kind: Literal["local", "ray"] = Field("local", description="local (one process, in order) "
                                          "or ray (stages as Ray tasks, in parallel)")
    address: str | None = Field(None, description="ray: a cluster address (auto, ray://host:port)"
                                "; none starts a local instance")
    num_cpus: int | None = Field(None, ge=1, description="ray: CPUs of the local instance "
                                 "(default: all)")
    resources: dict[Literal["data", "extractor", "recommender", "attack", "defense",
                            "evaluation"], StageResources] = Field(
        default_factory=dict, description="ray: CPUs / GPUs per stage kind (a kind not "
        "listed reserves the study's threads CPUs, at most the cluster's)")


class ReportSection(Section):
    """What the report contains."""

    enabled: bool = Field(True, description="write report.md, report.html, tables/ and figures/")
    figures: bool = Field(True, description="draw figures (matplotlib)")
    images_per_attack: int = Field(4, ge=0, description="adversarial examples shown per attack "
                                   "and eps")
    paper_reference: bool = Field(True, description="print each paper's own numbers beside ours "
                                  "(measured on other data sets)")


class StudyConfig(Section):
    """A whole study: data, models, attacks, defenses, evaluation and where it runs."""

    study: str = Field("study", description="name of the study (letters, digits, - and _)")
    description: str = Field("", description="one paragraph shown at the top of the report")
    dataset: DatasetSection = Field(default_factory=DatasetSection,
                                    description="items, interactions and split")
    extractors: dict[str, ExtractorSection] = Field(
        default_factory=dict, description="feature extractors, keyed by a name you choose")
    recommenders: dict[str, RecommenderSection] = Field(
        default_factory=dict, description="recommenders, keyed by a name you choose")
    attacks: dict[str, AttackSection] = Field(
        default_factory=dict, description="attacks, keyed by a name you choose")
    defenses: dict[str, DefenseSection] = Field(
        default_factory=dict, description="defenses, keyed by a name you choose")
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection,
                                          description="metrics, protocols and statistics")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0], description="every model and attack is run once per seed")
    device: str = Field("cpu", description="torch device: cpu, cuda or cuda:N where the "
                        "machine has CUDA (no stage requires a GPU)")
    threads: int = Field(2, ge=1, strict=True, description="CPU threads of torch and BLAS in "
                         "every stage, on either executor; it keys the cache, since sums in "
                         "another order give other numbers (same study, seed and threads -> "
                         "the same numbers on any core count)")
    executor: ExecutorSection = Field(default_factory=ExecutorSection,
                                      description="local or Ray execution")
    report: ReportSection = Field(default_factory=ReportSection, description="report contents")
    overrides: dict[Literal["quick", "default", "paper"], dict[str, Any]] = Field(
        default_factory=dict, description="partial configs merged in when the dataset profile "
        "is quick, default or paper")


# -- loading --------------------------------------------------------------------------------------
class LoadedStudy(typing.NamedTuple):
    """A validated study and where it came from."""

    config: StudyConfig
    source: str
    lines: Lines


def load_study(
    path: str | Path, *, profile: str | None = None, overrides: dict[str, Any] | None = None
) -> StudyConfig:
    """Read, merge (profile overrides, then ``overrides``) and validate a study YAML file."""
    data, lines = load_yaml(path)
    return study_from_data(data, source=str(path), lines=lines, profile=profile,
                           overrides=overrides)


def load_study_text(text: str, *, profile: str | None = None,
                    source: str = "<string>") -> StudyConfig:
    """:func:`load_study` for YAML given as a string."""
    data, lines = load_yaml_text(text, source)
    return study_from_data(data, source=source, lines=lines, profile=profile)


def study_from_data(
    data: Any,
    *,
    source: str = "<dict>",
    lines: Lines | None = None,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> StudyConfig:
    """Validate plain data (a YAML mapping) into a :class:`StudyConfig`; see the module doc."""
    lines = {} if lines is None else lines
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a study must be a YAML mapping, got {type(data).__name__}.")
    data = copy.deepcopy(data)
    if profile is not None:
        if profile not in PROFILES:
            raise ConfigError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}.")
        data.setdefault("dataset", {})
        if isinstance(data["dataset"], dict):
            data["dataset"]["profile"] = profile
    _check_override_names(data, lines, source)
    data, lines = _apply_profile_overrides(data, lines, source)
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source, lines) from None
    problems = check_references(config)
    if problems:
        where, message = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConfigError(f"{_locate(source, lines, where)}{format_path(where)}: {message}{more}")
    for where, message in budget_warnings(config):
        warnings.warn(f"{_locate(source, lines, where)}{format_path(where)}: {message}",
                      VarsecWarning, stacklevel=2)
    return config


class _OverriddenLines:
    """Lines of the merged config: a key that ``overrides.<profile>`` sets points at the
    override, every other key at the base config."""

    def __init__(self, lines: Lines, profile: str) -> None:
        self.lines, self.prefix = lines, ("overrides", profile)

    def get(self, path: PathKey, default: Any = None) -> Any:
        """The line of ``path`` in the merged config."""
        line = self.lines.get((*self.prefix, *path)) if path else None
        return line if line is not None else self.lines.get(path, default)


def _check_override_names(data: dict, lines: Lines, source: str) -> None:
    """An override may only change a model the base config defines: a new name under a named
    section (usually a typo) would silently add a model."""
    section = data.get("overrides")
    if not isinstance(section, dict):
        return
    for profile, patch in section.items():
        if not isinstance(patch, dict):
            continue
        for name in NAMED_SECTIONS:
            if not isinstance(patch.get(name), dict):
                continue
            base = data.get(name) if isinstance(data.get(name), dict) else {}
            for entry in patch[name]:
                if entry not in base:
                    where = ("overrides", profile, name, entry)
                    raise ConfigError(
                        f"{_locate(source, lines, where)}{format_path(where)}: an override can "
                        f"only change one of the study's {name} (known: {_known(map(str, base))}); "
                        f"define {entry!r} under {name} first.")


def _apply_profile_overrides(data: dict, lines: Lines, source: str) -> tuple[dict, Lines]:
    """Merge ``overrides[<profile>]`` into the config (line numbers follow the merged keys)."""
    section = data.get("overrides") or {}
    dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
    profile = dataset.get("profile", DatasetSection.model_fields["profile"].default)
    if not isinstance(section, dict) or not isinstance(profile, str) or profile not in section:
        return data, lines
    patch = section[profile]
    if not isinstance(patch, dict):
        where = ("overrides", profile)
        raise ConfigError(f"{_locate(source, lines, where)}{format_path(where)}: expected a "
                          "mapping of keys to override.")
    if "overrides" in patch:
        raise ConfigError(f"{source}: overrides.{profile} cannot itself hold overrides.")
    return _deep_merge(data, patch), _OverriddenLines(lines, profile)


def _deep_merge(base: dict, patch: dict) -> dict:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _locate(source: str, lines: Lines, path: PathKey) -> str:
    """``file:line: `` of the deepest known ancestor of ``path``."""
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return f"{source}:{line}: "
    return f"{source}: "


# -- pydantic errors -> one ConfigError -----------------------------------------------------------
def _config_error(exc: ValidationError, source: str, lines: Lines) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    message = _describe(first, loc)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ConfigError(f"{_locate(source, lines, loc)}{format_path(loc)}: {message}{more}")


def _describe(error: dict[str, Any], loc: PathKey) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = f" (known: {', '.join(known)})" if known else ""
        return f"unknown key {loc[-1]!r}{hint}."
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind in ("missing",):
        return "this key is required."
    if kind == "value_error":
        return message[0].lower() + message[1:] + "."
    shown = value if not isinstance(value, dict | list) else type(value).__name__
    return f"{message[0].lower() + message[1:]} (got {shown!r})."


def _known_keys(loc: PathKey) -> list[str]:
    model: Any = StudyConfig
    for part in loc:
        model = _step(model, part)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one level below ``annotation`` along a pydantic error location."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else _strip(field.annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return _strip(args[1])
    if origin is list and args:
        return _strip(args[0])
    return None


def _strip(annotation: Any) -> Any:
    """Remove Annotated / Optional wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(
            args
        ) == 1:
            annotation = args[0]
            continue
        return annotation


# -- cross references -----------------------------------------------------------------------------
Problem = tuple[PathKey, str]


def _known(names: typing.Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names) if names else "none defined"


def check_references(config: StudyConfig) -> list[Problem]:
    """Every reference between sections and every kind-specific requirement, as problems
    (the external factories first: a method that cannot be built has no facts to check)."""
    problems: list[Problem] = check_external(config)
    if problems:
        return problems
    if not NAME_RE.match(config.study):
        problems.append((("study",), f"the study name {config.study!r} names its output "
                         f"directory (runs/<study>): it must {NAME_RULE}."))
    for section in NAMED_SECTIONS:
        for name in getattr(config, section):
            if not NAME_RE.match(str(name)):
                problems.append(((section, name), f"name {name!r} must {NAME_RULE}."))
    if len(set(config.seeds)) != len(config.seeds) or not config.seeds:
        problems.append((("seeds",), "seeds must be a non-empty list of distinct integers."))
    from varsec.devices import device_problem  # torch: only once a study is checked

    device = device_problem(config.device)
    if device is not None:
        problems.append((("device",), device))
    problems += _check_dataset(config) + _check_extractors(config)
    for name, rec in config.recommenders.items():
        problems += _check_recommender(config, name, rec)
    for name, attack in config.attacks.items():
        problems += _check_attack(config, name, attack)
    for name, defense in config.defenses.items():
        problems += _check_defense(config, name, defense)
    if len(set(config.evaluation.ks)) != len(config.evaluation.ks):
        problems.append((("evaluation", "ks"), "cut-offs must be distinct."))
    names = [p.name for p in config.evaluation.protocols]
    if len(set(names)) != len(names):
        problems.append((("evaluation", "protocols"), "protocols must be distinct."))
    return problems + _check_evaluation_lists(config) + _check_profile_sizes(config)


def _check_dataset(config: StudyConfig) -> list[Problem]:
    """A source used as it is is not simulated: the simulation settings do not apply."""
    if not config.dataset.as_is:
        return []
    return [(("dataset", key), f"a source used as it is (as_is: true) is not simulated; remove "
             f"{key}.") for key in ("n_users", "n_warm_items", "n_cold_items",
                                    "popularity_look_correlation")
            if getattr(config.dataset, key) is not None]


def _check_extractors(config: StudyConfig) -> list[Problem]:
    """An extractor's checkpoint is a file (its sha256 keys the extractor stage)."""
    from varsec.io import describe_non_regular

    problems: list[Problem] = []
    for name, section in config.extractors.items():
        path = section.checkpoint
        if path is not None and not Path(path).is_file():
            what = describe_non_regular(Path(path)) or "does not exist"
            problems.append((("extractors", name, "checkpoint"), f"checkpoint {path!r} {what}; "
                             "give a backbone checkpoint file."))
    return problems


_EVALUATION_LISTS = {"metrics": f"metric ({', '.join(METRICS)})", "ks": "cut-off N",
                     "protocols": "protocol (full or sampled)", "rank_min": "rank_min"}


def _check_evaluation_lists(config: StudyConfig) -> list[Problem]:
    """An empty list would evaluate nothing: a run of 0 result rows that looks like success."""
    return [(("evaluation", key), f"give at least one {what}; an empty list evaluates nothing.")
            for key, what in _EVALUATION_LISTS.items() if not getattr(config.evaluation, key)]


def _simulation_profile(config: StudyConfig) -> Any:
    """The simulation profile the data stage will use when the source is a named catalog (its
    warm-item count is then known before any data is loaded), else None."""
    if config.dataset.source != "fashion-mnist" or config.dataset.as_is:
        return None
    try:
        from varsec.data.simulate import PROFILES as SIMULATION_PROFILES
    except ImportError:  # the data layer is not installed
        return None
    profile = SIMULATION_PROFILES.get(config.dataset.profile)
    sizes = simulation_sizes(config.dataset)
    return dataclasses.replace(profile, **sizes) if profile is not None and sizes else profile


def _check_profile_sizes(config: StudyConfig) -> list[Problem]:
    """Sampled negatives and two-stage candidates are unseen warm items of each user; every
    simulated user has seen at least ``min_interactions`` of the profile's warm items, so more
    than ``n_warm_items - min_interactions`` of them can never be drawn. (Sources with their own
    interactions are checked when their data is loaded.)"""
    sim = _simulation_profile(config)
    if sim is None:
        return []
    limit = sim.n_warm_items - sim.min_interactions
    facts = (f"the {sim.name} profile simulates {sim.n_warm_items:,} warm items and every user "
             f"has seen at least {sim.min_interactions} of them, so at most {limit:,} are unseen")
    problems: list[Problem] = []
    for i, protocol in enumerate(config.evaluation.protocols):
        if protocol.kind == "sampled" and protocol.negatives > limit:
            problems.append((("evaluation", "protocols", i, "negatives"),
                             f"{protocol.negatives:,} sampled negatives per user cannot be "
                             f"drawn: {facts}."))
    for name, rec in config.recommenders.items():
        if rec.kind == "two-stage" and rec.k > limit:
            problems.append((("recommenders", name, "k"), f"a two-stage candidate set of "
                             f"k={rec.k:,} unseen warm items per user cannot be filled: "
                             f"{facts}."))
    for name, attack in config.attacks.items():
        probes = attack.params.get("probes")
        if isinstance(probes, int) and probes >= sim.n_users:
            problems.append((("attacks", name, "params", "probes"), f"{probes:,} probe "
                             f"accounts leave no other user to evaluate on: the {sim.name} "
                             f"profile simulates {sim.n_users:,} users."))
    return problems


def _check_recommender(config: StudyConfig, name: str, rec: RecommenderSection) -> list[Problem]:
    here: PathKey = ("recommenders", name)
    if rec.checkpoint is not None:
        return _check_saved_recommender(config, here, rec)
    problems: list[Problem] = []
    extractors = config.extractors
    if rec.kind not in RECOMMENDER_KINDS:  # a saved class's name, without its checkpoint
        return [((*here, "kind"), f"unknown recommender kind {rec.kind!r} (known: "
                 f"{', '.join(RECOMMENDER_KINDS)}).")]
    if rec.extractor in extractors and not extractors[rec.extractor].features:
        problems.append(((*here, "extractor"), f"a {kind_text(rec)} recommender is fitted on the "
                         f"features of extractor {rec.extractor!r}, which keeps none (features: "
                         "false)."))
    if has_facts(rec, "needs_features"):
        if rec.extractor is None:
            problems.append(((*here, "extractor"), f"a {kind_text(rec)} recommender needs an "
                             f"extractor (known: {_known([*extractors, CATALOG_FEATURES])})."))
        elif rec.extractor != CATALOG_FEATURES and rec.extractor not in extractors:
            problems.append(((*here, "extractor"), f"{rec.extractor!r} is not an extractor of "
                             f"this study (known: {_known([*extractors, CATALOG_FEATURES])})."))
    elif rec.extractor is not None:
        # A visual model that takes no features learns from pixels with its own CNN (DVBPR).
        why = "uses no image features"
        if has_facts(rec, "visual"):
            why = "learns its own CNN (set params.backbone)" if not is_external(rec) else \
                "takes no features from an extractor (its class's needs_features is false)"
        problems.append(((*here, "extractor"), f"a {kind_text(rec)} recommender {why}; remove "
                         "the extractor."))
    if rec.kind == TWO_STAGE:
        problems += _check_two_stage(config, name, rec)
    else:
        for key in ("first_stage", "ranker"):
            if getattr(rec, key) is not None:
                problems.append(((*here, key), f"only a two-stage recommender has a {key}."))
        problems += _check_recommender_params(here, rec)
    return problems


def recommender_has(config: StudyConfig, name: str, *facts: str) -> bool:
    """Whether the study's recommender ``name`` has every fact (class attributes of its model,
    :func:`varsec.study.external.has_facts`)."""
    rec = config.recommenders.get(name)
    return rec is not None and has_facts(rec, *facts)


def _check_saved_recommender(config: StudyConfig, here: PathKey,
                             rec: RecommenderSection) -> list[Problem]:
    """A recommender from a checkpoint is used as it is: nothing to fit, and its extractor (a
    study extractor) is the image -> feature map attached to it."""
    problems: list[Problem] = [((*here, key), f"a recommender from a checkpoint is not fitted; "
                                f"remove {key}.")
                               for key in ("params", "first_stage", "ranker", "observed_users",
                                           "k") if key in rec.model_fields_set]
    known = _known(config.extractors)
    if rec.extractor is not None and rec.extractor not in config.extractors:
        problems.append(((*here, "extractor"), f"{rec.extractor!r} is not an extractor of this "
                         f"study (known: {known}); a saved model sees images through one."))
    elif rec.extractor is None and has_facts(rec, "needs_features"):
        problems.append(((*here, "extractor"), f"a saved {rec.kind} scores images through an "
                         f"extractor; name the one it was trained on (known: {known})."))
    return problems


def _check_two_stage(config: StudyConfig, name: str, rec: RecommenderSection) -> list[Problem]:
    here: PathKey = ("recommenders", name)
    problems: list[Problem] = []
    if rec.observed_users < 1:
        problems.append(((*here, "observed_users"), "a two-stage pipeline is fitted through its "
                         "parts: set observed_users on its first_stage and ranker."))
    others = [n for n, r in config.recommenders.items() if r.kind != TWO_STAGE]
    for key in ("first_stage", "ranker"):
        ref = getattr(rec, key)
        if ref is None:
            problems.append(((*here, key), f"a two-stage recommender needs a {key} "
                             f"(known: {_known(others)})."))
        elif ref not in config.recommenders or config.recommenders[ref].kind == TWO_STAGE:
            problems.append(((*here, key), f"{ref!r} is not a (single-stage) recommender of this "
                             f"study (known: {_known(others)})."))
        elif key == "ranker" and not recommender_has(config, ref, "visual"):
            problems.append(((*here, key), f"the ranker must be a visual recommender "
                             f"({', '.join(VISUAL_KINDS)}); {ref!r} is a "
                             f"{kind_text(config.recommenders[ref])}."))
    if rec.params:
        problems.append(((*here, "params"), "a two-stage recommender has no params; set them on "
                         "its first_stage and ranker."))
    return problems


# Parameters the study sets on every model (from ``seeds`` and ``device``), never per model.
STUDY_SET_PARAMS = ("seed", "device")
_PARAM_NAMED = re.compile(r"\bparameter (\w+)")


def _check_recommender_params(here: PathKey, rec: RecommenderSection) -> list[Problem]:
    """``params`` against the class's declared parameters: one problem per unknown name or bad
    value at ``recommenders.NAME.params.KEY``; when every value is good, the class's own
    cross-parameter checks (its ``_check_params``, run by building the untrained model, which
    allocates no weights)."""
    from varsec.recsys import recommender_class

    klass = None if is_external(rec) else recommender_class(rec.kind)
    problems: list[Problem] = []
    for key, value in rec.params.items():
        where = (*here, "params", key)
        if key in STUDY_SET_PARAMS:
            problems.append((where, f"{key} is set by the study ({key}s / device), not per model."))
        elif klass is None:
            continue  # an external factory's arguments: checked by building it
        elif key not in klass.params:
            known = _known(k for k in klass.params if k not in STUDY_SET_PARAMS)
            problems.append((where, f"unknown {rec.kind} parameter {key!r} (known: {known})."))
        elif not klass.params[key].accepts(value):
            problems.append((where, f"must be {klass.params[key].expectation()}, got {value!r}."))
    if problems or klass is None:
        return problems
    try:
        klass(**rec.params)
    except ConfigError as exc:
        named = _PARAM_NAMED.search(str(exc))
        key = named.group(1) if named and named.group(1) in rec.params else None
        return [((*here, "params", key) if key else (*here, "params"), str(exc))]
    return []


def attack_objective(attack: AttackSection) -> str:
    """The objective an attack maximises (``auto`` resolved by kind and target)."""
    from varsec.attacks.registry import attack_method

    if attack.objective != "auto":
        return attack.objective
    own = attack_method(attack.kind).objective
    if own is not None:
        return own
    if attack.recommender:
        return "bpr"
    if attack.items == "pairs":
        return "feature-cosine"
    return "classifier-targeted" if attack.target_category else "classifier-untargeted"


def attack_items(attack: AttackSection) -> str:
    """Which items an attack perturbs (``auto`` resolved by kind and objective)."""
    if attack.items != "auto":
        return attack.items
    objective = attack_objective(attack)
    if promotes(attack):
        return "cold"
    if _ranks(objective):
        return "all"
    if objective in ("feature-cosine", "feature-l2", "none"):
        return "pairs"  # c-SEMA off a recommender: each attack item gets its target as inset
    return "category"


def _ranks(objective: str) -> bool:
    """Whether ``objective`` is a BPR objective through a pairwise visual recommender (002)."""
    from varsec.attacks.registry import objective_family

    return objective_family(objective) == "ranking"


def per_user(attack: AttackSection) -> bool:
    """Whether ``attack`` attacks each user's evaluation list with images of its own (its
    objective's ``per_user``, 002 read per test triplet): measured by the sampled protocol."""
    from varsec.attacks.registry import objective_fact

    return bool(objective_fact(attack_objective(attack), "per_user", False))


def per_user_lists(config: StudyConfig) -> dict[str, Any] | None:
    """The evaluation lists a per-user attack attacks: the negatives of the study's sampled
    protocol (the one with the fewest, as the report's) and its user sample; None without a
    sampled protocol."""
    sampled = sorted(p.negatives for p in config.evaluation.protocols if p.kind == "sampled")
    if not sampled:
        return None
    return {"negatives": sampled[0], "max_users": config.evaluation.max_users}


def attack_family(attack: AttackSection) -> str:
    """How an attack is evaluated: promotion (000), category (001), ranking (002), item2item
    (004)."""
    items = attack_items(attack)
    if promotes(attack) or items == "cold":
        return "promotion"
    if items == "pairs":
        return "item2item"
    if items == "all":
        return "ranking"
    return "category"


AUTO_CATEGORY = "auto"  # source_category / target_category chosen by training popularity
POISONING, EVASION = "poisoning", "evasion"
# Retrained on the attacked catalog's features: the feature-based models.
POISON_KINDS = RegisteredKinds("needs_features")


def attack_threat(attack: AttackSection) -> str | None:
    """The threat model of a category attack (poisoning unless the study says evasion); None
    for the other families, which have one threat model each."""
    if attack_family(attack) != "category":
        return None
    return attack.threat or POISONING


# -- defense params -------------------------------------------------------------------------------
YIN_RATIO = 212 / 224  # 002's random resize range: 212-224 of 224 (varsec.defenses.YIN_RATIO)
EOT_SAMPLES = 10  # default EOT draws of an adaptive attack over a random layer
# What the reconstruction defense is trained against: pixels in through a study extractor,
# BPR-trained (VBPR, AMR).
RECONSTRUCTION_MODELS = RegisteredKinds("visual", "needs_features", "pairwise")
# Keys of a reconstruction defense's params that are not DefenseConfig fields.
RECONSTRUCTION_OPTIONS = {
    "detection_eps": "FGSM budgets of the detection test (002 Table 3); default: the eps of "
                     "the attacks the defense covers",
    "random_resize_pad": "true (002's 212/224) or a resize ratio: the random layer after T at "
                         "inference, the (rand) rows",
    "adaptive_penalty": "adaptive attack: weight of the detector term (default 10)",
    "adaptive_margin": "adaptive attack: keep the detector score this far under the threshold",
    "eot_samples": f"adaptive attack: EOT draws over a random layer (default {EOT_SAMPLES})",
}
APPLY_OPTIONS = ("random_resize_pad",)
ADAPTIVE_OPTIONS = ("random_resize_pad", "adaptive_penalty", "adaptive_margin", "eot_samples")


class DefenseParams(typing.NamedTuple):
    """A defense's ``params`` split by the stage that uses them."""

    train: dict[str, Any]  # the fit stage: fields of varsec.defenses.DefenseConfig
    apply: dict[str, Any]  # the apply stages
    adaptive: dict[str, Any]  # the adaptive attack through the defense
    detection_eps: list[float] | None  # the fit stage's detection test (None: from the attacks)


def resize_ratio(value: Any) -> float | None:
    """``random_resize_pad`` as a resize ratio (true: 002's 212/224; false / none: None)."""
    if value is None or value is False:
        return None
    return YIN_RATIO if value is True else float(value)


def defense_params(defense: DefenseSection) -> DefenseParams:
    """Split ``defense.params`` (validated) into what each stage needs (an external defense:
    its factory, arguments and version, for the apply stages and the adaptive attack)."""
    params = dict(defense.params)
    if is_external(defense):
        built = {**external_fields(defense), "params": params}
        return DefenseParams({}, built, built, None)
    if not defense_fact(defense.kind, "trained"):
        eot = params.get("eot_samples", EOT_SAMPLES)
        return DefenseParams({}, {}, {"eot_samples": eot}
                             if defense_fact(defense.kind, "adaptive") == "eot" else {},
                             None)
    train = {k: v for k, v in params.items() if k not in RECONSTRUCTION_OPTIONS}
    ratio = resize_ratio(params.get("random_resize_pad"))
    adaptive = {"random_resize_pad": ratio,
                "adaptive_penalty": params.get("adaptive_penalty", 10.0),
                "adaptive_margin": params.get("adaptive_margin", 0.0),
                "eot_samples": params.get("eot_samples", EOT_SAMPLES if ratio else 1)}
    detection = params.get("detection_eps")
    return DefenseParams(train, {"random_resize_pad": ratio}, adaptive,
                         None if detection is None else [float(e) for e in _as_list(detection)])


def ranking_model(config: StudyConfig, recommender: str) -> str:
    """The single-stage model a recommender ranks with (a two-stage recommender's ranker)."""
    rec = config.recommenders[recommender]
    return rec.ranker if rec.kind == "two-stage" and rec.ranker else recommender


def reconstructable(config: StudyConfig, recommender: str) -> bool:
    """True when a reconstruction defense can be trained against ``recommender``'s ranker: a
    vbpr or amr on one of the study's extractors (pixels in, BPR-trained)."""
    rec = config.recommenders.get(ranking_model(config, recommender))
    return rec is not None and has_facts(rec, "visual", "needs_features", "pairwise") and \
        rec.extractor not in (None, CATALOG_FEATURES)


def _check_attack(config: StudyConfig, name: str, attack: AttackSection) -> list[Problem]:
    from varsec.attacks.registry import attack_method

    here: PathKey = ("attacks", name)
    problems: list[Problem] = []
    recs, exts = config.recommenders, config.extractors
    for i, ref in enumerate(attack.recommender):
        if ref not in recs:
            problems.append(((*here, "recommender", i) if len(attack.recommender) > 1 else
                             (*here, "recommender"), f"{ref!r} is not a recommender of this study "
                             f"(known: {_known(recs)})."))
    for i, ref in enumerate(attack.extractor):
        if ref not in exts:
            problems.append(((*here, "extractor", i) if len(attack.extractor) > 1 else
                             (*here, "extractor"), f"{ref!r} is not an extractor of this study "
                             f"(known: {_known(exts)})."))
    for i, ref in enumerate(attack.evaluate):
        if ref in recs and ref in exts:
            problems.append(((*here, "evaluate", i), f"{ref!r} names both a recommender and an "
                             "extractor of this study; rename one of them."))
        elif ref not in recs and ref not in exts:
            problems.append(((*here, "evaluate", i), f"{ref!r} is not a recommender or an "
                             f"extractor of this study (known: {_known([*recs, *exts])})."))
    if problems:
        return problems
    problems += _check_surrogates(config, here, attack)
    objective = attack_objective(attack)
    problems += _check_targets(config, here, attack, objective)
    problems += _check_per_user(config, here, attack)
    if attack.evaluation:
        problems += _check_threat(config, here, attack)
    if objective == "classifier-targeted":
        # explicit items need no source category, unless its CHR@K is evaluated
        keys = ("target_category",) if attack.item_ids is not None and not attack.evaluation \
            else ("source_category", "target_category")
        for key in keys:
            if getattr(attack, key) is None:
                problems.append(((*here, key), "a targeted classifier attack needs a "
                                 f"{' and a '.join(keys)}."))
    method = attack_method(attack.kind)
    if method.uses_eps and not attack.eps:
        problems.append(((*here, "eps"), "give at least one eps (8-bit levels)."))
    if attack.diagnose is not None and not method.uses_eps:
        problems.append(((*here, "diagnose"), f"{method.title} has no eps to sweep; remove "
                         "diagnose."))
    elif attack.diagnose is not None and not attack.diagnose.eps:
        problems.append(((*here, "diagnose", "eps"), "give at least one eps to sweep (8-bit "
                         "levels)."))
    for i, ref in enumerate(attack.diagnose.targets if attack.diagnose else []):
        if ref not in [*attack.recommender, *attack.extractor]:
            problems.append(((*here, "diagnose", "targets", i), f"{ref!r} is not a target of "
                             f"this attack (its targets: "
                             f"{', '.join([*attack.recommender, *attack.extractor])})."))
    problems += _check_attack_params(here, attack, objective)
    for ref in attack.extractor if objective.startswith("classifier") else []:
        backbone = built_backbone(exts[ref])
        if backbone is not None and backbone.num_classes is None:
            problems.append(((*here, "extractor"), f"a classifier attack needs logits; the "
                             f"external backbone of {ref!r} ({backbone.cls.__name__}) has no "
                             "classification head (num_classes is None)."))
    if objective.startswith("classifier") and attack.items not in ("auto", "category", "all"):
        problems.append(((*here, "items"), f"a classifier attack perturbs a category or all "
                         f"items, not {attack.items!r}."))
    return problems + _check_item_ids(here, attack) + _check_evaluation(config, here, attack)


def _check_targets(config: StudyConfig, here: PathKey, attack: AttackSection,
                   objective: str) -> list[Problem]:
    """The model an attack goes through: a recommender (promotion, BPR) or an extractor; none
    for c-SEMA's bare inset when nothing evaluates it."""
    recs, exts = config.recommenders, config.extractors
    problems: list[Problem] = []
    needs_rec = promotes(attack) or _ranks(objective)
    bare = objective == "none" and not attack.evaluation
    if needs_rec and not attack.recommender:
        problems.append(((*here, "recommender"), f"a {attack.kind} attack needs the "
                         f"recommender it attacks through (known: {_known(recs)})."))
    elif not needs_rec and not attack.extractor and not bare:
        if promotion_kind(attack) and not attack.recommender:
            problems.append(((*here, "recommender"), f"a {attack.kind} attack needs the "
                             f"recommender it promotes through, or an extractor (known: "
                             f"{_known([*recs, *exts])})."))
        else:
            problems.append(((*here, "extractor"), f"a {attack.kind} attack with objective "
                             f"{objective} needs the extractor it attacks (known: "
                             f"{_known(exts)})."))
    if attack.recommender and attack.extractor:
        problems.append(((*here, "extractor"), "give either recommender or extractor, not both."))
    for ref in attack.recommender if needs_rec else []:
        kind = kind_text(recs[ref])
        if promotes(attack) and attack.evaluation and recs[ref].kind != TWO_STAGE:
            problems.append(((*here, "recommender"), f"{attack.kind} promotes cold items "
                             f"through a two-stage recommender; {ref!r} is a {kind}."))
        elif _ranks(objective) and attack.evaluation and not has_facts(recs[ref], "visual",
                                                                        "pairwise"):
            problems.append(((*here, "recommender"), f"the BPR objective needs a visual "
                             f"pairwise recommender ({', '.join(BPR_KINDS)}); {ref!r} is a "
                             f"{kind}."))
        elif recs[ref].kind != TWO_STAGE and not has_facts(recs[ref], "visual"):
            # not evaluated: any visual model the engine can backpropagate through
            problems.append(((*here, "recommender"), f"a {objective} attack goes through a "
                             f"visual recommender; {ref!r} is a {kind}."))
    for ref in attack.recommender:
        model = ranking_model(config, ref)
        message = white_box_problem(attack.kind, model, recs[model])
        if message:
            problems.append(((*here, "kind"), message))
    for ref in attack.extractor:
        problems += _check_feature_source(config, here, attack, ref)
    return problems


def _check_feature_source(config: StudyConfig, here: PathKey, attack: AttackSection,
                          ref: str) -> list[Problem]:
    """An extractor kept without features (``features: false``) can be attacked only where
    nothing reads its features: no evaluation, no random pairs."""
    if config.extractors[ref].features:
        return []
    if attack.evaluation:
        return [((*here, "evaluation"), f"extractor {ref!r} keeps no features (features: "
                 "false), which evaluations read; set evaluation: false or features: true.")]
    if attack_family(attack) == "item2item" and attack.item_ids is None:
        return [((*here, "item_ids"), f"random pairs are drawn by the features of extractor "
                 f"{ref!r}, which keeps none (features: false); give item_ids (each pulled "
                 "towards hook_item) or set features: true.")]
    return []


def _check_item_ids(here: PathKey, attack: AttackSection) -> list[Problem]:
    """``item_ids`` replace ``items`` and ``n_items``; ``chunk`` splits them."""
    ids = attack.item_ids
    if ids is None:
        return [((*here, "chunk"), "chunk splits item_ids into stages; give item_ids.")] \
            if attack.chunk is not None else []
    problems: list[Problem] = []
    if not ids:
        problems.append(((*here, "item_ids"), "give at least one item id."))
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if repeated:
        problems.append(((*here, "item_ids"), f"item id {repeated[0]!r} is listed twice."))
    for key in ("items", "n_items"):
        if key in attack.model_fields_set:
            problems.append(((*here, key), f"item_ids name the attacked items; remove {key}."))
    if attack.chunk is not None and attack.evaluation:
        problems.append(((*here, "chunk"), "an evaluation reads one attack stage; chunk only an "
                         "attack with evaluation: false."))
    return problems


def _check_evaluation(config: StudyConfig, here: PathKey, attack: AttackSection) -> list[Problem]:
    """An attack nothing evaluates has no models to evaluate, no sweep and no defense."""
    if attack.evaluation:
        return []
    problems: list[Problem] = []
    if attack.evaluate:
        problems.append(((*here, "evaluate"), "nothing is evaluated on this attack (evaluation: "
                         "false); remove evaluate."))
    if attack.diagnose is not None:
        problems.append(((*here, "diagnose"), "a diagnosis sweep is evaluated; remove diagnose "
                         "or set evaluation: true."))
    name = here[-1]
    for defense_name, defense in config.defenses.items():
        if name in defense.attacks or (isinstance(defense.adaptive, list) and
                                       name in defense.adaptive):
            problems.append((("defenses", defense_name, "attacks"), f"attack {name!r} is not "
                             "evaluated (evaluation: false): a defense has nothing to measure "
                             "on it."))
    return problems


def catalog_classifier(section: ExtractorSection) -> bool:
    """Whether an extractor's classifier head is on the catalog's categories: trained here, a
    checkpoint (trained on the catalog, as far as the study can tell), or a backbone whose own
    head is built for the catalog (its class's ``head``, e.g. fmnist-cnn). A pretrained
    backbone kept with its own weights (``training: none``) keeps its own head: efficientnet-
    lite0's is ImageNet's 1000 classes, so it serves as a feature surrogate only. An external
    backbone's head is checked where it is built (it must classify)."""
    if section.training != "none" or section.checkpoint is not None or is_external(section):
        return True
    from varsec.vision.registry import backbone_class

    return backbone_class(section.backbone).head == "catalog"


def _check_surrogates(config: StudyConfig, here: PathKey, attack: AttackSection) -> list[Problem]:
    """What each model an attack is crafted on or measured on can do (transfer attacks): a
    classifier attack needs a head on the catalog's categories, extractors measure category and
    item-to-item attacks only."""
    problems: list[Problem] = []
    exts = config.extractors
    family = attack_family(attack)
    if attack_objective(attack).startswith("classifier"):
        for i, ref in enumerate(attack.extractor):
            section = exts[ref]
            if not catalog_classifier(section):
                problems.append(((*here, "extractor", i) if len(attack.extractor) > 1 else
                                 (*here, "extractor"), f"a classifier attack needs a head on the "
                                 f"catalog's categories, and extractor {ref!r} keeps "
                                 f"{section.backbone}'s own, on {_own_head(section)} "
                                 "(training: none): attack its features (items: pairs) or "
                                 "train it (training: standard)."))
    for i, ref in enumerate(attack.evaluate):
        if ref not in exts:
            continue
        if family not in ("category", "item2item"):
            problems.append(((*here, "evaluate", i), f"{ref!r} is an extractor, and a {family} "
                             "attack is measured on recommenders only."))
        elif family == "category" and not catalog_classifier(exts[ref]):
            problems.append(((*here, "evaluate", i), f"extractor {ref!r} keeps "
                             f"{exts[ref].backbone}'s own head, on {_own_head(exts[ref])} "
                             "(training: none), which cannot judge a category attack: "
                             "evaluate a recommender built on it."))
    return problems


def _own_head(section: ExtractorSection) -> str:
    from varsec.vision.registry import backbone_class

    return backbone_class(section.backbone).head


def _check_per_user(config: StudyConfig, here: PathKey, attack: AttackSection) -> list[Problem]:
    """A per-user attack attacks the sampled protocol's lists: the study needs one, and the
    attack perturbs list items, not a choice of its own."""
    if not per_user(attack):
        return []
    problems: list[Problem] = []
    if per_user_lists(config) is None:
        problems.append(((*here, "objective"), f"{attack_objective(attack)} attacks each user's "
                         "sampled list; add a sampled protocol to evaluation.protocols (002: "
                         "{kind: sampled, negatives: 20})."))
    if attack.items not in ("auto", "all"):
        problems.append(((*here, "items"), f"{attack_objective(attack)} attacks the items of "
                         f"each user's sampled list; leave items at auto, not {attack.items!r}."))
    return problems


def _check_attack_params(here: PathKey, attack: AttackSection, objective: str) -> list[Problem]:
    """``params`` against what the attack, its objective and the stage declare; ``steps``
    at least 1 for an iterative attack."""
    from varsec.attacks.registry import attack_method, param_problems

    problems: list[Problem] = [((*here, "params", key), message) for key, message in
                               param_problems(attack.kind, objective, attack.params)]
    if attack_method(attack.kind).iterative and attack.steps < 1:
        problems.append(((*here, "steps"), f"must be at least 1 for {attack.kind}, an iterative "
                         f"attack, got {attack.steps}."))
    return problems


def _check_threat(config: StudyConfig, here: PathKey, attack: AttackSection) -> list[Problem]:
    """``threat`` belongs to category attacks; poisoning retrains every evaluated model on the
    attacked catalog's features, so each must take features from one of the study's
    extractors."""
    if attack.threat is not None and attack_family(attack) != "category":
        return [((*here, "threat"), f"threat applies to category attacks (a source category "
                 f"attacked on an extractor); this is a {attack_family(attack)} attack.")]
    if attack_threat(attack) != POISONING:
        return []
    problems: list[Problem] = []
    for ref in attack.evaluate:
        if ref not in config.recommenders:
            continue  # an extractor judges the attack's success; nothing is retrained
        rec = config.recommenders[ref]
        if not has_facts(rec, "needs_features") or rec.extractor in (None, CATALOG_FEATURES):
            problems.append(((*here, "evaluate"), f"a poisoning attack retrains {ref!r} on the "
                             f"attacked catalog's features, so it must be a "
                             f"{', '.join(POISON_KINDS)} recommender on one of the study's "
                             f"extractors (it is a {rec.kind}); or set threat: evasion."))
    return problems


# -- attack budgets ---------------------------------------------------------------------------
class Reach(typing.NamedTuple):
    """How far an iterative attack's pixels can travel: ``steps * step_size`` 8-bit levels."""

    steps: int  # optimizer steps (INSA: epochs x user minibatches)
    step_size: float  # the largest move of a pixel per step, 8-bit levels
    detail: str  # how the steps and the step were counted, for messages

    @property
    def levels(self) -> float:
        return self.steps * self.step_size


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def insa_batches(config: StudyConfig, attack: AttackSection) -> tuple[int, int | None]:
    """(user minibatches per INSA epoch, users) from ``params.users_per_step`` and the simulated
    profile's user count; (1, users) without minibatches, (0, None) when the count is unknown."""
    per_step = attack.params.get("users_per_step")
    sim = _simulation_profile(config)
    users = None if sim is None else int(sim.n_users)
    if per_step is None or not isinstance(per_step, int) or isinstance(per_step, bool):
        return 1, users
    if users is None:
        return 0, None
    return (math.ceil(users / per_step) if 0 < per_step < users else 1), users


def attack_reach(config: StudyConfig, attack: AttackSection, eps: float) -> Reach | None:
    """The :class:`Reach` of ``attack`` at ``eps``; None for single-step and non-gradient
    attacks, for PGD's default step (2.5 * eps / steps always reaches eps), for steps that are
    not pixel steps (C&W-L2's tanh-space rate) and when it cannot be known before the data is
    loaded."""
    from varsec.attacks.registry import attack_method

    method, steps = attack_method(attack.kind), attack.steps
    if steps < 1 or not method.iterative or method.step_unit != "8-bit levels":
        return None
    alpha = resolve_alpha(attack.alpha, eps, steps) if method.uses_alpha else None
    if method.uses_alpha and alpha is None:
        return None
    try:
        rule = method.build(eps, steps, alpha, attack.params)
    except ConfigError:
        return None
    if rule is None or rule.name == "fgsm":
        return None
    if method.uses_alpha:
        return Reach(steps, float(alpha), f"{steps} steps x alpha {alpha:g}")
    lr = rule.describe().get("lr")
    if lr is None:  # a rule whose steps are not a fixed size (DeepFool's linearised steps)
        return None
    lr = float(lr)
    if attack_objective(attack) == "insa":
        batches, users = insa_batches(config, attack)
        if batches == 0:
            return None
        total = steps * batches
        how = (f"{steps} epochs x {batches} minibatches of {attack.params['users_per_step']} "
               f"of the {users} users" if batches > 1 else f"{steps} epochs of one step")
        return Reach(total, lr, f"{total} Adam steps ({how}) x lr {lr:g}")
    return Reach(steps, lr, f"{steps} Adam steps x lr {lr:g}")


def budget_warnings(config: StudyConfig) -> list[Problem]:
    """(path, message) of every attack whose ``steps x step size`` cannot reach one of its eps
    (the perturbation would stop short of its budget, e.g. a paper's lr in [0, 1] units copied
    without the x 255). :func:`study_from_data` emits them as VarsecWarning before any compute."""
    found: list[Problem] = []
    for name, attack in config.attacks.items():
        found += _budget_warning(config, ("attacks", name), attack)
        sweep = diagnosis_attack(attack)
        if sweep is not None:
            found += _budget_warning(config, ("attacks", name, "diagnose"), sweep)
    return found


def _budget_warning(config: StudyConfig, here: PathKey, attack: AttackSection) -> list[Problem]:
    if not attack.eps:
        return []
    short = [(eps, reach) for eps in attack.eps
             if (reach := attack_reach(config, attack, eps)) is not None
             and reach.levels < eps * (1 - 1e-9)]
    if not short:
        return []
    listed = ", ".join(f"{eps:g}" for eps, _ in short)
    reach = short[-1][1]
    return [(here, f"{reach.detail} = {reach.levels:g} 8-bit levels cannot reach eps {listed}: "
             "the perturbation stops short of its budget; raise steps or the step size (step "
             "sizes are in 8-bit levels: a rate in [0, 1] units x 255).")]


def _check_defense(config: StudyConfig, name: str, defense: DefenseSection) -> list[Problem]:
    here: PathKey = ("defenses", name)
    problems: list[Problem] = []
    for i, ref in enumerate(defense.attacks):
        if ref not in config.attacks:
            problems.append(((*here, "attacks", i), f"{ref!r} is not an attack of this study "
                             f"(known: {_known(config.attacks)})."))
    for i, ref in enumerate(defense.extractor):
        if ref not in config.extractors:
            problems.append(((*here, "extractor", i), f"{ref!r} is not an extractor of this "
                             f"study (known: {_known(config.extractors)})."))
        elif config.extractors[ref].training in ("standard", "none"):
            problems.append(((*here, "extractor", i), f"extractor {ref!r} is not adversarially "
                             f"trained (training: {config.extractors[ref].training})."))
    pixel = defense_fact(defense.kind, "pixel")
    if not pixel and not defense.extractor:
        problems.append(((*here, "extractor"), "name the adversarially trained extractor(s) "
                         f"(known: {_known(config.extractors)})."))
    if pixel and defense.extractor:
        problems.append(((*here, "extractor"), f"only adversarial-training names extractors, "
                         f"not {defense.kind}."))
    for i, value in enumerate(defense.strengths):
        message = _strength_problem(defense.kind, value)
        if message:
            problems.append(((*here, "strengths", i), message))
    problems += _check_defense_params(here, defense)
    if defense_fact(defense.kind, "trained"):
        problems += _check_reconstruction_attacks(config, here, defense)
    if defense.adaptive:
        problems += _check_adaptive(config, here, defense)
    return problems


def _check_adaptive(config: StudyConfig, here: PathKey, defense: DefenseSection) -> list[Problem]:
    from varsec.attacks.registry import attack_method

    if not defense_fact(defense.kind, "pixel"):
        return [((*here, "adaptive"), "a robust extractor is attacked white-box by the study's "
                 "attacks already; adaptive applies to input transforms and reconstruction.")]
    if isinstance(defense.adaptive, list):
        key, names = "adaptive", defense.adaptive
    else:
        key, names = "attacks", defense.attacks
    problems: list[Problem] = []
    for i, ref in enumerate(names):
        if key == "adaptive" and (ref not in config.attacks or (defense.attacks and
                                                                ref not in defense.attacks)):
            covered = defense.attacks or list(config.attacks)
            problems.append(((*here, key, i), f"{ref!r} is not an attack this defense covers "
                             f"(known: {_known(covered)})."))
        elif ref in config.attacks and not attack_method(config.attacks[ref].kind).gradient:
            method = attack_method(config.attacks[ref].kind)
            problems.append(((*here, key, i), f"{ref!r} is a {method.title} attack ({method.how}, "
                             "no gradient): it cannot adapt to a defense; leave it out of the "
                             "adaptive attacks."))
    return problems


def _check_reconstruction_attacks(config: StudyConfig, here: PathKey,
                                  defense: DefenseSection) -> list[Problem]:
    """The reconstruction defense is trained against the recommender an attack goes through."""
    if not defense.attacks:
        if any(reconstructable(config, t) for a in config.attacks.values() for t in a.recommender):
            return []
        return [((*here, "attacks"), "no attack of this study goes through a vbpr or amr "
                 "recommender; name the attacks the reconstruction defense is trained against.")]
    problems: list[Problem] = []
    for i, ref in enumerate(defense.attacks):
        attack = config.attacks.get(ref)
        if attack is None:
            continue
        if not attack.recommender:
            problems.append(((*here, "attacks", i), f"the reconstruction defense is trained "
                             f"against the recommender an attack goes through; {ref!r} attacks "
                             f"extractor(s) {', '.join(attack.extractor)}."))
        for target in attack.recommender:
            if not reconstructable(config, target):
                model = ranking_model(config, target)
                problems.append(((*here, "attacks", i), f"the reconstruction defense is trained "
                                 f"against a vbpr or amr recommender on a study extractor; "
                                 f"{ref!r} goes through {model!r} (a "
                                 f"{config.recommenders[model].kind})."))
    return problems


def _check_defense_params(here: PathKey, defense: DefenseSection) -> list[Problem]:
    where: PathKey = (*here, "params")
    if is_external(defense):
        return []  # the factory's arguments: checked by building it
    if defense_fact(defense.kind, "trained"):
        return _check_reconstruction_params(where, defense.params)
    known = ("eot_samples",) if defense_fact(defense.kind, "adaptive") == "eot" else ()
    problems: list[Problem] = []
    for key, value in defense.params.items():
        if key not in known:
            takes = f"known: {', '.join(known)}" if known else "it takes none"
            problems.append(((*where, key), f"unknown {defense.kind} parameter {key!r} "
                             f"({takes})."))
        elif _option_problem(key, value):
            problems.append(((*where, key), str(_option_problem(key, value))))
    return problems


def _check_reconstruction_params(where: PathKey, params: dict[str, Any]) -> list[Problem]:
    try:
        from varsec.defenses.joint import DefenseConfig
    except ImportError:  # the defense layer is not installed
        return []
    fields = [f for f in DefenseConfig.__dataclass_fields__ if f not in ("seed", "device")]
    problems: list[Problem] = []
    for key, value in params.items():
        if key in ("seed", "device"):
            message: str | None = f"{key} is set by the study ({key}s / device), not per defense."
        elif key in RECONSTRUCTION_OPTIONS:
            message = _option_problem(key, value)
        elif key not in fields:
            message = (f"unknown reconstruction parameter {key!r} (known: "
                       f"{', '.join([*fields, *RECONSTRUCTION_OPTIONS])}).")
        else:
            message = _defense_config_problem(DefenseConfig, {key: value})
        if message:
            problems.append(((*where, key), message))
    if not problems:
        train = {k: v for k, v in params.items() if k not in RECONSTRUCTION_OPTIONS}
        message = _defense_config_problem(DefenseConfig, train)
        if message:
            problems.append((where, message))
    return problems


def _defense_config_problem(klass: Any, values: dict[str, Any]) -> str | None:
    try:
        klass.from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        return str(exc).rstrip(".") + "."
    return None


def _option_problem(key: str, value: Any) -> str | None:
    """What is wrong with a study-level defense option (None when nothing)."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)
    if key == "eot_samples" and not (number and float(value).is_integer() and value >= 1):
        return f"EOT draws must be an integer >= 1, got {value!r}."
    if key in ("adaptive_penalty", "adaptive_margin") and not (number and value >= 0):
        return f"must be a number >= 0, got {value!r}."
    if key == "random_resize_pad" and not (isinstance(value, bool) or (number and
                                                                        0 < value <= 1)):
        return f"must be true, false or a resize ratio in (0, 1], got {value!r}."
    if key == "detection_eps":
        values = _as_list(value)
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                 and math.isfinite(v) and 1 <= v <= 255 for v in values):
            return f"must be a list of eps in [1, 255] 8-bit levels, got {value!r}."
    return None


def _strength_problem(kind: str, value: float) -> str | None:
    """Why ``value`` cannot be a strength of ``kind``: the defense class's own checks of the
    parameter it sweeps (``varsec.defenses.registry.strength_problem``)."""
    from varsec.defenses.registry import strength_problem

    return strength_problem(kind, value)


# -- output ---------------------------------------------------------------------------------------
def resolved_yaml(config: StudyConfig) -> str:
    """The fully resolved config (every default filled in) as YAML."""
    import yaml

    data = config.model_dump(mode="json")
    data.pop("overrides", None)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def schema_yaml() -> str:
    """Every key of the schema with its default and description, as commented YAML."""
    lines = [
        "# varsec study schema: every key, its default and what it means.",
        "# Sections keyed by a name you choose (extractors, recommenders, attacks, defenses)",
        "# show one example entry called <name>. Epsilons are 8-bit levels (8 means 8/255).",
    ]
    _model_lines(StudyConfig, lines, indent=0)
    lines += _recommender_lines() + _attack_lines() + _defense_lines()
    return "\n".join(lines) + "\n"


def _recommender_lines() -> list[str]:
    """The registered recommenders with their ``params`` (defaults and valid values)."""
    from varsec.recsys import known_recommenders, recommender_class

    lines = ["", "# Registered recommenders (recommenders.<name>.kind; two-stage joins two of "
             "them) and", "# the params each declares:"]
    for name in known_recommenders():
        cls = recommender_class(name)
        also = f" (also: {', '.join(cls.aliases)})" if cls.aliases else ""
        facts = [fact for fact in ("visual", "needs_features", "pairwise")
                 if getattr(cls, fact, False)] + ([] if cls.differentiable else ["query-only"])
        lines.append(f"#   {name}{also}: {cls.__name__}" + (f" ({', '.join(facts)})"
                                                            if facts else ""))
        lines += _param_lines({k: v for k, v in cls.params.items()
                               if k not in ("seed", "device")})  # the study sets these
    return lines


def _attack_lines() -> list[str]:
    """The registered attacks and objectives with their ``params`` (defaults and what a valid
    value is), as comments: what an attack's ``params:`` may set."""
    from varsec.attacks.registry import (
        STAGE_PARAMS,
        attack_method,
        known_attacks,
        known_objectives,
        objective_params,
    )

    lines = ["", "# Registered attacks (attacks.<name>.kind) and the params each declares; every",
             "# attack also takes the params of its objective and of the stage."]
    entries = [(name, attack_method(name)) for name in known_attacks()]
    for name, method in entries:
        also = f" (also: {', '.join(method.aliases)})" if method.aliases else ""
        steps = f"default steps {method.steps}" if method.iterative else "one shot"
        lines.append(f"#   {name}{also}: {method.title} ({method.paper or 'varsec'}), {steps}")
        lines += _param_lines(method.params)
    lines.append("# Objectives (attacks.<name>.objective) and their params:")
    for name in known_objectives():
        lines.append(f"#   {name}")
        lines += _param_lines(objective_params(name))
    lines.append("# Stage params of every attack:")
    lines += _param_lines(STAGE_PARAMS)
    return lines


def _defense_lines() -> list[str]:
    """The registered defenses: the parameter each sweeps, its default sweep, its attacker."""
    from varsec.defenses.registry import defense_class, known_defenses

    lines = ["", "# Registered defenses (defenses.<name>.kind): the strength each sweeps and the",
             "# attacker that knows it (adaptive: true):"]
    for name in known_defenses():
        cls = defense_class(name)
        if cls.strength is None:
            sweep = "no strength sweep"
        else:
            levels = ", ".join(f"{v:g}" for v in cls.default_sweep)
            sweep = f"strength = {cls.strength} ({cls.params[cls.strength].expectation()}), " \
                    f"default [{levels}]"
        lines.append(f"#   {name}: {cls.label}; {sweep}; adaptive attacker: "
                     f"{cls.adaptive or 'none'}")
    return lines


def _param_lines(declared: dict[str, Any]) -> list[str]:
    from varsec.params import describe

    return [f"#       {r['name']}: {r['default']!r} - {r['expects']}; {r['doc']}"
            for r in describe(declared)]


def _model_lines(model: type[BaseModel], lines: list[str], indent: int) -> None:
    pad = "  " * indent
    for key, field in model.model_fields.items():
        lines.append(f"{pad}# {field.description}")
        annotation = _strip(field.annotation)
        default = field.get_default(call_default_factory=True)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{key}:")
            _model_lines(annotation, lines, indent + 1)
            continue
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is dict and len(args) == 2:
            value = _strip(args[1])
            if isinstance(value, type) and issubclass(value, BaseModel):
                lines.append(f"{pad}{key}:")
                lines.append(f"{pad}  <name>:")
                _model_lines(value, lines, indent + 2)
                continue
        if typing.get_origin(annotation) is list and args:
            item = _strip(args[0])
            if isinstance(item, type) and issubclass(item, BaseModel):
                lines.append(f"{pad}{key}:")
                for entry in default:
                    dumped = entry.model_dump(mode="json")
                    first = True
                    for sub_key, sub_field in item.model_fields.items():
                        if first:
                            lines.append(f"{pad}  # {sub_field.description}")
                        else:
                            lines.append(f"{pad}    # {sub_field.description}")
                        marker = "- " if first else "  "
                        lines.append(f"{pad}  {marker}{sub_key}: "
                                     f"{_scalar(dumped[sub_key])}")
                        first = False
                continue
        lines.append(f"{pad}{key}: {_scalar(default)}")


def _scalar(value: Any) -> str:
    import json

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if value == "" or ":" in value or "#" in value else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


__all__ = [
    "PROFILES",
    "RECOMMENDER_KINDS",
    "RECONSTRUCTION_OPTIONS",
    "STAGE_KINDS",
    "AttackSection",
    "DatasetSection",
    "DefenseParams",
    "DefenseSection",
    "DiagnoseSection",
    "EvaluationSection",
    "ExecutorSection",
    "ExtractorSection",
    "LoadedStudy",
    "ProtocolSection",
    "RecommenderSection",
    "ReportSection",
    "StudyConfig",
    "attack_family",
    "attack_items",
    "attack_objective",
    "attack_threat",
    "catalog_classifier",
    "check_references",
    "defense_params",
    "diagnosis_attack",
    "is_promotion",
    "load_study",
    "load_study_text",
    "per_user",
    "per_user_lists",
    "ranking_model",
    "reconstructable",
    "resize_ratio",
    "resolved_yaml",
    "schema_yaml",
    "study_from_data",
]
