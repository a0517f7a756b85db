"""Why Yin et al.'s collapse of VBPR's HR@10 (002 Table 2, claim 002-collapse) does or does not
appear in a study: threat model, reliance on images, budget.

Reads a finished study output directory (``--out DIR``, e.g. ``varsec demo --out DIR``) from its
stage cache: the dataset, the attacked recommender (by default the one the study's BPR attack
goes through, ``vbpr-yin`` in the demo) and that attack's cached catalogs. Nothing is retrained.
Every HR@10 is the sampled protocol with 20 negatives (002 sec 4.2) on the evaluation's own lists
(:func:`varsec.metrics.ranking.sampled_lists`, the same test users, negatives and seed), with
the evaluation's tie rule; every adversarial image is quantised to 8 bits before it is scored.

Experiments (each a section of the printed JSON):

* ``reproduced`` - clean HR@10 and the study's catalog-wide attacks (one image per item,
  attacked over the training triplets: a merchant's upload) recomputed here; they must equal the
  study's rows;
* ``reliance`` - how much the ranking rests on the images: share of the within-list variance of
  the score carried by ``γ_u·E f_i`` against ``γ_u·γ_i``, and HR@10 with every item's visual
  term replaced (none, which ranks as the mean would; another item's; no ``γ_i`` at all), plus
  two feature-space bounds: each list item given the catalog feature that is worst for its
  role, chosen per user (``oracle_per_user``) or once per item for all its lists
  (``oracle_catalog``);
* ``per_user`` - 002's attack read per test triplet (:mod:`varsec.attacks.bpr_per_user`): each
  user's test image and its 20 negatives attacked for that user, FGSM and PGD, at several eps;
* ``item_terms`` (``--gamma-scales``) - the per-user attack on copies of the model whose item
  factors ``γ_i`` are scaled down (0: items scored by their images alone, as an item with almost
  no interactions is): how much of the ranking the images must carry for the collapse;
* ``catalog`` - the catalog-wide attack with more PGD steps (convergence recorded), and a
  catalog-wide attack on the evaluation triplets themselves (one image per item, but aimed at
  the test lists: the per-user attack's knowledge without its per-user images);
* ``movement`` - how far each attack moved the visual term ``E f``, against the spread of
  ``E f`` between items.

Usage: python benchmarks/diagnose_collapse.py --out /tmp/demo-collapse [--users 1000]
       [--eps 8,16,32,64] [--pgd-steps 10,20] [--catalog-steps 10,40] [--json out.json]
       [--gamma-scales 0.5,0] [--skip per_user,catalog]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_promotion import _index, _output
from varsec.attacks import BPRUntargeted, FGSMStep, PGDStep, run_attack
from varsec.attacks.bpr_per_user import BPRPerUser, per_user_users
from varsec.metrics.convergence import converged
from varsec.metrics.ranking import sampled_lists
from varsec.study.builtin.common import (
    exclusion,
    features_of,
    load_dataset,
    load_model,
    test_items,
)

NEGATIVES = 20  # 002 sec 4.2
K = 10


# -- reading the cache ----------------------------------------------------------------------------
def study_parts(out: Path, recommender: str | None) -> dict[str, Any]:
    """The attacked recommender's stage, its clean sampled evaluation and the BPR attacks on it."""
    index, memo = _index(out / "cache"), {}
    attacks, evaluations = [], []
    for key, (kind, _path, record) in sorted(index.items()):
        labels = record["labels"]
        if kind == "attack" and record["config"].get("objective") == "bpr" \
                and "through" not in record["config"]:
            attacks.append((labels, _output(key, index, memo)))
        if kind == "evaluation" and record["config"].get("scenario") == "ranking" \
                and labels.get("attack") == "none" and labels.get("defense") == "none":
            evaluations.append((labels, _output(key, index, memo)))
    name = recommender or (attacks[0][0]["recommender"] if attacks else None)
    if name is None:
        raise SystemExit("the study has no BPR attack through a recommender; name one with "
                         "--recommender")
    evaluation = next(s for labels, s in evaluations if labels["recommender"] == name)
    runs = sorted(((labels, s) for labels, s in attacks if labels["recommender"] == name),
                  key=lambda run: run[0]["eps"])
    return {"name": name, "model": evaluation.inputs["model"], "evaluation": evaluation,
            "data": evaluation.inputs["data"], "attacks": runs}


# -- HR@10 on the evaluation's lists --------------------------------------------------------------
def hit_rate(scores: torch.Tensor, k: int = K) -> np.ndarray:
    """Per-user HR@k of column 0 among the list (ties broken at random, in expectation: the
    rule of varsec.metrics.ranking)."""
    scores = scores.double()
    higher = (scores[:, 1:] > scores[:, :1]).sum(1).double()
    tied = (scores[:, 1:] == scores[:, :1]).sum(1).double()
    return ((k - higher).clamp(min=0).minimum(tied + 1) / (tied + 1)).numpy()


