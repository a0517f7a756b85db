"""The data stage: open the source, simulate interactions when it has none, split, save."""

from __future__ import annotations

from typing import Any

import numpy as np

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog
from varsec.study.stages import StageContext, StageOutput, register_stage

_SECONDS = {"quick": 5.0, "default": 15.0, "paper": 120.0}


def build_dataset(config: dict[str, Any]) -> Dataset:
    """The study's dataset: a saved / real dataset as is (split if needed), or a catalog with
    simulated interactions (``simulate_and_split`` at the configured profile)."""
    from varsec.data.simulate import simulate_and_split
    from varsec.data.sources import open_source
    from varsec.data.splits import leave_one_out

    source = open_source(config["source"], trust_pickle=config["trust_pickle"],
                         reviews=config["reviews"], features=config["features"])
    if isinstance(source, ItemCatalog):
        return simulate_and_split(source, config["profile"], config["seed"],
                                  mode=config["split"], validation=config["validation"],
                                  k_core=config["k_core"])
    if source.split is None:
        return leave_one_out(source, mode=config["split"], seed=config["seed"],
                             validation=config["validation"], k_core=config["k_core"])
    return source


def dataset_info(dataset: Dataset) -> dict[str, Any]:
    """What the report says about the data (sizes, provenance, whether it was simulated)."""
    split = dataset.split if dataset.split is not None else np.zeros(0)
    meta = dataset.meta or {}
    return {
        "name": dataset.catalog.name,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": len(dataset.interactions),
        "cold_items": len(dataset.cold_items),
        "train": int(np.count_nonzero(split == SPLIT_CODES["train"])),
        "validation": int(np.count_nonzero(split == SPLIT_CODES["validation"])),
        "test": int(np.count_nonzero(split == SPLIT_CODES["test"])),
        "simulated": bool(meta.get("simulated", False)),
        "profile": meta.get("profile"),
        "seed": meta.get("seed"),
        "source": meta.get("source", dataset.catalog.name),
        "category_names": dataset.catalog.category_names,
        "image_shape": list(dataset.catalog.image_shape) if dataset.catalog.image_shape else None,
        "content_hash": dataset.content_hash(),
    }


@register_stage("data", version="1",
                estimate=lambda config, study: _SECONDS.get(config["profile"], 15.0))
def data_stage(ctx: StageContext, config: dict[str, Any],
               inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Build and save the dataset (``dataset/``); no result rows."""
    dataset = build_dataset(config)
    dataset.save(ctx.workdir / "dataset")
    ctx.info.update(dataset_info(dataset))
    return []
