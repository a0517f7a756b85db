"""Recommendation quality targets of issue 4 on a simulated profile (figures in BENCHMARKS.md).

Trains BPR-MF, VBPR, AMR and DVBPR on ``simulate_and_split(Fashion-MNIST, profile, seed)`` with
early stopping on validation HR@10, then checks:

1. VBPR beats BPR-MF on full-ranking test HR@10 (warm items; train and validation positives
   excluded), paired over users: Wilcoxon signed-rank p < 0.01 (the paired t-test is reported too).
2. VBPR and DVBPR rank held-out cold items far above random: cold-item AUC >= 0.65. Two readings
   are reported (0.5 = random for both). *Interaction AUC* (the target): the AUC of a user's next
   cold-item interaction drawn as the simulator draws interactions, from softmax(true utility),
   ranked against the other cold items; the expectation over the draw is exact, averaged over
   users. *Oracle AUC* (stricter): the share of all cold-item pairs the model orders as the true
   utility does, which also counts pairs separated only by the cold items' popularity, a part
   of the utility no visual model can see.
3. AMR's clean HR@10 within 10% of VBPR's.

VBPR and AMR take frozen item features (``--features``): ``cnn+pixels`` (default) concatenates
the pool layer of an ``fmnist-cnn`` category classifier (trained here on the catalog's categories
for ``--extractor-epochs`` epochs, or read from ``--extractor-checkpoint``) and the 784 pixel
intensities, each block z-scored per column on the warm items and scaled to mean row norm 1;
``cnn`` and ``pixels`` (raw, in [0, 1]) use one block. DVBPR learns its CNN (``fmnist-cnn``,
widths ``--dvbpr-widths``) end to end from the pixels.

Usage: python benchmarks/recsys_quality.py [--profile default] [--seed 0] [--threads 1]
       [--features cnn+pixels|cnn|pixels] [--extractor-checkpoint PATH] [--skip-dvbpr]
       [--out results.json]
       python benchmarks/recsys_quality.py --combine seed0.json seed1.json ...

``--combine`` reads the ``--out`` reports of runs on different seeds (independent simulated
worlds) and sums up target 1 over them: each seed's HR@10 difference and Wilcoxon p, and the
one-sided p-values (VBPR better) combined with Stouffer's method
(:func:`scipy.stats.combine_pvalues`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def load(profile: str, seed: int):
    from varsec.data.fashion_mnist import load_fashion_mnist
    from varsec.data.simulate import simulate_and_split

    return simulate_and_split(load_fashion_mnist(), profile, seed=seed)


def standardised(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Z-score every column with the statistics of ``rows``, then scale to mean row norm 1."""
    mean, std = matrix[rows].mean(0), matrix[rows].std(0)
    scaled = (matrix - mean) / np.maximum(std, 1e-3)
    return (scaled / np.linalg.norm(scaled[rows], axis=1).mean()).astype(np.float32)


def cnn_features(dataset, checkpoint: str | None, epochs: int, seed: int) -> np.ndarray:
    """Pool features of an ``fmnist-cnn`` category classifier (trained here unless given)."""
    from varsec.recsys.base import extract_features

    if checkpoint is not None:
        from varsec.vision.checkpoint import load_checkpoint

        backbone = load_checkpoint(checkpoint).backbone
    else:
        from varsec.vision.training.loop import train_classifier

        started = time.perf_counter()
        result = train_classifier(dataset.catalog, epochs=epochs, seed=seed)
        backbone = result.backbone
        print(f"extractor: {time.perf_counter() - started:.0f} s, validation accuracy "
              f"{result.metrics['val_clean_acc']:.3f}", flush=True)
    images = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images))
    return extract_features(backbone.features, images).numpy()


def frozen_features(dataset, kind: str, checkpoint: str | None, epochs: int, seed: int):
    """The N x D item features VBPR and AMR train on (see the module docstring)."""
    warm = dataset.warm_items()
    pixels = dataset.catalog.images.reshape(dataset.n_items, -1).astype(np.float32) / 255
    if kind == "pixels":
        return pixels
    cnn = standardised(cnn_features(dataset, checkpoint, epochs, seed), warm)
    if kind == "cnn":
        return cnn
    return np.hstack([cnn, standardised(pixels, warm)])


