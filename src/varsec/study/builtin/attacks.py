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
* rows - ``success_rate`` (when the objective has one), ``feature_loss``, ``linf``, ``l2``,
  ``psnr``, ``ssim`` and ``lpips`` (only when its weights are present), protocol ``attack``.

Families (see :func:`varsec.study.schema.attack_family`): ``promotion`` (INSA / EXPA / c-SEMA on
cold items, through the ranker of a two-stage recommender), ``category`` (targeted or untargeted
classifier attacks on a source category), ``item2item`` (feature-cosine attacks on random
(attacker, target) pairs of different categories), ``ranking`` (BPR-untargeted poisoning of every
item image through a pairwise visual recommender; or, per user, each user's sampled list).

An attack config with ``through`` (planned for a defense with ``adaptive: true``) is the adaptive
attacker: the engine attacks the model behind that defense (BPDA / EOT hooks of the input
transforms, the detector-aware objective of the reconstruction defense, whose fit stage is the
``defense`` input), see :func:`varsec.study.builtin.defenses.adaptive_objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from varsec.errors import ConfigError
from varsec.study.builtin.common import (
    choose_categories,
    evaluation_lists,
    extractor_features,
    feature_layer,
    load_backbone,
    load_dataset,
    load_model,
    sample_cold_items,
    test_items,
    two_stage_parts,
)
from varsec.study.files import ADVERSARIAL, CONVERGENCE, ITEMS, LISTS, PAIRS, PROBES
from varsec.study.results import row
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

Engine = Callable[..., Any]  # run_attack(objective, images, rule, **options) -> AttackResult
Runs = list[tuple[Any, Any]]  # (step rule, AttackResult.history) of every engine call


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


def _images(dataset: Any, items: np.ndarray) -> np.ndarray:
    if dataset.catalog.images is None:
        raise StageUnavailableError(f"catalog {dataset.catalog.name!r} is features-only: pixel "
                                    "attacks need images.")
    return np.ascontiguousarray(np.asarray(dataset.catalog.images[items]))


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


def _promotion(ctx: StageContext, config: dict[str, Any], dataset: Any, target: StageOutput,
               engine: Engine) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from varsec.attacks import INSA, csema_batch, expa_objective, resolve_hook

    items = sample_cold_items(dataset, config["n_items"], config["seed"])
    clean = _images(dataset, items)
    ranker_output = target.inputs.get("ranker", target)
    ranker = load_model(ranker_output, ctx.device)
    params = config["params"]
    if config["objective"] == "none":  # c-SEMA: the hook item pasted in, no model
        hook = resolve_hook(dataset, _hook(config))
        hook_image = _images(dataset, np.array([hook]))[0]
        options = {k: params[k] for k in ("size", "corner", "margin", "caption") if k in params}
        return items, csema_batch(clean, hook_image, **options).numpy(), {"hook": int(hook)}
    if config["objective"] == "probe-rank":
        objective, info = _probe_objective(ctx, config, dataset, target)
    elif config["objective"] == "insa":
        objective = INSA(ranker, users_per_step=params.get("users_per_step"),
                         aggregate=params.get("aggregate", "logsumexp"), seed=config["seed"])
        info: dict[str, Any] = {"optimizer_steps": objective.optimizer_steps(config["steps"])}
    else:
        extractor_output = ranker_output.inputs.get("extractor")
        if extractor_output is not None:
            extractor, layer = load_backbone(extractor_output, ctx.device), \
                feature_layer(extractor_output)
        else:  # DVBPR: its own CNN is the feature extractor
            extractor, layer = getattr(ranker, "backbone", ranker), None
        objective = expa_objective(extractor, dataset, _hook(config), metric="l2", layer=layer)
        info = {"hook": int(resolve_hook(dataset, _hook(config)))}
    rule = _rule(config, info.get("optimizer_steps"))
    result = engine(objective, clean, rule, seed=config["seed"],
                    batch_size=params.get("batch_size", 64), device=ctx.device)
    return items, result.images.numpy(), {**info, "success_rate": result.success_rate}


def _probe_objective(ctx: StageContext, config: dict[str, Any], dataset: Any,
                     target: StageOutput) -> tuple[Any, dict[str, Any]]:
    """The probes' rank feedback: a seeded sample of users with histories and a test item,
    saved as ``probes.npy`` (the evaluation leaves them out), and their top-N lists."""
    from varsec.attacks.probe_rank import ProbeRank
    from varsec.recsys import TwoStage

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


def _category(ctx: StageContext, config: dict[str, Any], dataset: Any, target: StageOutput,
              engine: Engine) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from varsec.attacks import ClassifierObjective
    from varsec.metrics.attack import classifier_success_rate

    backbone = load_backbone(target, ctx.device)
    categories = np.asarray(dataset.catalog.categories)
    choice = choose_categories(dataset, config["source_category"], config["target_category"])
    if choice["source_code"] is not None:
        items = np.flatnonzero(categories == choice["source_code"])
    else:
        items = np.arange(dataset.n_items)
    if config["n_items"] and config["n_items"] < len(items):
        rng = np.random.default_rng(config["seed"])
        items = np.sort(rng.choice(items, config["n_items"], replace=False))
    labels = categories[items]
    goal = None
    if config["objective"] == "classifier-targeted":
        goal = np.full(len(items), choice["target_code"])
    objective = ClassifierObjective(backbone, labels=labels, target=goal,
                                    kappa=config["params"].get("kappa", 0.0))
    result = engine(objective, _images(dataset, items), _rule(config), seed=config["seed"],
                    batch_size=config["params"].get("batch_size", 128), device=ctx.device)
    adversarial = result.images.numpy()
    rate = classifier_success_rate(backbone, adversarial, labels=labels, target=goal)
    return items, adversarial, {"success_rate": rate, "categories": choice}


def _pairs(ctx: StageContext, config: dict[str, Any], dataset: Any, target: StageOutput,
           engine: Engine) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from varsec.attacks import FeatureTarget
    from varsec.metrics.attack import random_item_pairs

    pairs = random_item_pairs(dataset.catalog.categories, int(config["n_items"] or 1000),
                              seed=config["seed"])
    targets, attackers = pairs[:, 0], pairs[:, 1]
    backbone = load_backbone(target, ctx.device)
    features = torch.as_tensor(extractor_features(target)[targets])
    metric = "cosine" if config["objective"] != "feature-l2" else "l2"
    objective = FeatureTarget(backbone, target_features=features, metric=metric,
                              layer=feature_layer(target))
    result = engine(objective, _images(dataset, attackers), _rule(config), seed=config["seed"],
                    early_stop=False, batch_size=config["params"].get("batch_size", 128),
                    device=ctx.device)
    np.save(ctx.workdir / PAIRS, np.stack([attackers, targets], 1).astype(np.int64))
    return attackers, result.images.numpy(), {}


def _poison(ctx: StageContext, config: dict[str, Any], dataset: Any, target: StageOutput,
            engine: Engine) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every item image, untargeted on the BPR loss (002 eq 3-4; varsec.attacks.poison_catalog
    with the engine of this stage); with a per-user objective, each user's sampled list."""
    from varsec.attacks import BPRUntargeted

    model = load_model(target, ctx.device)
    if "lists" in config:
        return _per_user(ctx, config, dataset, model, engine)
    objective = BPRUntargeted(model, dataset, seed=config["seed"])
    result = engine(objective, objective.images, _rule(config), seed=config["seed"],
                    batch_size=config["params"].get("batch_size", 128), desc="BPR-untargeted")
    return np.asarray(objective.items), result.images.numpy(), \
        {"success_rate": result.success_rate}


def _per_user(ctx: StageContext, config: dict[str, Any], dataset: Any, model: Any,
              engine: Engine) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
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
    return lists.reshape(-1), result.images.numpy(), {"users": len(users)}


_FAMILIES = {"promotion": _promotion, "category": _category, "item2item": _pairs,
             "ranking": _poison}


def _measure_rows(ctx: StageContext, config: dict[str, Any], clean: np.ndarray,
                  adversarial: np.ndarray, extras: dict[str, Any],
                  feature_source: StageOutput | None) -> list[dict[str, Any]]:
    from varsec.metrics.image import image_measures

    rows = []
    if extras.get("success_rate") is not None:
        rows.append(row("success_rate", extras["success_rate"], protocol="attack",
                        n=len(clean)))
    measures = image_measures(clean, adversarial)
    for column in ("linf", "l2", "psnr", "ssim", "lpips"):
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
    n = config.get("n_items") or 100
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


@register_stage("attack", version="2", estimate=_estimate)
def attack_stage(ctx: StageContext, config: dict[str, Any],
                 inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Run the attack (see the module docstring for the outputs)."""
    dataset = load_dataset(inputs["data"])
    target = inputs["target"]
    runs: Runs = []
    engine = _recording(_engine(ctx, config, inputs), runs)
    items, adversarial, extras = _FAMILIES[config["family"]](ctx, config, dataset, target,
                                                             engine)
    ctx.info["convergence"] = _convergence(ctx, config, runs)
    adversarial = np.ascontiguousarray(adversarial, dtype=np.uint8)
    clean = _images(dataset, items)
    np.save(ctx.workdir / ITEMS, np.asarray(items, dtype=np.int64))
    np.save(ctx.workdir / ADVERSARIAL, adversarial)
    _save_examples(ctx, items, clean, adversarial, config["save_images"])
    feature_source = target if target.kind == "extractor" else target.find("extractor")
    optimizer_steps = extras.pop("optimizer_steps", None)
    ctx.info.update({k: v for k, v in extras.items() if k != "success_rate"},
                    items=len(items), family=config["family"], objective=config["objective"],
                    budget=_budget(config, optimizer_steps))
    return _measure_rows(ctx, config, clean, adversarial, extras, feature_source)