@torch.no_grad()
def list_scores(model: Any, users: torch.Tensor, lists: torch.Tensor,
                visual: torch.Tensor | None = None, gamma: bool = True) -> torch.Tensor:
    """Yin's VBPR score γ_u·(γ_i + E f_i) of every list item, with the item table ``visual``
    (N x K, default the model's own E f) and without γ_i when not ``gamma``."""
    visual = model.item_visual if visual is None else visual
    gamma_u = model.user_gamma.weight[users].unsqueeze(1)
    item_side = visual[lists]
    if gamma:
        item_side = item_side + model.item_gamma.weight[lists] * \
            model.warm[lists].unsqueeze(-1).to(item_side.dtype)
    return (gamma_u * item_side).sum(-1)


def visual_table(model: Any, features: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.visual_terms(torch.as_tensor(features))[0]


# -- experiments ----------------------------------------------------------------------------------
@torch.no_grad()
def reliance(model: Any, users: torch.Tensor, lists: torch.Tensor, seed: int) -> dict[str, Any]:
    """What any image attack could do at most: the visual term's share and ablations."""
    warm = model.warm.clone()
    gamma_u = model.user_gamma.weight[users].unsqueeze(1)
    collab = (gamma_u * model.item_gamma.weight[lists] * warm[lists].unsqueeze(-1)).sum(-1)
    visual_part = (gamma_u * model.item_visual[lists]).sum(-1)
    within = lambda s: float(s.double().var(1).mean())  # noqa: E731
    generator = torch.Generator().manual_seed(seed)
    permuted = model.item_visual[torch.randperm(model.n_items, generator=generator)]
    out = {
        "within_list_variance_collaborative": within(collab),
        "within_list_variance_visual": within(visual_part),
        "within_list_variance_total": within(collab + visual_part),
        "norm_gamma_i_mean": float(model.item_gamma.weight[warm].norm(dim=1).mean()),
        "norm_Ef_mean": float(model.item_visual[warm].norm(dim=1).mean()),
        "HR10_clean": float(hit_rate(collab + visual_part).mean()),
        "HR10_no_visual": float(hit_rate(collab).mean()),
        "HR10_visual_only": float(hit_rate(visual_part).mean()),
        "HR10_permuted_visual": float(hit_rate(list_scores(model, users, lists,
                                                           permuted)).mean()),
    }
    out.update(feature_oracles(model, users, lists, collab))
    return out


@torch.no_grad()
def feature_oracles(model: Any, users: torch.Tensor, lists: torch.Tensor,
                    collab: torch.Tensor) -> dict[str, float]:
    """HR@10 when each list item carries the catalog's worst visual term for its role (test
    item: the lowest γ_u·E f, negatives: the highest), chosen per user, or once per item for
    the sum of its roles over every list (a catalog-wide attacker who knows the test lists)."""
    table = model.item_visual[model.warm]  # the E f of real (warm) images
    gamma_u = model.user_gamma.weight[users]
    reach = gamma_u @ table.T  # [U, warm]
    low, high = reach.min(1).values, reach.max(1).values
    per_user = collab.clone()
    per_user[:, 0] += low
    per_user[:, 1:] += high.unsqueeze(1)
    sign = torch.ones_like(lists, dtype=torch.float32)
    sign[:, 0] = -1.0  # push the test item down, the negatives up
    direction = torch.zeros(model.n_items, gamma_u.shape[1])
    direction.index_add_(0, lists.reshape(-1),
                         (sign.unsqueeze(-1) * gamma_u.unsqueeze(1)).reshape(-1, gamma_u.shape[1]))
    chosen = table[(direction @ table.T).argmax(1)]
    return {"HR10_oracle_per_user": float(hit_rate(per_user).mean()),
            "HR10_oracle_catalog": float(hit_rate(list_scores(model, users, lists,
                                                              chosen)).mean())}


def catalog_hr(model: Any, extractor: Any, items: np.ndarray, adversarial: np.ndarray,
               users: torch.Tensor, lists: torch.Tensor) -> tuple[float, torch.Tensor]:
    """HR@10 with ``items`` carrying ``adversarial`` (uint8) for every user; the new E f table."""
    table = model.item_visual.clone()
    table[torch.as_tensor(items)] = visual_table(model, features_of(extractor, adversarial))
    return float(hit_rate(list_scores(model, users, lists, table)).mean()), table


def movement(model: Any, table: torch.Tensor, items: np.ndarray) -> dict[str, float]:
    """Mean ||E f* - E f|| over the attacked items, against the mean distance between the E f of
    two random warm items (how far the attack moved the visual term)."""
    items = torch.as_tensor(items)
    moved = (table[items] - model.item_visual[items]).norm(dim=1)
    warm = torch.nonzero(model.warm).flatten()
    generator = torch.Generator().manual_seed(0)
    a = warm[torch.randint(len(warm), (4000,), generator=generator)]
    b = warm[torch.randint(len(warm), (4000,), generator=generator)]
    spread = (model.item_visual[a] - model.item_visual[b]).norm(dim=1)
    return {"moved_mean": float(moved.mean()), "between_items_mean": float(spread.mean()),
            "ratio": float(moved.mean() / spread.mean())}


def _rule(eps: float, steps: int) -> Any:
    return FGSMStep(eps=eps) if steps <= 1 else PGDStep(eps=eps, steps=steps)


def _convergence(history: Any) -> dict[str, Any] | None:
    if history is None or len(history) < 2:
        return None
    return converged(np.asarray(history, dtype=np.float64).mean(1)).as_info()


def per_user(model: Any, dataset: Any, users: torch.Tensor, lists: torch.Tensor,
             eps_list: list[float], pgd_steps: list[int], seed: int) -> list[dict[str, Any]]:
    """002's attack per test triplet: HR@10 of the attacked users, FGSM and PGD."""
    objective = BPRPerUser(model, dataset, users, lists)
    clean = hit_rate(objective.attacked_scores(objective.images))
    found = []
    for eps in eps_list:
        for steps in (1, *pgd_steps):
            started = time.perf_counter()
            result = run_attack(objective, objective.images, _rule(eps, steps), seed=seed,
                                batch_size=256, desc=f"per-user eps {eps:g}")
            hr = hit_rate(objective.attacked_scores(result.images.numpy()))
            found.append({"eps": eps, "steps": steps, "HR10_clean": float(clean.mean()),
                          "HR10_attacked": float(hr.mean()),
                          "HR20_attacked": float(hit_rate(objective.attacked_scores(
                              result.images.numpy()), 20).mean()),
                          "users": len(users), "seconds": round(time.perf_counter() - started, 1),
                          "convergence": _convergence(result.history)})
            print(json.dumps(found[-1]), flush=True)
    return found


def item_term_sweep(model: Any, dataset: Any, extractor: Any, users: torch.Tensor,
                    lists: torch.Tensor, scales: list[float], eps: float, pgd_steps: int,
                    seed: int, catalog_users: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> list[dict[str, Any]]:
    """The per-user attack (and, with ``catalog_users`` = every user's lists, the catalog-wide
    FGSM) on copies of the model whose learned item factors ``γ_i`` are scaled by each of
    ``scales`` (0: the items are scored by their images alone, as items with almost no
    interactions are): how much of the ranking the images must carry for the collapse."""
    found = []
    for scale in scales:
        clone = copy.deepcopy(model)
        with torch.no_grad():
            clone.item_gamma.weight.mul_(scale)
        for entry in per_user(clone, dataset, users, lists, [eps], [pgd_steps], seed):
            found.append({"gamma_scale": scale, **entry})
        if catalog_users is not None:
            objective = BPRUntargeted(clone, dataset, seed=seed)
            result = run_attack(objective, objective.images, FGSMStep(eps=eps), seed=seed,
                                batch_size=256, desc=f"catalog FGSM, gamma x {scale:g}")
            all_users, all_lists = catalog_users
            clean = float(hit_rate(list_scores(clone, all_users, all_lists)).mean())
            hr, _ = catalog_hr(clone, extractor, objective.items, result.images.numpy(),
                               all_users, all_lists)
            found.append({"gamma_scale": scale, "catalog_fgsm": True, "eps": eps,
                          "HR10_clean": clean, "HR10_attacked": hr,
                          "users": len(all_users)})
            print(json.dumps(found[-1]), flush=True)
    return found


class _EvaluationTriplets(BPRUntargeted):
    """The catalog-wide objective (one image per item) on the evaluation's triplets (u, t, n_k)
    instead of the training triplets."""

    lists: torch.Tensor
    list_users: torch.Tensor

    def _triplets(self, negatives: int, seed: int) -> tuple[torch.Tensor, ...]:
        width = self.lists.shape[1] - 1
        users = self.list_users.repeat_interleave(width)
        return users, self.lists[:, :1].expand(-1, width).reshape(-1), \
            self.lists[:, 1:].reshape(-1)


def catalog(model: Any, dataset: Any, extractor: Any, users: torch.Tensor, lists: torch.Tensor,
            eps: float, steps_list: list[int], seed: int) -> list[dict[str, Any]]:
    """The catalog-wide attack with more steps, and aimed at the evaluation triplets."""
    found = []
    for name in ("training-triplets", "evaluation-triplets"):
        for steps in steps_list:
            if name == "evaluation-triplets":
                _EvaluationTriplets.lists, _EvaluationTriplets.list_users = lists, users
                objective: Any = _EvaluationTriplets(model, dataset, seed=seed)
            else:
                objective = BPRUntargeted(model, dataset, seed=seed)
            started = time.perf_counter()
            result = run_attack(objective, objective.images, _rule(eps, steps), seed=seed,
                                batch_size=256, desc=f"catalog {name} PGD-{steps}")
            hr, table = catalog_hr(model, extractor, objective.items, result.images.numpy(),
                                   users, lists)
            found.append({"objective": name, "eps": eps, "steps": steps, "HR10_attacked": hr,
                          "seconds": round(time.perf_counter() - started, 1),
                          "convergence": _convergence(result.history),
                          "movement": movement(model, table, objective.items)})
            print(json.dumps(found[-1]), flush=True)
    return found


# -- driver ---------------------------------------------------------------------------------------
def diagnose(args: argparse.Namespace) -> dict[str, Any]:
    parts = study_parts(args.out, args.recommender)
    evaluation = parts["evaluation"]
    dataset = load_dataset(parts["data"])
    model = load_model(parts["model"])
    extractor = parts["model"].inputs["extractor"]
    if not getattr(model.hp, "shared_factors", False):
        raise SystemExit(f"{parts['name']} is not Yin's VBPR (shared_factors: true)")
    seed = int(evaluation.config["seed"])
    tests = test_items(dataset, evaluation.config["max_users"], seed)
    users, lists = sampled_lists(dataset.n_items, tests, exclusion(dataset), NEGATIVES, seed)
    report: dict[str, Any] = {"recommender": parts["name"], "users": len(users),
                              "items": dataset.n_items,
                              "feature_dim": int(model._feature_dim),
                              "factors": int(model.hp.factors)}
    units = dict(np.load(evaluation.file("units.npz")))
    reported = units.get(f"sampled-{NEGATIVES}|HR@{K}")
    clean = hit_rate(list_scores(model, users, lists))
    report["reproduced"] = {"HR10_clean": float(clean.mean()),
                            "HR10_clean_reported": None if reported is None
                            else float(reported.mean()), "catalog_attacks": []}
    for labels, attack in parts["attacks"]:
        hr, table = catalog_hr(model, extractor, np.load(attack.file("items.npy")),
                               np.load(attack.file("adversarial.npy")), users, lists)
        report["reproduced"]["catalog_attacks"].append(
            {"attack": labels["attack"], "eps": labels["eps"], "HR10_attacked": hr,
             "steps": attack.config["steps"], "convergence": attack.info.get("convergence"),
             "movement": movement(model, table, np.load(attack.file("items.npy")))})
    print(json.dumps(report, indent=1), flush=True)
    report["reliance"] = reliance(model, users, lists, seed)
    print(json.dumps(report["reliance"], indent=1), flush=True)
    chosen = torch.as_tensor(per_user_users(users.numpy(), args.users, seed))
    rows = torch.as_tensor(np.searchsorted(users.numpy(), chosen.numpy()))
    sub_users, sub_lists = users[rows], lists[rows]
    if "per_user" not in args.skip:
        report["per_user"] = per_user(model, dataset, sub_users, sub_lists, args.eps,
                                      args.pgd_steps, seed)
    if args.gamma_scales:
        report["item_terms"] = item_term_sweep(
            model, dataset, extractor, sub_users, sub_lists, args.gamma_scales, 16.0,
            args.pgd_steps[0], seed,
            None if "catalog" in args.skip else (users, lists))
    if "catalog" not in args.skip:
        report["catalog"] = catalog(model, dataset, extractor, users, lists, args.catalog_eps,
                                    args.catalog_steps, seed)
    return report


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a study's output directory")
    parser.add_argument("--recommender", help="the attacked recommender (default: the one the "
                        "study's BPR attack goes through)")
    parser.add_argument("--users", type=int, default=1000, help="test users of the per-user "
                        "attack (a seeded sample; 0: every one)")
    parser.add_argument("--eps", type=_floats, default=[8.0, 16.0, 32.0, 64.0])
    parser.add_argument("--pgd-steps", type=lambda t: [int(v) for v in t.split(",")],
                        default=[10], help="per-user PGD steps (comma-separated)")
    parser.add_argument("--catalog-eps", type=float, default=16.0)
    parser.add_argument("--catalog-steps", type=lambda t: [int(v) for v in t.split(",")],
                        default=[10, 40])
    parser.add_argument("--gamma-scales", type=_floats, default=[], help="per-user attack at "
                        "eps 16 on copies of the model with γ_i scaled by these (e.g. 0.5,0)")
    parser.add_argument("--skip", type=lambda t: t.split(","), default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the measures here too")
    args = parser.parse_args()
    args.users = args.users or None
    torch.set_num_threads(args.threads)
    report = diagnose(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
