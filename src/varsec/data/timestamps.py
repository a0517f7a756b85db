"""Range checks for interaction timestamps read from user files.

Timestamps are stored as int64 Unix seconds. A value outside that range (``1e23``, infinity)
would wrap to ``INT64_MIN`` in a numpy cast and silently reorder a user's history, so every
loader checks its values here and raises one :class:`~varsec.errors.DataError` that names the
file, the row and the value. Negative values (before 1970) are odd but valid and are kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varsec.errors import DataError

# Floats at or beyond 2**63 do not fit; the largest float below it is 2**63 - 1024.
_LIMIT = 2.0**63
_EXPECTED = "expected a finite number of Unix seconds within the int64 range"


def _fits(value: float) -> bool:
    return math.isfinite(value) and -_LIMIT <= math.floor(value) < _LIMIT


def timestamp_value(value: Any, where: str) -> int:
    """One timestamp (an int, or a float taken to its floor) as an int; else a DataError.

    ``where`` names the file, record and field, e.g. ``"reviews.json line 3 'unixReviewTime'"``.
    """
    if isinstance(value, bool):
        raise DataError(f"{where} must be an integer timestamp, got {value!r}.")
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise DataError(f"{where} is {value}: {_EXPECTED}.")
        return value
    number = float(value)  # callers catch TypeError / ValueError for their own message
    if not _fits(number):
        raise DataError(f"{where} is {value!r}: {_EXPECTED}.")
    return math.floor(number)


def floor_timestamps(numbers: np.ndarray, path: Any, column: str = "timestamp",
                     first_line: int = 2) -> np.ndarray:
    """Floor float timestamps to int64, refusing NaN, infinity and values past int64.

    Row ``i`` is reported as line ``first_line + i`` of ``path`` (2: right after a CSV header).
    """
    numbers = np.asarray(numbers, dtype=np.float64)
    floored = np.floor(numbers)
    bad = ~(np.isfinite(floored) & (floored >= -_LIMIT) & (floored < _LIMIT))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {column!r} on line {row + first_line} holds {numbers[row]:g}: "
            f"{_EXPECTED}."
        )
    return floored.astype(np.int64)
