"""The attack stage: perturb item images with the attack layer and measure the perturbation.

Output contract (what evaluations and the report read):

* ``items.npy`` - int64 catalog indices of the attacked items (attack items for pairs);
* ``adversarial.npy`` - their adversarial images, uint8 N x C x H x W (quantised, DESIGN.md
  section 2);
* ``pairs.npy`` - int64 P x 2 (attack item, target item), for item-to-item attacks;
* ``lists.npz`` - per-user attacks (objective ``bpr-per-user``): ``users`` and their sampled
  lists ``items`` (users x (1 + negatives), test item first); ``items.npy`` then holds the
  catalog item of every attacked image, the lists row by row;
* ``adversarial/`` - a few PNGs (``<item>_clean.png``, ``<item>_adv.png``) for the report;
* ``convergence.npz`` - iterative attacks only: per step (``step``) the ``mean``, ``q10``,
  ``q50`` and ``q90`` of the objective over the attacked items (all engine runs of the stage
  side by side; C&W: its last binary-search round; INSA with user minibatches: per epoch, the
  mean over its minibatch steps), and ``info["convergence"]`` its verdict,
  :func:`varsec.metrics.convergence.converged` (``converged``, ``iterative``, ``steps``,
  ``total_gain``, ``tail_gain``, ``rule``, ...); FGSM and c-SEMA record
  ``{"converged": true, "iterative": false, ...}``;
* ``item_measures.parquet`` - per attacked item (``item`` catalog index, ``item_id``) and
  ``metric`` its ``value`` (and a ``note``): ``success`` (when the objective judges it),
  ``steps`` (engine steps; queries for Square), ``linf``, ``l2``, ``psnr``, ``ssim``, ``lpips``
  (NaN with the reason in ``note`` when its weights are absent) and the objective before and
  after the attack: ``predicted_before`` / ``_after`` (classifier), ``distance_to_hook`` or
  ``distance_to_target`` (feature objectives, c-SEMA on a model), ``mean_score`` with
  ``prediction_shift`` (INSA), ``bpr_loss`` (BPR), ``objective`` (others). The means of its
  ``success`` and image measures are the stage's rows;
* rows - ``success_rate`` (when the objective has one), ``feature_loss``, ``linf``, ``l2``,
  ``psnr``, ``ssim`` and ``lpips`` (only when its weights are present), protocol ``attack``.

Families (see :func:`varsec.study.schema.attack_family`): ``promotion`` (INSA / EXPA / c-SEMA on
cold items, through the ranker of a two-stage recommender), ``category`` (targeted or untargeted
classifier attacks on a source category), ``item2item`` (feature-cosine attacks on random
(attacker, target) pairs of different categories; c-SEMA off a recommender pastes each pair's
target), ``ranking`` (BPR-untargeted poisoning of every item image through a pairwise visual
recommender; or, per user, each user's sampled list). With ``item_ids`` every family attacks
exactly those items: the promoted items, the category attack's items, the attack items of pairs
whose target is the hook item, the poisoned items. An attack on no model (c-SEMA,
``evaluation: false``) has no ``target`` input.

An attack config with ``through`` (planned for a defense with ``adaptive: true``) is the adaptive
attacker: the engine attacks the model behind that defense (BPDA / EOT hooks of the input
transforms, the detector-aware objective of the reconstruction defense, whose fit stage is the
``defense`` input), see :func:`varsec.study.builtin.defenses.adaptive_objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from varsec.attacks.hooks import catalog_of
from varsec.errors import ConfigError, DataError
from varsec.study.builtin.common import (
    category_code,
    choose_categories,
    evaluation_lists,
    extractor_features,
    feature_layer,
    load_backbone,
    load_model,
    load_source,
    require_dataset,
    sample_cold_items,
    test_items,
    two_stage_parts,
)
from varsec.study.files import (
    ADVERSARIAL,
    CONVERGENCE,
    ITEM_MEASURES,
    ITEMS,
    LISTS,
    PAIRS,
    PROBES,
)
from varsec.study.results import row
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

Engine = Callable[..., Any]  # run_attack(objective, images, rule, **options) -> AttackResult
Runs = list[tuple[Any, Any]]  # (step rule, AttackResult.history) of every engine call
Measure = Callable[[np.ndarray], dict[str, np.ndarray]]  # uint8 images -> per-item values


@dataclass
class Attacked:
    """What a family attacked: the items (catalog indices), their uint8 adversarial images,
    what the stage's info records, and per item the engine's success and steps (None where
    the attack has no such notion) and how the objective reads an image (before / after)."""

    items: np.ndarray
    adversarial: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    success: np.ndarray | None = None
    steps: np.ndarray | None = None
    measure: Measure | None = None


def _engine_result(items: np.ndarray, result: Any, info: dict[str, Any],
                   measure: Measure | None) -> Attacked:
    """An :class:`Attacked` from an engine run."""
    success = None if result.success is None else result.success.numpy()
    return Attacked(items, result.images.numpy(), info, success, result.steps.numpy(), measure)


def _rule(config: dict[str, Any], steps: int | None = None) -> Any:
    """The step rule of ``config``, built by its registered attack; every step size in 8-bit
    levels (``steps``: the optimizer steps when they differ from the section's, as INSA's
    epochs x user minibatches)."""
    from varsec.attacks.registry import attack_method
    from varsec.study.schema import resolve_alpha

    method, eps = attack_method(config["kind"]), config["eps"]
    steps = config["steps"] if steps is None else steps
    alpha = resolve_alpha(config["alpha"], eps, steps) if method.uses_alpha else None
    return method.build(eps, steps, alpha, config["params"])


def _images(source: Any, items: np.ndarray) -> np.ndarray:
    catalog = catalog_of(source)
    if catalog.images is None:
        raise StageUnavailableError(f"catalog {catalog.name!r} is features-only: pixel "
                                    "attacks need images.")
    return np.ascontiguousarray(np.asarray(catalog.images[items]))


def _listed(source: Any, config: dict[str, Any]) -> np.ndarray | None:
    """The catalog indices of ``item_ids`` (None when the family chooses its items)."""
    ids = config.get("item_ids")
    if ids is None:
        return None
    return catalog_of(source).index_of(np.asarray(ids, dtype=str))


def _engine(ctx: StageContext, config: dict[str, Any], inputs: dict[str, StageOutput]) -> Engine:
    """``run_attack``, or for an adaptive attack ``run_attack`` through the defense."""
    from varsec.attacks import run_attack

    through = config.get("through")
    if through is None:
        return run_attack

    def engine(objective: Any, images: Any, rule: Any, **options: Any) -> Any:
        from varsec.study.builtin.defenses import adaptive_objective

        objective, hook = adaptive_objective(objective, through, inputs.get("defense"),
                                             ctx.device)
        return run_attack(objective, images, rule, transform=hook, **options)

    return engine


def _hook(config: dict[str, Any]) -> Any:
    hook = config["hook_item"]
    return None if hook in (None, "", "most-popular") else hook


def _distance(objective: Any, name: str) -> Measure:
    """A feature objective's distance to its target per image (minus its loss)."""

    def measure(images: np.ndarray) -> dict[str, np.ndarray]:
        return {name: (-objective.evaluate(torch.from_numpy(images))).numpy()}

    return measure


