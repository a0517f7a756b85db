"""Compare two study runs' results.csv value by value (a refactor must not change a number).

    python benchmarks/compare_results.py RUN_A/results.csv RUN_B/results.csv

Rows are matched on every column both tables have but the numbers (value, ci_low, ci_high, n); a
label column only one side has (a new column of the results table) is named and left out of the
match. The script prints how many rows each side has, the rows only one side has, and every number
that differs (exact comparison: NaN equals NaN). Exit status 0 when the two tables hold the same
numbers, 1 when not.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

NUMBERS = ["value", "ci_low", "ci_high", "n"]


def _read(path: str) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _keyed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame[keys + NUMBERS].copy()
    frame[keys] = frame[keys].astype(str)
    return frame.set_index(keys).sort_index()


def compare(a: str, b: str) -> int:
    frames = _read(a), _read(b)
    labels = [[c for c in f.columns if c not in NUMBERS] for f in frames]
    keys = [c for c in labels[0] if c in labels[1]]
    for name, own in zip((a, b), labels, strict=True):
        extra = [c for c in own if c not in keys]
        if extra:
            print(f"label columns only in {name} (not matched on): {', '.join(extra)}")
    left, right = (_keyed(f, keys) for f in frames)
    print(f"{a}: {len(left)} rows; {b}: {len(right)} rows")
    only_left = left.index.difference(right.index)
    only_right = right.index.difference(left.index)
    for name, rows in ((a, only_left), (b, only_right)):
        for row in rows[:20]:
            print(f"only in {name}: {row}")
    common = left.index.intersection(right.index)
    differ = 0
    for column in NUMBERS:
        x = left.loc[common, column].to_numpy(dtype=float)
        y = right.loc[common, column].to_numpy(dtype=float)
        bad = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        differ += int(bad.sum())
        for index in np.flatnonzero(bad)[:20]:
            print(f"{column} differs at {common[index]}: {x[index]!r} vs {y[index]!r}")
    same = differ == 0 and not len(only_left) and not len(only_right)
    print("identical numbers" if same else f"{differ} numbers differ")
    return 0 if same else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    sys.exit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