def warm_result(model, dataset):
    from varsec.metrics.ranking import build_exclusion, evaluate_full

    seen = np.isin(dataset.split, (0, 1))
    test = dataset.part("test")
    tests = np.full(dataset.n_users, -1)
    tests[test.user] = test.item
    everyone, cold = np.arange(dataset.n_users), dataset.cold_items
    exclude = build_exclusion(
        np.concatenate([dataset.interactions.user[seen], np.repeat(everyone, len(cold))]),
        np.concatenate([dataset.interactions.item[seen], np.tile(cold, dataset.n_users)]),
        dataset.n_users, dataset.n_items,
    )
    return evaluate_full(model.score, dataset.n_items, tests, exclude, ks=(10,))


def oracle_auc(scores: np.ndarray, oracle: np.ndarray, chunk: int = 256) -> float:
    """Mean over users of the share of cold pairs ordered as the oracle orders them."""
    agree = pairs = 0.0
    for start in range(0, len(scores), chunk):
        s, o = scores[start : start + chunk], oracle[start : start + chunk]
        model_order = np.sign(s[:, :, None] - s[:, None, :])
        true_order = np.sign(o[:, :, None] - o[:, None, :])
        valid = true_order != 0
        agree += float((((model_order == true_order) + 0.5 * (model_order == 0)) * valid).sum())
        pairs += float(valid.sum())
    return agree / pairs