def _objective_values(objective: Any, name: str = "objective") -> Measure:
    """The objective's value per image (what the engine maximises)."""

    def measure(images: np.ndarray) -> dict[str, np.ndarray]:
        return {name: objective.evaluate(torch.from_numpy(images)).numpy()}

    return measure


def _mean_score(objective: Any) -> Measure:
    """INSA: each image's mean score over the recommender's users (prediction shift, 000 eq 4,
    is its change)."""
    from varsec.vision.perturbation import uint8_to_float

    @torch.no_grad()
    def measure(images: np.ndarray) -> dict[str, np.ndarray]:
        scores = objective.scores(uint8_to_float(images, str(objective.device)))
        return {"mean_score": scores.mean(0).cpu().numpy()}

    return measure


def _feature_space(ranker_output: StageOutput, device: str,
                   ranker: Any = None) -> tuple[Any, str | None]:
    """The feature map a promotion ranker sees images through: its extractor stage's backbone
    and layer, or DVBPR's own CNN (of ``ranker`` when it is loaded already); (None, None) for
    a ranker that shows none (a model behind an endpoint)."""
    extractor_output = ranker_output.inputs.get("extractor")
    if extractor_output is not None:
        return load_backbone(extractor_output, device), feature_layer(extractor_output)
    ranker = load_model(ranker_output, device) if ranker is None else ranker
    if not getattr(ranker, "differentiable", True):
        return None, None
    return getattr(ranker, "backbone", ranker), None


