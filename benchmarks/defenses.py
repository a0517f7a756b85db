"""Defense-layer benchmark (issue 6): speed of every defense, and the quality targets.

``speed``: images/s of each input transform (JPEG, bit depth, median, random resize-pad) and of
reconstruction + detection, on Fashion-MNIST images (28 x 28 grey) and on 224 x 224 RGB images
built from them, with ``--threads`` torch threads (2 by default). JPEG is measured side by side
with ART's ``JpegCompression`` on the same images: the outputs are compared pixel for pixel and
the time ratio is reported.

``targets``: the default-profile targets of issue 6 (simulated Fashion-MNIST, ``default``
profile): (1) under untargeted FGSM at eps 16 (002 eq 3-4), VBPR + reconstruction keeps at least
70 % of clean VBPR's HR@10 (20 sampled negatives, 002 sec 4.2); (2) detection accuracy >= 0.85
at eps 16, 32 and 64 on held-out items (002 Table 3). It prints 002 Table 2 (sampled-20 and
full ranking), Table 3 with ROC-AUC and confusion counts, the calibrated threshold, and the
adaptive attack's evasion rate. Every stage is seeded; the defense's training attack uses a
different seed from the evaluated attack.

Usage: python benchmarks/defenses.py speed [--threads 2] [--n 2000] [--json out.json]
       python benchmarks/defenses.py targets [--threads 2] [--extractor-checkpoint PATH] ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch

# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------


def fmnist_images(n: int) -> np.ndarray:
    """The first ``n`` Fashion-MNIST images, uint8 N x 1 x 28 x 28."""
    from varsec.data.fashion_mnist import load_fashion_mnist

    return np.ascontiguousarray(load_fashion_mnist().images[:n])


def rgb_images(grey: np.ndarray, side: int = 224) -> np.ndarray:
    """Colour images of ``side`` pixels made from grey ones (three different tints)."""
    x = torch.from_numpy(grey).float()
    big = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear",
                                          align_corners=False)
    rgb = torch.cat([big, 0.8 * big + 30, 255 - big], dim=1).clamp(0, 255)
    return rgb.round().to(torch.uint8).numpy()


def rate(function: Any, n_images: int, repeat: int) -> float:
    """Median images/s of ``function()`` over ``repeat`` runs (after one warm-up)."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return n_images / statistics.median(times)


def transform_rates(images: np.ndarray, repeat: int) -> dict[str, float]:
    """images/s of each input transform on uint8 ``images`` (float conversion included)."""
    from varsec.defenses import JPEG, BitDepth, MedianSmoothing, ResizePad

    x = torch.from_numpy(images).float().div_(255.0)
    transforms = {"JPEG q=75": JPEG(75), "bit depth b=4": BitDepth(4),
                  "median 3x3": MedianSmoothing(3), "resize-pad r=212/224": ResizePad(seed=0)}
    out = {}
    with torch.no_grad():
        for name, transform in transforms.items():
            out[name] = rate(lambda t=transform: [t(x[s:s + 256]) for s in range(0, len(x), 256)],
                             len(x), repeat)
    return out


def art_comparison(images: np.ndarray, quality: int, repeat: int) -> dict[str, Any]:
    """varsec JPEG vs ART JpegCompression on the same uint8 images: equality and time ratio."""
    try:
        from art.defences.preprocessor import JpegCompression
    except ImportError as exc:
        return {"error": f"ART not importable: {exc}"}
    from varsec.defenses import JPEG

    ours = JPEG(quality)
    x = torch.from_numpy(images).float().div_(255.0)
    art_255 = JpegCompression(clip_values=(0, 255), quality=quality, channels_first=True)
    art_01 = JpegCompression(clip_values=(0, 1), quality=quality, channels_first=True)
    as_255 = images.astype(np.float32)
    mine = torch.round(ours(x) * 255).to(torch.uint8).numpy()
    theirs = art_255(as_255)[0].round().astype(np.uint8)
    theirs_01 = np.round(art_01(x.numpy())[0] * 255).astype(np.uint8)
    with torch.no_grad():
        ours_rate = rate(lambda: ours(x), len(x), repeat)
    art_rate = rate(lambda: art_255(as_255), len(x), repeat)
    return {
        "quality": quality, "images": len(x),
        "identical_0_255": bool(np.array_equal(mine, theirs)),
        "differing_pixels_0_1": int(np.count_nonzero(mine != theirs_01)),
        "varsec_images_per_s": ours_rate, "art_images_per_s": art_rate,
        "time_ratio_varsec_over_art": art_rate / ours_rate,
    }