def interaction_auc(scores: np.ndarray, oracle: np.ndarray, chunk: int = 256) -> float:
    """Expected AUC of a user's next cold-item interaction, drawn from softmax(true utility).

    For user u the positive is cold item i with probability softmax(oracle_u)_i and is ranked
    against the other cold items (ties count 0.5); the expectation over i is exact (no sampling).
    """
    total = 0.0
    n_items = scores.shape[1]
    for start in range(0, len(scores), chunk):
        s, o = scores[start : start + chunk], oracle[start : start + chunk].astype(np.float64)
        greater = (s[:, :, None] > s[:, None, :]).sum(2)
        ties = (s[:, :, None] == s[:, None, :]).sum(2) - 1
        beaten = greater + 0.5 * ties
        weights = np.exp(o - o.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        total += float((weights * beaten / (n_items - 1)).sum())
    return total / len(scores)


def cold_aucs(model, dataset) -> dict[str, float]:
    scores = model.score(np.arange(dataset.n_users), dataset.cold_items).cpu().numpy()
    return {"oracle_auc": oracle_auc(scores, dataset.oracle),
            "interaction_auc": interaction_auc(scores, dataset.oracle)}


def fit(name: str, model, dataset, **kwargs):
    started = time.perf_counter()
    model.fit(dataset, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{name}: {seconds:.0f} s, best epoch {getattr(model, 'best_epoch', None)}",
          flush=True)
    return model, seconds


def one_sided_p(mean_diff: float, two_sided_p: float) -> float:
    """One-sided p-value for "VBPR better" from a symmetric two-sided test's p and its sign."""
    return two_sided_p / 2.0 if mean_diff > 0 else 1.0 - two_sided_p / 2.0


def combine(paths: list[str]) -> dict[str, object]:
    """Target 1 over several seeds' reports: per-seed rows and Stouffer's combined p."""
    import scipy.stats

    rows = []
    for path in paths:
        with open(path) as handle:
            report = json.load(handle)
        target = report["targets"]["vbpr_beats_bpr_mf"]
        rows.append({"seed": report["seed"], "profile": report["profile"],
                     "bpr_mf_hr@10": report["models"]["BPR-MF"]["test_hr@10"],
                     "vbpr_hr@10": report["models"]["VBPR"]["test_hr@10"],
                     "mean_diff": target["mean_diff"], "wilcoxon_p": target["wilcoxon_p"],
                     "one_sided_p": one_sided_p(target["mean_diff"], target["wilcoxon_p"])})
    stouffer = scipy.stats.combine_pvalues([row["one_sided_p"] for row in rows],
                                           method="stouffer")
    return {"seeds": rows, "vbpr_ahead_on": sum(row["mean_diff"] > 0 for row in rows),
            "stouffer_one_sided_p": float(stouffer.pvalue)}


def main() -> None:
    from varsec.metrics.stats import paired_test
    from varsec.recsys import AMR, BPRMF, DVBPR, VBPR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dvbpr-epochs", type=int, default=15)
    parser.add_argument("--dvbpr-widths", default="16,32,64")
    parser.add_argument("--skip-dvbpr", action="store_true")
    parser.add_argument("--features", default="cnn+pixels", choices=("cnn+pixels", "cnn", "pixels"))
    parser.add_argument("--extractor-checkpoint", default=None)
    parser.add_argument("--extractor-epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--out", default=None)
    parser.add_argument("--combine", nargs="+", metavar="REPORT", default=None,
                        help="sum up saved reports of several seeds instead of training")
    args = parser.parse_args()
    if args.combine:
        print(json.dumps(combine(args.combine), indent=2))
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = load(args.profile, args.seed)
    features = frozen_features(dataset, args.features, args.extractor_checkpoint,
                               args.extractor_epochs, args.seed)
    common = {"epochs": args.epochs, "patience": 5, "seed": args.seed, "lr": args.lr,
              "reg": 0.005}
    visual = {"factors": 64, "visual_factors": 32, **common}
    models = {
        "BPR-MF": fit("BPR-MF", BPRMF(factors=64, **common), dataset),
        "VBPR": fit("VBPR", VBPR(**visual), dataset, features=features),
        "AMR": fit("AMR", AMR(**visual), dataset, features=features),
    }
    if not args.skip_dvbpr:
        widths = [int(w) for w in args.dvbpr_widths.split(",")]
        dvbpr = DVBPR(factors=32, epochs=args.dvbpr_epochs, patience=3, batch_size=256,
                      lr=1e-3, seed=args.seed, backbone_options={"widths": widths})
        models["DVBPR"] = fit("DVBPR", dvbpr, dataset)

    report: dict[str, object] = {"profile": args.profile, "seed": args.seed,
                                 "features": args.features, "feature_dim": features.shape[1],
                                 "torch_threads": torch.get_num_threads(), "models": {}}
    results = {}
    for name, (model, seconds) in models.items():
        results[name] = warm_result(model, dataset)
        entry = {"test_hr@10": float(results[name]["HR@10"].mean()),
                 "test_ndcg@10": float(results[name]["NDCG@10"].mean()),
                 "fit_seconds": seconds, "best_epoch": getattr(model, "best_epoch", None)}
        if model.visual:
            entry.update(cold_aucs(model, dataset))
        report["models"][name] = entry
    wilcoxon = paired_test(results["VBPR"]["HR@10"], results["BPR-MF"]["HR@10"], "wilcoxon")
    ttest = paired_test(results["VBPR"]["HR@10"], results["BPR-MF"]["HR@10"], "ttest")
    vbpr_hr = report["models"]["VBPR"]["test_hr@10"]
    amr_hr = report["models"]["AMR"]["test_hr@10"]
    report["targets"] = {
        "vbpr_beats_bpr_mf": {"mean_diff": wilcoxon.mean_diff, "wilcoxon_p": wilcoxon.p_value,
                              "ttest_p": ttest.p_value,
                              "met": wilcoxon.mean_diff > 0 and wilcoxon.p_value < 0.01},
        "cold_interaction_auc_at_least_0.65": {
            name: report["models"][name]["interaction_auc"] >= 0.65
            for name in ("VBPR", "DVBPR") if name in report["models"]
        },
        "amr_within_10_percent_of_vbpr": {"ratio": amr_hr / vbpr_hr,
                                          "met": amr_hr >= 0.9 * vbpr_hr},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from varsec.io import write_json_atomic

        write_json_atomic(args.out, report)


if __name__ == "__main__":
    main()