def _csema_options(config: dict[str, Any]) -> dict[str, Any]:
    params = config["params"]
    return {k: params[k] for k in ("size", "corner", "margin", "caption") if k in params}


def _promotion(ctx: StageContext, config: dict[str, Any], source: Any,
               target: StageOutput | None, engine: Engine) -> Attacked:
    from varsec.attacks import INSA, csema_batch, expa_objective, resolve_hook

    assert target is not None
    items = _listed(source, config)
    if items is None:
        items = sample_cold_items(require_dataset(source, "choosing cold items"),
                                  config["n_items"], config["seed"])
    clean = _images(source, items)
    ranker_output = target.inputs.get("ranker", target)
    params = config["params"]
    if config["objective"] == "none":  # c-SEMA: the hook item pasted in, no model
        hook = resolve_hook(source, _hook(config))
        hook_image = _images(source, np.array([hook]))[0]
        images = csema_batch(clean, hook_image, **_csema_options(config)).numpy()
        extractor, layer = _feature_space(ranker_output, ctx.device)
        if extractor is None:  # nothing to measure the distance to the hook in
            return Attacked(items, images, {"hook": int(hook)})
        seen = expa_objective(extractor, source, _hook(config), metric="l2", layer=layer)
        return Attacked(items, images, {"hook": int(hook)},
                        measure=_distance(seen, "distance_to_hook"))
    ranker = load_model(ranker_output, ctx.device)
    if config["objective"] == "probe-rank":
        objective, info = _probe_objective(ctx, config, source, target)
        measure = _objective_values(objective, "probe_rank")
    elif config["objective"] == "insa":
        objective = INSA(ranker, users_per_step=params.get("users_per_step"),
                         aggregate=params.get("aggregate", "logsumexp"), seed=config["seed"])
        info: dict[str, Any] = {"optimizer_steps": objective.optimizer_steps(config["steps"])}
        measure = _mean_score(objective)
    else:
        extractor, layer = _feature_space(ranker_output, ctx.device, ranker)
        objective = expa_objective(extractor, source, _hook(config), metric="l2", layer=layer)
        info = {"hook": int(resolve_hook(source, _hook(config)))}
        measure = _distance(objective, "distance_to_hook")
    rule = _rule(config, info.get("optimizer_steps"))
    result = engine(objective, clean, rule, seed=config["seed"],
                    batch_size=params.get("batch_size", 64), device=ctx.device)
    return _engine_result(items, result, {**info, "success_rate": result.success_rate}, measure)


def _probe_objective(ctx: StageContext, config: dict[str, Any], source: Any,
                     target: StageOutput) -> tuple[Any, dict[str, Any]]:
    """The probes' rank feedback: a seeded sample of users with histories and a test item,
    saved as ``probes.npy`` (the evaluation leaves them out), and their top-N lists."""
    from varsec.attacks.probe_rank import ProbeRank
    from varsec.recsys import TwoStage

    dataset = require_dataset(source, "a probe-rank objective")
    settings = {name: config["params"].get(name, spec.default)
                for name, spec in ProbeRank.params.items()}
    users = np.flatnonzero(test_items(dataset, None, config["seed"]) >= 0)
    if settings["probes"] >= len(users):
        raise ConfigError(f"{settings['probes']} probe accounts leave no other user to "
                          f"evaluate on ({len(users)} users have a test item).")
    rng = np.random.default_rng(np.random.SeedSequence([config["seed"], 104729]))
    probes = np.sort(rng.choice(users, settings["probes"], replace=False))
    np.save(ctx.workdir / PROBES, probes)
    first, ranker, k = two_stage_parts(target, ctx.device)
    pipeline = TwoStage(first, ranker, k=k)
    sets = pipeline.prepare(dataset, users=probes)
    return ProbeRank(pipeline, sets, settings["top_n"]), {"probes": len(probes), **settings}


