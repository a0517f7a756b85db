"""``varsec attack``: attack catalog items through the study runner; write adversarial PNGs, a
manifest and measures.

Settings come from ``--config FILE`` (YAML or JSON, keys named like the flags) and/or flags;
flags win. ``--checkpoint`` (and, for the recommender objectives, ``--recommender``) may be
repeated, or given as a list in the config file: every model is attacked in turn with the same
settings (see :meth:`AttackJob.models`).

The command is a thin front over the study runner. Once every setting is checked (before
anything is written or computed) it builds a one-attack study in memory
(:func:`attack_study`): the dataset used as it is (``dataset.as_is``, no simulated shoppers),
each ``--checkpoint`` an extractor kept as it is (``features: false``), each ``--recommender``
a saved recommender (its sha256 keys its stage), and per model one attack with ``item_ids``
(the items still to do), ``chunk: --chunk`` and ``evaluation: false``: one attack stage per
chunk, each cached in ``OUT/study/cache``. :func:`~varsec.study.runner.run_study` runs the
attack stages (and the data, extractor and recommender stages they read); as each chunk ends,
its PNGs, manifest entries and measures are exported from the stage's files
(``adversarial.npy``, ``item_measures.parquet``). The output directory receives

* ``images/<model>/<item id>.png``: the quantised adversarial images per model (lossless PNG,
  written atomically);
* ``manifest.json``: the settings, the dataset hash, and per model its checkpoint files and
  their sha256, and per item its PNG's sha256, success and steps;
* ``measures.csv``: tidy rows ``(model, item_id, attack, objective, eps, metric, value, note)``:
  success and steps, image measures (L-inf, L2, PSNR, SSIM, LPIPS when available) and the
  objective's before/after values (class, feature distance, mean score and prediction shift
  Δ_i, BPR loss): the stage's per-item table;
* ``study/``: the study run (its cache, ``results.csv`` of the stages' mean rows,
  ``config.resolved.yaml``).

``--resume`` continues a run: an item whose PNG is intact (same sha256) is done; a chunk with
an item not done is planned again, and the runner takes it from the cache when its stage is
there (a killed run loses at most the chunk it was attacking); an item whose PNG is missing or
changed is written again, from the cached stage (or attacked again if the cache lost it), after
one warning naming the file. A resumed run may list more (or fewer) models than the first
one; a model of the same name must come from the same files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from varsec.attacks.registry import attack_method, attack_names
from varsec.errors import ConfigError, DataError, ModelError, VarsecWarning

OBJECTIVES = ("classifier", "feature", "insa", "bpr")
METRICS = ("l2", "cosine")  # of the feature objective
RESULT_COLUMNS = ["model", "item_id", "attack", "objective", "eps", "metric", "value", "note"]
# Settings that may differ between a run and its --resume (the models are checked one by one).
_RUNTIME = {"out", "resume", "batch_size", "chunk", "device", "config", "checkpoint",
            "recommender"}
# Config keys that are other names of a field.
_ALIASES = {"checkpoints": "checkpoint", "recommenders": "recommender"}
MANIFEST_VERSION = 2
STUDY_DIR = "study"  # the study run (its stage cache) inside --out


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
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got "
                              f"{self.metric!r}.")
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
        through_recommender = _through_recommender(self)
        if through_recommender and recommenders:
            if len(checkpoints) > 1 and len(checkpoints) != len(recommenders):
                raise ConfigError(
                    f"give one checkpoint for all recommenders or one per recommender, got "
                    f"{len(checkpoints)} checkpoints for {len(recommenders)} recommenders."
                )
            paired = checkpoints if len(checkpoints) > 1 else checkpoints * len(recommenders)
            pairs = list(zip(paired or [None] * len(recommenders), recommenders, strict=True))
            stems = [_stem(r) for r in recommenders]
        elif through_recommender:
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
    """The settings of an attack config file, read within the study files' limits (size,
    aliases, depth; duplicate keys refused)."""
    from varsec.study.yamlfile import load_yaml_text

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the attack config ({exc}).") from None
    raw, _ = load_yaml_text(text, str(path))
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
# Checking a run before anything is written or computed
# --------------------------------------------------------------------------------------------


@dataclass
class Checked:
    """A job whose every input was checked: the opened source, the item ids attacked (in
    order), the models and the dataset's content hash."""

    job: AttackJob
    source: Any
    ids: list[str]
    specs: list[ModelSpec]
    catalog_hash: str


