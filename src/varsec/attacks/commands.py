"""``varsec attack``: attack catalog items and write adversarial PNGs, a manifest and measures.

Settings come from ``--config FILE`` (YAML or JSON, keys named like the flags) and/or flags;
flags win. ``--checkpoint`` (and, for the recommender objectives, ``--recommender``) may be
repeated, or given as a list in the config file: every model is attacked in turn with the same
settings (see :meth:`AttackJob.models`). The output directory receives

* ``images/<model>/<item id>.png``: the quantised adversarial images per model (lossless PNG,
  written atomically);
* ``manifest.json``: the settings, the dataset hash, and per model its checkpoint files and
  their sha256, and per item its PNG's sha256, success and steps;
* ``measures.csv``: tidy rows ``(model, item_id, attack, objective, eps, metric, value, note)``:
  image measures (L-inf, L2, PSNR, SSIM, LPIPS when available) and the objective's
  before/after values (class, feature distance, mean score and prediction shift Δ_i, BPR loss).

Items are processed in chunks; after each chunk the manifest and the CSV are rewritten
atomically, so a killed run loses at most one chunk and ``--resume`` skips the items already
done for each model. A resumed run may list more (or fewer) models than the first one; a model
of the same name must come from the same files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import typer

from varsec.attacks.registry import attack_method, attack_names
from varsec.data.sources import open_source
from varsec.errors import ConfigError, DataError, VarsecWarning

OBJECTIVES = ("classifier", "feature", "insa", "bpr")
RESULT_COLUMNS = ["model", "item_id", "attack", "objective", "eps", "metric", "value", "note"]
# Settings that may differ between a run and its --resume (the models are checked one by one).
_RUNTIME = {"out", "resume", "batch_size", "chunk", "device", "config", "checkpoint",
            "recommender"}
# Config keys that are other names of a field.
_ALIASES = {"checkpoints": "checkpoint", "recommenders": "recommender"}
MANIFEST_VERSION = 2


@dataclass
class AttackJob:
    """One ``varsec attack`` run; every field is a flag (``--eps``) and a config key (``eps``)."""

    dataset: str = "fashion-mnist"
    out: str = "attack-out"
    attack: str = "pgd"
    objective: str | None = "classifier"
    checkpoint: str | list[str] | None = None
    recommender: str | list[str] | None = None
    items: str = "all"
    eps: float = 8.0
    steps: int | None = None  # None: the attack's registered default
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

        if self.attack not in attack_names():
            raise ConfigError(f"attack must be one of {', '.join(attack_names())}, got "
                              f"{self.attack!r}.")
        method = attack_method(self.attack)
        if not method.gradient:
            self.objective = None
        elif self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}."
            )
        else:
            check_eps(self.eps, norm=method.norm)
            if self.steps is None:
                self.steps = method.steps  # one default per method: the registry's
            check_steps(self.steps)
        for name in ("batch_size", "chunk"):
            check_steps(getattr(self, name), name)
        self.checkpoint = _paths(self.checkpoint, "checkpoint")
        self.recommender = _paths(self.recommender, "recommender")
        self.models()

    def settings(self) -> dict[str, Any]:
        """What must match between a run and its resumption."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME}

    def models(self) -> list[ModelSpec]:
        """The models to attack in turn, each with a name (its PNG folder and ``model`` value).

        The recommender objectives (insa, bpr) attack each ``recommender``; one checkpoint is
        the image extractor of them all, or one checkpoint per recommender pairs them in order.
        The other objectives (and c-SEMA's measures) attack each ``checkpoint``. Without any,
        one unnamed model stands for the missing one (its objective then says what it needs).
        """
        checkpoints = list(self.checkpoint or [])
        recommenders = list(self.recommender or [])
        if self.objective in ("insa", "bpr") and recommenders:
            if len(checkpoints) > 1 and len(checkpoints) != len(recommenders):
                raise ConfigError(
                    f"give one checkpoint for all recommenders or one per recommender, got "
                    f"{len(checkpoints)} checkpoints for {len(recommenders)} recommenders."
                )
            paired = checkpoints if len(checkpoints) > 1 else checkpoints * len(recommenders)
            pairs = list(zip(paired or [None] * len(recommenders), recommenders, strict=True))
            stems = [_stem(r) for r in recommenders]
        elif self.objective in ("insa", "bpr"):
            pairs = [(checkpoints[0] if checkpoints else None, None)]
            stems = ["model"]
        else:
            pairs = [(c, None) for c in checkpoints] or [(None, None)]
            stems = [_stem(c) for c in checkpoints] or ["model"]
        names = _unique(stems)
        return [ModelSpec(n, c, r) for n, (c, r) in zip(names, pairs, strict=True)]


