"""Attack measures (DESIGN.md sections 6-7): the AIP protocol, classifier attacks, item-to-item
attacks and untargeted poisoning. Every function takes *quantised* (uint8) adversarial images or
scores computed from them; nothing here runs an attack.

* **AIP** (Liu & Larson 000 sec 3.3, eq 4-5, Tables 4-6): prediction shift
  ``Δ_i = mean_u (p'_ui - p_ui)`` and ``Δ_cold = mean_i Δ_i`` (eq 4); for each cold item the hit
  rate ``HR_i@N`` of its cooperative and of its adversarial version inside the two-stage set, the
  test item's hit rate with either version injected and without any (eq 5, Table 5), and their
  changes (Table 6). The protocol is cheap: :class:`~varsec.recsys.two_stage.CandidateSets`
  holds each user's K candidate and test-item scores, computed once; each cold-item version
  then costs one score per user (:meth:`CandidateSets.rank_injected`).
* **Oracle**: for simulated data, the rank each cold item deserves among the cold items by the
  simulator's true preferences vs the rank its cooperative and adversarial versions achieve.
* **Classifier attacks** (001 Tables 1-2): success rate, feature loss (MSE of features before /
  after), CHR@K of the source and target categories before / after (via
  :func:`varsec.metrics.ranking.chr_at_k`).
* **Item-to-item** (Normann 004): success rate at ``rank_min`` in {1, 3, 10, 100} over seeded random
  (target, attacker) pairs of different categories: the attack succeeds when the adversarial
  attacker image is among the target's ``rank_min`` nearest neighbours (cosine) in the catalog.
* **Untargeted poisoning** (002 Tables 2-3): HR@N and NDCG@N of the recommender re-scored on the
  attacked catalog, full and sampled protocols side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from varsec.devices import module_device
from varsec.errors import ConfigError
from varsec.metrics.ranking import DEFAULT_KS, chr_at_k, evaluate_full, evaluate_sampled
from varsec.params import check_int
from varsec.vision.perturbation import uint8_to_float

RANK_MINS: tuple[int, ...] = (1, 3, 10, 100)


def _uint8_tensor(images: Any, name: str) -> Tensor:
    tensor = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.dtype != torch.uint8:
        raise ConfigError(
            f"{name} must be uint8 images (quantise adversarial images before measuring them), "
            f"got {tensor.dtype}."
        )
    if tensor.ndim != 4:
        raise ConfigError(
            f"{name} must be an N x C x H x W batch, got shape {tuple(tensor.shape)}."
        )
    return tensor


def _batches(images: Tensor, batch_size: int, device: torch.device):
    for start in range(0, len(images), batch_size):
        yield uint8_to_float(images[start : start + batch_size], device)


def _scores_2d(values: Any, name: str) -> Tensor:
    tensor = torch.as_tensor(values).detach().cpu().double()
    if tensor.ndim != 2:
        raise ConfigError(
            f"{name} must be a users x items matrix, got shape {tuple(tensor.shape)}."
        )
    return tensor


# --------------------------------------------------------------------------------------------
# AIP protocol
# --------------------------------------------------------------------------------------------


def prediction_shift(before: Any, after: Any) -> tuple[np.ndarray, float]:
    """``(Δ_i per item, Δ_cold)`` from scores [U, C] before and after the attack (000 eq 4)."""
    p, q = _scores_2d(before, "before"), _scores_2d(after, "after")
    if p.shape != q.shape:
        raise ConfigError(f"before and after scores differ in shape: {tuple(p.shape)} vs "
                          f"{tuple(q.shape)}.")
    delta = (q - p).mean(0).numpy()
    return delta, float(delta.mean()) if delta.size else float("nan")


@torch.no_grad()
def score_injected(two_stage: Any, sets: Any, images: Any, batch_size: int = 64) -> Tensor:
    """Ranker scores [U, C] of uint8 images for the users of ``sets`` (one score per user)."""
    images = _uint8_tensor(images, "images")
    device = module_device(two_stage.ranker)
    parts = [two_stage.score_images(sets, x).detach().cpu()
             for x in _batches(images, batch_size, device)]
    return torch.cat(parts, 1) if parts else torch.zeros(len(sets.users), 0)


@dataclass
class AIPMeasures:
    """Per cold item (``items``: one row each) and summary (``summary``: tidy metric, k, value)."""

    items: pd.DataFrame
    summary: pd.DataFrame

    def value(self, metric: str, k: int | None = None) -> float:
        """One summary value, e.g. ``value("HR_cold_adv", 5)`` or ``value("delta_cold")``."""
        rows = self.summary[self.summary["metric"] == metric]
        if k is not None:
            rows = rows[rows["k"] == k]
        if len(rows) != 1:
            raise ConfigError(f"no single summary value for metric {metric!r} at k={k}.")
        return float(rows["value"].iloc[0])


def aip_measures_from_scores(
    sets: Any,
    coop_scores: Any,
    adv_scores: Any,
    items: Sequence[Any] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> AIPMeasures:
    """AIP measures from ranker scores [U, C] of cooperative and adversarial cold items.

    ``sets`` is a :class:`~varsec.recsys.two_stage.CandidateSets`; column c of both score
    matrices is the c-th cold item (``items`` names them, default 0..C-1).
    """
    coop, adv = _scores_2d(coop_scores, "coop_scores"), _scores_2d(adv_scores, "adv_scores")
    if coop.shape != adv.shape or coop.shape[0] != len(sets.users):
        raise ConfigError(
            f"coop and adv scores must both be ({len(sets.users)}, C), got {tuple(coop.shape)} "
            f"and {tuple(adv.shape)}."
        )
    names = list(range(coop.shape[1])) if items is None else list(items)
    coop_ranks, adv_ranks = sets.rank_injected(coop), sets.rank_injected(adv)
    alone = sets.rank_injected(torch.full((len(sets.users),), -torch.inf, dtype=coop.dtype))
    delta, delta_cold = prediction_shift(coop, adv)
    table = {"item": names, "delta": delta,
             "rank_coop": coop_ranks.expected_rank.mean(0).numpy(),
             "rank_adv": adv_ranks.expected_rank.mean(0).numpy()}
    records = [{"metric": "delta_cold", "k": pd.NA, "value": delta_cold}]
    for k in ks:
        hr = {"coop": coop_ranks.hit(k).mean(0), "adv": adv_ranks.hit(k).mean(0),
              "test_with_coop": coop_ranks.test_hit(k).mean(0),
              "test_with_adv": adv_ranks.test_hit(k).mean(0)}
        for key, values in hr.items():
            table[f"HR@{k}_{key}"] = values.numpy()
        original = float(alone.test_hit(k).mean())
        records += _aip_summary(k, hr, original)
    summary = pd.DataFrame.from_records(records, columns=["metric", "k", "value"])
    return AIPMeasures(pd.DataFrame(table), summary.astype({"k": "Int64"}))


def _aip_summary(k: int, hr: dict[str, Tensor], original: float) -> list[dict[str, Any]]:
    mean = {key: float(values.mean()) for key, values in hr.items()}
    pairs = [
        ("HR_test_original", original),
        ("HR_cold_coop", mean["coop"]),
        ("HR_cold_adv", mean["adv"]),
        ("delta_HR_cold", mean["adv"] - mean["coop"]),
        ("HR_test_with_coop", mean["test_with_coop"]),
        ("HR_test_with_adv", mean["test_with_adv"]),
        ("delta_HR_test", mean["test_with_adv"] - mean["test_with_coop"]),
        ("delta_HR_test_vs_original", mean["test_with_adv"] - original),
    ]
    return [{"metric": metric, "k": k, "value": value} for metric, value in pairs]


def aip_measures(
    two_stage: Any,
    sets: Any,
    coop_images: Any,
    adv_images: Any,
    items: Sequence[Any] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 64,
) -> AIPMeasures:
    """AIP measures of uint8 cooperative and adversarial cold-item images (000 eq 4-5).

    ``two_stage`` is a :class:`~varsec.recsys.two_stage.TwoStage` and ``sets`` its
    :meth:`~varsec.recsys.two_stage.TwoStage.prepare` output: each version of each cold item is
    scored once per user, never re-ranked.
    """
    coop = score_injected(two_stage, sets, coop_images, batch_size)
    adv = score_injected(two_stage, sets, adv_images, batch_size)
    return aip_measures_from_scores(sets, coop, adv, items, ks)


def _ranks_against(values: Tensor, others: Tensor, own: Tensor) -> Tensor:
    """Expected 1-based rank of ``values[u, i]`` among ``others[u, j]`` for ``j != i``, where
    ``own[u, i] = others[u, i]`` is left out."""
    ordered = torch.sort(others, dim=1).values
    below_or_equal = torch.searchsorted(ordered, values, right=True)
    below = torch.searchsorted(ordered, values, right=False)
    higher = others.shape[1] - below_or_equal - (own > values).long()
    tied = below_or_equal - below - (own == values).long()
    return 1.0 + higher + tied / 2.0


def oracle_rank_measures(
    oracle: Any, coop_scores: Any, adv_scores: Any, items: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Deserved vs achieved rank of each cold item among the cold items, averaged over users.

    ``oracle[u, c]`` is the simulator's true preference of user u for cold item c (rows aligned
    with the score rows). ``rank_deserved`` orders the cold items by the oracle, ``rank_coop`` by
    the ranker's cooperative scores, ``rank_adv`` puts the adversarial version of the item
    against the cooperative versions of the others; ``rank_gain = rank_deserved - rank_adv``
    (positive: the attack pushed the item above the rank it deserves). Ties count half.
    """
    truth = _scores_2d(oracle, "oracle")
    coop, adv = _scores_2d(coop_scores, "coop_scores"), _scores_2d(adv_scores, "adv_scores")
    if not truth.shape == coop.shape == adv.shape:
        raise ConfigError(
            f"oracle, coop and adv must have the same users x items shape, got "
            f"{tuple(truth.shape)}, {tuple(coop.shape)} and {tuple(adv.shape)}."
        )
    deserved = _ranks_against(truth, truth, truth).mean(0)
    coop_rank = _ranks_against(coop, coop, coop).mean(0)
    adv_rank = _ranks_against(adv, coop, coop).mean(0)
    names = list(range(coop.shape[1])) if items is None else list(items)
    return pd.DataFrame({
        "item": names, "rank_deserved": deserved.numpy(), "rank_coop": coop_rank.numpy(),
        "rank_adv": adv_rank.numpy(), "rank_gain": (deserved - adv_rank).numpy(),
    })