def check_job(job: AttackJob) -> Checked:
    """Open the dataset and check every item, model, hook and target the run needs; one
    sentence per problem, before anything is written or computed."""
    from varsec.attacks.hooks import catalog_of, catalog_pixels, select_items
    from varsec.data.sources import open_source

    source = open_source(job.dataset)
    catalog = catalog_of(source)
    items = select_items(source, job.items)
    ids = catalog.item_ids.astype(str)[items].tolist()
    if len(set(ids)) < len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"items lists item {twice!r} twice.")
    catalog_pixels(source, items[:1], f"the {job.attack} attack")
    specs = job.models()
    _check_sources(specs, job)
    _check_objective(job, source, specs)
    return Checked(job, source, ids, specs, catalog.content_hash())


def _check_sources(specs: list[ModelSpec], job: AttackJob) -> None:
    """Every named checkpoint exists (a file, or a backbone registry name); every recommender
    is a varsec recommender checkpoint of a visual model."""
    from varsec.recsys import checkpoint_class
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
        if spec.recommender:
            klass = checkpoint_class(spec.recommender)
            if not klass.visual:
                raise ModelError(f"the {job.objective} objective needs a visual recommender "
                                 f"that scores images; {spec.recommender} holds a "
                                 f"{klass.__name__}, which is not visual.")


def _check_objective(job: AttackJob, source: Any, specs: list[ModelSpec]) -> None:
    """What the objective needs: its models, categories and target, the hook item, or
    interactions."""
    from varsec.attacks.hooks import catalog_of, resolve_hook
    from varsec.data.catalog import Dataset

    catalog = catalog_of(source)
    if job.objective is not None:  # c-SEMA needs neither
        key = "recommender" if _through_recommender(job) else "checkpoint"
        what = f"the {job.objective} objective"
        for spec in specs:
            if not getattr(spec, key):
                kind = "a backbone checkpoint or registry name" if key == "checkpoint" else \
                    "a recommender checkpoint file"
                raise ConfigError(f"{what} needs --{key} ({kind}).")
    if job.objective == "classifier":
        if catalog.categories is None:
            raise DataError(f"catalog {catalog.name!r} has no categories to attack a "
                            "classifier on.")
        if job.target is not None:
            catalog.category_code(_maybe_int(job.target))
    if job.objective == "bpr" and not isinstance(source, Dataset):
        raise ConfigError("the bpr objective needs a dataset with interactions, not a catalog.")
    if job.objective in ("feature", None):
        resolve_hook(source, job.hook)


def _through_recommender(job: AttackJob) -> bool:
    """Whether the job's objective attacks through a recommender (its registered objective is
    evaluated as a promotion or a ranking), not through an image model."""
    from varsec.attacks.registry import objective_fact

    return job.objective is not None and \
        objective_fact(_study_objective(job), "family") is not None


def _maybe_int(text: str) -> str | int:
    return int(text) if str(text).lstrip("-").isdigit() else text


# --------------------------------------------------------------------------------------------
# The study of a run
# --------------------------------------------------------------------------------------------


def _study_objective(job: AttackJob) -> str:
    """The study objective of the job's (c-SEMA: its own, none)."""
    if job.objective is None:
        return "auto"
    if job.objective == "classifier":
        return "classifier-targeted" if job.target is not None else "classifier-untargeted"
    if job.objective == "feature":
        return f"feature-{job.metric}"
    return job.objective


def _section_names(labels: dict[str, str]) -> dict[str, str]:
    """A distinct study name (letters, digits, - and _, starting with a letter) for each key,
    made from its label."""
    chosen: dict[str, str] = {}
    for key, label in labels.items():
        base = re.sub(r"[^A-Za-z0-9_-]", "-", label)[:56]
        base = base if base[:1].isalpha() else f"m-{base}"
        candidate, k = base, 2
        while candidate in chosen.values():
            candidate, k = f"{base}-{k}", k + 1
        chosen[key] = candidate
    return chosen


def _absolute(path: str) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else path


