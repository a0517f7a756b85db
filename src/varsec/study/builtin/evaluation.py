"""The evaluation stage: one recommender (clean, attacked, defended) measured under one scenario.

Scenarios (see :mod:`varsec.study.plan`) and the metrics they write:

* ``ranking``: HR, NDCG, Recall @k, MRR, AUC per protocol (``full``, ``sampled-<n>``); a clean,
  undefended evaluation also writes ``HR_popularity@k``, the same protocol ranking items by
  their number of training interactions (the floor a recommender must beat); a per-user attack
  (its ``lists.npz``) is measured on its own lists, the sampled protocol only;
* ``two-stage``: ``HR_test@N`` of the original test item among the K candidates and
  ``HR_cold@N`` of cooperative cold items (000 eq 5), protocol ``two-stage-<K>``;
* ``promotion``: for the attacked cold items, ``HR_cold@N`` (adversarial), ``HR_coop@N`` (the
  same items' cooperative images), ``HR_test@N`` (test item beside the adversarial item),
  ``HR_test_coop@N`` (beside the cooperative image: 000's availability baseline),
  ``delta_HR_cold@N`` and ``prediction_shift`` (000 eq 4-5);
* ``category``: ``CHR@K`` (mean count of the source category in the top K, 001 Table 1) and
  ``CHR_share@K``;
* ``item2item``: ``success_rate@r`` (attack item within the target's r nearest neighbours,
  thesis) and ``success_rate_clean@r`` (the same with the original image);
* ``classifier``: a category attack judged by an extractor it was not crafted on (a transfer
  attack): ``success_rate`` (that classifier now says the target class; untargeted: not the
  true one) and ``success_rate_clean`` (the same on the clean images), protocol
  ``classifier``.

Per-unit vectors (users, cold items or pairs) go to ``units.npz`` for paired tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from varsec.errors import ConfigError, DataError
from varsec.study.builtin.common import (
    choose_categories,
    evaluation_lists,
    exclusion,
    extractor_features,
    features_of,
    load_backbone,
    load_dataset,
    load_model,
    sample_cold_items,
    save_units,
    test_items,
    two_stage_parts,
    value_rows,
    with_replaced_items,
)
from varsec.study.cache import UNITS
from varsec.study.files import ADVERSARIAL, CATALOG, COOPERATIVE, ITEMS, LISTS, PAIRS, PROBES
from varsec.study.stages import StageContext, StageOutput, register_stage

SCORE_BATCH = 256  # images scored per call in the promotion scenario


# -- inputs ---------------------------------------------------------------------------------------
def _attacked(inputs: dict[str, StageOutput]) -> tuple[np.ndarray, np.ndarray] | None:
    """(items, images) the model must see instead of the catalog's: attack and/or defense."""
    defense, attack = inputs.get("defense"), inputs.get("attack")
    if defense is not None and defense.file(CATALOG).is_file():
        images = np.load(defense.file(CATALOG))
        return np.arange(len(images)), images
    source = defense if defense is not None else attack
    if source is None:
        return None
    return np.load(source.file(ITEMS)), np.load(source.file(ADVERSARIAL))


def _model(ctx: StageContext, inputs: dict[str, StageOutput]) -> Any:
    dataset = load_dataset(inputs["data"])
    model = load_model(inputs["model"], ctx.device)
    replaced = _attacked(inputs)
    if replaced is not None:
        model = with_replaced_items(model, dataset, replaced[0], replaced[1], inputs["model"],
                                    ctx.device)
    return model


# -- ranking --------------------------------------------------------------------------------------
def _metric_names(config: dict[str, Any]) -> list[str]:
    names = []
    for metric in config["metrics"]:
        if metric in ("MRR", "AUC"):
            names.append(metric)
        else:
            names.extend(f"{metric}@{k}" for k in config["ks"])
    return names


