"""Why a study's AIP promotion numbers look as they do: prediction shift vs HR_cold, EXPA's hook.

Reads a finished study output directory (``--out DIR``, e.g. a ``make demo`` run) from its stage
cache; nothing is retrained or re-attacked. For every undefended promotion evaluation (INSA,
EXPA, c-SEMA on the two-stage recommenders) it recomputes, with the evaluation's own code path
(:class:`varsec.recsys.TwoStage`, ranker scores of the cooperative catalog item and of the
quantised adversarial image, every user with a test item):

* the distribution of the per-(user, item) change ``p'_ui - p_ui`` behind AIP's prediction
  shift (000 eq 4): mean (must equal the reported ``prediction_shift``), median, share positive,
  the change among the pairs whose item enters the user's top 5 and among the users who already
  scored the cooperative item highest, and the attack's own objective (INSA: log-mean-exp over
  users, 000 eq 6);
* for a VBPR ranker, the split of the change into the user-independent visual bias ``β'·f`` and
  the personal part ``θ_u·E f``;
* for EXPA, the hook item's appeal *by its look*: its VBPR visual score ``θ_u·E f + β'·f``
  against the cold and warm items', and the simulator's true preference for its look
  (category affinity + taste·style, popularity left out) against the other items'.

With ``--insa-mean`` it also re-attacks the INSA items once with the objective the authors'
code optimises (``AIP.py``: ``sum(...).exp().log().mean()``, i.e. the *mean* score over users,
varsec's ``aggregate="mean"``) under the same budget and step rule, and measures the same
distribution (about 20 s of CPU per 200 items on the default profile).

Usage: python benchmarks/diagnose_promotion.py --out /tmp/demo-final [--insa-mean]
       [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from varsec.study.builtin.common import (
    load_dataset,
    test_items,
    two_stage_parts,
)
from varsec.study.builtin.evaluation import _image_scores
from varsec.study.stages import StageOutput

PROMOTION_ATTACKS = ("insa", "expa", "csema", "insa-dvbpr")


# -- reading the cache ----------------------------------------------------------------------------
def _index(cache: Path) -> dict[str, tuple[str, Path, dict[str, Any]]]:
    found = {}
    for stage_file in cache.glob("*/*/stage.json"):
        record = json.loads(stage_file.read_text())
        found[record["key"]] = (record["kind"], stage_file.parent, record)
    return found


def _output(key: str, index: dict[str, Any], memo: dict[str, StageOutput]) -> StageOutput:
    if key not in memo:
        kind, path, record = index[key]
        info_file = path / "info.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        inputs = {role: _output(k, index, memo) for role, k in record["inputs"].items()}
        memo[key] = StageOutput(kind=kind, key=key, path=path, config=record["config"],
                                info=info, inputs=inputs)
    return memo[key]


def promotion_evaluations(out: Path) -> list[tuple[dict[str, Any], StageOutput]]:
    """(labels, stage) of the undefended promotion evaluations of the study in ``out``."""
    index, memo = _index(out / "cache"), {}
    chosen = []
    for key, (kind, _path, record) in sorted(index.items()):
        labels = record["labels"]
        if (kind == "evaluation" and record["config"].get("scenario") == "promotion"
                and labels.get("defense") in (None, "none")
                and labels.get("attack") in PROMOTION_ATTACKS):
            chosen.append((labels, _output(key, index, memo)))
    return sorted(chosen, key=lambda c: (c[0]["recommender"], c[0]["attack"],
                                         c[0].get("eps") or 0))


# -- measuring ------------------------------------------------------------------------------------
def _scores(stage: StageOutput) -> dict[str, Any]:
    from varsec.recsys import TwoStage

    config = stage.config
    dataset = load_dataset(stage.inputs["data"])
    first, ranker, k = two_stage_parts(stage.inputs["model"])
    pipeline = TwoStage(first, ranker, k=k)
    tests = test_items(dataset, config["max_users"], config["seed"])
    sets = pipeline.prepare(dataset, users=np.flatnonzero(tests >= 0))
    attack = stage.inputs["attack"]
    items = np.load(attack.file("items.npy"))
    adversarial = np.load(attack.file("adversarial.npy"))
    coop = pipeline.score_items(sets, items).double()
    adv = _image_scores(pipeline, sets, adversarial).double()
    return {"dataset": dataset, "pipeline": pipeline, "sets": sets, "items": items,
            "adversarial": adversarial, "coop": coop, "adv": adv, "attack": attack}


def shift_distribution(sets: Any, coop: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """Summary of ``adv - coop`` [U, C] and where it matters for HR@5."""
    delta = adv - coop
    hit_coop, hit_adv = sets.rank_injected(coop).hit(5), sets.rank_injected(adv).hit(5)
    enters = (hit_adv > hit_coop) & (hit_coop < 1)
    fifth = torch.topk(sets.candidate_scores.double(), 5, dim=1).values[:, -1:]
    gap_coop, gap_adv = coop - fifth, adv - fifth
    high = coop >= torch.quantile(coop, 0.99, dim=0, keepdim=True)
    users = coop.shape[0]
    objective = lambda s: float((torch.logsumexp(s, 0) - math.log(users)).mean())  # noqa: E731
    return {
        "mean": float(delta.mean()), "median": float(delta.median()),
        "share_positive": float((delta > 0).double().mean()),
        "share_items_mean_positive": float((delta.mean(0) > 0).double().mean()),
        "std": float(delta.std()),
        "corr_with_coop_score": float(np.corrcoef(coop.flatten(), delta.flatten())[0, 1]),
        "mean_top1pct_coop_users": float(delta[high].mean()),
        "pairs_entering_top5": int(enters.sum()),
        "mean_entering_top5": float(delta[enters].mean()) if enters.any() else float("nan"),
        "HR5_coop": float(hit_coop.mean()), "HR5_adv": float(hit_adv.mean()),
        "gap_to_5th_coop_mean": float(gap_coop.mean()),
        "gap_to_5th_adv_mean": float(gap_adv.mean()),
        "gap_to_5th_coop_max_mean_over_items": float(gap_coop.max(0).values.mean()),
        "gap_to_5th_adv_max_mean_over_items": float(gap_adv.max(0).values.mean()),
        "objective_logmeanexp_coop": objective(coop),
        "objective_logmeanexp_adv": objective(adv),
        "mean_score_coop": float(coop.mean()), "mean_score_adv": float(adv.mean()),
    }


def _features(ranker: Any, images_uint8: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        parts = [ranker.image_features(torch.as_tensor(images_uint8[s:s + 256]).float() / 255)
                 for s in range(0, len(images_uint8), 256)]
    return torch.cat(parts)


def vbpr_split(ranker: Any, users: torch.Tensor, coop_images: np.ndarray,
               adv_images: np.ndarray) -> dict[str, float] | None:
    """Mean change of VBPR's visual bias β'·f and of its personal part θ_u·E f."""
    if not hasattr(ranker, "visual_terms") or getattr(ranker.hp, "shared_factors", True):
        return None
    with torch.no_grad():
        out = {}
        for name, images in (("coop", coop_images), ("adv", adv_images)):
            projected, bias = ranker.visual_terms(_features(ranker, images))
            theta = ranker.user_theta.weight[ranker.user_index(users)]
            out[name] = (bias.double(), (theta @ projected.T).double())
    return {"delta_visual_bias_mean": float((out["adv"][0] - out["coop"][0]).mean()),
            "delta_personal_mean": float((out["adv"][1] - out["coop"][1]).mean()),
            "delta_personal_median": float((out["adv"][1] - out["coop"][1]).median())}


def hook_appeal(dataset: Any, ranker: Any, users: torch.Tensor, hook: int,
                items: np.ndarray, adversarial: np.ndarray) -> dict[str, Any]:
    """The hook's score by its look under the ranker and under the simulator's truth."""
    from varsec.attacks.hooks import most_interacted_item

    images = dataset.catalog.images
    cold = np.asarray(dataset.cold_items)
    warm = np.setdiff1d(np.arange(dataset.n_items), cold)
    sample = np.random.default_rng(0).choice(warm, 1000, replace=False)
    with torch.no_grad():
        look = lambda x: ranker.score_features(users, _features(ranker, x)).double()  # noqa: E731
        hook_score = look(images[[hook]]).mean(0)
        cold_scores = look(images[cold]).mean(0)
        warm_scores = look(images[sample]).mean(0)
        adv_scores = look(adversarial).mean(0)
        own = ranker.score(users, torch.as_tensor([hook])).double().mean()
        hook_features = _features(ranker, images[[hook]])
        dist = lambda x: (_features(ranker, x) - hook_features).norm(dim=1).mean()  # noqa: E731
        feature_distance = {"clean": float(dist(images[items])), "adv": float(dist(adversarial))}
    counts = np.bincount(dataset.part("train").item, minlength=dataset.n_items)
    result = {
        "hook": int(hook), "is_most_interacted": hook == most_interacted_item(dataset),
        "hook_train_interactions": int(counts[hook]),
        "median_warm_train_interactions": float(np.median(counts[warm])),
        "hook_category": _category(dataset, hook),
        "hook_full_score_mean_over_users": float(own),
        "hook_look_score_mean_over_users": float(hook_score),
        "cold_look_score_mean": float(cold_scores.mean()),
        "warm_look_score_mean": float(warm_scores.mean()),
        "hook_look_percentile_among_warm": float((warm_scores < hook_score).double().mean()),
        "expa_adv_look_score_mean": float(adv_scores.mean()),
        "feature_distance_to_hook": feature_distance,
    }
    result.update(_true_look(dataset, hook, warm, counts))
    return result


def _category(dataset: Any, item: int) -> str:
    code = int(dataset.catalog.categories[item])
    names = dataset.catalog.category_names
    return names[code] if names else str(code)


def _true_look(dataset: Any, hook: int, warm: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """Simulator truth: rebuild the world from the data stage's source, profile and seed."""
    from varsec.data.simulate import build_world
    from varsec.data.sources import open_source

    dataset_config = _data_config(dataset)
    if dataset_config is None:
        return {"true_look": "not simulated"}
    world = build_world(open_source(dataset_config["source"]), dataset_config["profile"],
                        dataset_config["seed"])
    rows = _world_rows(world, dataset)
    if rows is None:
        return {"true_look": "the dataset's items do not match the rebuilt world"}
    users = np.arange(world.n_users)
    factors = world.user_factors(users)[:, :-1]  # drop the popularity column: look only
    item_side = world.item_factors(rows)[:, :-1]
    appeal = (factors @ item_side.T).mean(0)
    cold = np.asarray(dataset.cold_items)
    oracle_check = float(np.abs(world.logits(users, rows[cold]) - dataset.oracle).max())
    warm_appeal = appeal[warm]
    corr = float(np.corrcoef(np.log1p(counts[warm]), warm_appeal)[0, 1])
    corr_pop = float(np.corrcoef(np.log1p(counts[warm]), world.log_popularity[rows[warm]])[0, 1])
    return {"oracle_rebuild_max_abs_error": oracle_check,
            "true_look_hook": float(appeal[hook]),
            "true_look_cold_mean": float(appeal[cold].mean()),
            "true_look_warm_mean": float(warm_appeal.mean()),
            "true_look_hook_percentile_among_warm": float((warm_appeal < appeal[hook]).mean()),
            "hook_log_popularity": float(world.log_popularity[rows[hook]]),
            "corr_log_interactions_vs_true_look": corr,
            "corr_log_interactions_vs_log_popularity": corr_pop}


