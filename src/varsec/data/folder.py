"""The folder format: a directory a user fills by hand (DESIGN.md section 3).

Layout::

    my-shop/
      items.csv          item_id, image[, category]   (image: a path relative to the folder)
      interactions.csv   user_id, item_id[, timestamp] (Unix seconds or ISO date; else file order)
      images/...         PNG, JPEG, GIF, BMP, TIFF, WebP, PPM or TGA files

All ids are read as strings (so ``007`` stays ``007``). Images are decoded with the guards of
:mod:`varsec.data.images`; mixed modes or sizes are converted to one and reported by a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.images import DEFAULT_MAX_PIXELS, load_image_stack
from varsec.data.timestamps import floor_timestamps
from varsec.errors import DataError
from varsec.io import describe_non_regular, not_a_file_message

ITEMS_FILE = "items.csv"
INTERACTIONS_FILE = "interactions.csv"


def read_csv_table(path: Path, required: tuple[str, ...], *, what: str) -> pd.DataFrame:
    """Read a CSV as strings, checking that it exists and has the ``required`` columns."""
    if not path.is_file():
        raise DataError(not_a_file_message(
            path, f"no such file (a folder dataset needs {what} with columns "
            f"{', '.join(required)})"))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty (expected a header row).") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc}).") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in required:
        if column not in frame.columns:
            raise DataError(
                f"{path}: missing required column {column!r} "
                f"(found: {', '.join(frame.columns) or 'none'})."
            )
        blank = frame[column].str.strip() == ""
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0]) + 2  # 1-based, after the header
            raise DataError(f"{path}: column {column!r} is empty on line {row}.")
        frame[column] = frame[column].str.strip()
    return frame


def _check_unique_items(items: pd.DataFrame, path: Path) -> None:
    counts = items["item_id"].value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        raise DataError(
            f"{path}: item_id must be unique, but {len(repeated)} repeat "
            f"(e.g. {repeated.index[0]!r} appears {int(repeated.iloc[0])} times)."
        )


def _categories(items: pd.DataFrame) -> tuple[np.ndarray | None, list[str] | None]:
    """Codes into the sorted unique category names; a blank category is -1 (unknown)."""
    if "category" not in items.columns:
        return None, None
    values = items["category"].str.strip().to_numpy(dtype=str)
    names = sorted(set(values.tolist()) - {""})
    codes = np.searchsorted(np.array(names, dtype=str), values) if names else np.zeros(len(values))
    codes = np.where(values == "", -1, codes).astype(np.int64)
    return codes, names


def _image_paths(items: pd.DataFrame, root: Path, items_path: Path,
                 allow_outside: bool) -> list[Path]:
    """The items' image paths, each a regular file inside ``root`` (after resolving symlinks
    and ``..``) unless ``allow_outside``; else a DataError naming the line, item and path."""
    inside = os.path.realpath(root)
    paths = []
    for line, (rel, item_id) in enumerate(zip(items["image"], items["item_id"], strict=True), 2):
        path = root / rel
        real = os.path.realpath(path)
        if not allow_outside and os.path.commonpath([inside, real]) != inside:
            raise DataError(
                f"{items_path}: image {rel!r} of item {item_id!r} (line {line}) resolves to "
                f"{real}, outside the dataset folder {inside} (pass allow_outside=True, CLI "
                "--allow-outside, to load images from elsewhere)."
            )
        if not path.is_file():
            problem = describe_non_regular(path) or "does not exist"
            raise DataError(
                f"{items_path}: image {str(path)!r} of item {item_id!r} (line {line}) {problem}."
            )
        paths.append(path)
    return paths


def parse_timestamps(values: pd.Series, path: Path) -> np.ndarray:
    """Unix-second timestamps from numbers or ISO dates (mixed is fine); else a DataError.

    Numbers are floored to whole seconds; one past the int64 range (``1e23``, ``inf``) is an
    error naming its line rather than a silent wrap to a negative time.
    """
    values = values.str.strip().reset_index(drop=True)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return floor_timestamps(numbers.to_numpy(dtype=np.float64), path)
    dates = pd.to_datetime(values.where(numbers.isna()), utc=True, format="ISO8601",
                           errors="coerce")
    bad = (numbers.isna() & dates.isna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column 'timestamp' must hold integers or ISO dates, found "
            f"{values.iloc[row]!r} on line {row + 2}."
        )
    seconds = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    floored = floor_timestamps(numbers.fillna(0).to_numpy(dtype=np.float64), path)
    return np.where(numbers.notna().to_numpy(), floored,
                    seconds.fillna(0).to_numpy(dtype=np.int64)).astype(np.int64)


def load_folder(
    path: str | os.PathLike[str],
    *,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: str = "bicubic",
    allow_outside: bool = False,
) -> Dataset:
    """Load a folder dataset (items.csv, interactions.csv, image files) as a Dataset.

    ``mode`` ('L' or 'RGB') defaults to 'L' when every image is grayscale-like, else 'RGB';
    ``size`` (H, W) defaults to the most common image size. Converted images are counted in a
    :class:`~varsec.errors.VarsecWarning`. Without a timestamp column the file order is the
    time. The dataset has no split and no cold items. Every image must lie inside the folder
    (absolute paths, ``..`` and symlinks are resolved first) unless ``allow_outside`` is True.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected a folder with {ITEMS_FILE}).")
    items_path = root / ITEMS_FILE
    inter_path = root / INTERACTIONS_FILE
    items = read_csv_table(items_path, ("item_id", "image"), what=ITEMS_FILE)
    if len(items) == 0:
        raise DataError(f"{items_path}: the items table is empty.")
    _check_unique_items(items, items_path)
    interactions = read_csv_table(inter_path, ("user_id", "item_id"), what=INTERACTIONS_FILE)
    if len(interactions) == 0:
        raise DataError(f"{inter_path}: the interactions table is empty.")
    paths = _image_paths(items, root, items_path, allow_outside)
    images = load_image_stack(paths, [str(p) for p in paths], origin=str(root), mode=mode,
                              size=size, max_pixels=max_pixels, resample=resample)
    codes, names = _categories(items)
    catalog = ItemCatalog(item_ids=items["item_id"].to_numpy(), images=images,
                          categories=codes, category_names=names, name=root.name)
    stamps = (parse_timestamps(interactions["timestamp"], inter_path)
              if "timestamp" in interactions.columns else None)
    log = Interactions.from_ids(interactions["user_id"].to_numpy(),
                                interactions["item_id"].to_numpy(), catalog, stamps,
                                source=str(inter_path))
    return Dataset(catalog=catalog, interactions=log,
                   meta={"source": "folder", "path": str(root)})