# --------------------------------------------------------------------------------------------
# Classifier attacks
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: Any, images: Any, batch_size: int = 256) -> np.ndarray:
    """Predicted classes of uint8 images (the model's ``logits`` method or its forward)."""
    images = _uint8_tensor(images, "images")
    logits = getattr(model, "logits", None)
    forward = logits if callable(logits) else model
    device = module_device(model)
    parts = [forward(x).argmax(1).cpu() for x in _batches(images, batch_size, device)]
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)


def classifier_success(
    model: Any, adv_images: Any, labels: Any = None, target: Any = None, batch_size: int = 256
) -> np.ndarray:
    """Per adversarial image: classified as ``target`` (targeted) or not as ``labels``."""
    if target is None and labels is None:
        raise ConfigError("give the true labels (untargeted) or the target class (targeted).")
    predicted = predict(model, adv_images, batch_size)
    if target is not None:
        return predicted == np.broadcast_to(np.asarray(target).reshape(-1), predicted.shape)
    return predicted != np.asarray(labels).reshape(-1)


def classifier_success_rate(
    model: Any, adv_images: Any, labels: Any = None, target: Any = None, batch_size: int = 256
) -> float:
    """Share of adversarial images classified as ``target`` (targeted) or not as ``labels``."""
    return float(np.mean(classifier_success(model, adv_images, labels, target, batch_size)))