@dataclass(frozen=True)
class ModelSpec:
    """One attacked model: its name, backbone checkpoint and recommender checkpoint."""

    name: str
    checkpoint: str | None
    recommender: str | None

    def files(self) -> dict[str, Any]:
        """The model's sources and, for files, their sha256 (registry names have none)."""
        from varsec.io import sha256_file

        record: dict[str, Any] = {"checkpoint": self.checkpoint, "recommender": self.recommender}
        for key in ("checkpoint", "recommender"):
            path = record[key]
            record[f"{key}_sha256"] = (sha256_file(path) if path and Path(path).is_file()
                                       else None)
        return record


def _paths(value: Any, name: str) -> list[str] | None:
    """A checkpoint setting as a list of strings (None when absent)."""
    if value is None:
        return None
    values = [value] if isinstance(value, str | Path) else value
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, str | Path) and str(v) for v in values
    ):
        raise ConfigError(f"{name} must be a path or a list of paths, got {value!r}.")
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"{name} lists the same model twice: {[str(v) for v in values]}.")
    return [str(v) for v in values] or None


def _stem(spec: str) -> str:
    """A model's name from its checkpoint: the file name without suffix, or the registry name."""
    return _safe_name(Path(spec).stem or Path(spec).name or "model")


def _unique(stems: list[str]) -> list[str]:
    """``stems`` with repeats numbered (``cnn``, ``cnn-2``, ...), in order."""
    names: list[str] = []
    for stem in stems:
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}-{k}", k + 1
        names.append(name)
    return names


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
        name = _ALIASES.get(name, name)
        if name not in known:
            raise ConfigError(
                f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})."
            )
        if name in values:
            raise ConfigError(f"{path}: {name!r} is given twice (as {name} and {name}s).")
        values[name] = value
    return values


# --------------------------------------------------------------------------------------------
# Loading data and models
# --------------------------------------------------------------------------------------------


def _backbone(job: AttackJob, spec: ModelSpec, what: str) -> Any:
    if not spec.checkpoint:
        raise ConfigError(f"{what} needs --checkpoint (a backbone checkpoint or registry name).")
    from varsec.vision.checkpoint import open_backbone

    return open_backbone(spec.checkpoint, device=job.device)[0]


def _recommender(job: AttackJob, spec: ModelSpec, what: str) -> Any:
    if not spec.recommender:
        raise ConfigError(f"{what} needs --recommender (a recommender checkpoint file).")
    from varsec.attacks.insa import require_visual
    from varsec.recsys.base import Recommender

    model = Recommender.load(spec.recommender, device=job.device)
    require_visual(model, f"the {job.objective} objective")
    if spec.checkpoint and model.extractor is None and model.feature_dim:
        model.attach_extractor(_backbone(job, spec, what))
    return model


def _catalog(source: Any) -> Any:
    return getattr(source, "catalog", source)


# --------------------------------------------------------------------------------------------
# Objectives, rules and measures
# --------------------------------------------------------------------------------------------


def build_rule(job: AttackJob) -> Any:
    """The engine step rule of ``job.attack``, built by its registered method from the flags
    that are its declared settings (``--lr``, ``--c``, ``--random-start``; the rest keep the
    method's defaults); None for c-SEMA."""
    method = attack_method(job.attack)
    flags = {"lr": job.lr, "c": job.c, "random_start": job.random_start}
    given = {k: v for k, v in flags.items() if k in method.params and v is not None}
    return method.build(job.eps, job.steps, job.alpha, given)


@dataclass
class Measured:
    """An objective plus how to read before/after values from it."""

    objective: Any
    measure: Any  # (uint8 images, positions) -> dict[str, np.ndarray]


def build_objective(job: AttackJob, source: Any, items: np.ndarray,
                    spec: ModelSpec | None = None) -> Measured | None:
    """The objective of ``job`` on model ``spec`` (default: the job's first model) over the
    selected ``items`` (positions 0..len-1)."""
    builders = {"classifier": _classifier, "feature": _feature, "insa": _insa, "bpr": _bpr}
    spec = job.models()[0] if spec is None else spec
    if job.objective is None:
        return _csema_measures(job, spec, source)
    return builders[job.objective](job, spec, source, items)