def _named_target(source: Any, target: str | None) -> dict[str, Any]:
    """The category choice of an attack on listed items: the target (if any), no source."""
    code = None if target is None else category_code(source, target)
    name = None if code is None else catalog_of(source).category_name(code)
    return {"source": None, "source_code": None, "target": name, "target_code": code,
            "target_chosen": "config"}


def _category(ctx: StageContext, config: dict[str, Any], source: Any,
              target: StageOutput | None, engine: Engine) -> Attacked:
    from varsec.attacks import ClassifierObjective
    from varsec.metrics.attack import classifier_success, predict

    assert target is not None
    backbone = load_backbone(target, ctx.device)
    catalog = catalog_of(source)
    if catalog.categories is None:
        raise DataError(f"catalog {catalog.name!r} has no categories; a category attack "
                        "needs them.")
    categories = np.asarray(catalog.categories)
    items = _listed(source, config)
    if items is not None and config["source_category"] is None:
        choice = _named_target(source, config["target_category"])
    else:
        choice = choose_categories(require_dataset(source, "choosing categories"),
                                   config["source_category"], config["target_category"])
    if items is None:
        items = np.flatnonzero(categories == choice["source_code"]) \
            if choice["source_code"] is not None else np.arange(len(catalog))
        if config["n_items"] and config["n_items"] < len(items):
            rng = np.random.default_rng(config["seed"])
            items = np.sort(rng.choice(items, config["n_items"], replace=False))
    labels = categories[items]
    goal = None
    if config["objective"] == "classifier-targeted":
        goal = np.full(len(items), choice["target_code"])
    objective = ClassifierObjective(backbone, labels=labels, target=goal,
                                    kappa=config["params"].get("kappa", 0.0))
    result = engine(objective, _images(source, items), _rule(config), seed=config["seed"],
                    batch_size=config["params"].get("batch_size", 128), device=ctx.device)
    adversarial = result.images.numpy()
    success = classifier_success(backbone, adversarial, labels=labels, target=goal)

    def measure(images: np.ndarray) -> dict[str, np.ndarray]:
        return {"predicted": predict(backbone, images).astype(np.float64)}

    return Attacked(items, adversarial, {"success_rate": float(np.mean(success)),
                                         "categories": choice},
                    success, result.steps.numpy(), measure)


def _pairs(ctx: StageContext, config: dict[str, Any], source: Any,
           target: StageOutput | None, engine: Engine) -> Attacked:
    """(attack item, target item) pairs: random pairs of different categories, or each listed
    item with the hook item as its target; the attack pulls the attack item's features towards
    its target's (c-SEMA pastes the target in instead)."""
    from varsec.attacks import FeatureTarget, expa_objective, resolve_hook
    from varsec.metrics.attack import random_item_pairs

    attackers = _listed(source, config)
    if attackers is None:
        pairs = random_item_pairs(catalog_of(source).categories, int(config["n_items"] or 1000),
                                  seed=config["seed"])
        targets, attackers, name = pairs[:, 0], pairs[:, 1], "distance_to_target"
    else:
        hook = resolve_hook(source, _hook(config))
        targets, name = np.full(len(attackers), hook, dtype=np.int64), "distance_to_hook"
    np.save(ctx.workdir / PAIRS, np.stack([attackers, targets], 1).astype(np.int64))
    # the thesis' cosine unless asked for L2; c-SEMA is measured as EXPA's L2 pull is
    metric = "l2" if config["objective"] in ("feature-l2", "none") else "cosine"
    objective = None
    if target is not None:
        backbone, layer = load_backbone(target, ctx.device), feature_layer(target)
        if config.get("item_ids") is None:
            features = torch.as_tensor(extractor_features(target)[targets])
            objective = FeatureTarget(backbone, target_features=features, metric=metric,
                                      layer=layer)
        else:
            objective = expa_objective(backbone, source, _hook(config), metric=metric,
                                       layer=layer)
    measure = None if objective is None else _distance(objective, name)
    if config["objective"] == "none":  # c-SEMA: each attack item gets its target as inset
        images = _insets(_images(source, attackers), _images(source, targets), config)
        return Attacked(attackers, images, {}, measure=measure)
    assert objective is not None
    result = engine(objective, _images(source, attackers), _rule(config), seed=config["seed"],
                    early_stop=False, batch_size=config["params"].get("batch_size", 128),
                    device=ctx.device)
    return _engine_result(attackers, result, {}, measure)


