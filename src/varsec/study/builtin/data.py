"""The data stage: open the source, simulate interactions when it has none, split, save; or,
with ``as_is``, save the source as it opens (a bare catalog stays a catalog)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog
from varsec.errors import ConfigError
from varsec.study.stages import StageContext, StageOutput, register_stage

_SECONDS = {"quick": 5.0, "default": 15.0, "paper": 120.0}
# Dataset keys that override the simulation profile's sizes.
SIZE_KEYS = ("n_users", "n_warm_items", "n_cold_items")
# Simulation settings a dataset section may override (sizes and the popularity model).
SIMULATION_KEYS = (*SIZE_KEYS, "popularity_look_correlation")


def build_dataset(config: dict[str, Any]) -> Dataset | ItemCatalog:
    """The study's dataset: a saved / real dataset as is (split if needed), or a catalog with
    simulated interactions (``simulate_and_split`` at the configured profile); with ``as_is``
    the source exactly as it opens."""
    from varsec.data.simulate import simulate_and_split
    from varsec.data.sources import open_source
    from varsec.data.splits import leave_one_out

    source = open_source(config["source"], trust_pickle=config["trust_pickle"],
                         reviews=config["reviews"], features=config["features"],
                         allow_outside=bool(config.get("allow_outside")))
    if config.get("as_is"):
        return source
    if isinstance(source, ItemCatalog):
        return simulate_and_split(source, _simulation_profile(config), config["seed"],
                                  mode=config["split"], validation=config["validation"],
                                  k_core=config["k_core"])
    sizes = [key for key in SIMULATION_KEYS if config.get(key) is not None]
    if sizes:
        raise ConfigError(f"dataset.{sizes[0]}: {config['source']!r} brings its own "
                          "interactions; the simulation settings (n_users, n_warm_items, "
                          "n_cold_items, popularity_look_correlation) apply only to a catalog "
                          "that varsec simulates.")
    if source.split is None:
        return leave_one_out(source, mode=config["split"], seed=config["seed"],
                             validation=config["validation"], k_core=config["k_core"])
    return source


def _simulation_profile(config: dict[str, Any]) -> Any:
    """The configured profile, with the sizes the dataset section overrides."""
    from varsec.data.simulate import resolve_profile

    profile = resolve_profile(config["profile"])
    sizes = {key: config[key] for key in SIMULATION_KEYS if config.get(key) is not None}
    return dataclasses.replace(profile, **sizes) if sizes else profile


def serve_images(dataset: Dataset | ItemCatalog, config: dict[str, Any],
                 scratch: Path) -> Dataset | ItemCatalog:
    """``dataset`` (or a bare catalog) with its catalog at the configured ``image_size`` and
    ``mode``.

    Runs after the simulation, on the items the dataset kept: the simulator's styles (and its
    oracle) come from the native pixels, so the simulated market is the same at every
    resolution and the resolution is the only change. ``scratch`` is a ``.npy`` path for a
    large result (memory-mapped).
    """
    from varsec.data.resample import is_native, resample_catalog

    size, mode = config.get("image_size"), config.get("mode")
    if isinstance(dataset, ItemCatalog):
        native = is_native(dataset, size, mode)
        return dataset if native else resample_catalog(dataset, size, mode, scratch=scratch)
    if is_native(dataset.catalog, size, mode):
        return dataset
    catalog = resample_catalog(dataset.catalog, size, mode, scratch=scratch)
    meta = {**(dataset.meta or {}), "resampled": {
        "from": list(dataset.catalog.image_shape or ()), "to": list(catalog.image_shape or ()),
        "filter": "bicubic", "grey_to_rgb": "channel replication"}}
    return dataclasses.replace(dataset, catalog=catalog, meta=meta)


def dataset_info(dataset: Dataset | ItemCatalog) -> dict[str, Any]:
    """What the report says about the data (sizes, provenance, whether it was simulated)."""
    if isinstance(dataset, ItemCatalog):  # used as it is: no users, no interactions
        return {"name": dataset.name, "items": len(dataset), "users": 0, "interactions": 0,
                "simulated": False, "as_is": True, "category_names": dataset.category_names,
                "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
                "content_hash": dataset.content_hash()}
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
        "resampled": meta.get("resampled"),
        "content_hash": dataset.content_hash(),
    }


@register_stage("data", version="1",
                estimate=lambda config, study: _SECONDS.get(config["profile"], 15.0))
def data_stage(ctx: StageContext, config: dict[str, Any],
               inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """Build and save the dataset (``dataset/``, a bare catalog with ``as_is``); no rows."""
    from varsec.data.resample import check_resample

    check_resample(config.get("image_size"), config.get("mode"))
    dataset = build_dataset(config)
    # The scratch copy of large resampled images lives in the stage's own work directory and
    # is gone before the stage's files are hashed.
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as scratch:
        dataset = serve_images(dataset, config, Path(scratch) / "images.npy")
        dataset.save(ctx.workdir / "dataset")
        ctx.info.update(dataset_info(dataset))
        del dataset  # release the memory map before its file is removed
    return []