def _attack_section(job: AttackJob, ids: list[str]) -> dict[str, Any]:
    """The study attack of one model: the job's rule, objective and budget on ``ids``."""
    method = attack_method(job.attack)
    flags = {"lr": job.lr, "c": job.c, "random_start": job.random_start}
    params = {k: v for k, v in flags.items() if k in method.params and v is not None}
    params["batch_size"] = job.batch_size
    if job.objective is None:  # c-SEMA's inset
        params.update(size=job.inset_size, corner=job.corner)
        if job.caption is not None:
            params["caption"] = job.caption
    section: dict[str, Any] = {
        "kind": job.attack, "objective": _study_objective(job), "params": params,
        "item_ids": ids, "chunk": job.chunk, "evaluation": False, "save_images": 0,
        "hook_item": job.hook if job.hook is not None else "most-popular",
    }
    if method.uses_eps:
        section["eps"] = [job.eps]
    if job.steps is not None:
        section["steps"] = job.steps
    if job.alpha is not None and method.uses_alpha:
        section["alpha"] = job.alpha
    if job.objective == "classifier" and job.target is not None:
        section["target_category"] = str(job.target)
    return section


def attack_study(checked: Checked,
                 pending: dict[str, list[str]]) -> tuple[Any, dict[str, ModelSpec]]:
    """The one-attack study of a run: per model with ``pending`` items (by model name) an
    attack on its extractor or recommender (module docstring); returns the validated
    :class:`~varsec.study.schema.StudyConfig` and the model of each attack section."""
    import torch

    from varsec.study.schema import study_from_data

    job, specs = checked.job, [s for s in checked.specs if pending.get(s.name)]
    files = sorted({s.checkpoint for s in specs if s.checkpoint})
    extractor_of = _section_names({f: _stem(f) for f in files})
    extractors = {extractor_of[f]: ({"checkpoint": _absolute(f)} if Path(f).is_file() else
                                    {"backbone": f}) | {"training": "none", "features": False}
                  for f in files}
    sections = _section_names({s.name: s.name for s in specs})
    recommenders: dict[str, Any] = {}
    attacks: dict[str, Any] = {}
    for spec in specs:
        attack = _attack_section(job, pending[spec.name])
        if spec.recommender:
            recommenders[sections[spec.name]] = {
                "checkpoint": _absolute(spec.recommender),
                "extractor": extractor_of.get(spec.checkpoint or "")}
            attack["recommender"] = sections[spec.name]
        elif spec.checkpoint:
            attack["extractor"] = extractor_of[spec.checkpoint]
        attacks[sections[spec.name]] = attack
    data = {"study": "attack", "description": "varsec attack",
            "dataset": {"source": _absolute(job.dataset), "as_is": True},
            "extractors": extractors, "recommenders": recommenders, "attacks": attacks,
            "seeds": [job.seed], "device": job.device, "threads": torch.get_num_threads(),
            "report": {"enabled": False}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VarsecWarning)
        config = study_from_data(data, source="varsec attack")
    _warn_once(caught)
    return config, {sections[spec.name]: spec for spec in specs}


def _warn_once(caught: list[warnings.WarningMessage]) -> None:
    """The study's budget warnings, once each and without the study's own location (every
    model has the same settings, so the same warning)."""
    seen = set()
    for entry in caught:
        text = re.sub(r"^varsec attack: attacks\.[^:]+: ", "", str(entry.message))
        if text not in seen:
            seen.add(text)
            warnings.warn(VarsecWarning(text), stacklevel=3)


