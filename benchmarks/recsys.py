"""Recommender benchmarks, side by side with Cornac in one run (issue 4; figures in BENCHMARKS.md).

1. VBPR training: ``varsec.recsys.VBPR`` against ``cornac.models.VBPR`` on the same data (the
   ``default`` simulated profile: 5,000 users, 10,500 Fashion-MNIST items, ~55k train
   interactions), the same item features (the 784 raw pixel intensities in [0, 1], a frozen
   identity "extractor" both libraries can take), the same k, k2, batch size, learning rate and
   number of epochs, no early stopping. Reported: seconds per epoch (wall time of ``fit`` divided
   by the epochs; with ``--repeats R`` both libraries are trained R times, alternately, and every
   ratio is listed with the median and the worst) and test HR@10 / NDCG@10 of both models under
   the same full-ranking evaluator.
   L2 weights are matched: Cornac sums the batch loss and penalises ``λ/2 Σ‖row‖²``, varsec
   averages the batch loss and penalises ``reg Σ‖row‖² / B``; with Adam (invariant to the loss
   scale) ``reg = λ_w / 2`` is the same objective.
2. Full-ranking evaluation of 5,000 users x 10,000 items (the warm items of the same data, train
   and validation positives excluded, one test item per user) on one fixed score matrix (varsec's
   VBPR from 1.): ``varsec.metrics.ranking.evaluate_full`` against Cornac's
   ``cornac.eval_methods.ranking_eval`` with ``HitRatio(10)`` and ``NDCG(10)``. Both must give
   identical per-user values. Both read the same float32 matrix without copying it: Cornac's
   model returns a view of a user's row, varsec's scorer a view of a chunk's rows (consecutive
   users). varsec's time includes building its exclusion structure from the raw (user, item)
   arrays; Cornac's train/test ``Dataset`` objects are built before its clock starts. With
   ``--repeats R`` both are timed R times, alternately.
3. Peak resident memory (VmHWM, whole process: Python, torch and the inputs included) and time of
   ``evaluate_full`` at 10^5 users x 10^5 items, in a fresh subprocess, with rank-32 scores
   computed chunk by chunk and 10 excluded items per user.

Usage: python benchmarks/recsys.py [--epochs 5] [--k 32] [--k2 32] [--batch-size 256]
       [--lr 0.005] [--threads N] [--repeats 1] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import textwrap
import time
from collections import OrderedDict
from statistics import median

import numpy as np
import torch


def load_data(seed: int):
    from varsec.data.fashion_mnist import load_fashion_mnist
    from varsec.data.simulate import simulate_and_split

    dataset = simulate_and_split(load_fashion_mnist(), "default", seed=seed)
    pixels = dataset.catalog.images.reshape(dataset.n_items, -1).astype(np.float32) / 255.0
    return dataset, pixels


def seen_and_test(dataset):
    """(seen users, seen items) = train + validation, and the test item of every user (-1)."""
    seen = np.isin(dataset.split, (0, 1))
    test = dataset.part("test")
    tests = np.full(dataset.n_users, -1)
    tests[test.user] = test.item
    return dataset.interactions.user[seen], dataset.interactions.item[seen], tests


def warm_ranking(score_fn, dataset):
    """HR@10 / NDCG@10 of a [B, n_items] scorer over the warm items (cold items excluded)."""
    from varsec.metrics.ranking import build_exclusion, evaluate_full

    users, items, tests = seen_and_test(dataset)
    everyone = np.arange(dataset.n_users)
    cold = dataset.cold_items
    exclude = build_exclusion(
        np.concatenate([users, np.repeat(everyone, len(cold))]),
        np.concatenate([items, np.tile(cold, dataset.n_users)]),
        dataset.n_users, dataset.n_items,
    )
    result = evaluate_full(score_fn, dataset.n_items, tests, exclude, ks=(10,))
    return float(result["HR@10"].mean()), float(result["NDCG@10"].mean())


# -- 1. VBPR training ---------------------------------------------------------------------------
def train_varsec(dataset, pixels, args):
    from varsec.recsys import VBPR

    model = VBPR(factors=args.k, visual_factors=args.k2, batch_size=args.batch_size, lr=args.lr,
                 reg=args.lambda_w / 2, epochs=args.epochs, early_stopping=False, seed=0)
    started = time.perf_counter()
    model.fit(dataset, features=pixels)
    seconds = time.perf_counter() - started
    return model, seconds


def cornac_train_set(dataset, pixels):
    import cornac

    train = dataset.part("train")
    user_ids = dataset.interactions.user_ids.astype(str)
    item_ids = dataset.catalog.item_ids.astype(str)
    uid_map = OrderedDict((uid, index) for index, uid in enumerate(user_ids))
    iid_map = OrderedDict((iid, index) for index, iid in enumerate(item_ids))
    triplets = list(zip(user_ids[train.user], item_ids[train.item], np.ones(len(train)),
                        strict=True))
    train_set = cornac.data.Dataset.build(triplets, global_uid_map=uid_map,
                                          global_iid_map=iid_map, seed=0)
    modality = cornac.data.ImageModality(features=pixels, ids=list(item_ids), normalized=False)
    modality.build(id_map=train_set.iid_map)
    train_set.add_modalities(item_image=modality)
    return train_set


def train_cornac(dataset, pixels, args):
    import cornac

    train_set = cornac_train_set(dataset, pixels)
    model = cornac.models.VBPR(k=args.k, k2=args.k2, n_epochs=args.epochs,
                               batch_size=args.batch_size, learning_rate=args.lr,
                               lambda_w=args.lambda_w, lambda_b=args.lambda_w, lambda_e=0.0,
                               use_gpu=False, verbose=False, seed=0)
    started = time.perf_counter()
    model.fit(train_set)
    seconds = time.perf_counter() - started
    assert model.total_items == dataset.n_items

    def score_fn(users):
        rows = [model.score(int(u)) for u in users]
        return torch.as_tensor(np.stack(rows), dtype=torch.float32)

    return score_fn, seconds


def bench_training(dataset, pixels, args):
    varsec_times, cornac_times = [], []
    for _ in range(args.repeats):
        model, varsec_seconds = train_varsec(dataset, pixels, args)
        cornac_score, cornac_seconds = train_cornac(dataset, pixels, args)
        varsec_times.append(varsec_seconds)
        cornac_times.append(cornac_seconds)
    varsec_hr, varsec_ndcg = warm_ranking(model.score, dataset)
    cornac_hr, cornac_ndcg = warm_ranking(cornac_score, dataset)
    ratios = [v / c for v, c in zip(varsec_times, cornac_times, strict=True)]
    return model, {
        "epochs": args.epochs,
        "repeats": args.repeats,
        "varsec_seconds_per_epoch": median(varsec_times) / args.epochs,
        "cornac_seconds_per_epoch": median(cornac_times) / args.epochs,
        "time_ratio_varsec_over_cornac": median(ratios),
        "worst_time_ratio": max(ratios),
        "time_ratios": [round(r, 3) for r in ratios],
        "varsec_hr@10": varsec_hr, "cornac_hr@10": cornac_hr,
        "varsec_ndcg@10": varsec_ndcg, "cornac_ndcg@10": cornac_ndcg,
    }


# -- 2. full-ranking evaluation -----------------------------------------------------------------
def warm_problem(model, dataset):
    """Scores over the warm items only, with the split remapped to warm positions."""
    warm = dataset.warm_items()
    position = np.full(dataset.n_items, -1)
    position[warm] = np.arange(len(warm))
    users, items, tests = seen_and_test(dataset)
    scores = model.score(np.arange(dataset.n_users), warm).cpu()
    remapped_tests = np.where(tests >= 0, position[np.maximum(tests, 0)], -1)
    return scores, users, position[items], remapped_tests


class FixedScores:
    """A Cornac recommender that returns rows of a fixed score matrix (built lazily)."""

    def __new__(cls, scores: np.ndarray):
        import cornac

        class _Fixed(cornac.models.Recommender):
            def __init__(self, matrix):
                super().__init__(name="fixed", trainable=False, verbose=False)
                self.matrix = matrix
                self.num_users, self.num_items = matrix.shape

            def score(self, user_idx, item_idx=None):
                row = self.matrix[user_idx]
                return row if item_idx is None else row[item_idx]

        return _Fixed(scores)


def cornac_split(users, items, tests, n_users, n_items):
    import cornac

    uid_map = OrderedDict((str(u), u) for u in range(n_users))
    iid_map = OrderedDict((str(i), i) for i in range(n_items))

    def build(u, i):
        triplets = [(str(a), str(b), 1.0) for a, b in zip(u, i, strict=True)]
        return cornac.data.Dataset.build(triplets, global_uid_map=uid_map.copy(),
                                         global_iid_map=iid_map.copy())

    has_test = tests >= 0
    return build(users, items), build(np.flatnonzero(has_test), tests[has_test])


def row_views(matrix: torch.Tensor):
    """A varsec scorer over a fixed score matrix: a view of the chunk's rows when its users are
    consecutive (as they are here, every user has a test item), a gathered copy otherwise."""

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        first, last = int(users[0]), int(users[-1])
        if last - first + 1 == len(users):
            return matrix[first : last + 1]
        return matrix[users]

    return score_fn


def bench_evaluation(model, dataset, repeats: int):
    import cornac
    from cornac.eval_methods import ranking_eval

    from varsec.metrics.ranking import build_exclusion, evaluate_full

    scores, users, items, tests = warm_problem(model, dataset)
    n_users, n_items = scores.shape
    train_set, test_set = cornac_split(users, items, tests, n_users, n_items)
    metrics = [cornac.metrics.HitRatio(k=10), cornac.metrics.NDCG(k=10)]
    varsec_times, cornac_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        exclude = build_exclusion(users, items, n_users, n_items)
        ours = evaluate_full(row_views(scores), n_items, tests, exclude, ks=(10,))
        varsec_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        averages, per_user = ranking_eval(FixedScores(scores.numpy()), metrics, train_set,
                                          test_set)
        cornac_times.append(time.perf_counter() - started)

    order = np.asarray(ours.users)
    cornac_hr = np.array([per_user[0][u] for u in order])
    cornac_ndcg = np.array([per_user[1][u] for u in order])
    speedups = [c / v for v, c in zip(varsec_times, cornac_times, strict=True)]
    return {
        "users": len(order), "items": int(n_items), "repeats": repeats,
        "varsec_seconds": median(varsec_times), "cornac_seconds": median(cornac_times),
        "speedup_cornac_over_varsec": median(speedups),
        "worst_speedup": min(speedups),
        "speedups": [round(x, 1) for x in speedups],
        "varsec_hr@10": float(ours["HR@10"].mean()), "cornac_hr@10": float(averages[0]),
        "varsec_ndcg@10": float(ours["NDCG@10"].mean()), "cornac_ndcg@10": float(averages[1]),
        "per_user_hr_identical": bool(np.array_equal(cornac_hr, ours["HR@10"])),
        "per_user_ndcg_max_abs_difference": float(np.abs(cornac_ndcg - ours["NDCG@10"]).max()),
    }


# -- 3. peak memory at 10^5 x 10^5 --------------------------------------------------------------
MEMORY_CHILD = textwrap.dedent(
    """
    import json, time
    import torch
    from varsec.metrics.ranking import build_exclusion, evaluate_full

    def high_water_gb():  # VmHWM is per process image (ru_maxrss survives exec on Linux)
        with open("/proc/self/status") as status:
            line = next(row for row in status if row.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20

    n = 100_000
    generator = torch.Generator().manual_seed(0)
    user_vectors = torch.randn(n, 32, generator=generator)
    item_vectors = torch.randn(n, 32, generator=generator)
    seen_users = torch.arange(n).repeat_interleave(10)
    seen_items = torch.randint(n, (10 * n,), generator=generator)
    tests = torch.randint(n, (n,), generator=generator)
    clash = (seen_items.view(n, 10) == tests[:, None]).any(1)
    tests[clash] = -1
    exclude = build_exclusion(seen_users, seen_items, n, n)
    before = high_water_gb()
    started = time.perf_counter()
    result = evaluate_full(lambda u: user_vectors[u] @ item_vectors.T, n, tests, exclude,
                           ks=(10,), chunk_size=CHUNK)
    seconds = time.perf_counter() - started
    print(json.dumps({"users": n, "items": n, "chunk_size": CHUNK,
                      "evaluated_users": int(result.n_users), "seconds": seconds,
                      "peak_rss_gb": high_water_gb(), "peak_rss_before_evaluation_gb": before}))
    """
)


def bench_memory(chunk_size: int, threads: int | None):
    code = f"import torch\ntorch.set_num_threads({threads})\n" if threads else ""
    code += MEMORY_CHILD.replace("CHUNK", str(chunk_size))
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--k2", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--lambda-w", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both peers)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timings of training and evaluation, alternating the libraries")
    parser.add_argument("--memory-chunk", type=int, default=1024)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import cornac

    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cornac": cornac.__version__, "torch_threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine()},
        "settings": vars(args),
    }
    dataset, pixels = load_data(seed=0)
    # The first optimizer of a process imports torch._dynamo (seconds): pay it outside the timing.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    model, report["vbpr_training"] = bench_training(dataset, pixels, args)
    print(json.dumps({"vbpr_training": report["vbpr_training"]}, indent=2), flush=True)
    report["full_ranking_evaluation"] = bench_evaluation(model, dataset, args.repeats)
    print(json.dumps({"full_ranking_evaluation": report["full_ranking_evaluation"]}, indent=2),
          flush=True)
    if not args.skip_memory:
        report["evaluation_memory"] = bench_memory(args.memory_chunk, args.threads)
        print(json.dumps({"evaluation_memory": report["evaluation_memory"]}, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
