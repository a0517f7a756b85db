"""Open any data source by name or path: the one entry point the CLI and the study runner use."""

from __future__ import annotations

from pathlib import Path

from varsec.data.catalog import Dataset, ItemCatalog
from varsec.errors import DataError
from varsec.io import describe_non_regular

NAMED_SOURCES = ("fashion-mnist",)


def open_source(
    source: str | Path,
    *,
    trust_pickle: bool = False,
    reviews: str | Path | None = None,
    features: str | Path | None = None,
    download: bool = False,
    allow_outside: bool = False,
) -> ItemCatalog | Dataset:
    """Open a named catalog (``fashion-mnist``) or a path in any supported format.

    Paths: a saved varsec catalog/dataset directory, a folder-format directory (items.csv),
    a VBPR ``.b`` features file (with ``reviews`` for interactions), a Tradesy JSON(.gz) file
    (with ``features``), or a DVBPR ``.npy`` (only with ``trust_pickle``). A folder-format
    dataset's images must lie inside its folder unless ``allow_outside``.
    """
    if str(source) == "fashion-mnist":
        from varsec.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(download=download)
    path = Path(source)
    if not path.exists():
        problem = describe_non_regular(path)  # a broken symlink
        raise DataError(
            f"{source} {problem}." if problem else
            f"{source}: no such file or directory (named sources: {', '.join(NAMED_SOURCES)})."
        )
    from varsec.data.formats import detect_format

    return _open_by_format(detect_format(path), path, trust_pickle, reviews, features,
                           allow_outside)


def _open_by_format(
    kind: str, path: Path, trust_pickle: bool, reviews: str | Path | None,
    features: str | Path | None, allow_outside: bool = False,
) -> ItemCatalog | Dataset:
    if kind == "varsec":
        import json

        manifest_kind = json.loads((path / "manifest.json").read_text()).get("kind")
        return Dataset.load(path) if manifest_kind == "dataset" else ItemCatalog.load(path)
    if kind == "folder":
        from varsec.data.folder import load_folder

        return load_folder(path, allow_outside=allow_outside)
    if kind == "vbpr":
        return _open_vbpr(path, reviews)
    if kind == "tradesy":
        if features is None:
            raise DataError(f"{path}: a Tradesy file needs its image features file (--features).")
        from varsec.data.tradesy import load_tradesy

        return load_tradesy(path, features)
    if kind == "dvbpr":
        from varsec.data.dvbpr import load_dvbpr

        return load_dvbpr(path, trust_pickle=trust_pickle)
    raise DataError(f"{path}: unsupported format {kind!r}.")


def _open_vbpr(path: Path, reviews: str | Path | None) -> ItemCatalog | Dataset:
    from varsec.data.vbpr import load_vbpr, read_vbpr_features

    if reviews is not None:
        return load_vbpr(path, reviews)
    ids, matrix = read_vbpr_features(path)
    return ItemCatalog(item_ids=ids, features=matrix, name=path.stem)
