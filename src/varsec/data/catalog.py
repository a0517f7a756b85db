"""Item catalogs, interaction logs and datasets, each saved to and loaded from a directory.

On disk every object is a directory holding ``.npy`` arrays (never pickled), ``.parquet`` tables
and a ``manifest.json`` that records the sha256 of every file, so later stages can cache on the
content and a corrupted file is detected when it is loaded (DESIGN.md section 3).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.errors import ChecksumError, DataError
from varsec.io import atomic_dir, sha256_array, sha256_bytes, sha256_file

FORMAT_VERSION = 1
# Image arrays above this size are memory-mapped on load instead of read into memory.
MMAP_THRESHOLD_BYTES = 256 * 1024 * 1024


def _as_str_ids(ids: Any, what: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise DataError(f"{what} must be a one-dimensional sequence, got shape {array.shape}.")
    return array.astype(str).astype(object)


def _check_unique(ids: np.ndarray, what: str) -> None:
    values, counts = np.unique(ids.astype(str), return_counts=True)
    duplicates = values[counts > 1]
    if len(duplicates):
        shown = ", ".join(repr(v) for v in duplicates[:5])
        raise DataError(f"{what} must be unique, but {len(duplicates)} repeat (e.g. {shown}).")


@dataclass
class ItemCatalog:
    """The items of a marketplace: ids, uint8 images (N x C x H x W) and/or features, categories.

    A catalog holds pixels (``images``), precomputed features (``features``, a features-only
    catalog such as the VBPR release) or both. ``categories`` are integer codes into
    ``category_names`` (-1 for unknown); ``extra`` holds any further per-item columns
    (e.g. Fashion-MNIST's ``source_split``).
    """

    item_ids: np.ndarray
    images: np.ndarray | None = None
    features: np.ndarray | None = None
    categories: np.ndarray | None = None
    category_names: list[str] | None = None
    extra: pd.DataFrame | None = None
    name: str = "catalog"

    def __post_init__(self) -> None:
        self.item_ids = _as_str_ids(self.item_ids, "item ids")
        _check_unique(self.item_ids, "item ids")
        n = len(self.item_ids)
        if self.images is None and self.features is None:
            raise DataError(f"catalog {self.name!r} has neither images nor features.")
        if self.images is not None:
            self._check_images(n)
        if self.features is not None:
            self._check_features(n)
        if self.categories is not None:
            self._check_categories(n)
        if self.extra is not None:
            if len(self.extra) != n:
                raise DataError(f"extra item columns have {len(self.extra)} rows, expected {n}.")
            self.extra = self.extra.reset_index(drop=True)

    def _check_images(self, n: int) -> None:
        images = self.images
        assert images is not None
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                f"catalog images must be uint8 N x C x H x W, got {images.dtype} "
                f"with shape {images.shape}."
            )
        if images.shape[0] != n or images.shape[1] not in (1, 3):
            raise DataError(
                f"catalog images have shape {images.shape}; "
                f"expected {n} items with 1 or 3 channels."
            )

    def _check_features(self, n: int) -> None:
        features = np.asarray(self.features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != n:
            raise DataError(f"catalog features have shape {features.shape}, expected ({n}, D).")
        if not np.isfinite(features).all():
            bad = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
            raise DataError(
                f"catalog features hold NaN or inf (first at item {self.item_ids[bad]!r})."
            )
        self.features = features

    def _check_categories(self, n: int) -> None:
        categories = np.asarray(self.categories, dtype=np.int64)
        if categories.shape != (n,):
            raise DataError(f"categories have shape {categories.shape}, expected ({n},).")
        n_names = len(self.category_names or [])
        if n_names and (categories.max(initial=-1) >= n_names or categories.min(initial=0) < -1):
            raise DataError(f"category codes must lie in [-1, {n_names - 1}].")
        self.categories = categories

    # -- properties -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def has_pixels(self) -> bool:
        """True when the catalog holds images (pixel attacks need them)."""
        return self.images is not None

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the images, or None for a features-only catalog."""
        return None if self.images is None else tuple(self.images.shape[1:])  # type: ignore[return-value]

    def index_of(self, item_ids: Any) -> np.ndarray:
        """Map item ids to row indices; unknown ids raise a DataError naming the first one."""
        lookup = pd.Index(self.item_ids)
        wanted = _as_str_ids(np.atleast_1d(item_ids), "item ids")
        positions = lookup.get_indexer(wanted)
        if (positions < 0).any():
            missing = wanted[positions < 0]
            raise DataError(
                f"{len(missing)} item id(s) are not in catalog {self.name!r} "
                f"(e.g. {missing[0]!r})."
            )
        return positions.astype(np.int64)

    def subset(self, indices: np.ndarray) -> ItemCatalog:
        """A new catalog with the rows at ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        return ItemCatalog(
            item_ids=self.item_ids[indices],
            images=None if self.images is None else np.asarray(self.images[indices]),
            features=None if self.features is None else self.features[indices],
            categories=None if self.categories is None else self.categories[indices],
            category_names=self.category_names,
            extra=None if self.extra is None else self.extra.iloc[indices],
            name=self.name,
        )

    def category_table(self) -> pd.DataFrame:
        """Item counts per category (name, code, count), in code order."""
        if self.categories is None:
            return pd.DataFrame({"category": [], "code": [], "items": []})
        codes, counts = np.unique(self.categories, return_counts=True)
        names = [self.category_name(int(c)) for c in codes]
        return pd.DataFrame({"category": names, "code": codes, "items": counts})

    def category_name(self, code: int) -> str:
        """The name of a category code ("unknown" for -1, the code itself when unnamed)."""
        if code < 0:
            return "unknown"
        if self.category_names and code < len(self.category_names):
            return self.category_names[code]
        return str(code)

    def category_code(self, name_or_code: str | int) -> int:
        """Resolve a category given by name (case-insensitive) or code."""
        names = self.category_names or []
        if isinstance(name_or_code, int | np.integer):
            code = int(name_or_code)
            if self.categories is not None and code in set(self.categories.tolist()):
                return code
        else:
            lowered = [n.lower() for n in names]
            if str(name_or_code).lower() in lowered:
                return lowered.index(str(name_or_code).lower())
        raise DataError(
            f"category {name_or_code!r} is not in catalog {self.name!r} "
            f"(known: {', '.join(names) or 'none'})."
        )

    # -- persistence ------------------------------------------------------------------------
    def items_frame(self) -> pd.DataFrame:
        """The per-item table written to ``items.parquet``."""
        frame = pd.DataFrame({"item_id": self.item_ids.astype(str)})
        if self.categories is not None:
            frame["category"] = self.categories
        if self.extra is not None:
            for column in self.extra.columns:
                frame[column] = self.extra[column].to_numpy()
        return frame

    def content_hash(self) -> str:
        """A sha256 over ids, pixels, features and categories: the cache key of this catalog."""
        parts = [
            sha256_bytes("\n".join(self.item_ids.astype(str)).encode()),
            "-" if self.images is None else sha256_array(np.asarray(self.images)),
            "-" if self.features is None else sha256_array(self.features),
            "-" if self.categories is None else sha256_array(self.categories),
            json.dumps(self.category_names),
        ]
        return sha256_bytes("|".join(parts).encode())

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the catalog to ``directory`` atomically and return the path.

        An existing saved catalog there is replaced; any other non-empty directory is a
        ConfigError unless ``overwrite`` (see :func:`varsec.io.check_output_dir`).
        """
        directory = Path(directory)
        with atomic_dir(directory, kind="catalog", overwrite=overwrite) as tmp:
            _write_catalog_files(self, tmp)
            _write_manifest(tmp, kind="catalog", info=self._manifest_info())
        return directory

    def _manifest_info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": len(self),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "feature_dim": None if self.features is None else int(self.features.shape[1]),
            "category_names": self.category_names,
            "content_hash": self.content_hash(),
        }

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> ItemCatalog:
        """Read a catalog written by :meth:`save`; ``verify`` checks every file's sha256."""
        directory = Path(directory)
        manifest = _read_manifest(directory, expected_kind=("catalog", "dataset"), verify=verify)
        return _read_catalog_files(directory, manifest)


