"""``varsec attack``: attack catalog items and write adversarial PNGs, a manifest and measures.

Settings come from ``--config FILE`` (YAML or JSON, keys named like the flags) and/or flags;
flags win. The output directory receives

* ``images/<item id>.png``: the quantised adversarial images (lossless PNG, written atomically);
* ``manifest.json``: the settings, the dataset and model hashes, and per item its PNG's sha256,
  success and steps;
* ``measures.csv``: tidy rows ``(item_id, attack, objective, eps, metric, value, note)``: image
  measures (L-inf, L2, PSNR, SSIM, LPIPS when available) and the objective's before/after
  values (class, feature distance, mean score and prediction shift Δ_i, BPR loss).

Items are processed in chunks; after each chunk the manifest and the CSV are rewritten
atomically, so a killed run loses at most one chunk and ``--resume`` skips items already done.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import typer

from varsec.errors import ConfigError, DataError

ATTACKS = ("fgsm", "pgd", "pgd-l2", "adam", "cw-l2", "cw-linf", "csema")
OBJECTIVES = ("classifier", "feature", "insa", "bpr")
RESULT_COLUMNS = ["item_id", "attack", "objective", "eps", "metric", "value", "note"]
# Settings that may differ between a run and its --resume.
_RUNTIME = {"out", "resume", "batch_size", "chunk", "device", "config"}


@dataclass
class AttackJob:
    """One ``varsec attack`` run; every field is a flag (``--eps``) and a config key (``eps``)."""

    dataset: str = "fashion-mnist"
    out: str = "attack-out"
    attack: str = "pgd"
    objective: str | None = "classifier"
    checkpoint: str | None = None
    recommender: str | None = None
    items: str = "all"
    eps: float = 8.0
    steps: int = 10
    alpha: float | None = None
    lr: float | None = None
    c: float = 1.0
    random_start: bool = True
    target: str | None = None
    hook: str | None = None
    metric: str = "l2"
    inset_size: float = 0.4
    corner: str = "bottom-right"
    caption: str | None = None
    batch_size: int = 64
    chunk: int = 256
    seed: int = 0
    device: str = "cpu"
    resume: bool = False

    @classmethod
    def build(cls, config: Path | None, overrides: dict[str, Any]) -> AttackJob:
        """Defaults, then the config file, then the flags given (not None)."""
        values = _read_config(config) if config is not None else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        job = cls(**values)
        job.validate()
        return job

    def validate(self) -> None:
        """ConfigError for unknown names and out-of-range values (one sentence each)."""
        from varsec.attacks.quantize import check_eps, check_steps

        if self.attack not in ATTACKS:
            raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}, got {self.attack!r}.")
        if self.attack == "csema":
            self.objective = None
        elif self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}."
            )
        else:
            check_eps(self.eps, norm="l2" if self.attack == "pgd-l2" else "linf")
            check_steps(self.steps)
        for name in ("batch_size", "chunk"):
            check_steps(getattr(self, name), name)

    def settings(self) -> dict[str, Any]:
        """What must match between a run and its resumption."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME}


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the attack config ({exc.strerror}).") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an attack config must be a mapping of settings.")
    known = {f.name for f in dataclasses.fields(AttackJob)}
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(
                f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})."
            )
        values[name] = value
    return values


# --------------------------------------------------------------------------------------------
# Loading data and models
# --------------------------------------------------------------------------------------------


def load_source(spec: str) -> Any:
    """``fashion-mnist``, a dataset directory or a catalog directory."""
    from varsec.data.catalog import Dataset, ItemCatalog

    if spec == "fashion-mnist":
        from varsec.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist()
    manifest = Path(spec) / "manifest.json"
    if not manifest.is_file():
        raise DataError(f"{spec}: not a varsec dataset or catalog directory (no manifest.json).")
    kind = json.loads(manifest.read_text()).get("kind")
    return Dataset.load(spec) if kind == "dataset" else ItemCatalog.load(spec)


def _backbone(job: AttackJob, what: str) -> Any:
    if not job.checkpoint:
        raise ConfigError(f"{what} needs --checkpoint (a backbone checkpoint or registry name).")
    from varsec.vision.checkpoint import open_backbone

    return open_backbone(job.checkpoint, device=job.device)[0]


def _recommender(job: AttackJob, what: str) -> Any:
    if not job.recommender:
        raise ConfigError(f"{what} needs --recommender (a recommender checkpoint file).")
    from varsec.attacks.insa import require_visual
    from varsec.recsys.base import Recommender

    model = Recommender.load(job.recommender, device=job.device)
    require_visual(model, f"the {job.objective} objective")
    if job.checkpoint and model.extractor is None and model.feature_dim:
        model.attach_extractor(_backbone(job, what))
    return model


