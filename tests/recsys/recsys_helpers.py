"""Tiny synthetic datasets with a planted preference structure, and helpers for recsys tests.

Every item has a 16-d visual feature vector ``f_i`` and a 1 x 28 x 28 image from which a fixed
linear map recovers ``f_i`` (up to 8-bit rounding); every user has a taste vector ``t_u``. The
true utility is ``t_u · W f_i`` (rank 4), so preference is a function of the features and a model
that uses them can score cold items. Users draw 12 items without replacement from
softmax(utility / temperature).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.splits import leave_one_out

FEATURE_DIM = 16
SIDE = 28


def pixel_basis() -> torch.Tensor:
    """A fixed 784 x 16 basis: image = 0.5 + basis @ f / 8 (kept inside [0, 1])."""
    generator = torch.Generator().manual_seed(123)
    q, _ = torch.linalg.qr(torch.randn(SIDE * SIDE, FEATURE_DIM, generator=generator))
    return q


class PixelExtractor(nn.Module):
    """Recovers the planted features from an image: f = 8 · basisᵀ (x - 0.5) (differentiable)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("basis", pixel_basis())

    def features(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(len(images), -1) - 0.5
        return 8.0 * flat @ self.basis


def features_to_images(features: np.ndarray) -> np.ndarray:
    pixels = 0.5 + (torch.as_tensor(features) @ pixel_basis().T) / 8.0
    scaled = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.reshape(len(features), 1, SIDE, SIDE).numpy()


def planted_dataset(
    seed: int = 0,
    n_users: int = 60,
    n_warm: int = 80,
    n_cold: int = 20,
    per_user: int = 12,
    rank: int = 4,
    temperature: float = 0.5,
) -> Dataset:
    """A split Dataset whose preferences are ``t_u · W f_i`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    n_items = n_warm + n_cold
    features = rng.normal(size=(n_items, FEATURE_DIM)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True) / 2.0
    projection = rng.normal(size=(FEATURE_DIM, rank)) / np.sqrt(FEATURE_DIM)
    tastes = rng.normal(size=(n_users, rank))
    utility = (tastes @ (features @ projection).T) * 3.0
    cold = np.arange(n_warm, n_items)
    gumbel = rng.gumbel(size=(n_users, n_warm))
    chosen = np.argsort(-(utility[:, :n_warm] / temperature + gumbel), axis=1)[:, :per_user]
    catalog = ItemCatalog(
        item_ids=[f"i{k}" for k in range(n_items)],
        images=features_to_images(features),
        features=features,
        name="planted",
    )
    interactions = Interactions(
        user=np.repeat(np.arange(n_users), per_user),
        item=chosen.reshape(-1),
        timestamp=np.tile(np.arange(per_user), n_users),
        user_ids=[f"u{k}" for k in range(n_users)],
    )
    dataset = Dataset(catalog, interactions, cold_items=cold,
                      oracle=utility[:, cold].astype(np.float32))
    return leave_one_out(dataset, mode="random", seed=seed, validation=True)


def cold_auc(scores: torch.Tensor, oracle: np.ndarray) -> float:
    """Mean over users of P(model orders two cold items as the oracle does): 0.5 is random."""
    s = scores.detach().cpu().numpy()
    model_order = np.sign(s[:, :, None] - s[:, None, :])
    true_order = np.sign(oracle[:, :, None] - oracle[:, None, :])
    pairs = true_order != 0
    agree = (model_order == true_order) + 0.5 * (model_order == 0)
    return float((agree * pairs).sum() / pairs.sum())


def hit_rate_at_10(model, dataset: Dataset, part: str = "test") -> float:
    """Full-ranking HR@10 among warm items; earlier parts of the split (train, ...) excluded."""
    from varsec.metrics.ranking import build_exclusion, evaluate_full

    seen = np.isin(dataset.split, (0, 1) if part == "test" else (0,))
    held = dataset.part(part)
    tests = np.full(dataset.n_users, -1)
    tests[held.user] = held.item
    every_user = np.arange(dataset.n_users)
    cold, n_cold = dataset.cold_items, len(dataset.cold_items)
    exclude = build_exclusion(
        np.concatenate([dataset.interactions.user[seen], np.repeat(every_user, n_cold)]),
        np.concatenate([dataset.interactions.item[seen], np.tile(cold, dataset.n_users)]),
        dataset.n_users,
        dataset.n_items,
    )
    result = evaluate_full(model.score, dataset.n_items, tests, exclude, ks=(10,))
    return float(np.mean(result["HR@10"]))


FAST = {"epochs": 40, "lr": 0.01, "batch_size": 64, "reg": 1e-3, "patience": 5}


def tiny_dataset(
    features: list[list[float]],
    train: dict[int, list[int]],
    test: dict[int, int],
    cold: list[int],
) -> Dataset:
    """A hand-written dataset: item features, each user's train items and test item."""
    users, items, codes = [], [], []
    for user, history in train.items():
        users += [user] * len(history)
        items += history
        codes += [0] * len(history)
    for user, item in test.items():
        users.append(user)
        items.append(item)
        codes.append(2)
    catalog = ItemCatalog(item_ids=[f"i{k}" for k in range(len(features))],
                          features=np.asarray(features, dtype=np.float32), name="tiny")
    interactions = Interactions(user=users, item=items, timestamp=np.arange(len(users)),
                                user_ids=[f"u{k}" for k in range(max(users) + 1)])
    return Dataset(catalog, interactions, split=np.asarray(codes), cold_items=cold)