def _write_catalog_files(catalog: ItemCatalog, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_parquet(catalog.items_frame(), directory / "items.parquet")
    if catalog.images is not None:
        _write_npy(directory / "images.npy", np.asarray(catalog.images))
    if catalog.features is not None:
        _write_npy(directory / "features.npy", catalog.features)


def _read_catalog_files(directory: Path, manifest: dict[str, Any]) -> ItemCatalog:
    info = manifest["catalog"] if "catalog" in manifest else manifest["info"]
    frame = pd.read_parquet(directory / "items.parquet")
    images = None
    if (directory / "images.npy").exists():
        large = (directory / "images.npy").stat().st_size > MMAP_THRESHOLD_BYTES
        images = np.load(directory / "images.npy", mmap_mode="r" if large else None)
    features = None
    if (directory / "features.npy").exists():
        features = np.load(directory / "features.npy")
    extra_columns = [c for c in frame.columns if c not in ("item_id", "category")]
    return ItemCatalog(
        item_ids=frame["item_id"].to_numpy(),
        images=images,
        features=features,
        categories=frame["category"].to_numpy() if "category" in frame else None,
        category_names=info.get("category_names"),
        extra=frame[extra_columns].copy() if extra_columns else None,
        name=info.get("name", "catalog"),
    )


@dataclass
class Interactions:
    """An interaction log: parallel arrays of user index, item index and integer timestamp.

    ``user_ids`` maps user indices to the original ids; item indices point into a catalog.
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        self.user_ids = _as_str_ids(self.user_ids, "user ids")
        n = len(self.user)
        if len(self.item) != n or len(self.timestamp) != n:
            raise DataError("user, item and timestamp arrays must have the same length.")
        if n == 0:
            raise DataError("the interactions table is empty.")
        if self.user.min() < 0 or self.user.max() >= len(self.user_ids):
            raise DataError(f"user indices must lie in [0, {len(self.user_ids) - 1}].")
        if self.item.min() < 0:
            raise DataError("item indices must be non-negative.")

    @classmethod
    def from_ids(
        cls,
        user_ids: Any,
        item_ids: Any,
        catalog: ItemCatalog,
        timestamps: Any | None = None,
        *,
        source: str = "interactions",
    ) -> Interactions:
        """Build from raw id columns, checking that every item exists in ``catalog``."""
        users = _as_str_ids(user_ids, f"{source}: user ids")
        items = _as_str_ids(item_ids, f"{source}: item ids")
        if len(users) == 0:
            raise DataError(f"{source}: the interactions table is empty.")
        positions = pd.Index(catalog.item_ids).get_indexer(items)
        if (positions < 0).any():
            unknown = pd.unique(items[positions < 0])
            raise DataError(
                f"{source}: {len(unknown)} item id(s) are not in the catalog "
                f"(e.g. {unknown[0]!r})."
            )
        codes, uniques = pd.factorize(pd.Series(users), sort=True)
        if timestamps is None:
            stamps = np.arange(len(users), dtype=np.int64)
        else:
            stamps = np.asarray(timestamps, dtype=np.int64)
        return cls(user=codes, item=positions, timestamp=stamps, user_ids=uniques.to_numpy())

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def frame(self) -> pd.DataFrame:
        """The log as a DataFrame with columns user, item, timestamp."""
        return pd.DataFrame({"user": self.user, "item": self.item, "timestamp": self.timestamp})

    def select(self, mask: np.ndarray) -> Interactions:
        """The interactions where ``mask`` is true, keeping the user index space."""
        return Interactions(self.user[mask], self.item[mask], self.timestamp[mask], self.user_ids)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the log to ``directory`` atomically (parquet + manifest) and return the path.

        Replaces only a saved interaction log unless ``overwrite`` (as :meth:`ItemCatalog.save`).
        """
        directory = Path(directory)
        with atomic_dir(directory, kind="interactions", overwrite=overwrite) as tmp:
            _write_interaction_files(self, tmp)
            _write_manifest(tmp, kind="interactions",
                            info={"users": self.n_users, "interactions": len(self)})
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Interactions:
        """Read a log written by :meth:`save` (or the interactions of a saved dataset)."""
        directory = Path(directory)
        _read_manifest(directory, expected_kind=("interactions", "dataset"), verify=verify)
        return _read_interaction_files(directory)[0]


SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


@dataclass
class Dataset:
    """Catalog + interactions + split + cold items (+ the simulator's oracle, when simulated).

    ``split`` gives each interaction a code from :data:`SPLIT_CODES`. ``cold_items`` are catalog
    indices that never occur in any interaction. ``oracle`` (users x cold items, float32) holds the
    simulator's true preference of each user for each cold item. ``meta`` records provenance,
    e.g. ``{"simulated": true, "profile": "default", "seed": 0}``.
    """

    catalog: ItemCatalog
    interactions: Interactions
    split: np.ndarray | None = None
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    oracle: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cold_items = np.asarray(self.cold_items, dtype=np.int64)
        if self.interactions.item.max() >= len(self.catalog):
            raise DataError("interactions name item indices beyond the catalog.")
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=np.int8)
            if self.split.shape != (len(self.interactions),):
                raise DataError("split must hold one code per interaction.")
        if len(self.cold_items) and np.isin(self.interactions.item, self.cold_items).any():
            raise DataError("cold items must not appear in any interaction.")
        if self.oracle is not None:
            self.oracle = np.asarray(self.oracle, dtype=np.float32)
            expected = (self.interactions.n_users, len(self.cold_items))
            if self.oracle.shape != expected:
                raise DataError(f"oracle has shape {self.oracle.shape}, expected {expected}.")

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def part(self, name: str) -> Interactions:
        """The interactions of one split part: ``train``, ``validation`` or ``test``."""
        if self.split is None:
            raise DataError("this dataset has no split; run a splitter first.")
        if name not in SPLIT_CODES:
            raise DataError(f"unknown split part {name!r} (expected train, validation or test).")
        return self.interactions.select(self.split == SPLIT_CODES[name])

    def warm_items(self) -> np.ndarray:
        """Catalog indices that are not cold."""
        return np.setdiff1d(np.arange(len(self.catalog)), self.cold_items)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the dataset to ``directory`` atomically and return the path.

        Replaces only a saved dataset unless ``overwrite`` (as :meth:`ItemCatalog.save`).
        """
        directory = Path(directory)
        with atomic_dir(directory, kind="dataset", overwrite=overwrite) as tmp:
            _write_catalog_files(self.catalog, tmp)
            _write_interaction_files(self.interactions, tmp, split=self.split)
            _write_npy(tmp / "cold_items.npy", self.cold_items)
            if self.oracle is not None:
                _write_npy(tmp / "oracle.npy", self.oracle)
            info = {
                "catalog": self.catalog._manifest_info(),
                "users": self.n_users,
                "interactions": len(self.interactions),
                "cold_items": len(self.cold_items),
                "has_split": self.split is not None,
                "meta": self.meta,
            }
            _write_manifest(tmp, kind="dataset", info=info)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Dataset:
        """Read a dataset written by :meth:`save`; ``verify`` checks every file's sha256."""
        directory = Path(directory)
        manifest = _read_manifest(directory, expected_kind=("dataset",), verify=verify)
        info = manifest["info"]
        catalog = _read_catalog_files(directory, {"catalog": info["catalog"]})
        interactions, split = _read_interaction_files(directory)
        oracle_path = directory / "oracle.npy"
        return cls(
            catalog=catalog,
            interactions=interactions,
            split=split,
            cold_items=np.load(directory / "cold_items.npy"),
            oracle=np.load(oracle_path) if oracle_path.exists() else None,
            meta=info.get("meta", {}),
        )

    def content_hash(self) -> str:
        """The cache key of this dataset: catalog hash plus interactions, split and cold items."""
        parts = [
            self.catalog.content_hash(),
            sha256_array(self.interactions.user),
            sha256_array(self.interactions.item),
            sha256_array(self.interactions.timestamp),
            "-" if self.split is None else sha256_array(self.split),
            sha256_array(self.cold_items),
        ]
        return sha256_bytes("|".join(parts).encode())