def pipeline_rate(images: np.ndarray, width: int, blocks: int, repeat: int,
                  batch: int = 64) -> float:
    """images/s of reconstruction + detection score (``d(x, T(x))``), untrained networks."""
    from varsec.defenses import ContrastiveDetector, ReconstructionNet

    channels = images.shape[1]
    torch.manual_seed(0)
    network = ReconstructionNet(channels, width=width, blocks=blocks).eval()
    backbone = "fmnist-cnn" if images.shape[-1] <= 32 else "resnet50"
    kwargs = {"in_channels": channels} if backbone == "fmnist-cnn" else {"weights": None}
    detector = ContrastiveDetector(backbone, kwargs).eval()
    x = torch.from_numpy(images).float().div_(255.0)

    def run() -> None:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                detector.score(x[s:s + batch], network)

    return rate(run, len(x), repeat)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """The speed report (see the module docstring)."""
    grey = fmnist_images(args.n)
    rgb = rgb_images(grey[: args.n_rgb])
    report: dict[str, Any] = {"threads": torch.get_num_threads()}
    report["transforms_28px_grey"] = transform_rates(grey, args.repeat)
    report["transforms_224px_rgb"] = transform_rates(rgb, args.repeat)
    report["jpeg_vs_art_28px_grey"] = art_comparison(grey, 75, args.repeat)
    report["jpeg_vs_art_224px_rgb"] = art_comparison(rgb, 75, args.repeat)
    small = grey[: args.n_pipeline]
    report["reconstruction_detection_28px"] = {
        f"width {w}, {b} blocks": pipeline_rate(small, w, b, args.repeat)
        for w, b in ((64, 9), (32, 9))}
    report["reconstruction_detection_224px_rgb"] = {
        "width 32, 9 blocks (resnet50 encoder)": pipeline_rate(rgb[:8], 32, 9, 1, batch=8)}
    return report


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def extractor(args: argparse.Namespace, catalog: Any) -> Any:
    """The fmnist-cnn the recommenders see (trained here unless a checkpoint is given)."""
    from varsec.vision.checkpoint import load_checkpoint
    from varsec.vision.training import TrainConfig, train_classifier

    if args.extractor_checkpoint:
        return load_checkpoint(args.extractor_checkpoint).backbone
    config = TrainConfig(epochs=args.extractor_epochs, max_train=args.extractor_items,
                         seed=args.seed)
    result = train_classifier(catalog, config, out=args.save_extractor)
    log(f"extractor: val clean acc {result.metrics['val_clean_acc']:.3f}")
    return result.backbone


def detector_budgets(text: str) -> float | tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def attack_catalog(model: Any, dataset: Any, rule: Any, seed: int, items: Any = None) -> Any:
    from varsec.attacks import poison_catalog

    return poison_catalog(model, dataset, rule, items, seed=seed, batch_size=256)[1].images