@torch.no_grad()
def feature_loss(
    extractor: Any, clean: Any, adv: Any, layer: str | None = None, batch_size: int = 256
) -> np.ndarray:
    """Per-image MSE between the features of clean and adversarial uint8 images (001 Table 2)."""
    clean, adv = _uint8_tensor(clean, "clean"), _uint8_tensor(adv, "adv")
    if clean.shape != adv.shape:
        raise ConfigError(f"clean and adv shapes differ: {tuple(clean.shape)} vs "
                          f"{tuple(adv.shape)}.")
    method = getattr(extractor, "features", None)
    if callable(method):
        features = (lambda x: method(x, layer)) if layer is not None else method
    else:
        features = extractor
    device = module_device(extractor)
    parts = []
    for a, b in zip(_batches(clean, batch_size, device), _batches(adv, batch_size, device),
                    strict=True):
        fa, fb = features(a).flatten(1), features(b).flatten(1)
        parts.append((fa - fb).pow(2).mean(1).cpu())
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def chr_before_after(
    score_before: Callable[[Tensor], Any],
    score_after: Callable[[Tensor], Any],
    n_users: int,
    item_categories: Any,
    source: Any,
    target: Any,
    k: int = 20,
    exclude: Any = None,
) -> pd.DataFrame:
    """CHR@K of the source and target categories before and after the attack (001 Table 1).

    Tidy rows ``(role, category, when, k, chr, count)``: ``count`` is the mean number of the
    category's items in a top-K list (what 001 prints), ``chr`` that count over K.
    """
    records = []
    for role, category in (("source", source), ("target", target)):
        for when, score_fn in (("before", score_before), ("after", score_after)):
            share, count = chr_at_k(score_fn, n_users, item_categories, category, k, exclude)
            records.append({"role": role, "category": category, "when": when, "k": k,
                            "chr": share, "count": count})
    return pd.DataFrame.from_records(records)


