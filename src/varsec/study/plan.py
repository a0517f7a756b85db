"""Grid expansion: a validated study -> an ordered DAG of stages (DESIGN.md section 9).

data -> extractor -> recommender -> attack -> defense -> evaluation, once per seed. Stages with
identical kind, config and inputs are the same stage (one key), so shared work is done once.
Evaluation scenarios follow the attack family (see :func:`~varsec.study.schema.attack_family`):

* ``ranking`` - HR / NDCG / ... under the full and sampled protocols (clean, or every item
  image attacked as in Yin et al. 002, or every image defended: the clean cost of a defense);
* ``two-stage`` - AIP's two-stage pipeline: original test item and cooperative cold items (000);
* ``promotion`` - cold items replaced by their adversarial versions (000 Tables 4-6);
* ``category`` - CHR@K of a source category before / after a targeted attack (001 Table 1).
  Under ``threat: poisoning`` (the default, 001's) "after" is a second recommender stage per
  evaluated model, trained with the same config and seed on the attacked catalog's features
  (it depends on the attack stage); under ``threat: evasion`` the attacked features are swapped
  into the clean-trained model. Rows carry the threat in their attack label
  (``<attack>+poisoning``, ``<attack>+evasion``);
* ``item2item`` - success at rank_min of attack items among a target's neighbours (004);
* ``classifier`` - a transfer category attack judged by another extractor's classifier (its
  success rate on the attacked images, beside the clean images').

Transfer attacks: an attack's ``evaluate`` may name models it was not crafted on (a surrogate's
attack measured on the platform's models): recommenders, and for category and item-to-item
attacks extractors. Each such evaluation is planned like the white-box one (a category attack
under poisoning retrains the platform's recommender on *its own* extractor's features of the
attacked images) and a category attack adds one ``classifier`` evaluation per other extractor
whose head is on the catalog's categories. Every attack, defense and evaluation stage of an
attack carries ``crafted_on`` (the attack's target) in its labels and rows, so a transfer
number is never read as a white-box one (:func:`transferred`).

Defenses: an input transform is one ``apply`` stage per strength on each attack it covers (and
on the clean catalog: its cost); the reconstruction defense adds one ``fit`` stage per
recommender it defends (the model an attack goes through, a two-stage's ranker), which every
``apply`` stage of that recommender reads. With ``adaptive: true`` each covered attack is re-run
through the defense (attack label ``<attack>+adaptive``), defended and evaluated beside the
non-adaptive run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from varsec.attacks.registry import attack_method
from varsec.study.external import external_fields, has_facts
from varsec.study.schema import (
    DATASET_OPTIONAL,
    EVASION,
    POISONING,
    AttackSection,
    DefenseSection,
    StudyConfig,
    attack_family,
    attack_items,
    attack_objective,
    attack_threat,
    catalog_classifier,
    defense_fact,
    defense_params,
    diagnosis_attack,
    per_user,
    per_user_lists,
    ranking_model,
    reconstructable,
)
from varsec.study.stages import Stage, stage_key

CLEAN = "none"
ADAPTIVE = "+adaptive"  # suffix of the attack label of an attack run through a defense
DIAGNOSE = "+diagnose"  # suffix of the attack label of an attack's diagnosis sweep
# What the default resources of a stage kind are on a GPU study (no stage requires a GPU).
GPU_KINDS = ("extractor", "recommender", "attack", "defense")


@dataclass
class Plan:
    """The stages of a study in a topological order (every input before its consumers)."""

    stages: list[Stage] = field(default_factory=list)

    def __iter__(self):
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def by_key(self) -> dict[str, Stage]:
        """Stages by cache key."""
        return {s.key: s for s in self.stages}

    def downstream(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and every stage that (transitively) consumes one of them."""
        marked = set(keys)
        for stage in self.stages:
            if any(k in marked for k in stage.inputs.values()):
                marked.add(stage.key)
        return marked

    def of_kind(self, *kinds: str) -> list[Stage]:
        """The stages of the given kinds, in plan order."""
        return [s for s in self.stages if s.kind in kinds]

    def upstream(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and every stage they (transitively) read."""
        stages = self.by_key
        marked, queue = set(), list(keys)
        while queue:
            key = queue.pop()
            if key not in marked:
                marked.add(key)
                queue.extend(stages[key].inputs.values())
        return marked

    def only(self, kinds: Iterable[str]) -> Plan:
        """The stages of ``kinds`` and the stages they read, in plan order (a run of the
        attacks alone skips the evaluations, defenses and clean evaluations)."""
        keep = self.upstream(s.key for s in self.of_kind(*kinds))
        return Plan([s for s in self.stages if s.key in keep])


class _Planner:
    def __init__(self, config: StudyConfig) -> None:
        self.config = config
        self.plan = Plan()
        self.seen: dict[str, Stage] = {}

    def add(self, kind: str, name: str, config: dict[str, Any], inputs: dict[str, Stage],
            labels: dict[str, Any]) -> Stage:
        input_keys = {role: stage.key for role, stage in inputs.items()}
        # The thread count changes the order of sums, hence the numbers: it keys every stage.
        config = {**config, "threads": self.config.threads}
        key = stage_key(kind, config, input_keys)
        if key in self.seen:
            return self.seen[key]
        stage = Stage(kind=kind, name=name, config=config, inputs=input_keys,
                      labels=dict(labels), key=key, resources=self.resources(kind))
        self.seen[key] = stage
        self.plan.stages.append(stage)
        return stage

    def resources(self, kind: str) -> dict[str, float]:
        executor = self.config.executor
        if kind in executor.resources:
            spec = executor.resources[kind]  # type: ignore[index]
            return {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus}
        gpu = 1.0 if self.config.device.startswith("cuda") and kind in GPU_KINDS else 0.0
        return {"num_cpus": 1.0, "num_gpus": gpu}


def dataset_label(config: StudyConfig) -> str:
    """The dataset column of the results table: the source's name."""
    source = config.dataset.source
    return source if "/" not in source and "." not in source else Path(source).stem


def plan_study(config: StudyConfig) -> Plan:
    """Expand ``config`` into its stages (see the module docstring)."""
    planner = _Planner(config)
    dataset = dataset_label(config)
    data = planner.add("data", "data", data_config(config), {}, {"dataset": dataset})
    for seed in config.seeds:
        _plan_seed(planner, data, seed, dataset)
    return planner.plan


def data_config(config: StudyConfig) -> dict[str, Any]:
    """The data stage's config: the dataset section, without the optional keys left null (a
    study that does not resample or resize keeps its earlier cache key) and ``as_is`` unless
    set."""
    section = config.dataset.model_dump(mode="json")
    if not section["as_is"]:
        del section["as_is"]
    return {k: v for k, v in section.items() if not (k in DATASET_OPTIONAL and v is None)}


def file_sha256(path: str) -> str:
    """The sha256 of a checkpoint a stage reads (it keys the stage: a changed file is
    recomputed); memoised by path, size and mtime."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from varsec.io import sha256_file

    return sha256_file(path)


def _plan_seed(planner: _Planner, data: Stage, seed: int, dataset: str) -> None:
    config = planner.config
    base = {"dataset": dataset, "seed": seed}
    extractors = {
        name: planner.add("extractor", f"extractor {name} (seed {seed})",
                          _extractor_config(config, name, seed), {"data": data},
                          {**base, "extractor": name})
        for name in config.extractors
    }
    models = _plan_recommenders(planner, data, extractors, seed, base)
    for name, model in models.items():
        scenario = "two-stage" if config.recommenders[name].kind == "two-stage" else "ranking"
        _evaluation(planner, scenario, data, model, name, seed, base, attack=None)
    attack_runs = _plan_attacks(planner, data, extractors, models, seed, base)
    _plan_defenses(planner, data, extractors, models, attack_runs, seed, base)


def _extractor_config(config: StudyConfig, name: str, seed: int) -> dict[str, Any]:
    section = config.extractors[name]
    slice_ = section.model_dump(mode="json")
    for key, default in (("catalog_half", None), ("seed_offset", 0), ("factory", None),
                         ("version", None), ("features", True)):
        if slice_[key] == default:  # absent by default, so the other extractors keep their keys
            del slice_[key]
    slice_.update(external_fields(section))
    slice_["seed"] = seed + section.seed_offset
    if section.checkpoint:
        slice_["checkpoint_sha256"] = file_sha256(section.checkpoint)
    if section.train_on == "source" and section.training != "none" and not section.checkpoint:
        slice_["source"] = {k: getattr(config.dataset, k)
                            for k in ("source", "reviews", "features", "trust_pickle")}
        if config.dataset.allow_outside:
            slice_["source"]["allow_outside"] = True
    return slice_


def _extractor_of(config: StudyConfig, recommender: str) -> str | None:
    rec = config.recommenders[recommender]
    if rec.kind == "two-stage":
        assert rec.ranker is not None
        return _extractor_of(config, rec.ranker)
    return rec.extractor


def _plan_recommenders(planner: _Planner, data: Stage, extractors: dict[str, Stage], seed: int,
                       base: dict[str, Any]) -> dict[str, Stage]:
    config = planner.config
    models: dict[str, Stage] = {}
    ordered = sorted(config.recommenders.items(), key=lambda kv: kv[1].kind == "two-stage")
    for name, rec in ordered:
        inputs: dict[str, Stage] = {"data": data}
        slice_: dict[str, Any] = {"kind": rec.kind, "seed": seed}
        if rec.checkpoint is not None:  # used as it is: its file keys the stage
            slice_.update(checkpoint=rec.checkpoint, sha256=file_sha256(rec.checkpoint),
                          extractor=rec.extractor)
            if rec.extractor is not None:
                inputs["extractor"] = extractors[rec.extractor]
        elif rec.kind == "two-stage":
            assert rec.first_stage is not None and rec.ranker is not None
            inputs["first_stage"] = models[rec.first_stage]
            inputs["ranker"] = models[rec.ranker]
            slice_["k"] = rec.k
        else:
            slice_["params"] = rec.params
            slice_["extractor"] = rec.extractor
            if rec.observed_users < 1:  # absent otherwise, so the other models keep their keys
                slice_["observed_users"] = rec.observed_users
            slice_.update(external_fields(rec))
            if rec.extractor and rec.extractor in extractors:
                inputs["extractor"] = extractors[rec.extractor]
        labels = {**base, "recommender": name, "extractor": _extractor_of(config, name)}
        models[name] = planner.add("recommender", f"recommender {name} (seed {seed})", slice_,
                                   inputs, labels)
    return models


def _evaluation_slice(config: StudyConfig, scenario: str) -> dict[str, Any]:
    ev = config.evaluation
    common = {"max_users": ev.max_users, "bootstrap": ev.bootstrap, "confidence": ev.confidence}
    if scenario == "ranking":
        return {**common, "metrics": list(ev.metrics), "ks": list(ev.ks),
                "protocols": [p.model_dump(mode="json") for p in ev.protocols]}
    if scenario in ("two-stage", "promotion"):
        return {**common, "ks": list(ev.ks), "cold_items": ev.cold_items}
    if scenario == "category":
        return {**common, "chr_k": ev.chr_k}
    if scenario == "classifier":
        return {"bootstrap": ev.bootstrap, "confidence": ev.confidence}
    return {"bootstrap": ev.bootstrap, "confidence": ev.confidence,
            "rank_min": list(ev.rank_min)}


def _evaluation(
    planner: _Planner, scenario: str, data: Stage, model: Stage | None, recommender: str | None,
    seed: int, base: dict[str, Any], *, attack: Stage | None, defense: Stage | None = None,
    extra: dict[str, Any] | None = None, extractor: Stage | None = None,
    override: dict[str, Any] | None = None,
) -> Stage:
    config = planner.config
    slice_ = {"scenario": scenario, "seed": seed, **_evaluation_slice(config, scenario),
              **(extra or {})}
    inputs: dict[str, Stage] = {"data": data}
    if model is not None:
        inputs["model"] = model
    if extractor is not None:
        inputs["extractor"] = extractor
    if attack is not None:
        inputs["attack"] = attack
    if defense is not None:
        inputs["defense"] = defense
    labels = {**base, "recommender": recommender,
              "extractor": _extractor_of(config, recommender) if recommender else
              (extractor.labels.get("extractor") if extractor else None),
              "attack": attack.labels["attack"] if attack else CLEAN,
              "crafted_on": attack.labels.get("crafted_on") if attack else None,
              "eps": attack.labels.get("eps") if attack else None,
              "defense": defense.labels["defense"] if defense else CLEAN,
              **(override or {})}
    parts = [scenario, recommender or labels["extractor"] or "", labels["attack"]]
    if labels["eps"] is not None:
        parts.append(f"eps {labels['eps']:g}")
    parts.append(labels["defense"])
    name = f"evaluation {' / '.join(p for p in parts if p)} (seed {seed})"
    return planner.add("evaluation", name, slice_, inputs, labels)


@dataclass(frozen=True)
class _AttackRun:
    name: str
    target: str
    eps: float | None
    stage: Stage
    label: str | None = None  # the rows' attack label when it is not the name (a sweep)


def _attack_config(config: StudyConfig, attack: AttackSection, eps: float | None,
                   seed: int) -> dict[str, Any]:
    slice_ = attack.model_dump(mode="json")
    # threat: the same adversarial images serve both threat models (one attack stage);
    # evaluation and chunk change what is planned around the stage, not its output
    for key in ("eps", "evaluate", "recommender", "extractor", "threat", "diagnose",
                "evaluation", "chunk"):
        slice_.pop(key, None)
    if slice_["item_ids"] is None:
        del slice_["item_ids"]
    slice_.update(eps=eps, seed=seed, objective=attack_objective(attack),
                  items=attack_items(attack), family=attack_family(attack))
    if slice_["n_items"] is None and slice_["items"] == "cold":
        slice_["n_items"] = config.evaluation.cold_items
    if per_user(attack):  # the evaluation lists it attacks (absent otherwise: keys unchanged)
        slice_["lists"] = per_user_lists(config)
    return slice_


def _plan_attacks(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                  models: dict[str, Stage], seed: int, base: dict[str, Any]) -> list[_AttackRun]:
    config = planner.config
    runs: list[_AttackRun] = []
    for name, attack in config.attacks.items():
        targets: list[tuple[str | None, str | None]] = [
            ("recommender", t) for t in attack.recommender] + [
            ("extractor", t) for t in attack.extractor] or [(None, None)]  # c-SEMA on no model
        uses_eps = attack_method(attack.kind).uses_eps
        eps_list: list[float | None] = list(attack.eps) if uses_eps else [None]
        for role, target in targets:
            for eps in eps_list:
                if not attack.evaluation:  # the attack stages alone, one per chunk
                    for part in _chunks(attack):
                        _attack_stage(planner, data, extractors, models, name, part, role,
                                      target, eps, seed, base)
                    continue
                stage = _attack_stage(planner, data, extractors, models, name, attack, role,
                                      target, eps, seed, base)
                run = _AttackRun(name, target, eps, stage)
                runs.append(run)
                _attack_evaluations(planner, data, extractors, models, run, seed, base)
            _plan_diagnosis(planner, data, extractors, models, name, attack, role, target,
                            seed, base)
    return runs


def _chunks(attack: AttackSection) -> list[AttackSection]:
    """``attack`` once per ``chunk`` of its ``item_ids`` (itself when it has no chunk): each a
    stage keyed by its own items, so finished chunks stay cached."""
    ids = attack.item_ids
    if ids is None or attack.chunk is None:
        return [attack]
    return [attack.model_copy(update={"item_ids": ids[start:start + attack.chunk]})
            for start in range(0, len(ids), attack.chunk)]


def _plan_diagnosis(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                    models: dict[str, Stage], name: str, attack: AttackSection, role: str,
                    target: str, seed: int, base: dict[str, Any]) -> None:
    """The attack's ``diagnose`` sweep on one target, evaluated like the attack (attack label
    ``<attack>+diagnose``); no defense is applied to it."""
    sweep = diagnosis_attack(attack)
    if sweep is None or (attack.diagnose.targets and target not in attack.diagnose.targets):
        return
    for eps in sweep.eps:
        stage = _attack_stage(planner, data, extractors, models, name, sweep, role, target, eps,
                              seed, base, label=f"{name}{DIAGNOSE}", diagnosis=True)
        _attack_evaluations(planner, data, extractors, models,
                            _AttackRun(name, target, eps, stage, f"{name}{DIAGNOSE}"), seed, base)


def _attack_stage(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                  models: dict[str, Stage], name: str, attack: AttackSection, role: str | None,
                  target: str | None, eps: float | None, seed: int, base: dict[str, Any],
                  through: dict[str, Any] | None = None, fitted: Stage | None = None,
                  label: str | None = None, defense: str | None = None,
                  diagnosis: bool = False) -> Stage:
    config = planner.config
    slice_ = _attack_config(config, attack, eps, seed)
    if diagnosis:  # its own stage even where it repeats one of the attack's runs
        slice_["diagnosis"] = True
    inputs: dict[str, Stage] = {"data": data}
    if role == "recommender":
        assert target is not None
        inputs["target"] = models[target]
        extractor = _extractor_of(config, target)
        labels = {**base, "recommender": target, "extractor": extractor}
    elif role == "extractor":
        assert target is not None
        inputs["target"] = extractors[target]
        labels = {**base, "recommender": None, "extractor": target}
    else:  # no model: c-SEMA's inset alone
        labels = {**base, "recommender": None, "extractor": None}
    if through is not None:
        slice_["through"] = through
        if fitted is not None:
            inputs["defense"] = fitted
    labels.update(attack=label or name, eps=eps, crafted_on=target)
    if defense is not None:  # an adaptive attack: its rows are measured through the defense
        labels["defense"] = defense
    eps_text = f" eps {eps:g}" if eps is not None else ""
    through_text = f" through {defense}" if defense is not None else ""
    on = f" on {target}" if target is not None else ""
    ids = attack.item_ids
    items = "" if ids is None or attack.chunk is None else \
        f" items {ids[0]}..{ids[-1]}" if len(ids) > 1 else f" item {ids[0]}"
    title = f"attack {label or name}{on}{eps_text}{items}{through_text} (seed {seed})"
    return planner.add("attack", title, slice_, inputs, labels)


def _built_on(config: StudyConfig, model: str) -> str | None:
    """The extractor a listed model is built on (an extractor: itself)."""
    return model if model in config.extractors else _extractor_of(config, model)


def _evaluated_models(config: StudyConfig, attack: AttackSection, target: str) -> list[str]:
    """The recommenders and extractors a run of ``attack`` on ``target`` is measured on."""
    if attack.evaluate and target in config.extractors and len(attack.extractor) > 1:
        # An attack on several extractors: each run evaluates the listed models built on its
        # own, and the listed ones built on none of them (the platform's: a transfer).
        return [n for n in attack.evaluate if _built_on(config, n) == target
                or _built_on(config, n) not in attack.extractor]
    if attack.evaluate:
        return list(attack.evaluate)
    if target in config.recommenders:
        return [target]
    fact = "item_to_item" if attack_family(attack) == "item2item" else "needs_features"
    return [n for n, r in config.recommenders.items()
            if has_facts(r, fact) and r.extractor == target]


def _evaluated_recommenders(config: StudyConfig, attack: AttackSection, target: str) -> list[str]:
    return [n for n in _evaluated_models(config, attack, target) if n in config.recommenders]


def transferred(config: StudyConfig, labels: Any) -> bool:
    """Whether a stage's labels (or a results row) measure an attack on a model it was not
    crafted on: an attack on an extractor measured through another extractor, an attack
    through a recommender measured on another recommender."""
    crafted = labels.get("crafted_on")
    attack = config.attacks.get(str(labels.get("attack")).split("+")[0])
    if not isinstance(crafted, str) or attack is None:  # clean, or a missing value (NA)
        return False
    measured = labels.get("extractor") if attack.extractor else labels.get("recommender")
    return isinstance(measured, str) and measured != crafted


def _attack_evaluations(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                        models: dict[str, Stage], run: _AttackRun, seed: int,
                        base: dict[str, Any], defense: Stage | None = None) -> None:
    config = planner.config
    attack = config.attacks[run.name]
    family = attack_family(attack)
    extra = _family_extra(attack)
    measured = _evaluated_models(config, attack, run.target)
    recommenders = [n for n in measured if n in config.recommenders]
    if family == "item2item":
        on = [n for n in measured if n in config.extractors] or ([] if recommenders else
                                                                  [run.target])
        for name in on:
            _evaluation(planner, family, data, None, None, seed, base, attack=run.stage,
                        defense=defense, extra=extra, extractor=extractors[name])
    if family == "category":
        _category_evaluations(planner, data, models, run, recommenders, seed, base, defense)
        _classifier_evaluations(planner, data, extractors, run, measured, seed, base, defense)
        return
    for rec in recommenders:
        _evaluation(planner, family, data, models[rec], rec, seed, base, attack=run.stage,
                    defense=defense, extra=extra)


def threat_label(attack: str, threat: str) -> str:
    """The attack label of a category attack's rows: ``<attack>+<threat>`` (an adaptive run:
    ``<attack>+<threat>+adaptive``)."""
    adaptive = attack.endswith(ADAPTIVE)
    name = attack[:-len(ADAPTIVE)] if adaptive else attack
    return f"{name}+{threat}" + (ADAPTIVE if adaptive else "")


def _category_evaluations(planner: _Planner, data: Stage, models: dict[str, Stage],
                          run: _AttackRun, recommenders: list[str], seed: int,
                          base: dict[str, Any], defense: Stage | None) -> None:
    """CHR@K before (the clean-trained model) and after the attack. Poisoning (001): the model
    is retrained on the attacked (and defended) catalog's features, a recommender stage that
    depends on the attack; evasion: the attacked features are swapped into the clean-trained
    model."""
    attack = planner.config.attacks[run.name]
    threat = attack_threat(attack) or POISONING
    extra = _family_extra(attack)
    adaptive = str(run.stage.labels["attack"]).endswith(ADAPTIVE)
    # the run's own name: attacks that differ only in their threat share one attack stage
    label = threat_label(run.label or run.name + (ADAPTIVE if adaptive else ""), threat)
    override = {"attack": label, "eps": run.eps, "crafted_on": run.target,
                "defense": defense.labels["defense"] if defense is not None else CLEAN}
    for rec in recommenders:
        if defense is None and not adaptive:
            _evaluation(planner, "category", data, models[rec], rec, seed, base, attack=None,
                        extra=extra)
        if threat == EVASION:
            _evaluation(planner, "category", data, models[rec], rec, seed, base,
                        attack=run.stage, defense=defense, extra=extra, override=override)
            continue
        poisoned = _poisoned_recommender(planner, models[rec], defense or run.stage, override)
        _evaluation(planner, "category", data, poisoned, rec, seed, base, attack=None,
                    extra=extra, override=override)


def _classifier_evaluations(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                            run: _AttackRun, measured: list[str], seed: int,
                            base: dict[str, Any], defense: Stage | None) -> None:
    """A transfer category attack judged by each other extractor it is measured through (listed,
    or under a listed recommender) whose head is on the catalog's categories: does that
    classifier now say the target class? (The crafted-on extractor's own success rate is the
    attack stage's.)"""
    config = planner.config
    judges: list[str] = []
    for name in measured:
        extractor = _built_on(config, name)
        if extractor in config.extractors and extractor != run.target and \
                extractor not in judges and catalog_classifier(config.extractors[extractor]):
            judges.append(extractor)
    for name in judges:
        _evaluation(planner, "classifier", data, None, None, seed, base, attack=run.stage,
                    defense=defense, extractor=extractors[name])


def _poisoned_recommender(planner: _Planner, clean: Stage, poison: Stage,
                          override: dict[str, Any]) -> Stage:
    """``clean``'s recommender (same config, seed and inputs) trained on the catalog whose
    attacked items carry ``poison``'s images (an attack stage, or a defense applied to one)."""
    config = {k: v for k, v in clean.config.items() if k != "threads"}
    inputs = {role: planner.seen[key] for role, key in clean.inputs.items()}
    inputs["poison"] = poison
    labels = {**clean.labels, **override}
    eps = override["eps"]
    on = override["attack"] + (f" eps {eps:g}" if eps is not None else "")
    if override["defense"] != CLEAN:
        on += f" / {override['defense']}"
    name = f"recommender {labels['recommender']} poisoned by {on} (seed {labels['seed']})"
    return planner.add("recommender", name, config, inputs, labels)


def _family_extra(attack: AttackSection) -> dict[str, Any]:
    if attack_family(attack) == "category":
        return {"source_category": attack.source_category,
                "target_category": attack.target_category}
    return {}


def _defense_label(name: str, strength: float | None) -> str:
    return name if strength is None else f"{name}={strength:g}"


def _plan_defenses(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                   models: dict[str, Stage], runs: list[_AttackRun], seed: int,
                   base: dict[str, Any]) -> None:
    config = planner.config
    for name, defense in config.defenses.items():
        if not defense_fact(defense.kind, "pixel"):
            continue  # adversarial training: its robust extractors are ordinary extractors
        applies = [r for r in runs if _applies(defense, r, config)]  # evaluated runs only
        for run in applies:
            fitted = _fit_stage(planner, data, models, defense, name, run, applies, seed, base)
            for strength in defense.sweep():
                stage = _apply_stage(planner, data, defense, name, strength, run.stage, fitted,
                                     seed, base)
                _attack_evaluations(planner, data, extractors, models, run, seed, base, stage)
                if defense.adapts(run.name):
                    _adaptive(planner, data, extractors, models, defense, name, strength, run,
                              fitted, seed, base)
        if defense.clean:
            _clean_cost(planner, data, extractors, models, defense, name, applies, seed, base)


def _applies(defense: DefenseSection, run: _AttackRun, config: StudyConfig) -> bool:
    if defense_fact(defense.kind, "trained") and not (
            run.target in config.recommenders and reconstructable(config, run.target)):
        return False  # trained against the recommender an attack goes through
    if defense.attacks:
        return run.name in defense.attacks
    return attack_method(config.attacks[run.name].kind).uses_eps  # perturbations, not insets


def _fit_stage(planner: _Planner, data: Stage, models: dict[str, Stage],
               defense: DefenseSection, name: str, run: _AttackRun, runs: list[_AttackRun],
               seed: int, base: dict[str, Any]) -> Stage | None:
    """Reconstruction: train T and the detector against the run's (ranking) recommender, once
    per recommender; the detection test runs at ``detection_eps`` or the covered attacks' eps."""
    if not defense_fact(defense.kind, "trained"):
        return None
    config = planner.config
    model = ranking_model(config, run.target)
    params = defense_params(defense)
    eps = params.detection_eps or sorted({r.eps for r in runs if r.eps is not None
                                          and ranking_model(config, r.target) == model})
    slice_ = {"action": "fit", "kind": defense.kind, "params": params.train,
              "detection_eps": eps, "seed": seed}
    labels = {**base, "defense": name, "recommender": model,
              "extractor": _extractor_of(config, model)}
    return planner.add("defense", f"defense {name}: fit on {model} (seed {seed})", slice_,
                       {"data": data, "model": models[model]}, labels)


def _apply_stage(planner: _Planner, data: Stage, defense: DefenseSection, name: str,
                 strength: float | None, attack: Stage | None, fitted: Stage | None, seed: int,
                 base: dict[str, Any]) -> Stage:
    slice_ = {"action": "apply", "kind": defense.kind, "strength": strength,
              "params": defense_params(defense).apply, "seed": seed}
    inputs: dict[str, Stage] = {"data": data}
    if attack is not None:
        inputs["attack"] = attack
    if fitted is not None:
        inputs["model"] = fitted
    label = _defense_label(name, strength)
    labels = {**base, "defense": label}
    if fitted is not None:  # its detector's rows belong to the recommender it was trained for
        labels.update(recommender=fitted.labels["recommender"],
                      extractor=fitted.labels["extractor"])
    if attack is not None:
        labels.update(attack=attack.labels["attack"], eps=attack.labels.get("eps"),
                      crafted_on=attack.labels.get("crafted_on"))
    on = "clean images"
    if attack is not None:
        eps = attack.labels.get("eps")
        on = attack.labels["attack"] + (f" eps {eps:g}" if eps is not None else "")
    return planner.add("defense", f"defense {label} on {on} (seed {seed})", slice_, inputs,
                       labels)


def _adaptive(planner: _Planner, data: Stage, extractors: dict[str, Stage],
              models: dict[str, Stage], defense: DefenseSection, name: str,
              strength: float | None, run: _AttackRun, fitted: Stage | None, seed: int,
              base: dict[str, Any]) -> None:
    """The attack re-run through the defense (BPDA / EOT / detector-aware), then defended and
    evaluated like the non-adaptive one: attack label ``<attack>+adaptive``."""
    config = planner.config
    attack = config.attacks[run.name]
    role = "recommender" if run.target in config.recommenders else "extractor"
    through = {"kind": defense.kind, "strength": strength,
               "params": defense_params(defense).adaptive}
    label = f"{run.name}{ADAPTIVE}"
    stage = _attack_stage(planner, data, extractors, models, run.name, attack, role, run.target,
                          run.eps, seed, base, through=through, fitted=fitted, label=label,
                          defense=_defense_label(name, strength))
    applied = _apply_stage(planner, data, defense, name, strength, stage, fitted, seed, base)
    adaptive_run = _AttackRun(run.name, run.target, run.eps, stage)
    _attack_evaluations(planner, data, extractors, models, adaptive_run, seed, base, applied)


def _clean_cost(planner: _Planner, data: Stage, extractors: dict[str, Stage],
                models: dict[str, Stage], defense: DefenseSection, name: str,
                runs: list[_AttackRun], seed: int, base: dict[str, Any]) -> None:
    """The defense applied to every clean image: what it costs recommendation quality."""
    config = planner.config
    recommenders: list[str] = []
    for run in runs:
        for rec in _evaluated_recommenders(config, config.attacks[run.name], run.target):
            if rec not in recommenders:
                recommenders.append(rec)
    for rec in recommenders:
        run = next(r for r in runs if rec in _evaluated_recommenders(
            config, config.attacks[r.name], r.target))
        fitted = _fit_stage(planner, data, models, defense, name, run, runs, seed, base)
        scenario = "two-stage" if config.recommenders[rec].kind == "two-stage" else "ranking"
        for strength in defense.sweep():
            stage = _apply_stage(planner, data, defense, name, strength, None, fitted, seed, base)
            _evaluation(planner, scenario, data, models[rec], rec, seed, base, attack=None,
                        defense=stage)


__all__ = ["ADAPTIVE", "CLEAN", "DIAGNOSE", "Plan", "dataset_label", "plan_study", "threat_label",
           "transferred"]
