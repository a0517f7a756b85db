"""efficientnet-lite0's ``input_size``: what a smaller side costs and what it changes.

For each side (224 = the default, and the smaller ones given), on the same Fashion-MNIST items
(28 x 28 grey, upsampled inside the backbone): feature throughput, the time of one PGD step
(feature-cosine objective, the item-to-item attack) per image, and how the public features see
the catalog: the share of each item's 10 nearest neighbours (cosine) in its own category (the
features' category purity) and the overlap of those 10 neighbours with the 224 px ones (how far
the smaller side changes the feature space the surrogate attacks).

Usage: .venv/bin/python benchmarks/efficientnet_input_size.py [--sizes 64 32] [--items 500]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from varsec.attacks import FeatureTarget, run_attack
from varsec.attacks.registry import attack_method
from varsec.data.fashion_mnist import load_fashion_mnist
from varsec.vision import create_backbone
from varsec.vision.perturbation import uint8_to_float

NEIGHBOURS = 10


def _neighbours(features: torch.Tensor) -> np.ndarray:
    unit = torch.nn.functional.normalize(features, dim=1)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2.0)
    return sims.topk(NEIGHBOURS, dim=1).indices.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--attacked", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    catalog = load_fashion_mnist()
    pick = np.sort(np.random.default_rng(0).choice(len(catalog), args.items, replace=False))
    images = np.asarray(catalog.images[pick])
    categories = np.asarray(catalog.categories[pick])
    reference = None
    print(f"{args.items} Fashion-MNIST items, {args.threads} thread(s); PGD on "
          f"{args.attacked} of them, 3 steps, eps 32")
    for size in [224, *[s for s in args.sizes if s != 224]]:
        model = create_backbone("efficientnet-lite0", input_size=size).eval()
        x = uint8_to_float(images, "cpu")
        with torch.no_grad():
            model.features(x[:8])  # warm-up: the first call allocates
        start = time.perf_counter()
        with torch.no_grad():
            features = torch.cat([model.features(x[i:i + 64]) for i in range(0, len(x), 64)])
        rate = len(x) / (time.perf_counter() - start)
        near = _neighbours(features)
        purity = float((categories[near] == categories[:, None]).mean())
        if reference is None:
            reference = near
        overlap = float(np.mean([len(set(a) & set(b)) / NEIGHBOURS
                                 for a, b in zip(near, reference, strict=True)]))
        target = features[: args.attacked].flip(0)
        objective = FeatureTarget(model, target_features=target, metric="cosine")
        rule = attack_method("pgd").build(32.0, 3, None, {})
        start = time.perf_counter()
        run_attack(objective, images[: args.attacked], rule, seed=0, early_stop=False,
                   batch_size=args.attacked)
        step = (time.perf_counter() - start) / 3 / args.attacked * 1e3
        print(f"{size:>4} px: features {rate:6.1f} img/s, PGD step {step:7.1f} ms per image, "
              f"10-NN in the same category {purity:.3f}, 10-NN shared with 224 px "
              f"{overlap:.3f}")


if __name__ == "__main__":
    main()