def _classifier(job: AttackJob, spec: ModelSpec, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.objectives import ClassifierObjective
    from varsec.metrics.attack import predict

    catalog, model = _catalog(source), _backbone(job, spec, "a classifier attack")
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


def _feature(job: AttackJob, spec: ModelSpec, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.expa import expa_objective

    objective = expa_objective(_backbone(job, spec, "a feature attack"), source, job.hook,
                               metric=job.metric)
    return Measured(objective, _negated(objective, "distance_to_hook"))


def _negated(objective: Any, name: str) -> Any:
    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {name: (-objective.evaluate(images, torch.as_tensor(positions))).numpy()}

    return measure


def _insa(job: AttackJob, spec: ModelSpec, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.insa import INSA
    from varsec.vision.perturbation import uint8_to_float

    objective = INSA(_recommender(job, spec, "INSA"), seed=job.seed)

    @torch.no_grad()
    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        x = uint8_to_float(images).to(objective.device)
        return {"mean_score": objective.scores(x).mean(0).cpu().numpy()}

    return Measured(objective, measure)


def _bpr(job: AttackJob, spec: ModelSpec, source: Any, items: np.ndarray) -> Measured:
    from varsec.attacks.bpr_untargeted import BPRUntargeted
    from varsec.data.catalog import Dataset

    if not isinstance(source, Dataset):
        raise ConfigError("the bpr objective needs a dataset with interactions, not a catalog.")
    objective = BPRUntargeted(_recommender(job, spec, "the bpr objective"), source, items,
                              seed=job.seed)

    def measure(images: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {"bpr_loss": objective.evaluate(images, torch.as_tensor(positions)).numpy()}

    return Measured(objective, measure)


def _csema_measures(job: AttackJob, spec: ModelSpec, source: Any) -> Measured | None:
    if not spec.checkpoint:
        return None
    from varsec.attacks.expa import expa_objective

    objective = expa_objective(_backbone(job, spec, "c-SEMA measures"), source, job.hook)
    return Measured(objective, _negated(objective, "distance_to_hook"))


# --------------------------------------------------------------------------------------------
# Running and writing
# --------------------------------------------------------------------------------------------


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def _start_manifest(job: AttackJob, source: Any, out: Path) -> dict[str, Any]:
    path = _manifest_path(out)
    if path.is_file():
        if not job.resume:
            raise ConfigError(
                f"{out} already holds an attack run; pass --resume to continue it or choose "
                "another --out."
            )
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable attack manifest ({exc}).") from exc
        if manifest.get("format") != "varsec-attack" or manifest.get(
            "version") != MANIFEST_VERSION:
            raise ConfigError(
                f"{path}: an attack run of another format (version "
                f"{manifest.get('version')!r}, this varsec writes {MANIFEST_VERSION}); use a "
                "new --out."
            )
        if manifest.get("settings") != _jsonable(job.settings()):
            raise ConfigError(
                f"{out}: the settings differ from the run being resumed; use a new --out."
            )
        return manifest
    return {"format": "varsec-attack", "version": MANIFEST_VERSION,
            "settings": _jsonable(job.settings()),
            "catalog_hash": _catalog(source).content_hash(), "models": {}}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _check_sources(specs: list[ModelSpec]) -> None:
    """Every named checkpoint exists (a file, or a backbone registry name) before any work."""
    from varsec.vision.registry import known_backbones

    for spec in specs:
        if spec.checkpoint and not Path(spec.checkpoint).is_file() and (
            spec.checkpoint not in known_backbones()
        ):
            raise ConfigError(
                f"checkpoint {spec.checkpoint!r} is neither a file nor a backbone name "
                f"(known: {', '.join(known_backbones())})."
            )
        if spec.recommender and not Path(spec.recommender).is_file():
            raise ConfigError(f"recommender checkpoint {spec.recommender!r} is not a file.")


def _model_entry(manifest: dict[str, Any], spec: ModelSpec, out: Path) -> dict[str, Any]:
    """The manifest entry of ``spec`` (added when new); a resumed model must come from the
    same files (same sha256; registry names: same name)."""
    files = spec.files()
    entry = manifest["models"].get(spec.name)
    if entry is None:
        entry = {**files, "items": {}}
        manifest["models"][spec.name] = entry
        return entry
    for key in ("checkpoint", "recommender"):
        digest = f"{key}_sha256"
        same = (entry.get(digest) == files[digest] if entry.get(digest) or files[digest]
                else entry.get(key) == files[key])
        if not same:
            raise ConfigError(
                f"{out}: model {spec.name!r} was attacked with {key} {entry.get(key)!r}, not "
                f"with {files[key]!r} (other weights); use a new --out."
            )
    entry.update(files)  # the files may have moved
    return entry


def _done_items(entry: dict[str, Any], out: Path, model: str) -> set[str]:
    """The items of a model whose PNG is still the one written (same sha256); any other is
    attacked again, after a warning naming its file."""
    from varsec.io import sha256_file

    done = set()
    for item, record in entry["items"].items():
        png = out / record["png"]
        if not png.is_file():
            problem = "is missing"
        elif sha256_file(png) != record.get("sha256"):
            problem = f"does not match its sha256 in {_manifest_path(out)}"
        else:
            done.add(item)
            continue
        warnings.warn(VarsecWarning(f"{png} {problem}; attacking item {item!r} of model "
                                    f"{model!r} again."), stacklevel=2)
    return done


def _verified_items(out: Path, manifest: dict[str, Any]) -> dict[str, set[str]]:
    """Per model of a resumed run, the items done whose PNG is intact."""
    return {model: _done_items(entry, out, model) for model, entry in manifest["models"].items()}


def _read_rows(out: Path, manifest: dict[str, Any],
               verified: dict[str, set[str]]) -> pd.DataFrame:
    """The measures of the items already done (per model) in a resumed run."""
    path = out / "measures.csv"
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frame = pd.read_csv(path, dtype={"model": str, "item_id": str, "note": str},
                        keep_default_na=False, na_values=[""])
    done = {(model, item) for model, items in verified.items() for item in items}
    keep = [pair in done for pair in zip(frame["model"], frame["item_id"], strict=True)]
    return frame[np.asarray(keep, dtype=bool)] if len(frame) else frame


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
    """Run ``job``: attack each model's pending items chunk by chunk, one model after the
    other; returns a short summary (totals, and per model under ``models``)."""
    from varsec.attacks.hooks import catalog_pixels, select_items

    out = Path(job.out)
    source = open_source(job.dataset)
    items = select_items(source, job.items)
    catalog = _catalog(source)
    catalog_pixels(source, items[:1], f"the {job.attack} attack")
    specs = job.models()
    _check_sources(specs)
    manifest = _start_manifest(job, source, out)
    ids = catalog.item_ids.astype(str)
    rule = build_rule(job)
    verified = _verified_items(out, manifest)
    rows = _read_rows(out, manifest, verified)
    summary: dict[str, dict[str, Any]] = {}
    for spec in specs:
        entry = _model_entry(manifest, spec, out)
        done = verified.get(spec.name, set())
        pending = np.asarray([p for p in range(len(items)) if ids[items[p]] not in done],
                             dtype=int)
        measured = build_objective(job, source, items, spec) if len(pending) else None
        successes = []
        for start in range(0, len(pending), job.chunk):
            positions = pending[start : start + job.chunk]
            chunk_ids = [ids[items[p]] for p in positions]
            clean = catalog_pixels(source, items[positions])
            adv, result = _attack_chunk(job, rule, measured, source, clean, positions)
            new_rows = _write_chunk(out, entry, spec.name, chunk_ids, adv, result)
            new_rows += _image_rows(clean, adv, chunk_ids)
            new_rows += _measure_rows(measured, clean, adv, positions, chunk_ids)
            rows = pd.concat([rows, _tidy(new_rows, job, spec.name)], ignore_index=True)
            _save_results(out, manifest, rows)
            if result is not None and result.success is not None:
                successes.append(result.success.numpy())
        summary[spec.name] = {
            "attacked": len(pending), "skipped": len(items) - len(pending),
            "success_rate": float(np.concatenate(successes).mean()) if successes else math.nan,
            "successes": int(sum(s.sum() for s in successes)),
            "judged": int(sum(len(s) for s in successes)),
        }
    judged = sum(m["judged"] for m in summary.values())
    rate = sum(m["successes"] for m in summary.values()) / judged if judged else math.nan
    return {"attacked": sum(m["attacked"] for m in summary.values()),
            "skipped": sum(m["skipped"] for m in summary.values()), "success_rate": rate,
            "out": str(out), "models": summary}


def _write_chunk(out: Path, entry: dict[str, Any], model: str, ids: list[str],
                 adv: torch.Tensor, result: Any) -> list[dict[str, Any]]:
    from varsec.attacks.quantize import save_png
    from varsec.io import sha256_file

    rows = []
    for k, item in enumerate(ids):
        relative = f"images/{model}/{_safe_name(item)}.png"
        save_png(out / relative, adv[k])
        record: dict[str, Any] = {"png": relative, "sha256": sha256_file(out / relative)}
        if result is not None:
            record["steps"] = int(result.steps[k])
            if result.success is not None:
                record["success"] = bool(result.success[k])
                rows.append({"item_id": item, "metric": "success",
                             "value": float(result.success[k]), "note": ""})
            rows.append({"item_id": item, "metric": "steps", "value": float(result.steps[k]),
                         "note": ""})
        entry["items"][item] = record
    return rows


def _safe_name(item_id: str) -> str:
    """A file name for an item id (ids with other characters get a short hash suffix)."""
    from varsec.io import sha256_bytes

    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item_id)
    return keep if keep == item_id else f"{keep}-{sha256_bytes(item_id.encode())[:8]}"


def _tidy(rows: list[dict[str, Any]], job: AttackJob, model: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=["item_id", "metric", "value", "note"])
    frame.insert(0, "model", model)
    frame.insert(2, "attack", job.attack)
    frame.insert(3, "objective", job.objective or "none")
    frame.insert(4, "eps", job.eps if job.attack != "csema" else math.nan)
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
    attack_name: str | None = typer.Option(None, "--attack", help="a registered attack, e.g. "
                                           "pgd, fgsm, cw-l2, csema (varsec study schema lists "
                                           "them all)."),
    objective: str | None = typer.Option(None, help=f"{', '.join(OBJECTIVES)}."),
    checkpoint: list[str] | None = typer.Option(
        None, "--checkpoint", metavar="<path>",
        help="Backbone checkpoint or registry name; repeat it to attack "
        "several models in turn (insa, bpr: one extractor for all, or one per recommender)."),
    recommender: list[str] | None = typer.Option(
        None, "--recommender", metavar="<path>",
        help="Recommender checkpoint (insa, bpr); repeat it to attack "
        "several recommenders in turn."),
    items: str | None = typer.Option(None, help="'all', 'cold' or comma-separated item ids."),
    eps: float | None = typer.Option(None, help="Budget in 8-bit levels (8 means 8/255) [8]."),
    steps: int | None = typer.Option(None, help="Iterations [the attack's own: `varsec study "
                                     "schema` lists them]."),
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
    --checkpoint runs/fmnist.pt --checkpoint runs/fmnist-at.pt --target sneaker --items all
    --eps 8 --out runs/pgd8   (PNGs in runs/pgd8/images/fmnist/ and images/fmnist-at/)
    """
    overrides = {
        "dataset": dataset, "out": out, "attack": attack_name, "objective": objective,
        "checkpoint": checkpoint or None, "recommender": recommender or None,
        "items": items, "eps": eps,
        "steps": steps, "alpha": alpha, "lr": lr, "c": c, "random_start": random_start,
        "target": target, "hook": hook, "metric": metric, "inset_size": inset_size,
        "corner": corner, "caption": caption, "batch_size": batch_size, "seed": seed,
        "device": device, "resume": resume or None,
    }
    job = AttackJob.build(config, overrides)
    _check_out(Path(job.out))
    summary = run_job(job)
    models = summary["models"]
    if len(models) > 1:
        for name, part in models.items():
            typer.echo(f"model {name}: {part['attacked']} attacked, {part['skipped']} already "
                       f"done{_rate_text(part['success_rate'])}.")
    typer.echo(f"wrote {summary['attacked']} adversarial images to {summary['out']} "
               f"({summary['skipped']} already done"
               f"{f', {len(models)} models' if len(models) > 1 else ''})"
               f"{_rate_text(summary['success_rate'])}.")


def _check_out(out: Path) -> None:
    """Before any work: --out must be a new, empty or earlier attack directory (a file, or a
    directory of anything else, is refused: a run writes into it)."""
    from varsec.io import check_output_dir

    check_output_dir(out, "attack", in_place=True,
                     remedy="an attack writes its files into --out, so choose another one")


def _rate_text(rate: float) -> str:
    return "" if math.isnan(rate) else f", success rate {rate:.2%}"


def register(app: typer.Typer) -> None:
    """Add ``varsec attack`` to the root app."""
    app.command("attack")(attack)


__all__ = ["OBJECTIVES", "AttackJob", "ModelSpec", "attack", "build_rule",
           "register", "run_job"]
