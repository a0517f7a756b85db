"""The vision layer's commands: ``varsec train-extractor``, ``robustness`` and ``features``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from varsec.data.catalog import ItemCatalog
from varsec.devices import DEVICE_HELP
from varsec.errors import ConfigError, ModelError
from varsec.io import check_output_file, save_npy_atomic, sha256_file, write_json_atomic
from varsec.params import field_defaults
from varsec.vision.training.config import TrainConfig

T = field_defaults(TrainConfig)  # train-extractor's defaults: TrainConfig is their one home


def load_catalog(spec: str, limit: int | None = None) -> ItemCatalog:
    """The catalog of any data source (``fashion-mnist`` found offline, a catalog or dataset
    directory, a folder, ...: :func:`varsec.data.sources.open_source`); ``limit`` keeps the
    first items."""
    from varsec.data.sources import open_source

    if limit is not None and limit < 1:  # before anything is read
        raise ConfigError(f"--limit must be at least 1, got {limit}.")
    source = open_source(spec)
    catalog = source if isinstance(source, ItemCatalog) else source.catalog
    if limit is not None:
        catalog = catalog.subset(np.arange(min(limit, len(catalog))))
    return catalog


def _echo_epoch(record: dict[str, Any]) -> None:
    parts = [f"epoch {record['epoch']}", f"loss {record['train_loss']:.4f}",
             f"val clean {record['val_clean_acc']:.2%}"]
    if record.get("val_robust_acc") is not None:
        parts.append(f"val PGD {record['val_robust_acc']:.2%}")
    if "k" in record:
        parts.append(f"k={record['k']}")
    parts.append(f"{record['seconds']:.1f}s")
    typer.echo(", ".join(parts), err=True)


def train_extractor(
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (.pt)."),
    dataset: str = typer.Option("fashion-mnist", help="'fashion-mnist' or a catalog directory."),
    backbone: str = typer.Option(T["backbone"], help="Registry name of the backbone."),
    mode: str = typer.Option(T["mode"], help="standard, pgd-at, free-at or curriculum-at."),
    epochs: int = typer.Option(T["epochs"], help="Epochs (free-at runs epochs / replays "
                               "passes)."),
    batch_size: int = typer.Option(T["batch_size"], help="Minibatch size."),
    lr: float = typer.Option(T["lr"], help="Learning rate (cosine schedule)."),
    optimizer: str = typer.Option(T["optimizer"], help="sgd (Nesterov momentum) or adam "
                                  "(AdamW)."),
    eps: float = typer.Option(T["eps"], help="Attack budget in 8-bit levels (8 means 8/255)."),
    alpha: float | None = typer.Option(T["alpha"], help="PGD step in 8-bit levels "
                                       "[2.5*eps/steps]."),
    steps: int = typer.Option(T["steps"], help="PGD steps (pgd-at) or the top k "
                              "(curriculum-at)."),
    replays: int = typer.Option(T["replays"], help="free-at: replays m of each minibatch."),
    patience: int = typer.Option(T["patience"], help="curriculum-at: epochs without gain "
                                 "before k+1."),
    adv_fraction: float = typer.Option(T["adv_fraction"], help="curriculum-at: adversarial "
                                       "share per batch."),
    widths: str | None = typer.Option(None, help="fmnist-cnn channel widths [16,32,64]."),
    max_train: int | None = typer.Option(T["max_train"], help="Use at most this many training "
                                         "items."),
    val_limit: int = typer.Option(T["val_limit"], help="Validation items attacked to pick the "
                                  "best epoch."),
    seed: int = typer.Option(T["seed"], help="Seed of initialisation, shuffling and attacks."),
    device: str = typer.Option(T["device"], help=DEVICE_HELP),
    eval_eps: str | None = typer.Option(None, help="After training, PGD-20 test accuracy at "
                                        "these eps, e.g. 2,4,8."),
) -> None:
    """Train a classifier backbone on the catalog's categories (optionally adversarially).

    The best epoch is chosen on a validation part carved from the training part, never on the
    test part; the checkpoint records the config, the catalog hash and the metrics.

    Example: varsec train-extractor --mode pgd-at --eps 8 --epochs 5 --out runs/fmnist-at.pt
    """
    from varsec.vision.robustness import parse_eps_list
    from varsec.vision.training import train_classifier

    check_output_file(out, "a checkpoint file path such as model.pt")
    eval_budgets = parse_eps_list(eval_eps) if eval_eps else []  # checked before training
    kwargs: dict[str, Any] = {}
    if widths:
        kwargs["widths"] = _int_list(widths, "--widths")
    config = TrainConfig(
        mode=mode, backbone=backbone, backbone_kwargs=kwargs, epochs=epochs,
        batch_size=batch_size, lr=lr, optimizer=optimizer, eps=eps, alpha=alpha, steps=steps,
        replays=replays, patience=patience, adv_fraction=adv_fraction, max_train=max_train,
        val_limit=val_limit, seed=seed, device=device,
    )
    catalog = load_catalog(dataset)
    result = train_classifier(catalog, config, out=out, on_epoch=_echo_epoch)
    metrics = result.metrics
    typer.echo(
        f"wrote {out}: best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
        f"(selected on {metrics['selected_on']} validation accuracy), "
        f"val clean {metrics['val_clean_acc']:.2%}, {metrics['train_seconds']:.0f}s training."
    )
    if eval_budgets:
        from varsec.vision.robustness import evaluate_robustness

        report = evaluate_robustness(result.backbone, catalog, eval_budgets,
                                     seed=seed, checkpoint_hash=result.checkpoint_hash)
        typer.echo(report.to_markdown())


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, got {text!r}.") from None


def robustness(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint of a classifier."),
    eps: str = typer.Option("2,4,8", help="Comma-separated eps in 8-bit levels."),
    dataset: str = typer.Option("fashion-mnist", help="'fashion-mnist' or a catalog directory."),
    steps: int = typer.Option(20, help="PGD steps (PGD-20 by default)."),
    alpha: float | None = typer.Option(None, help="PGD step in 8-bit levels [2.5*eps/steps]."),
    limit: int | None = typer.Option(None, help="Evaluate a seeded sample of this many items."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
    seed: int = typer.Option(0, help="Seed of the random starts."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
) -> None:
    """Clean accuracy and PGD accuracy at each eps on the test part of the catalog.

    Adversarial images are quantised to 8 bits before they are classified.

    Example: varsec robustness --checkpoint runs/fmnist-at.pt --eps 2,4,8
    """
    from varsec.vision.checkpoint import load_checkpoint
    from varsec.vision.robustness import evaluate_robustness, parse_eps_list

    eps_values = parse_eps_list(eps)
    if json_out is not None:
        check_output_file(json_out, "a .json file path")
    loaded = load_checkpoint(checkpoint, device=device)
    catalog = load_catalog(dataset)
    if loaded.category_names and catalog.category_names != loaded.category_names:
        raise ModelError(
            f"{checkpoint}: trained on categories {loaded.category_names}, but catalog "
            f"{catalog.name!r} has {catalog.category_names}."
        )
    val_fraction = (loaded.train_config or {}).get("val_fraction", 0.1)
    report = evaluate_robustness(
        loaded.backbone, catalog, eps_values, steps=steps, alpha=alpha, limit=limit, seed=seed,
        val_fraction=val_fraction, checkpoint_hash=loaded.checkpoint_hash,
    )
    typer.echo(report.to_markdown())
    if json_out is not None:
        write_json_atomic(json_out, report.to_dict())


def features(
    backbone: str = typer.Option(..., help="A registry name or a checkpoint file."),
    out: Path = typer.Option(..., "--out", help="Where to write the float32 N x D .npy."),
    dataset: str = typer.Option("fashion-mnist", help="'fashion-mnist' or a catalog directory."),
    layer: str | None = typer.Option(None, help="Feature layer [the backbone's default]."),
    batch_size: int = typer.Option(256, help="Images per forward pass."),
    limit: int | None = typer.Option(None, help="Only the first N items of the catalog."),
    weights: str | None = typer.Option(None, help="Weights file for a named backbone."),
    download: bool = typer.Option(False, help="Allow downloading torchvision weights."),
    cache_dir: Path | None = typer.Option(None, help="Feature cache [~/.cache/varsec/features]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
) -> None:
    """Extract features of every catalog image (batched, cached by backbone, layer, catalog).

    Writes FILE (.npy, float32, one row per item in catalog order) and FILE.json (provenance and
    the sha256 of FILE).

    Example: varsec features --backbone efficientnet-lite0 --dataset fashion-mnist --out feats.npy
    """
    from varsec.vision.checkpoint import open_backbone
    from varsec.vision.features import extract_features

    check_output_file(out, "a .npy file path")
    check_output_file(Path(f"{out}.json"), f"the path of {out}'s provenance file")
    kwargs: dict[str, Any] = {}
    if weights is not None:
        kwargs["weights"] = weights
    if download:
        kwargs["download"] = True
    model, model_hash = open_backbone(backbone, device=device, **kwargs)
    catalog = load_catalog(dataset, limit)
    result = extract_features(model, catalog, layer=layer, batch_size=batch_size,
                              cache_dir=cache_dir, use_cache=not no_cache,
                              backbone_hash=model_hash)
    save_npy_atomic(out, result.features)
    meta = {"backbone": model.name, "backbone_hash": model_hash, "layer": result.layer,
            "catalog": catalog.name, "catalog_hash": catalog.content_hash(),
            "shape": list(result.features.shape), "dtype": "float32",
            "sha256": sha256_file(out), "cache_hit": result.cache_hit}
    write_json_atomic(Path(f"{out}.json"), meta)
    source = "cache hit" if result.cache_hit else "computed"
    typer.echo(f"wrote {out}: {result.features.shape[0]} x {result.features.shape[1]} "
               f"features at layer {result.layer} ({source}).")


def register(app: typer.Typer) -> None:
    """Add the vision commands to the root ``varsec`` app."""
    app.command("train-extractor")(train_extractor)
    app.command("robustness")(robustness)
    app.command("features")(features)


__all__ = ["features", "load_catalog", "register", "robustness", "train_extractor"]