def _write_interaction_files(
    log: Interactions, directory: Path, split: np.ndarray | None = None
) -> None:
    frame = log.frame()
    if split is not None:
        frame["split"] = split
    _write_parquet(frame, directory / "interactions.parquet")
    _write_parquet(pd.DataFrame({"user_id": log.user_ids.astype(str)}), directory / "users.parquet")


def _read_interaction_files(directory: Path) -> tuple[Interactions, np.ndarray | None]:
    frame = pd.read_parquet(directory / "interactions.parquet")
    users = pd.read_parquet(directory / "users.parquet")["user_id"].to_numpy()
    log = Interactions(
        frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy(), users
    )
    return log, (frame["split"].to_numpy() if "split" in frame else None)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with _naming(path), open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with _naming(path):
        frame.to_parquet(path, index=False, compression="zstd")


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Record ``path`` on an OSError that does not say which file failed (numpy's and
    pyarrow's writes), so the error of a full disk names it."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _write_manifest(directory: Path, *, kind: str, info: dict[str, Any]) -> None:
    files = {
        p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.name != "manifest.json"
    }
    manifest = {"format": "varsec", "version": FORMAT_VERSION, "kind": kind, "files": files,
                "info": info}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _read_manifest(directory: Path, *, expected_kind: tuple[str, ...], verify: bool) -> dict:
    path = directory / "manifest.json"
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory.")
    if not path.is_file():
        raise DataError(f"{directory}: not a varsec {expected_kind[0]} (no manifest.json).")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}).") from exc
    if manifest.get("format") != "varsec" or manifest.get("kind") not in expected_kind:
        raise DataError(
            f"{path}: expected a varsec {' or '.join(expected_kind)} manifest, "
            f"found kind {manifest.get('kind')!r}."
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise DataError(f"{path}: expected a 'files' table of sha256 digests.")
    _check_listing(directory, path, files, manifest["kind"])
    for name, digest in files.items():
        file = directory / name
        if not file.is_file():
            raise DataError(f"{file}: listed in the manifest but missing.")
        if verify and sha256_file(file) != digest:
            raise ChecksumError(f"{file}: sha256 does not match the manifest (file corrupted?).")
    return manifest


# The files each kind of saved directory always has (images.npy, features.npy and oracle.npy
# are optional: a features-only catalog has no images, a dataset no oracle unless simulated).
_REQUIRED = {
    "catalog": ("items.parquet",),
    "interactions": ("interactions.parquet", "users.parquet"),
    "dataset": ("items.parquet", "interactions.parquet", "users.parquet", "cold_items.npy"),
}


def _check_listing(directory: Path, path: Path, files: dict[str, Any], kind: str) -> None:
    """Every regular file of ``directory`` but manifest.json must be listed (an unlisted file
    could not be verified), and the files ``kind`` always has must be among them."""
    for entry in sorted(directory.iterdir()):
        if entry.name != "manifest.json" and entry.is_file() and entry.name not in files:
            raise ChecksumError(f"{entry}: not listed in {path}, so its sha256 cannot be "
                                "checked (remove the file, or save the data again).")
    for name in _REQUIRED.get(kind, ()):
        if name not in files:
            raise ChecksumError(f"{path}: has no entry for {name}, which every saved {kind} "
                                "has (save the data again).")