# --------------------------------------------------------------------------------------------
# Item-to-item attacks (thesis)
# --------------------------------------------------------------------------------------------


def random_item_pairs(categories: Any, n_pairs: int, seed: int = 0) -> np.ndarray:
    """Seeded random ``(target, attacker)`` catalog-index pairs of different categories [n, 2]."""
    codes = np.asarray(categories).reshape(-1)
    n_pairs = check_int(n_pairs, "n_pairs", low=1)
    if len(np.unique(codes)) < 2:
        raise ConfigError("item-to-item pairs need items of at least two categories.")
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, len(codes), size=(n_pairs, 2))
    same = codes[pairs[:, 0]] == codes[pairs[:, 1]]
    while same.any():
        pairs[same, 1] = rng.integers(0, len(codes), size=int(same.sum()))
        same = codes[pairs[:, 0]] == codes[pairs[:, 1]]
    return pairs


@torch.no_grad()
def item_to_item_ranks(
    features: Any, targets: Any, attackers: Any, attacker_features: Any, chunk_size: int = 256
) -> np.ndarray:
    """Expected 1-based rank of each adversarial attacker among its target's cosine neighbours.

    ``features`` (N x D) index the clean catalog; the attacker's adversarial features replace its
    own row, and the target itself is not a candidate. Ties count half.
    """
    unit = torch.nn.functional.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
    attackers = torch.as_tensor(np.asarray(attackers), dtype=torch.long).reshape(-1)
    adv = torch.nn.functional.normalize(
        torch.as_tensor(attacker_features, dtype=torch.float32).reshape(len(attackers), -1), dim=1)
    if len(targets) != len(attackers):
        raise ConfigError(f"targets ({len(targets)}) and attackers ({len(attackers)}) differ.")
    ranks = []
    for rows in torch.arange(len(targets)).split(chunk_size):
        query = unit[targets[rows]]
        similarity = query @ unit.T
        similarity[torch.arange(len(rows)), targets[rows]] = -torch.inf
        similarity[torch.arange(len(rows)), attackers[rows]] = -torch.inf
        own = (query * adv[rows]).sum(1, keepdim=True)
        higher = (similarity > own).sum(1)
        tied = (similarity == own).sum(1)
        ranks.append(1.0 + higher + tied / 2.0)
    return torch.cat(ranks).numpy() if ranks else np.zeros(0)


