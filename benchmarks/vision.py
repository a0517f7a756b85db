"""Vision benchmarks: backbone throughput, training-mode cost, and the Fashion-MNIST targets.

Three parts, each printed as markdown on stdout (for BENCHMARKS.md):

* ``throughput``: images/s of feature extraction (no grad) and of one forward+backward pass
  (gradient w.r.t. the input, as every attack needs) per backbone, on Fashion-MNIST images at
  their native 28 x 28 (backbones resize inside). This is the floor every attack is measured
  against.
* ``modes``: time of a fixed number of training batches for each training mode, relative to
  standard training in the same run, and the implied full-training time ratio (free-at runs
  epochs / m passes).
* ``train``: the four full trainings of ``fmnist-cnn`` on Fashion-MNIST with the target
  configuration, each followed by clean and PGD-20 accuracy on the test part.

Usage::

    nice python benchmarks/vision.py throughput modes          # minutes
    nice python benchmarks/vision.py train --out runs/bench    # the long trainings
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from varsec.data.fashion_mnist import load_fashion_mnist
from varsec.errors import ModelError
from varsec.vision import TrainConfig, create_backbone, evaluate_robustness, train_classifier
from varsec.vision.registry import backbone_parameters
from varsec.vision.training.loop import MODE_CLASSES

BACKBONES = ["fmnist-cnn", "efficientnet-lite0", "resnet50", "alexnet", "vgg16"]

# The target configurations (issue 3): one fmnist-cnn architecture for all four modes.
TRAININGS: dict[str, dict[str, Any]] = {
    "standard": {"mode": "standard", "epochs": 8},
    "pgd-at": {"mode": "pgd-at", "epochs": 3, "steps": 3},
    "free-at": {"mode": "free-at", "epochs": 8, "replays": 4},
    "curriculum-at": {"mode": "curriculum-at", "epochs": 8, "steps": 3, "patience": 1,
                      "min_gain": 0.02},
}
COMMON = {"batch_size": 128, "lr": 0.05, "eps": 8.0, "seed": 0}


def _images(catalog, n: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(catalog.images[:n])).float() / 255


def _rate(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x[:8])  # warm-up on a small batch
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return len(x) * repeats / (time.perf_counter() - start)


def _backbone(name: str):
    if "weights" not in backbone_parameters(name):
        return create_backbone(name).eval(), "random init (trained by varsec)"
    try:
        return create_backbone(name).eval(), "ImageNet"
    except ModelError:
        return create_backbone(name, weights=None).eval(), "random init (no weights here)"


def throughput(catalog, batch: int, big_batch: int) -> str:
    """Images/s of feature extraction and forward+backward per backbone."""
    rows = ["| backbone | weights | input | features img/s | fwd+bwd img/s (batch) |",
            "|---|---|---|---:|---:|"]
    for name in BACKBONES:
        model, weights = _backbone(name)
        fb_batch = batch if model.image_size is None else big_batch
        repeats = 5 if model.image_size is None else 1
        x = _images(catalog, batch)
        labels = torch.from_numpy(catalog.categories[:batch])

        def extract(x, model=model):
            with torch.inference_mode():
                model.features(x)

        def forward_backward(x, model=model, labels=labels):
            adv = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model.logits(adv), labels[: len(x)])
            torch.autograd.grad(loss, adv)

        feat_rate = _rate(extract, x, repeats)
        fb_rate = _rate(forward_backward, x[:fb_batch], repeats)
        rows.append(f"| {name} | {weights} | 28x28 grey, batch {batch} | {feat_rate:,.0f} "
                    f"| {fb_rate:,.0f} ({fb_batch}) |")
        print(f"  {name}: {feat_rate:.0f} / {fb_rate:.0f} img/s", file=sys.stderr)
        del model
    return "\n".join(rows)


def mode_costs(catalog, batches: int) -> str:
    """Time of ``batches`` training batches per mode, relative to standard training."""
    images, labels = _images(catalog, 128 * batches), torch.from_numpy(catalog.categories)
    rows = ["| mode | config | s per batch | vs standard (per pass) | vs standard (whole run) |",
            "|---|---|---:|---:|---:|"]
    base = None
    for name, overrides in TRAININGS.items():
        config = TrainConfig(**{**COMMON, **overrides})
        mode = MODE_CLASSES[name](config, torch.Generator().manual_seed(0))
        if name == "curriculum-at":
            mode.k = config.steps  # the most expensive level
        torch.manual_seed(0)
        model = create_backbone("fmnist-cnn").train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step(loss, opt=opt):
            opt.zero_grad()
            loss.backward()
            opt.step()

        start = time.perf_counter()
        for b in range(batches):
            x, y = images[b * 128 : (b + 1) * 128], labels[b * 128 : (b + 1) * 128]
            mode.train_batch(model, x, y, step)
        per_batch = (time.perf_counter() - start) / batches
        base = base or per_batch
        ratio = per_batch / base
        whole = ratio * mode.n_epochs / TRAININGS["standard"]["epochs"]
        label = ", ".join(f"{k}={v}" for k, v in overrides.items() if k != "mode")
        if name == "curriculum-at":
            label += f" (timed at k=K={config.steps})"
        rows.append(f"| {name} | {label} | {per_batch:.3f} | {ratio:.2f}x | {whole:.2f}x |")
        print(f"  {name}: {per_batch:.3f}s/batch", file=sys.stderr)
    return "\n".join(rows)


def train_all(catalog, out: Path, eval_limit: int | None, modes: list[str]) -> str:
    """The four trainings with the target configs, each evaluated on the test part."""
    rows = ["| mode | epochs run | training time | best epoch (val) | clean test acc "
            "| PGD-20 acc, eps=2 | eps=4 | eps=8 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in modes:
        config = TrainConfig(**{**COMMON, **TRAININGS[name]})
        print(f"  training {name} ...", file=sys.stderr)
        result = train_classifier(catalog, config, out=out / f"fmnist-cnn-{name}.pt",
                                  on_epoch=lambda r: print("   ", r, file=sys.stderr))
        report = evaluate_robustness(result.backbone, catalog, [2, 4, 8], steps=20,
                                     limit=eval_limit)
        m = result.metrics
        acc = report.robust_acc
        rows.append(
            f"| {name} | {m['epochs_run']} | {m['train_seconds'] / 60:.1f} min | "
            f"{m['best_epoch']} | {report.clean_acc:.2%} | {acc[2.0]:.2%} | {acc[4.0]:.2%} "
            f"| {acc[8.0]:.2%} |"
        )
        print("   ", rows[-1], file=sys.stderr)
    n = eval_limit or 10000
    return "\n".join(rows) + f"\n\nTest items evaluated: {n} (PGD-20, random start, " \
        "step 2.5*eps/20, images quantised to 8 bits)."


def _header() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, load average "
            f"{load:.1f} at start.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="+", choices=["throughput", "modes", "train"])
    parser.add_argument("--batch", type=int, default=256, help="batch of the throughput runs")
    parser.add_argument("--big-batch", type=int, default=32,
                        help="fwd+bwd batch of the 224-px backbones (memory)")
    parser.add_argument("--mode-batches", type=int, default=20)
    parser.add_argument("--modes", default="standard,pgd-at,free-at,curriculum-at")
    parser.add_argument("--eval-limit", type=int, default=None, help="test items (all: None)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-vision"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    catalog = load_fashion_mnist()
    print("## Vision\n\n" + _header() + "\n")
    if "throughput" in args.parts:
        print(f"### Backbone throughput\n\n{throughput(catalog, args.batch, args.big_batch)}\n",
              flush=True)
    if "modes" in args.parts:
        print(f"### Training-mode cost (fmnist-cnn, batch 128, {args.mode_batches} batches)\n\n"
              f"{mode_costs(catalog, args.mode_batches)}\n", flush=True)
    if "train" in args.parts:
        modes = args.modes.split(",")
        print("### Fashion-MNIST targets (fmnist-cnn)\n\n"
              f"{train_all(catalog, args.out, args.eval_limit, modes)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