def targets(args: argparse.Namespace) -> dict[str, Any]:
    """Train everything at the default profile and measure the two targets."""
    from varsec.attacks import FGSMStep, PGDStep
    from varsec.data.fashion_mnist import load_fashion_mnist
    from varsec.data.simulate import simulate_and_split
    from varsec.defenses import (
        DefenseConfig,
        ResizePad,
        adaptive_bpr_attack,
        detection_frame,
        detection_table,
        ranking_table,
        recovery,
        table2_conditions,
        train_defense,
    )
    from varsec.recsys import AMR, VBPR

    started = time.perf_counter()
    fmnist = load_fashion_mnist()
    dataset = simulate_and_split(fmnist, args.profile, seed=args.seed)
    log(f"dataset: {dataset.n_users} users, {dataset.n_items} items")
    backbone = extractor(args, fmnist).eval()
    common = {"factors": 32, "visual_factors": 32, "lr": 0.005, "reg": 0.005,
              "epochs": args.recsys_epochs, "patience": 5, "seed": args.seed}
    vbpr = VBPR(**common).fit(dataset, extractor=backbone)
    amr = AMR(**common).fit(dataset, extractor=backbone)
    log(f"VBPR best epoch {vbpr.best_epoch}, AMR best epoch {amr.best_epoch}")
    attacked = {"VBPR": {}, "AMR": {}}
    for name, model in (("VBPR", vbpr), ("AMR", amr)):
        attacked[name]["FGSM"] = attack_catalog(model, dataset, FGSMStep(args.eps), args.seed)
        attacked[name]["PGD"] = attack_catalog(
            model, dataset, PGDStep(args.eps, steps=args.pgd_steps), args.seed)
    log("attacked catalogs ready (FGSM, PGD through VBPR and AMR)")
    config = DefenseConfig(
        eps=args.eps, pgd_steps=args.pgd_steps, detector_eps=detector_budgets(args.detector_eps),
        recon_epochs=args.recon_epochs, mix_epochs=args.mix_epochs,
        detector_epochs=args.detector_epochs, joint_epochs=args.joint_epochs,
        width=args.width, blocks=args.blocks, batch_size=args.batch_size,
        max_items=args.max_items, seed=args.seed + 1, lr=args.lr)
    defense = train_defense(vbpr, dataset, config, extractor=backbone,
                            on_epoch=lambda r: log(f"defense {r}"))
    network, detector = defense.reconstruction, defense.detector
    log(f"defense trained in {defense.seconds:.0f}s; threshold {detector.threshold:.4f}")
    clean = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images))
    conditions = table2_conditions(clean, vbpr, attacked["VBPR"], network, amr=amr,
                                   attacked_amr=attacked["AMR"],
                                   random_layer=ResizePad(seed=args.seed))
    table = ranking_table(conditions, dataset, seed=args.seed)
    keep = recovery(table, "OURS-FGSM")
    log(f"Table 2 done; OURS-FGSM keeps {keep:.3f} of clean VBPR HR@10 (sampled-20)")
    test = defense.split.test
    adversarial = {eps: attack_catalog(vbpr, dataset, FGSMStep(eps), args.seed, test)
                   for eps in (8, 16, 32, 64)}
    reports = detection_table(detector, network, clean[test], adversarial, seed=args.seed)
    detection = detection_frame(reports)
    accuracy = {r.eps: r.metrics["accuracy"] for r in reports}
    log(f"Table 3: {accuracy}")
    adaptive = adaptive_bpr_attack(vbpr, dataset, network, detector,
                                   PGDStep(args.eps, steps=args.pgd_steps), test,
                                   penalty=args.adaptive_penalty, seed=args.seed)
    plain = reports[1].adversarial_scores
    report = {
        "profile": args.profile, "seed": args.seed, "threads": torch.get_num_threads(),
        "defense_config": config.to_dict(), "calibration": defense.calibration.to_dict(),
        "items": {k: len(v) for k, v in defense.split.to_dict().items()},
        "table2": table.to_dict(orient="records"),
        "table3": detection.to_dict(orient="records"),
        "targets": {
            "fgsm16_hr10_sampled20_recovery": {"value": keep, "met": keep >= 0.7},
            "undefended_fgsm16_hr10_sampled20_recovery": recovery(table, "VBPR-FGSM"),
            "fgsm16_hr10_full_recovery": recovery(table, "OURS-FGSM", protocol="full"),
            "undefended_fgsm16_hr10_full_recovery": recovery(table, "VBPR-FGSM",
                                                             protocol="full"),
            "detection_accuracy": {str(k): {"value": v, "met": v >= 0.85}
                                   for k, v in accuracy.items()},
        },
        "adaptive_pgd": {"evasion_rate": adaptive.evasion_rate,
                         "mean_score_adaptive": float(adaptive.scores.mean()),
                         "fgsm16_evasion_rate": float(np.mean(plain <= detector.threshold)),
                         "penalty": args.adaptive_penalty},
        "defense_seconds": round(defense.seconds, 1),
    }
    log(f"adaptive PGD evasion rate {adaptive.evasion_rate:.3f}")
    if args.save_dir:
        save_defense(args.save_dir, defense, report)
    if args.transforms:
        report["transforms"] = transform_table(vbpr, dataset, clean, attacked["VBPR"]["FGSM"],
                                               args).to_dict(orient="records")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    return report