def success_at_rank_min(ranks: Any, rank_mins: Sequence[int] = RANK_MINS) -> pd.DataFrame:
    """Share of pairs whose attacker ranks within ``rank_min`` of the target (thesis 004 tables)."""
    values = np.asarray(ranks, dtype=np.float64).reshape(-1)
    records = [{"rank_min": int(r), "success_rate": float(np.mean(values <= r)) if values.size
                else float("nan"), "n": int(values.size)} for r in rank_mins]
    return pd.DataFrame.from_records(records, columns=["rank_min", "success_rate", "n"])


# --------------------------------------------------------------------------------------------
# Untargeted poisoning
# --------------------------------------------------------------------------------------------


def attacked_scorer(
    model: Any, items: Any, clean_images: Any, adv_images: Any, batch_size: int = 256
) -> Callable[[Tensor], Tensor]:
    """A ``score_fn(users) -> [U, N]`` of ``model`` on the catalog whose ``items`` carry
    ``adv_images`` instead of ``clean_images`` (both uint8, one per item):
    ``s_ui + score_features(u, f(x'_i)) - score_features(u, f(x_i))``.

    Learned item terms (VBPR's ``γ_i``, ``β_i``) are kept; exact for models whose item score
    depends on the item's own features only (VBPR, AMR, DVBPR, AlexRank). A neighbourhood model
    (visual kNN) must be refitted on the attacked catalog instead.
    """
    items = torch.as_tensor(np.asarray(items), dtype=torch.long).reshape(-1)
    clean = _uint8_tensor(clean_images, "clean_images")
    adv = _uint8_tensor(adv_images, "adv_images")
    if len(adv) != len(items) or clean.shape != adv.shape:
        raise ConfigError(
            f"give one clean and one adversarial image per item: {len(items)} items, "
            f"{len(clean)} clean and {len(adv)} adversarial images."
        )
    device = module_device(model)
    with torch.no_grad():
        clean_features = _image_features(model, clean, batch_size, device)
        adv_features = _image_features(model, adv, batch_size, device)

    def score_fn(users: Tensor) -> Tensor:
        with torch.no_grad():
            scores = model.score(users).clone()
            shift = (model.score_features(users, adv_features)
                     - model.score_features(users, clean_features))
            scores[:, items.to(scores.device)] += shift.to(scores.dtype)
        return scores

    return score_fn


def _image_features(model: Any, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    parts = [model.image_features(x) for x in _batches(images, batch_size, device)]
    return torch.cat(parts) if parts else torch.zeros(0)


def poisoning_measures(
    score_clean: Callable[[Tensor], Any],
    score_attacked: Callable[[Tensor], Any],
    n_items: int,
    test_items: Any,
    exclude: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    n_negatives: int | None = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """HR@N and NDCG@N of clean vs attacked scores, full ranking and (with ``n_negatives``)
    the sampled protocol (Yin et al. 002 rank each test item among 20 sampled negatives).

    Tidy rows ``(protocol, metric, k, clean, attacked, change)``.
    """
    runs = {"full": lambda fn: evaluate_full(fn, n_items, test_items, exclude, ks)}
    if n_negatives is not None:
        runs[f"sampled-{n_negatives}"] = lambda fn: evaluate_sampled(
            lambda users, items: torch.as_tensor(fn(users)).gather(1, items.to(torch.long)),
            n_items, test_items, exclude, n_negatives, ks, seed)
    records = []
    for protocol, run in runs.items():
        before, after = run(score_clean).summary(), run(score_attacked).summary()
        for name in before:
            metric, _, k = name.partition("@")
            if metric not in ("HR", "NDCG"):
                continue
            records.append({"protocol": protocol, "metric": metric, "k": int(k),
                            "clean": before[name], "attacked": after[name],
                            "change": after[name] - before[name]})
    return pd.DataFrame.from_records(
        records, columns=["protocol", "metric", "k", "clean", "attacked", "change"])


__all__ = [
    "RANK_MINS",
    "AIPMeasures",
    "aip_measures",
    "aip_measures_from_scores",
    "attacked_scorer",
    "chr_before_after",
    "classifier_success",
    "classifier_success_rate",
    "feature_loss",
    "item_to_item_ranks",
    "oracle_rank_measures",
    "poisoning_measures",
    "predict",
    "prediction_shift",
    "random_item_pairs",
    "score_injected",
    "success_at_rank_min",
]
