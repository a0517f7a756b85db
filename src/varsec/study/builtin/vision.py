"""The extractor stage: train (or open) a backbone, extract the catalog's features, measure it."""

from __future__ import annotations

from typing import Any

import numpy as np

from varsec.attacks.hooks import catalog_of
from varsec.data.catalog import Dataset, ItemCatalog
from varsec.errors import ConfigError
from varsec.registry import EXTERNAL
from varsec.study.builtin.common import load_source
from varsec.study.files import EXTRACTOR, FEATURES
from varsec.study.results import row
from varsec.study.stages import StageContext, StageOutput, register_stage

_PROFILE_ITEMS = {"quick": 2_000, "default": 10_000, "paper": 60_000}
_TRAIN_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "eps", "steps", "replays",
                 "max_train")


def _training_catalog(config: dict[str, Any], dataset: Dataset | ItemCatalog) -> ItemCatalog:
    return _half(config, _whole_catalog(config, dataset))


def _half(config: dict[str, Any], catalog: ItemCatalog) -> ItemCatalog:
    """One seeded half of ``catalog`` (``catalog_half`` 0 or 1; the two halves are disjoint and
    drawn with the study seed, so two surrogates with halves 0 and 1 never share an item)."""
    half = config.get("catalog_half")
    if half is None:
        return catalog
    order = np.random.default_rng(np.random.SeedSequence([config["seed"] - config.get(
        "seed_offset", 0), 6007])).permutation(len(catalog))
    return catalog.subset(np.sort(order[half::2]))


def _whole_catalog(config: dict[str, Any], dataset: Dataset | ItemCatalog) -> ItemCatalog:
    if config["train_on"] == "dataset" or "source" not in config:
        return catalog_of(dataset)
    from varsec.data.sources import open_source

    spec = config["source"]
    source = open_source(spec["source"], trust_pickle=spec["trust_pickle"],
                         reviews=spec["reviews"], features=spec["features"],
                         allow_outside=bool(spec.get("allow_outside")))
    return source if isinstance(source, ItemCatalog) else source.catalog


def _train(ctx: StageContext, config: dict[str, Any], catalog: ItemCatalog) -> tuple[Any, dict]:
    from varsec.vision.training import TrainConfig, train_classifier

    fields = {name: config[name] for name in _TRAIN_FIELDS}
    options = dict(config["options"])
    clash = sorted(set(options) & {*fields, "mode", "backbone", "seed", "device"})
    if clash:
        raise ConfigError(f"extractor options must not repeat {', '.join(clash)}; set them as "
                          "keys of the extractor.")
    train_config = TrainConfig.from_dict({
        **fields, **options, "mode": config["training"], "backbone": config["backbone"],
        "backbone_kwargs": dict(config["backbone_options"]), "seed": config["seed"],
        "device": ctx.device,
    })
    result = train_classifier(catalog, train_config, out=ctx.workdir / EXTRACTOR)
    return result.backbone, dict(result.metrics)


def _open(ctx: StageContext, config: dict[str, Any], catalog: ItemCatalog) -> Any:
    from varsec.vision.checkpoint import open_backbone, save_checkpoint

    if config["backbone"] == EXTERNAL:
        from varsec.study.external import build_backbone

        backbone = build_backbone(config["factory"], config["backbone_options"])
        backbone.eval().to(ctx.device)
    elif config["checkpoint"]:
        backbone, _ = open_backbone(config["checkpoint"], device=ctx.device)
    else:
        kwargs = dict(config["backbone_options"])
        backbone, _ = open_backbone(config["backbone"], device=ctx.device, **kwargs)
    save_checkpoint(ctx.workdir / EXTRACTOR, backbone, category_names=catalog.category_names)
    return backbone


def _robustness_rows(config: dict[str, Any], backbone: Any,
                     catalog: ItemCatalog) -> list[dict[str, Any]]:
    from varsec.vision.robustness import evaluate_robustness

    if backbone.num_classes is None or catalog.categories is None or not catalog.has_pixels:
        return []
    report = evaluate_robustness(backbone, catalog, list(config["eval_eps"]),
                                 limit=config["eval_limit"], seed=config["seed"])
    rows = [row("accuracy", report.clean_acc, protocol="classifier-test", n=report.items)]
    for eps, accuracy in report.robust_acc.items():
        rows.append(row("accuracy", accuracy, protocol="classifier-test", n=report.items,
                        attack=f"pgd-{report.steps}", eps=eps))
    return rows


def _estimate(config: dict[str, Any], study: Any) -> float:
    if not config.get("features", True):
        return 2.0
    if config["training"] == "none" or config["checkpoint"]:
        return 10.0
    items = config["max_train"] or _PROFILE_ITEMS.get(study.dataset.profile, 10_000)
    factor = 1 + config["steps"] if config["training"] in ("pgd-at", "curriculum-at") else 1
    return 5.0 + config["epochs"] * items * factor / 3_000


@register_stage("extractor", version="1", estimate=_estimate)
def extractor_stage(ctx: StageContext, config: dict[str, Any],
                    inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """``extractor.pt`` + ``features.npy`` (catalog order); rows: test accuracy (clean, PGD).
    With ``features: false`` only ``extractor.pt`` (no features, no rows)."""
    from varsec.vision.features import compute_features

    source = load_source(inputs["data"])
    catalog = _training_catalog(config, source)
    if config["training"] == "none" or config["checkpoint"]:
        backbone, metrics = _open(ctx, config, catalog_of(source)), {}
    else:
        backbone, metrics = _train(ctx, config, catalog)
    layer = backbone.check_layer(config["layer"])
    ctx.info.update(backbone=backbone.name, layer=layer, training=config["training"],
                    weights_hash=backbone.weights_hash())
    if not config.get("features", True):
        return []
    features = compute_features(backbone, catalog_of(source), layer=layer)
    np.save(ctx.workdir / FEATURES, features.astype(np.float32), allow_pickle=False)
    ctx.info.update(feature_dim=int(features.shape[1]), train_items=len(catalog),
                    metrics={k: v for k, v in metrics.items()
                             if isinstance(v, int | float | str | None)})
    return _robustness_rows(config, backbone, catalog)