def _catalog(source: Any) -> Any:
    return getattr(source, "catalog", source)


# --------------------------------------------------------------------------------------------
# Objectives, rules and measures
# --------------------------------------------------------------------------------------------


def build_rule(job: AttackJob) -> Any:
    """The engine step rule of ``job.attack``."""
    from varsec.attacks import cw, engine

    if job.attack == "fgsm":
        return engine.FGSMStep(job.eps)
    if job.attack in ("pgd", "pgd-l2"):
        return engine.PGDStep(job.eps, job.alpha, job.steps, job.random_start,
                              norm="l2" if job.attack == "pgd-l2" else "linf")
    if job.attack == "adam":
        return engine.AdamStep(job.eps, job.lr if job.lr is not None else 1.0, job.steps)
    if job.attack == "cw-l2":
        return cw.CWL2Step(job.c, job.steps, job.lr if job.lr is not None else 0.01, eps=job.eps)
    return cw.CWLinfStep(job.eps, job.c, job.steps, job.lr if job.lr is not None else 1.0)


@dataclass
class Measured:
    """An objective plus how to read before/after values from it."""

    objective: Any
    measure: Any  # (uint8 images, positions) -> dict[str, np.ndarray]


def build_objective(job: AttackJob, source: Any, items: np.ndarray) -> Measured | None:
    """The objective of ``job`` over the selected ``items`` (positions 0..len-1)."""
    builders = {"classifier": _classifier, "feature": _feature, "insa": _insa, "bpr": _bpr}
    if job.objective is None:
        return _csema_measures(job, source)
    return builders[job.objective](job, source, items)