_DATA_CONFIG: dict[int, dict[str, Any]] = {}


def _data_config(dataset: Any) -> dict[str, Any] | None:
    return _DATA_CONFIG.get(id(dataset))


def _world_rows(world: Any, dataset: Any) -> np.ndarray | None:
    position = {item_id: r for r, item_id in enumerate(np.asarray(world.catalog.item_ids).tolist())}
    ids = np.asarray(dataset.catalog.item_ids).tolist()
    if any(i not in position for i in ids):
        return None
    return np.array([position[i] for i in ids])


def insa_mean_rerun(stage: StageOutput, parts: dict[str, Any]) -> dict[str, float]:
    """Re-attack the INSA items with the mean-score objective; the same budget and steps."""
    from varsec.attacks import INSA, AdamStep, run_attack

    attack = parts["attack"].config
    ranker = parts["pipeline"].ranker
    clean = np.ascontiguousarray(parts["dataset"].catalog.images[parts["items"]])
    objective = INSA(ranker, aggregate="mean", seed=attack["seed"],
                     users_per_step=attack["params"].get("users_per_step"))
    rule = AdamStep(eps=attack["eps"], lr=attack["params"].get("lr", 1.0),
                    steps=objective.optimizer_steps(attack["steps"]), random_start=False)
    result = run_attack(objective, clean, rule, seed=attack["seed"], batch_size=64,
                        device="cpu")
    adv = _image_scores(parts["pipeline"], parts["sets"], result.images.numpy()).double()
    return shift_distribution(parts["sets"], parts["coop"], adv)