def save_defense(directory: str, defense: Any, report: dict[str, Any]) -> None:
    """The trained networks and the report so far, for re-evaluation without retraining."""
    from pathlib import Path

    from varsec.defenses import save_detector, save_reconstruction
    from varsec.io import write_json_atomic

    root = Path(directory)
    save_reconstruction(root / "reconstruction.pt", defense.reconstruction)
    save_detector(root / "detector.pt", defense.detector, defense.reconstruction)
    write_json_atomic(root / "report.json", report)


TRANSFORMS = (("jpeg", 50), ("bit-depth", 4), ("median", 3), ("resize-pad", 212 / 224))


def transform_table(vbpr: Any, dataset: Any, clean: torch.Tensor, fgsm: torch.Tensor,
                    args: argparse.Namespace) -> Any:
    """VBPR under FGSM behind each input transform: non-adaptive (attacked without the
    defense) and adaptive (attacked through its BPDA / EOT hook), and the clean cost."""
    from varsec.attacks import FGSMStep, poison_catalog
    from varsec.defenses import Condition, defend_images, make_transform, ranking_table

    conditions = [Condition("none-Clean", vbpr, clean), Condition("none-FGSM", vbpr, fgsm)]
    for kind, level in TRANSFORMS:
        transform = make_transform(kind, level)
        hook = transform.adaptive_hook(4 if transform.adaptive == "eot" else None)
        adaptive = poison_catalog(vbpr, dataset, FGSMStep(args.eps), seed=args.seed,
                                  batch_size=256, transform=hook)[1].images
        for name, images in (("Clean", clean), ("FGSM", fgsm), ("FGSM-adaptive", adaptive)):
            conditions.append(Condition(f"{kind}-{name}", vbpr, defend_images(transform, images)))
        log(f"transform {kind} done")
    return ranking_table(conditions, dataset, ks=(10,), seed=args.seed)


def print_tables(report: dict[str, Any]) -> None:
    """Table 2 (HR/NDCG @5/10/20 per protocol) and Table 3 as markdown."""
    import pandas as pd

    table = pd.DataFrame(report["table2"])
    wide = table.pivot_table(index="condition", columns=["protocol", "metric", "k"],
                             values="value", sort=False)
    print(wide.round(4).to_string())
    detection = pd.DataFrame(report["table3"]).pivot_table(index="metric", columns="eps",
                                                           values="value")
    print(detection.round(4).to_string())
    if "transforms" in report:
        frame = pd.DataFrame(report["transforms"])
        print(frame[frame["metric"] == "HR"].pivot_table(
            index="condition", columns="protocol", values="value", sort=False).round(4).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("speed", "targets"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="Also write the report here.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000, help="speed: 28 px images")
    parser.add_argument("--n-rgb", type=int, default=64, help="speed: 224 px RGB images")
    parser.add_argument("--n-pipeline", type=int, default=256, help="speed: images through T")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=16)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--detector-eps", default="16", help="e.g. 16 (002) or 16,32,64")
    parser.add_argument("--extractor-checkpoint", default=None)
    parser.add_argument("--save-extractor", default=None)
    parser.add_argument("--extractor-epochs", type=int, default=3)
    parser.add_argument("--extractor-items", type=int, default=None)
    parser.add_argument("--recsys-epochs", type=int, default=60)
    parser.add_argument("--recon-epochs", type=int, default=3)
    parser.add_argument("--mix-epochs", type=int, default=1)
    parser.add_argument("--detector-epochs", type=int, default=2)
    parser.add_argument("--joint-epochs", type=int, default=0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--adaptive-penalty", type=float, default=10.0)
    parser.add_argument("--save-dir", default=None, help="targets: keep the trained networks")
    parser.add_argument("--transforms", action="store_true",
                        help="targets: also VBPR under FGSM behind each input transform")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = speed(args) if args.mode == "speed" else targets(args)
    if args.json:
        from varsec.io import write_json_atomic

        write_json_atomic(args.json, report)
    print(json.dumps({k: v for k, v in report.items()
                      if k not in ("table2", "table3", "transforms")}, indent=2, default=str))
    if args.mode == "targets":
        print_tables(report)


if __name__ == "__main__":
    main()