def _classifier(job: AttackJob, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.objectives import ClassifierObjective
    from varsec.metrics.attack import predict

    catalog, model = _catalog(source), _backbone(job, "a classifier attack")
    if catalog.categories is None:
        raise DataError(f"catalog {catalog.name!r} has no categories to attack a classifier on.")
    labels = catalog.categories[items]
    target = None if job.target is None else catalog.category_code(_maybe_int(job.target))
    objective = ClassifierObjective(model, labels, target=target)

    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {"predicted": predict(model, images, job.batch_size).astype(float)}

    return Measured(objective, measure)


def _maybe_int(text: str) -> str | int:
    return int(text) if str(text).lstrip("-").isdigit() else text


def _feature(job: AttackJob, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.expa import expa_objective

    objective = expa_objective(_backbone(job, "a feature attack"), source, job.hook,
                               metric=job.metric)
    return Measured(objective, _negated(objective, "distance_to_hook"))


def _negated(objective: Any, name: str) -> Any:
    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {name: (-objective.evaluate(images, torch.as_tensor(positions))).numpy()}

    return measure


def _insa(job: AttackJob, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.insa import INSA

    objective = INSA(_recommender(job, "INSA"), seed=job.seed)

    @torch.no_grad()
    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        x = images.float().div(255.0).to(objective.device)
        return {"mean_score": objective.scores(x).mean(0).cpu().numpy()}

    return Measured(objective, measure)


def _bpr(job: AttackJob, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.bpr_untargeted import BPRUntargeted
    from varsec.data.catalog import Dataset

    if not isinstance(source, Dataset):
        raise ConfigError("the bpr objective needs a dataset with interactions, not a catalog.")
    objective = BPRUntargeted(_recommender(job, "the bpr objective"), source, items,
                              seed=job.seed)

    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {"bpr_loss": objective.evaluate(images, torch.as_tensor(positions)).numpy()}

    return Measured(objective, measure)


def _csema_measures(job: AttackJob, source: Any) -> Measured | None:
    if not job.checkpoint:
        return None
    from varsec.attacks.expa import expa_objective

    objective = expa_objective(_backbone(job, "c-SEMA measures"), source, job.hook)
    return Measured(objective, _negated(objective, "distance_to_hook"))


# --------------------------------------------------------------------------------------------
# Running and writing
# --------------------------------------------------------------------------------------------


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def _start_manifest(job: AttackJob, source: Any, out: Path) -> dict[str, Any]:
    path = _manifest_path(out)
    if path.is_file():
        manifest = json.loads(path.read_text())
        if not job.resume:
            raise ConfigError(
                f"{out} already holds an attack run; pass --resume to continue it or choose "
                "another --out."
            )
        if manifest.get("settings") != _jsonable(job.settings()):
            raise ConfigError(
                f"{out}: the settings differ from the run being resumed; use a new --out."
            )
        return manifest
    return {"format": "varsec-attack", "version": 1, "settings": _jsonable(job.settings()),
            "catalog_hash": _catalog(source).content_hash(), "items": {}}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _done_items(manifest: dict[str, Any], out: Path) -> set[str]:
    return {item for item, entry in manifest["items"].items() if (out / entry["png"]).is_file()}


def _read_rows(out: Path, done: set[str]) -> pd.DataFrame:
    path = out / "measures.csv"
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frame = pd.read_csv(path, dtype={"item_id": str, "note": str}, keep_default_na=False,
                        na_values=[""])
    return frame[frame["item_id"].isin(done)]


def _image_rows(clean: torch.Tensor, adv: torch.Tensor, ids: list[str]) -> list[dict[str, Any]]:
    from varsec.metrics.image import image_measures

    frame = image_measures(clean, adv)
    note = "" if frame.attrs["lpips"] == "computed" else frame.attrs["lpips"]
    rows = []
    for k, item in enumerate(ids):
        for metric in ("linf", "l2", "psnr", "ssim", "lpips"):
            rows.append({"item_id": item, "metric": metric, "value": float(frame[metric][k]),
                         "note": note if metric == "lpips" else ""})
    return rows


def _measure_rows(measured: Measured | None, clean: torch.Tensor, adv: torch.Tensor,
                  positions: np.ndarray, ids: list[str]) -> list[dict[str, Any]]:
    if measured is None:
        return []
    before = measured.measure(clean, positions)
    after = measured.measure(adv, positions)
    rows = []
    for name in before:
        for k, item in enumerate(ids):
            values = {f"{name}_before": before[name][k], f"{name}_after": after[name][k]}
            if name == "mean_score":
                values["prediction_shift"] = after[name][k] - before[name][k]
            rows += [{"item_id": item, "metric": metric, "value": float(value), "note": ""}
                     for metric, value in values.items()]
    return rows


def _attack_chunk(job: AttackJob, rule: Any, measured: Measured | None, source: Any,
                  clean: torch.Tensor, positions: np.ndarray) -> tuple[torch.Tensor, Any]:
    from varsec.attacks.csema import csema_batch
    from varsec.attacks.engine import run_attack
    from varsec.attacks.hooks import catalog_pixels, resolve_hook

    if job.attack == "csema":
        hook = catalog_pixels(source, [resolve_hook(source, job.hook)], "c-SEMA")[0]
        images = csema_batch(clean, hook, size=job.inset_size, corner=job.corner,
                             caption=job.caption)
        return images, None
    assert measured is not None
    result = run_attack(measured.objective, clean, rule, index=positions,
                        batch_size=job.batch_size, seed=job.seed, device=job.device)
    return result.images, result


def run_job(job: AttackJob) -> dict[str, Any]:
    """Run ``job``: attack the pending items chunk by chunk; returns a short summary."""
    from varsec.attacks.hooks import catalog_pixels, select_items

    out = Path(job.out)
    source = load_source(job.dataset)
    items = select_items(source, job.items)
    catalog = _catalog(source)
    catalog_pixels(source, items[:1], f"the {job.attack} attack")
    manifest = _start_manifest(job, source, out)
    done = _done_items(manifest, out)
    ids = catalog.item_ids.astype(str)
    pending = np.asarray([p for p in range(len(items)) if ids[items[p]] not in done], dtype=int)
    rule = None if job.attack == "csema" else build_rule(job)
    measured = build_objective(job, source, items)
    rows = _read_rows(out, done)
    successes = []
    for start in range(0, len(pending), job.chunk):
        positions = pending[start : start + job.chunk]
        chunk_ids = [ids[items[p]] for p in positions]
        clean = catalog_pixels(source, items[positions])
        adv, result = _attack_chunk(job, rule, measured, source, clean, positions)
        new_rows = _write_chunk(out, manifest, chunk_ids, adv, result)
        new_rows += _image_rows(clean, adv, chunk_ids)
        new_rows += _measure_rows(measured, clean, adv, positions, chunk_ids)
        rows = pd.concat([rows, _tidy(new_rows, job)], ignore_index=True)
        _save_results(out, manifest, rows)
        if result is not None and result.success is not None:
            successes.append(result.success.numpy())
    rate = float(np.concatenate(successes).mean()) if successes else math.nan
    return {"attacked": len(pending), "skipped": len(items) - len(pending), "success_rate": rate,
            "out": str(out)}


def _write_chunk(out: Path, manifest: dict[str, Any], ids: list[str], adv: torch.Tensor,
                 result: Any) -> list[dict[str, Any]]:
    from varsec.attacks.quantize import save_png
    from varsec.io import sha256_file

    rows = []
    for k, item in enumerate(ids):
        relative = f"images/{_safe_name(item)}.png"
        save_png(out / relative, adv[k])
        entry: dict[str, Any] = {"png": relative, "sha256": sha256_file(out / relative)}
        if result is not None:
            entry["steps"] = int(result.steps[k])
            if result.success is not None:
                entry["success"] = bool(result.success[k])
                rows.append({"item_id": item, "metric": "success",
                             "value": float(result.success[k]), "note": ""})
            rows.append({"item_id": item, "metric": "steps", "value": float(result.steps[k]),
                         "note": ""})
        manifest["items"][item] = entry
    return rows


def _safe_name(item_id: str) -> str:
    """A file name for an item id (ids with other characters get a short hash suffix)."""
    from varsec.io import sha256_bytes

    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item_id)
    return keep if keep == item_id else f"{keep}-{sha256_bytes(item_id.encode())[:8]}"


def _tidy(rows: list[dict[str, Any]], job: AttackJob) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=["item_id", "metric", "value", "note"])
    frame.insert(1, "attack", job.attack)
    frame.insert(2, "objective", job.objective or "none")
    frame.insert(3, "eps", job.eps if job.attack != "csema" else math.nan)
    return frame[RESULT_COLUMNS]


def _save_results(out: Path, manifest: dict[str, Any], rows: pd.DataFrame) -> None:
    from varsec.io import atomic_path, write_json_atomic

    with atomic_path(out / "measures.csv") as tmp:
        rows.to_csv(tmp, index=False)
    write_json_atomic(_manifest_path(out), manifest)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def attack(
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON file of settings."),
    dataset: str | None = typer.Option(None, help="'fashion-mnist', a dataset or catalog dir."),
    out: str | None = typer.Option(None, "--out", help="Output directory [attack-out]."),
    attack_name: str | None = typer.Option(None, "--attack", help=f"{', '.join(ATTACKS)}."),
    objective: str | None = typer.Option(None, help=f"{', '.join(OBJECTIVES)}."),
    checkpoint: str | None = typer.Option(None, help="Backbone checkpoint or registry name."),
    recommender: str | None = typer.Option(None, help="Recommender checkpoint (insa, bpr)."),
    items: str | None = typer.Option(None, help="'all', 'cold' or comma-separated item ids."),
    eps: float | None = typer.Option(None, help="Budget in 8-bit levels (8 means 8/255) [8]."),
    steps: int | None = typer.Option(None, help="Iterations [10]."),
    alpha: float | None = typer.Option(None, help="PGD step in 8-bit levels [2.5*eps/steps]."),
    lr: float | None = typer.Option(None, help="Adam learning rate (adam, cw-l2, cw-linf)."),
    c: float | None = typer.Option(None, help="C&W constant c [1]."),
    random_start: bool | None = typer.Option(None, "--random-start/--no-random-start",
                                             help="PGD random start [on]."),
    target: str | None = typer.Option(None, help="Target class (name or code): targeted."),
    hook: str | None = typer.Option(None, help="Hook item id [most-interacted item]."),
    metric: str | None = typer.Option(None, help="Feature objective: l2 (EXPA) or cosine."),
    inset_size: float | None = typer.Option(None, help="c-SEMA inset side share [0.4]."),
    corner: str | None = typer.Option(None, help="c-SEMA inset corner [bottom-right]."),
    caption: str | None = typer.Option(None, help="c-SEMA caption (large images only)."),
    batch_size: int | None = typer.Option(None, help="Images per batch [64]."),
    seed: int | None = typer.Option(None, help="Seed of random starts and sampling [0]."),
    device: str | None = typer.Option(None, help="cpu or cuda [cpu]."),
    resume: bool = typer.Option(False, "--resume", help="Skip items already done in --out."),
) -> None:
    """Attack catalog items; write adversarial PNGs, manifest.json and measures.csv.

    Example: varsec attack --dataset runs/data --attack pgd --objective classifier
    --checkpoint runs/fmnist.pt --target sneaker --items all --eps 8 --out runs/pgd8
    """
    overrides = {
        "dataset": dataset, "out": out, "attack": attack_name, "objective": objective,
        "checkpoint": checkpoint, "recommender": recommender, "items": items, "eps": eps,
        "steps": steps, "alpha": alpha, "lr": lr, "c": c, "random_start": random_start,
        "target": target, "hook": hook, "metric": metric, "inset_size": inset_size,
        "corner": corner, "caption": caption, "batch_size": batch_size, "seed": seed,
        "device": device, "resume": resume or None,
    }
    job = AttackJob.build(config, overrides)
    summary = run_job(job)
    rate = summary["success_rate"]
    success = "" if math.isnan(rate) else f", success rate {rate:.2%}"
    typer.echo(f"wrote {summary['attacked']} adversarial images to {summary['out']} "
               f"({summary['skipped']} already done){success}.")


def register(app: typer.Typer) -> None:
    """Add ``varsec attack`` to the root app."""
    app.command("attack")(attack)


__all__ = ["ATTACKS", "OBJECTIVES", "AttackJob", "attack", "build_rule", "load_source",
           "register", "run_job"]