def _ranking(ctx: StageContext, config: dict[str, Any],
             inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    from varsec.metrics.ranking import evaluate_full, evaluate_sampled

    source = inputs.get("defense") or inputs.get("attack")
    if source is not None and source.file(LISTS).is_file():
        return _per_user_ranking(ctx, config, inputs, source)
    dataset = load_dataset(inputs["data"])
    model = _model(ctx, inputs)
    tests = test_items(dataset, config["max_users"], config["seed"])
    excluded = exclusion(dataset)
    ks = list(config["ks"])

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return model.score(users)

    def score_items_fn(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return model.score(users).gather(1, items.to(model.device))

    rows, units = [], {}
    names = _metric_names(config)
    for protocol in config["protocols"]:
        if protocol["kind"] == "full":
            result = evaluate_full(score_fn, dataset.n_items, tests, excluded, ks=ks)
            name = "full"
        else:
            result = evaluate_sampled(score_items_fn, dataset.n_items, tests, excluded,
                                      n_negatives=protocol["negatives"], ks=ks,
                                      seed=config["seed"])
            name = f"sampled-{protocol['negatives']}"
        values = {n: result[n] for n in names}
        rows += value_rows(values, name, config, config["seed"])
        units[f"{name}|users"] = result.users
        units.update({f"{name}|{n}": v for n, v in values.items()})
        if "attack" not in inputs and "defense" not in inputs:
            rows += _popularity_rows(dataset, protocol, name, tests, excluded, config)
    save_units(ctx.workdir / UNITS, units)
    ctx.info.update(users=int(np.count_nonzero(tests >= 0)))
    return rows


def _per_user_ranking(ctx: StageContext, config: dict[str, Any], inputs: dict[str, StageOutput],
                      source: StageOutput) -> list[dict[str, Any]]:
    """A per-user attack (002 read per test triplet): each user's sampled list, every item with
    the image attacked (and defended) for that user; only the sampled protocol of the attack's
    lists can be measured (the lists must be the ones this evaluation draws)."""
    from varsec.attacks.bpr_per_user import BPRPerUser
    from varsec.metrics.ranking import evaluate_lists

    dataset = load_dataset(inputs["data"])
    saved = np.load(source.file(LISTS))
    users, lists = saved["users"], saved["items"]
    negatives = lists.shape[1] - 1
    protocols = [p for p in config["protocols"]
                 if p["kind"] == "sampled" and p["negatives"] == negatives]
    if not protocols:
        raise ConfigError(f"the per-user attack attacked lists of {negatives} negatives; the "
                          "evaluation has no sampled protocol with as many.")
    drawn_users, drawn = evaluation_lists(dataset, negatives, config["max_users"],
                                          config["seed"])
    rows_of = np.searchsorted(drawn_users, users)
    if not (np.isin(users, drawn_users).all() and np.array_equal(drawn[rows_of], lists)):
        raise DataError(f"the per-user attack's lists ({source.path}) are not the lists this "
                        "evaluation draws (another seed, user sample or dataset).")
    objective = BPRPerUser(load_model(inputs["model"], ctx.device), dataset, users, lists)
    scores = objective.attacked_scores(np.load(source.file(ADVERSARIAL)))
    position = torch.full((dataset.n_users,), -1, dtype=torch.long)
    position[torch.as_tensor(users)] = torch.arange(len(users))
    result = evaluate_lists(lambda u, _items: scores[position[u]], users, lists,
                            ks=list(config["ks"]))
    name = f"sampled-{negatives}"
    values = {n: result[n] for n in _metric_names(config)}
    save_units(ctx.workdir / UNITS, {f"{name}|users": result.users,
                                     **{f"{name}|{n}": v for n, v in values.items()}})
    ctx.info.update(users=len(users), per_user=True)
    return value_rows(values, name, config, config["seed"])


def _popularity_rows(dataset: Any, protocol: dict[str, Any], name: str, tests: np.ndarray,
                     excluded: Any, config: dict[str, Any]) -> list[dict[str, Any]]:
    """``HR_popularity@k``: the same protocol ranking items by their training interactions, the
    floor a recommender must beat before a claim may rest on it (report claims)."""
    from varsec.data.catalog import SPLIT_CODES
    from varsec.metrics.ranking import evaluate_full, evaluate_sampled

    train = dataset.split == SPLIT_CODES["train"]
    counts = np.bincount(dataset.interactions.item[train], minlength=dataset.n_items)
    popularity = torch.as_tensor(counts, dtype=torch.float32)
    ks = list(config["ks"])

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return popularity.expand(len(users), -1)

    def score_items_fn(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return popularity[items.cpu()]

    if protocol["kind"] == "full":
        result = evaluate_full(score_fn, dataset.n_items, tests, excluded, ks=ks)
    else:
        result = evaluate_sampled(score_items_fn, dataset.n_items, tests, excluded,
                                  n_negatives=protocol["negatives"], ks=ks, seed=config["seed"])
    return value_rows({f"HR_popularity@{k}": result[f"HR@{k}"] for k in ks}, name, config,
                      config["seed"])


# -- AIP two-stage --------------------------------------------------------------------------------
def _pipeline(ctx: StageContext, inputs: dict[str, StageOutput], config: dict[str, Any]):
    from varsec.recsys import TwoStage

    dataset = load_dataset(inputs["data"])
    first, ranker, k = two_stage_parts(inputs["model"], ctx.device)
    pipeline = TwoStage(first, ranker, k=k)
    tests = test_items(dataset, config["max_users"], config["seed"])
    users = np.flatnonzero(tests >= 0)
    attack = inputs.get("attack")
    if attack is not None and attack.file(PROBES).is_file():  # the merchant's own accounts
        users = np.setdiff1d(users, np.load(attack.file(PROBES)))
    sets = pipeline.prepare(dataset, users=users)
    return dataset, pipeline, sets, k


def _test_hits(sets: Any, ks: list[int]) -> dict[str, np.ndarray]:
    higher = (sets.candidate_scores > sets.test_scores[:, None]).sum(1).double()
    tied = (sets.candidate_scores == sets.test_scores[:, None]).sum(1).double()
    return {f"HR_test@{k}": ((k - higher).clamp(min=0).minimum(tied + 1) / (tied + 1)).numpy()
            for k in ks}


def _two_stage(ctx: StageContext, config: dict[str, Any],
               inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    dataset, pipeline, sets, k = _pipeline(ctx, inputs, config)
    protocol = f"two-stage-{k}"
    ks = list(config["ks"])
    cold = sample_cold_items(dataset, config["cold_items"], config["seed"])
    images = _defended_catalog(inputs)
    if images is None:
        scores = pipeline.score_items(sets, cold)
    else:
        scores = _image_scores(pipeline, sets, images[cold])
    ranks = sets.rank_injected(scores)
    tests = _test_hits(sets, ks)
    cold_hits = {f"HR_cold@{n}": ranks.hit(n).mean(0).numpy() for n in ks}
    rows = value_rows(tests, protocol, config, config["seed"])
    rows += value_rows(cold_hits, protocol, config, config["seed"])
    units = {"users": sets.users.numpy(), "cold|items": cold,
             "cold|score": scores.mean(0).numpy(),
             **{f"users|{n}": v for n, v in tests.items()},
             **{f"cold|{n}": v for n, v in cold_hits.items()}}
    save_units(ctx.workdir / UNITS, units)
    ctx.info.update(users=len(sets.users), cold_items=len(cold), k=k)
    return rows


def _defended_catalog(inputs: dict[str, StageOutput]) -> np.ndarray | None:
    defense = inputs.get("defense")
    if defense is not None and defense.file(CATALOG).is_file():
        return np.load(defense.file(CATALOG))
    return None


def _image_scores(pipeline: Any, sets: Any, images_uint8: np.ndarray) -> torch.Tensor:
    """Ranker scores [U, B] of uint8 images (batched, no gradients)."""
    from varsec.vision.perturbation import uint8_to_float

    parts = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), SCORE_BATCH):
            batch = uint8_to_float(images_uint8[start:start + SCORE_BATCH],
                                   str(pipeline.ranker.device))
            parts.append(pipeline.score_images(sets, batch).detach().cpu())
    return torch.cat(parts, 1)


def _promotion(ctx: StageContext, config: dict[str, Any],
               inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    _dataset, pipeline, sets, k = _pipeline(ctx, inputs, config)
    protocol = f"two-stage-{k}"
    ks = list(config["ks"])
    source = inputs.get("defense") or inputs["attack"]
    items = np.load(source.file(ITEMS))
    adversarial = np.load(source.file(ADVERSARIAL))
    cooperative_file = source.file(COOPERATIVE)
    if cooperative_file.is_file():
        coop_scores = _image_scores(pipeline, sets, np.load(cooperative_file))
    else:
        coop_scores = pipeline.score_items(sets, items)
    adv_scores = _image_scores(pipeline, sets, adversarial)
    coop, adv = sets.rank_injected(coop_scores), sets.rank_injected(adv_scores)
    per_item: dict[str, np.ndarray] = {}
    for n in ks:
        per_item[f"HR_cold@{n}"] = adv.hit(n).mean(0).numpy()
        per_item[f"HR_coop@{n}"] = coop.hit(n).mean(0).numpy()
        per_item[f"HR_test@{n}"] = adv.test_hit(n).mean(0).numpy()
        per_item[f"HR_test_coop@{n}"] = coop.test_hit(n).mean(0).numpy()
        per_item[f"delta_HR_cold@{n}"] = per_item[f"HR_cold@{n}"] - per_item[f"HR_coop@{n}"]
    per_item["prediction_shift"] = (adv_scores - coop_scores).mean(0).numpy()
    rows = value_rows(per_item, protocol, config, config["seed"])
    units = {"cold|items": items, **{f"cold|{n}": v for n, v in per_item.items()}}
    save_units(ctx.workdir / UNITS, units)
    ctx.info.update(users=len(sets.users), cold_items=len(items), k=k)
    return rows


# -- TAaMR category hit ratio ---------------------------------------------------------------------
def _category(ctx: StageContext, config: dict[str, Any],
              inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    from varsec.metrics.ranking import topk

    dataset = load_dataset(inputs["data"])
    if dataset.catalog.categories is None:
        raise ConfigError("the category scenario needs item categories; the catalog has none.")
    choice = choose_categories(dataset, config["source_category"],
                               config.get("target_category"))
    code = choice["source_code"]
    if code is None:
        raise ConfigError("the category scenario measures CHR@K of a source category; the "
                          "attack names none (set source_category, or auto).")
    model = _model(ctx, inputs)
    k = int(config["chr_k"])
    users = np.flatnonzero(test_items(dataset, config["max_users"], config["seed"]) >= 0)
    top = topk(lambda u: model.score(torch.as_tensor(users)[u]), len(users), k,
               exclude=_user_rows(exclusion(dataset), users))
    categories = torch.as_tensor(np.array(dataset.catalog.categories))
    counts = (categories[top] == code).sum(1).double().numpy()
    values = {f"CHR@{k}": counts, f"CHR_share@{k}": counts / k}
    rows = value_rows(values, "full", config, config["seed"])
    save_units(ctx.workdir / UNITS, {"users": users, **{f"users|{n}": v
                                                         for n, v in values.items()}})
    ctx.info.update(source_category=choice["source"], code=code, users=len(users),
                    categories=choice)
    return rows


def _user_rows(excluded: Any, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The exclusion CSR restricted to ``users`` (renumbered 0..len-1)."""
    index = torch.as_tensor(users)
    starts, stops = excluded.indptr[index], excluded.indptr[index + 1]
    lengths = stops - starts
    indptr = torch.zeros(len(users) + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(lengths, 0)
    pieces = [excluded.indices[int(a):int(b)] for a, b in zip(starts, stops, strict=True)]
    indices = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    return indptr, indices


# -- a category attack judged by another classifier (transfer) ----------------------------------
def _classifier(ctx: StageContext, config: dict[str, Any],
                inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    from varsec.metrics.attack import predict

    dataset = load_dataset(inputs["data"])
    attack = inputs["attack"]
    backbone = load_backbone(inputs["extractor"], ctx.device)
    classes = len(dataset.catalog.category_names or [])
    if backbone.num_classes != classes:
        raise ConfigError(f"the classifier scenario needs a head on the catalog's {classes} "
                          f"categories; {backbone.name} has {backbone.num_classes} classes.")
    items = np.load(attack.file(ITEMS))
    clean = np.asarray(dataset.catalog.images[items])
    replaced = _attacked(inputs)
    assert replaced is not None
    position = {int(item): i for i, item in enumerate(replaced[0])}
    adversarial = replaced[1][[position[int(item)] for item in items]]
    labels = np.asarray(dataset.catalog.categories)[items]
    wanted = None
    if attack.config["objective"] == "classifier-targeted":
        wanted = choose_categories(dataset, attack.config["source_category"],
                                   attack.config["target_category"])["target_code"]

    def success(images: np.ndarray) -> np.ndarray:
        predicted = predict(backbone, images)
        hit = predicted == wanted if wanted is not None else predicted != labels
        return hit.astype(np.float64)

    values = {"success_rate": success(adversarial), "success_rate_clean": success(clean)}
    rows = value_rows(values, "classifier", config, config["seed"])
    save_units(ctx.workdir / UNITS, {"items": items,
                                     **{f"items|{n}": v for n, v in values.items()}})
    ctx.info.update(items=len(items), target_code=wanted)
    return rows


# -- thesis item-to-item --------------------------------------------------------------------------
def _item2item(ctx: StageContext, config: dict[str, Any],
               inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    extractor = inputs.get("extractor")
    if extractor is None:
        extractor = inputs["model"].inputs["extractor"]
    source = inputs.get("defense") or inputs["attack"]
    pairs = np.load(source.file(PAIRS))
    adversarial = np.load(source.file(ADVERSARIAL))
    features = torch.nn.functional.normalize(torch.as_tensor(extractor_features(extractor)), dim=1)
    adv = torch.nn.functional.normalize(
        torch.as_tensor(features_of(extractor, adversarial, ctx.device)), dim=1)
    attack_items, targets = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    clean_rank = _neighbour_rank(features, targets, attack_items, features[attack_items])
    adv_rank = _neighbour_rank(features, targets, attack_items, adv)
    values: dict[str, np.ndarray] = {}
    for r in config["rank_min"]:
        values[f"success_rate@{r}"] = (adv_rank <= r).astype(np.float64)
        values[f"success_rate_clean@{r}"] = (clean_rank <= r).astype(np.float64)
    rows = value_rows(values, "item2item", config, config["seed"])
    save_units(ctx.workdir / UNITS, {"pairs": pairs, "pairs|rank_clean": clean_rank,
                                     "pairs|rank_adv": adv_rank,
                                     **{f"pairs|{n}": v for n, v in values.items()}})
    return rows


def _neighbour_rank(features: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                    item_features: torch.Tensor, chunk: int = 1024) -> np.ndarray:
    """1-based rank of ``items[p]`` (with features ``item_features[p]``) among the cosine
    neighbours of ``targets[p]`` (the target itself and the item's own catalog row excluded)."""
    ranks = []
    for start in range(0, len(targets), chunk):
        t, i = targets[start:start + chunk], items[start:start + chunk]
        sims = features[t] @ features.T
        own = (features[t] * item_features[start:start + chunk]).sum(1, keepdim=True)
        above = sims > own
        rows = torch.arange(len(t))
        above[rows, t] = False
        above[rows, i] = False
        ranks.append((above.sum(1) + 1).numpy())
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


_SCENARIOS = {"ranking": _ranking, "two-stage": _two_stage, "promotion": _promotion,
              "category": _category, "item2item": _item2item, "classifier": _classifier}


def _estimate(config: dict[str, Any], study: Any) -> float:
    scale = {"quick": 1.0, "default": 5.0, "paper": 60.0}.get(study.dataset.profile, 5.0)
    return 2.0 + scale * (len(config.get("protocols", [])) or 1)


@register_stage("evaluation", version="2", estimate=_estimate)
def evaluation_stage(ctx: StageContext, config: dict[str, Any],
                     inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Dispatch to the scenario's evaluation (see the module docstring)."""
    scenario = config["scenario"]
    if scenario not in _SCENARIOS:
        raise ConfigError(f"unknown evaluation scenario {scenario!r}.")
    ctx.info["scenario"] = scenario
    return _SCENARIOS[scenario](ctx, config, inputs)
