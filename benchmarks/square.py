"""Square Attack: varsec's against torchattacks' ``Square`` in one run, time per query.

Both attack the same correctly classified Fashion-MNIST images through the same classifier
(a logistic regression trained here in a second, or the untrained ``fmnist-cnn`` with
``--model cnn``) at eps 8 (8-bit levels) with the same query budget; runs are interleaved
(torchattacks, varsec, torchattacks, ...) and the median of ``--repeat`` runs is reported, with
each side's success rate and the queries it used. varsec scores quantised uint8 candidates
(every proposal is rounded to the 8-bit grid before it is scored) and draws a window per image;
torchattacks scores float images and draws one window per step for the whole batch.

Usage: .venv/bin/python benchmarks/square.py [--queries 500] [--images 256] [--repeat 3]
       [--threads 1] [--model linear|cnn]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchattacks
from torch import nn

from varsec.attacks import ClassifierObjective, run_attack
from varsec.attacks.square import SquareStep
from varsec.data.fashion_mnist import load_fashion_mnist


def _linear(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(images[0].numel(), 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = images.float() / 255
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    return model.eval()


def _cnn() -> nn.Module:
    from varsec.vision import create_backbone

    torch.manual_seed(0)
    return create_backbone("fmnist-cnn", widths=(8, 16, 16)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", choices=("linear", "cnn"), default="linear")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    catalog = load_fashion_mnist()
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(catalog), 3000, replace=False))
    images = torch.from_numpy(np.asarray(catalog.images[pick]))
    labels = torch.from_numpy(np.asarray(catalog.categories[pick])).long()
    model = _linear(images, labels) if args.model == "linear" else _cnn()
    with torch.no_grad():
        keep = model(images.float() / 255).argmax(1) == labels
    images, labels = images[keep][:args.images], labels[keep][:args.images]
    times: dict[str, list[float]] = {"torchattacks": [], "varsec": []}
    rates: dict[str, float] = {}
    queries: dict[str, float] = {}
    for _ in range(args.repeat):
        attack = torchattacks.Square(model, eps=8 / 255, n_queries=args.queries, p_init=0.8,
                                     n_restarts=1, loss="margin", seed=0)
        start = time.perf_counter()
        adversarial = attack(images.float() / 255, labels)
        times["torchattacks"].append(time.perf_counter() - start)
        with torch.no_grad():
            rates["torchattacks"] = float((model(adversarial).argmax(1) != labels).float().mean())
        start = time.perf_counter()
        result = run_attack(ClassifierObjective(model, labels=labels), images,
                            SquareStep(eps=8, steps=args.queries, p_init=0.8), seed=0,
                            batch_size=len(images))
        times["varsec"].append(time.perf_counter() - start)
        rates["varsec"] = result.success_rate
        queries["varsec"] = float(result.steps.float().mean())
    print(f"{len(images)} images, {args.queries} queries, model {args.model}, "
          f"{args.threads} thread(s), median of {args.repeat}")
    for side in ("torchattacks", "varsec"):
        median = statistics.median(times[side])
        per_query = median / args.queries * 1e3
        used = f", mean queries used {queries[side]:.0f}" if side in queries else ""
        print(f"{side:>12}: {median:.2f} s, {per_query:.2f} ms per query step for the batch, "
              f"success {rates[side]:.3f}{used}")
    ratio = statistics.median(times["varsec"]) / statistics.median(times["torchattacks"])
    print(f"varsec / torchattacks: {ratio:.2f}x")


if __name__ == "__main__":
    main()
