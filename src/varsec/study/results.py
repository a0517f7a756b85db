"""The tidy results table: one row per (study, dataset, extractor, recommender, attack,
crafted_on, eps, defense, protocol, metric, k, seed), with value, confidence interval and n
(DESIGN.md section 9).

``attack`` / ``defense`` are ``none`` for clean runs; ``crafted_on`` is the model the attack was
crafted on (its target: a recommender or an extractor; empty for clean rows): a row whose
``recommender`` (an attack through a recommender) or ``extractor`` (an attack on an extractor)
is another model measures a transfer attack (:func:`varsec.study.plan.transferred`); ``eps``
is in 8-bit levels (empty when the row has no attack budget); ``k`` is the cut-off (HR@k,
CHR@k, rank_min) or empty; ``n`` is how many units (users, items, pairs) the value averages.
The table is written as ``results.csv`` and ``results.parquet``, both atomically and with the
same rows in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.errors import ConfigError
from varsec.io import atomic_path

COLUMNS = ("study", "dataset", "extractor", "recommender", "attack", "crafted_on", "eps",
           "defense", "protocol", "metric", "k", "value", "ci_low", "ci_high", "n", "seed")
LABELS = ("dataset", "extractor", "recommender", "attack", "crafted_on", "eps", "defense",
          "seed")
ROW_FIELDS = ("protocol", "metric", "k", "value", "ci_low", "ci_high", "n", *LABELS)
CLEAN = "none"  # the attack / defense label of clean rows
_STRINGS = ("study", "dataset", "extractor", "recommender", "attack", "crafted_on", "defense",
            "protocol", "metric")
_FLOATS = ("eps", "value", "ci_low", "ci_high")
_INTS = ("k", "n", "seed")


def row(metric: str, value: float, *, k: int | None = None, protocol: str | None = None,
        ci: tuple[float, float] | None = None, n: int | None = None,
        **labels: Any) -> dict[str, Any]:
    """One results row (labels such as ``attack=`` override the stage's own)."""
    record: dict[str, Any] = {"metric": metric, "value": _float(value), "k": k,
                              "protocol": protocol, "n": n}
    record["ci_low"], record["ci_high"] = ci if ci is not None else (None, None)
    unknown = set(labels) - set(LABELS)
    if unknown:
        raise ConfigError(f"unknown results label(s): {', '.join(sorted(unknown))}.")
    record.update(labels)
    return record


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def rows_frame(rows: Any, labels: Mapping[str, Any], study: str) -> pd.DataFrame:
    """Normalise what a stage returned (None, list of dicts or DataFrame) into table rows.

    The stage's ``labels`` fill every label a row does not set itself.
    """
    if rows is None:
        records: list[dict[str, Any]] = []
    elif isinstance(rows, pd.DataFrame):
        records = rows.to_dict("records")
    elif isinstance(rows, Iterable):
        records = [dict(r) for r in rows]
    else:
        raise ConfigError(f"a stage must return rows (a list of dicts or a DataFrame), got "
                          f"{type(rows).__name__}.")
    out = []
    for record in records:
        unknown = set(record) - set(ROW_FIELDS)
        if unknown:
            raise ConfigError(f"results rows have no column(s) {', '.join(sorted(unknown))}.")
        full = {column: None for column in COLUMNS}
        full["study"] = study
        for label in LABELS:
            full[label] = labels.get(label)
        full.update({k: v for k, v in record.items() if k in ROW_FIELDS})
        for label in LABELS:
            if label in record:
                full[label] = record[label]
        for label in ("attack", "defense"):
            if full[label] is None:
                full[label] = CLEAN
        out.append(full)
    return normalise(pd.DataFrame.from_records(out, columns=list(COLUMNS)))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Fix the column order and dtypes (strings, float64, nullable Int64)."""
    frame = frame.reindex(columns=list(COLUMNS))
    for column in _STRINGS:
        frame[column] = frame[column].astype("string")
    for column in _FLOATS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in _INTS:
        values = pd.to_numeric(frame[column], errors="coerce")
        frame[column] = values.round().astype("Int64")
    return frame.reset_index(drop=True)


def empty_table() -> pd.DataFrame:
    """A results table without rows."""
    return normalise(pd.DataFrame(columns=list(COLUMNS)))


def write_results(out: str | Path, table: pd.DataFrame) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.parquet`` atomically; returns their paths."""
    out = Path(out)
    table = normalise(table)
    csv_path, parquet_path = out / "results.csv", out / "results.parquet"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    with atomic_path(parquet_path) as tmp:
        table.to_parquet(tmp, index=False)
    return csv_path, parquet_path


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results table written by :func:`write_results` (csv or parquet)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.parquet"
    if not path.is_file():
        raise ConfigError(f"{path}: no results table here (run the study first).")
    if path.suffix == ".csv":
        return normalise(pd.read_csv(path, keep_default_na=True))
    return normalise(pd.read_parquet(path))


def summary_ci(values: np.ndarray, *, bootstrap: int, confidence: float,
               seed: int) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean of finite ``values`` (None when not computable)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if bootstrap <= 0 or finite.size < 2:
        return None, None
    if np.all(finite == finite[0]):
        return float(finite[0]), float(finite[0])
    from varsec.metrics.stats import bootstrap_ci

    low, high = bootstrap_ci(finite, n_resamples=bootstrap, confidence=confidence, seed=seed)
    return low, high


__all__ = [
    "CLEAN",
    "COLUMNS",
    "LABELS",
    "empty_table",
    "normalise",
    "read_results",
    "row",
    "rows_frame",
    "summary_ci",
    "write_results",
]