# --------------------------------------------------------------------------------------------
# The manifest and resuming
# --------------------------------------------------------------------------------------------


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def _start_manifest(checked: Checked, out: Path) -> dict[str, Any]:
    """The manifest of a new run, or the one being resumed after checking it is the same run."""
    job = checked.job
    path = _manifest_path(out)
    if not path.is_file():
        return {"format": "varsec-attack", "version": MANIFEST_VERSION,
                "settings": _jsonable(job.settings()), "catalog_hash": checked.catalog_hash,
                "models": {}}
    if not job.resume:
        raise ConfigError(f"{out} already holds an attack run; pass --resume to continue it or "
                          "choose another --out.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable attack manifest ({exc}).") from exc
    if manifest.get("format") != "varsec-attack" or manifest.get("version") != MANIFEST_VERSION:
        raise ConfigError(
            f"{path}: an attack run of another format (version {manifest.get('version')!r}, "
            f"this varsec writes {MANIFEST_VERSION}); use a new --out."
        )
    if manifest.get("settings") != _jsonable(job.settings()):
        raise ConfigError(f"{out}: the settings differ from the run being resumed; use a new "
                          "--out.")
    if manifest.get("catalog_hash") != checked.catalog_hash:
        raise ConfigError(f"{out}: the dataset {job.dataset!r} changed since the run being "
                          "resumed (another content hash); use a new --out.")
    return manifest


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


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
    written again, after a warning naming its file."""
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
        warnings.warn(VarsecWarning(
            f"{png} {problem}; item {item!r} of model {model!r} is written again (from its "
            "cached attack stage, or attacked again if the cache lost it)."), stacklevel=2)
    return done


def _pending(ids: list[str], done: set[str], chunk: int) -> list[str]:
    """The items of every chunk (of ``chunk`` items, in order) that holds an item not done: the
    study plans those chunks, whose stages the cache may still hold."""
    chunks = [ids[start:start + chunk] for start in range(0, len(ids), chunk)]
    return [item for part in chunks if not done.issuperset(part) for item in part]


def _read_rows(out: Path, done: set[tuple[str, str]]) -> pd.DataFrame:
    """The measures of the items already done (per model) in a resumed run."""
    path = out / "measures.csv"
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frame = pd.read_csv(path, dtype={"model": str, "item_id": str, "note": str},
                        keep_default_na=False, na_values=[""])
    keep = [pair in done for pair in zip(frame["model"], frame["item_id"], strict=True)]
    return frame[np.asarray(keep, dtype=bool)] if len(frame) else frame


# --------------------------------------------------------------------------------------------
# Exporting the stages' outputs
# --------------------------------------------------------------------------------------------


@dataclass
class _Model:
    """What the export keeps per model: its entry, the items to write and what was done."""

    spec: ModelSpec
    entry: dict[str, Any]
    todo: set[str]
    skipped: int
    attacked: int = 0
    from_cache: int = 0
    successes: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        judged = len(self.successes)
        return {"attacked": self.attacked, "from_cache": self.from_cache,
                "skipped": self.skipped, "successes": int(sum(self.successes)),
                "judged": judged,
                "success_rate": float(np.mean(self.successes)) if judged else math.nan}


@dataclass
class _Export:
    """Called as each stage of the run ends: an attack stage's PNGs, manifest entries and
    measures are written into ``--out`` at once (a killed run keeps every chunk finished)."""

    job: AttackJob
    out: Path
    manifest: dict[str, Any]
    rows: pd.DataFrame
    sections: dict[str, _Model]
    cache: Any
    stages: dict[str, int] = field(default_factory=lambda: {"computed": 0, "cached": 0})

    def __call__(self, stage: Any, status: Any) -> None:
        if stage.kind != "attack":
            return
        if not status.ok:
            raise DataError(f"the attack could not run: {status.reason}")
        model = self.sections[stage.labels["attack"]]
        self.stages["computed" if status.state == "done" else "cached"] += 1
        self._write(model, self.cache.path(stage), status.state == "done")

    def _write(self, model: _Model, directory: Path, computed: bool) -> None:
        from varsec.attacks.quantize import save_png
        from varsec.io import sha256_file
        from varsec.study.files import ADVERSARIAL, ITEM_MEASURES

        adversarial = np.load(directory / ADVERSARIAL)
        table = pd.read_parquet(directory / ITEM_MEASURES)
        table["item_id"] = table["item_id"].astype(str)
        positions = {item: k for k, item in enumerate(
            table.drop_duplicates("item")["item_id"])}
        written = [item for item in positions if item in model.todo]
        for item in written:
            relative = f"images/{model.spec.name}/{_safe_name(item)}.png"
            save_png(self.out / relative, adversarial[positions[item]])
            values = table[table["item_id"] == item].set_index("metric")["value"]
            record: dict[str, Any] = {"png": relative, "sha256": sha256_file(self.out / relative)}
            if "steps" in values:
                record["steps"] = int(values["steps"])
            if "success" in values:
                record["success"] = bool(values["success"])
                model.successes.append(float(values["success"]))
            model.entry["items"][item] = record
            model.todo.discard(item)
        if computed:
            model.attacked += len(written)
        else:
            model.from_cache += len(written)
        new = table[table["item_id"].isin(written)]
        self.rows = pd.concat([self.rows, self._tidy(new, model.spec.name)], ignore_index=True)
        self.save()

    def _tidy(self, table: pd.DataFrame, model: str) -> pd.DataFrame:
        job = self.job
        frame = table[["item_id", "metric", "value", "note"]].copy()
        frame.insert(0, "model", model)
        frame.insert(2, "attack", job.attack)
        frame.insert(3, "objective", job.objective or "none")
        frame.insert(4, "eps", job.eps if attack_method(job.attack).uses_eps else math.nan)
        return frame[RESULT_COLUMNS]

    def save(self) -> None:
        """Write ``measures.csv`` and ``manifest.json`` atomically."""
        from varsec.io import atomic_path, write_json_atomic

        with atomic_path(self.out / "measures.csv") as tmp:
            self.rows.to_csv(tmp, index=False)
        write_json_atomic(_manifest_path(self.out), self.manifest)


def _safe_name(item_id: str) -> str:
    """A file name for an item id (ids with other characters get a short hash suffix)."""
    from varsec.io import sha256_bytes

    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item_id)
    return keep if keep == item_id else f"{keep}-{sha256_bytes(item_id.encode())[:8]}"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_job(job: AttackJob) -> dict[str, Any]:
    """Run ``job`` through the study runner (module docstring); returns a short summary:
    totals, per model under ``models``, and the attack stages computed or found in the cache
    under ``stages``."""
    from varsec.study.cache import RunLock, StageCache
    from varsec.study.runner import run_study

    out = Path(job.out)
    checked = check_job(job)
    manifest = _start_manifest(checked, out)
    models: dict[str, _Model] = {}
    kept: set[tuple[str, str]] = set()
    for spec in checked.specs:
        entry = _model_entry(manifest, spec, out)
        done = _done_items(entry, out, spec.name) & set(checked.ids)
        kept |= {(spec.name, item) for item in done}
        models[spec.name] = _Model(spec, entry, set(checked.ids) - done, len(done))
    pending = {name: _pending(checked.ids, set(checked.ids) - m.todo, job.chunk)
               for name, m in models.items()}
    config, sections = attack_study(checked, pending) if any(pending.values()) else (None, {})
    with RunLock(out):
        export = _Export(job, out, manifest, _read_rows(out, kept),
                         {name: models[spec.name] for name, spec in sections.items()},
                         StageCache(out / STUDY_DIR))
        export.save()
        if config is not None:
            run_study(config, out / STUDY_DIR, kinds=("attack",), report=False, log=None,
                      on_stage=export)
    summary = {name: m.summary() for name, m in models.items()}
    judged = sum(m["judged"] for m in summary.values())
    rate = sum(m["successes"] for m in summary.values()) / judged if judged else math.nan
    totals = {key: sum(m[key] for m in summary.values())
              for key in ("attacked", "from_cache", "skipped")}
    return {**totals, "success_rate": rate, "out": str(out), "models": summary,
            "stages": export.stages, "study": str(out / STUDY_DIR)}


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
    chunk: int | None = typer.Option(None, help="Items per cached attack stage [256]."),
    seed: int | None = typer.Option(None, help="Seed of random starts and sampling [0]."),
    device: str | None = typer.Option(None, help="cpu or cuda [cpu]."),
    resume: bool = typer.Option(False, "--resume", help="Skip items already done in --out."),
) -> None:
    """Attack catalog items; write adversarial PNGs, manifest.json and measures.csv.

    The run is a one-attack study (OUT/study, its stage cache): one cached attack stage per
    --chunk items, so a killed run resumes with --resume where it stopped.

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
        "corner": corner, "caption": caption, "batch_size": batch_size, "chunk": chunk,
        "seed": seed, "device": device, "resume": resume or None,
    }
    job = AttackJob.build(config, overrides)
    _check_out(Path(job.out))
    summary = run_job(job)
    models = summary["models"]
    if len(models) > 1:
        for name, part in models.items():
            typer.echo(f"model {name}: {part['attacked']} attacked, {part['skipped']} already "
                       f"done{_cache_text(part['from_cache'])}"
                       f"{_rate_text(part['success_rate'])}.")
    typer.echo(f"wrote {summary['attacked'] + summary['from_cache']} adversarial images to "
               f"{summary['out']} ({summary['skipped']} already done"
               f"{_cache_text(summary['from_cache'])}"
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


def _cache_text(count: int) -> str:
    return f", {count} from the stage cache" if count else ""


def register(app: typer.Typer) -> None:
    """Add ``varsec attack`` to the root app."""
    app.command("attack")(attack)


__all__ = ["OBJECTIVES", "AttackJob", "ModelSpec", "attack", "attack_study", "check_job",
           "register", "run_job"]