def _insets(images: np.ndarray, targets: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """c-SEMA of each image with its own target image as the inset."""
    from varsec.attacks.csema import csema

    options = _csema_options(config)
    composed = [csema(image, inset, **options).image
                for image, inset in zip(images, targets, strict=True)]
    return np.stack(composed) if composed else images.copy()


def _poison(ctx: StageContext, config: dict[str, Any], source: Any,
            target: StageOutput | None, engine: Engine) -> Attacked:
    """Every item image (or the listed ones), untargeted on the BPR loss (002 eq 3-4;
    varsec.attacks.poison_catalog with the engine of this stage); with a per-user objective,
    each user's sampled list."""
    from varsec.attacks import BPRUntargeted

    assert target is not None
    model = load_model(target, ctx.device)
    if "lists" in config:
        return _per_user(ctx, config, require_dataset(source, "the per-user BPR attack"), model,
                         engine)
    objective = BPRUntargeted(model, require_dataset(source, "the BPR objective"),
                              _listed(source, config), seed=config["seed"])
    result = engine(objective, objective.images, _rule(config), seed=config["seed"],
                    batch_size=config["params"].get("batch_size", 128), desc="BPR-untargeted")
    return _engine_result(np.asarray(objective.items), result,
                          {"success_rate": result.success_rate},
                          _objective_values(objective, "bpr_loss"))


def _per_user(ctx: StageContext, config: dict[str, Any], dataset: Any, model: Any,
              engine: Engine) -> Attacked:
    """Each evaluated user's sampled list, its images attacked for that user (002 read per test
    triplet, :mod:`varsec.attacks.bpr_per_user`): ``lists.npz`` holds the users and lists,
    ``items.npy`` the catalog item of every attacked image (the lists row by row)."""
    from varsec.attacks.bpr_per_user import BPRPerUser, per_user_users

    lists_config, seed = config["lists"], config["seed"]
    users, lists = evaluation_lists(dataset, lists_config["negatives"],
                                    lists_config["max_users"], seed)
    keep = np.isin(users, per_user_users(users, config["params"].get("users"), seed))
    users, lists = users[keep], lists[keep]
    objective = BPRPerUser(model, dataset, users, lists)
    result = engine(objective, objective.images, _rule(config), seed=seed,
                    batch_size=config["params"].get("batch_size", 128), desc="BPR per user")
    np.savez(ctx.workdir / LISTS, users=users, items=lists)
    return _engine_result(lists.reshape(-1), result, {"users": len(users)}, None)


_FAMILIES = {"promotion": _promotion, "category": _category, "item2item": _pairs,
             "ranking": _poison}


def _measure_rows(ctx: StageContext, clean: np.ndarray, adversarial: np.ndarray,
                  measures: pd.DataFrame, extras: dict[str, Any],
                  feature_source: StageOutput | None) -> list[dict[str, Any]]:
    rows = []
    if extras.get("success_rate") is not None:
        rows.append(row("success_rate", extras["success_rate"], protocol="attack",
                        n=len(clean)))
    for column in IMAGE_MEASURES:
        values = measures[column].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size:
            rows.append(row(column, float(finite.mean()), protocol="attack", n=int(finite.size)))
    ctx.info["lpips"] = measures.attrs.get("lpips")
    if feature_source is not None:
        from varsec.metrics.attack import feature_loss

        backbone = load_backbone(feature_source, ctx.device)
        loss = feature_loss(backbone, clean, adversarial, layer=feature_layer(feature_source))
        rows.append(row("feature_loss", float(np.mean(loss)), protocol="attack", n=len(loss)))
    return rows


IMAGE_MEASURES = ("linf", "l2", "psnr", "ssim", "lpips")


def item_table(attacked: Attacked, item_ids: np.ndarray, clean: np.ndarray,
               measures: pd.DataFrame) -> pd.DataFrame:
    """The per-item table (module docstring): one row per attacked item and metric."""
    values: dict[str, np.ndarray] = {}
    if attacked.success is not None:
        values["success"] = np.asarray(attacked.success, dtype=np.float64)
    if attacked.steps is not None:
        values["steps"] = np.asarray(attacked.steps, dtype=np.float64)
    for column in IMAGE_MEASURES:
        values[column] = measures[column].to_numpy(dtype=np.float64)
    if attacked.measure is not None:
        before, after = attacked.measure(clean), attacked.measure(attacked.adversarial)
        for name in before:
            values[f"{name}_before"] = np.asarray(before[name], dtype=np.float64)
            values[f"{name}_after"] = np.asarray(after[name], dtype=np.float64)
            if name == "mean_score":
                values["prediction_shift"] = values[f"{name}_after"] - values[f"{name}_before"]
    lpips = measures.attrs.get("lpips", "computed")
    n = len(attacked.items)
    frame = pd.DataFrame({
        "item": np.tile(np.asarray(attacked.items, dtype=np.int64), len(values)),
        "item_id": np.tile(np.asarray(item_ids, dtype=str), len(values)),
        "metric": np.repeat(list(values), n),
        "value": np.concatenate(list(values.values())) if values else np.zeros(0),
    })
    frame["note"] = np.where((frame["metric"] == "lpips") & (lpips != "computed"), lpips, "")
    return frame


def _save_examples(ctx: StageContext, items: np.ndarray, clean: np.ndarray,
                   adversarial: np.ndarray, count: int) -> None:
    from PIL import Image

    folder = ctx.workdir / "adversarial"
    folder.mkdir()
    for item, a, b in list(zip(items, clean, adversarial, strict=True))[:count]:
        for name, image in (("clean", a), ("adv", b)):
            array = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
            Image.fromarray(array).save(folder / f"{int(item)}_{name}.png")


def _estimate(config: dict[str, Any], study: Any) -> float:
    n = len(config["item_ids"]) if config.get("item_ids") else config.get("n_items") or 100
    if "lists" in config:  # per user: every list image of every (sampled) user
        n = (config["params"].get("users") or 1000) * (config["lists"]["negatives"] + 1)
    return 2.0 + n * max(1, config.get("steps", 1)) * 0.002


def _budget(config: dict[str, Any], optimizer_steps: int | None) -> dict[str, Any]:
    """The budget the attack ran with beside the paper's (``paper_budget``), for the report:
    steps as the study gives them, the optimizer steps they make, the step size in 8-bit
    levels (C&W-L2: its tanh-space rate) and how far a pixel can travel."""
    from varsec.attacks.registry import attack_method

    method = attack_method(config["kind"])
    if not method.uses_eps:
        return {"paper": config.get("paper_budget")}
    rule = _rule(config, optimizer_steps)
    described = rule.describe()
    size = described.get("alpha", described.get("lr", getattr(rule, "alpha", None)))
    taken = int(described.get("steps", config["steps"]))
    budget: dict[str, Any] = {"steps": int(config["steps"]), "optimizer_steps": taken,
                              "step_size": None if size is None else float(size),
                              "unit": "tanh" if method.step_unit == "tanh" else "8-bit levels",
                              "eps": config["eps"], "paper": config.get("paper_budget")}
    if size is not None and method.step_unit != "tanh":
        budget["reach"] = float(size) * taken
    return budget


def _recording(engine: Engine, runs: Runs) -> Engine:
    """``engine`` that keeps each run's step rule and objective history in ``runs``."""

    def recorded(objective: Any, images: Any, rule: Any, **options: Any) -> Any:
        result = engine(objective, images, rule, **options)
        runs.append((rule, getattr(result, "history", None)))
        return result

    return recorded


def _judged_history(config: dict[str, Any], rule: Any, history: Any) -> tuple[np.ndarray, str]:
    """The steps x items history the verdict is about and its unit: C&W's last binary-search
    round (each round restarts from the clean image with another constant); INSA's
    user-minibatch steps averaged per epoch (each step sees other users, an epoch all)."""
    values = np.asarray(history, dtype=np.float64)
    if getattr(rule, "binary_search_steps", None):  # C&W: each round restarts
        return values[-rule.steps:], "step"
    epochs = int(config["steps"])
    if config["objective"] == "insa" and 0 < epochs < len(values) and len(values) % epochs == 0:
        return values.reshape(epochs, len(values) // epochs, -1).mean(1), "epoch"
    return values, "step"


def _convergence(ctx: StageContext, config: dict[str, Any], runs: Runs) -> dict[str, Any]:
    """Write ``convergence.npz`` and return the info summary (module docstring)."""
    from varsec.metrics.convergence import RULE, combine_histories, converged, curve_summary

    iterative = [(rule, h) for rule, h in runs if h is not None and rule.name != "fgsm"]
    if not iterative:
        steps = max((int(getattr(rule, "steps", 1)) for rule, _ in runs), default=0)
        return {"converged": True, "iterative": False, "steps": steps, "total_gain": 0.0,
                "tail_gain": 0.0, "rule": RULE}
    judged = [_judged_history(config, rule, history) for rule, history in iterative]
    combined = combine_histories([values for values, _ in judged])
    summary = curve_summary(combined)
    np.savez(ctx.workdir / CONVERGENCE, **summary)
    return {**converged(summary["mean"]).as_info(), "unit": judged[0][1],
            "items": int(combined.shape[1])}


@register_stage("attack", version="3", estimate=_estimate)
def attack_stage(ctx: StageContext, config: dict[str, Any],
                 inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Run the attack (see the module docstring for the outputs)."""
    from varsec.metrics.image import image_measures

    source = load_source(inputs["data"])
    target = inputs.get("target")
    runs: Runs = []
    engine = _recording(_engine(ctx, config, inputs), runs)
    attacked = _FAMILIES[config["family"]](ctx, config, source, target, engine)
    ctx.info["convergence"] = _convergence(ctx, config, runs)
    items = np.asarray(attacked.items, dtype=np.int64)
    attacked.adversarial = np.ascontiguousarray(attacked.adversarial, dtype=np.uint8)
    clean = _images(source, items)
    np.save(ctx.workdir / ITEMS, items)
    np.save(ctx.workdir / ADVERSARIAL, attacked.adversarial)
    _save_examples(ctx, items, clean, attacked.adversarial, config["save_images"])
    feature_source = None if target is None else \
        target if target.kind == "extractor" else target.find("extractor")
    extras = dict(attacked.info)
    optimizer_steps = extras.pop("optimizer_steps", None)
    ctx.info.update({k: v for k, v in extras.items() if k != "success_rate"},
                    items=len(items), family=config["family"], objective=config["objective"],
                    budget=_budget(config, optimizer_steps))
    measures = image_measures(clean, attacked.adversarial)
    rows = _measure_rows(ctx, clean, attacked.adversarial, measures, extras, feature_source)
    ids = catalog_of(source).item_ids[items]
    item_table(attacked, ids, clean, measures).to_parquet(ctx.workdir / ITEM_MEASURES,
                                                          index=False)
    return rows