# -- driver ---------------------------------------------------------------------------------------
def diagnose(out: Path, insa_mean: bool = False) -> list[dict[str, Any]]:
    """Measure every undefended promotion evaluation of the study in ``out``."""
    reports = []
    for labels, stage in promotion_evaluations(out):
        data = stage.inputs["data"]
        parts = _scores(stage)
        dataset, sets = parts["dataset"], parts["sets"]
        if data.config.get("source") and dataset.meta and dataset.meta.get("simulated"):
            _DATA_CONFIG[id(dataset)] = data.config
        reported = np.load(stage.file("units.npz"))["cold|prediction_shift"]
        report = {"labels": labels, "reported_prediction_shift": float(reported.mean()),
                  "shift": shift_distribution(sets, parts["coop"], parts["adv"])}
        ranker = parts["pipeline"].ranker
        coop_images = dataset.catalog.images[parts["items"]]
        report["vbpr_split"] = vbpr_split(ranker, sets.users, coop_images, parts["adversarial"])
        hook = parts["attack"].info.get("hook")
        if labels["attack"] == "expa" and hook is None:
            from varsec.attacks.hooks import resolve_hook
            hook = resolve_hook(dataset)
        if labels["attack"] == "expa" and hasattr(ranker, "visual_terms"):
            report["hook"] = hook_appeal(dataset, ranker, sets.users, int(hook),
                                         parts["items"], parts["adversarial"])
        if insa_mean and labels["attack"] == "insa" and labels.get("eps") == 32:
            report["insa_mean_objective"] = insa_mean_rerun(stage, parts)
        reports.append(report)
        print(json.dumps(report, indent=1, default=str), flush=True)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a study's output directory")
    parser.add_argument("--json", type=Path, help="write the measures here too")
    parser.add_argument("--insa-mean", action="store_true",
                        help="re-attack the INSA eps-32 items with the mean-score objective")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reports = diagnose(args.out, args.insa_mean)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=str))


if __name__ == "__main__":
    main()
