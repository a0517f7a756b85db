"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 real 28x28 Zalando product images in
10 categories, varsec's default catalog.

Files are looked for in this order: an explicit path, ``$VARSEC_DATA`` (the files themselves or a
``fashion-mnist`` folder in it), the Debian package's ``/usr/share/datasets/fashion-mnist``, the
user cache (``~/.cache/varsec/fashion-mnist``); else, only when the caller allows it, they are
downloaded from the official source. Each file's *decompressed* content is checked against a
known sha256, so a re-compressed copy (as Debian ships) verifies as well as the original.
"""

from __future__ import annotations

import gzip
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from varsec.data.catalog import ItemCatalog
from varsec.errors import ChecksumError, DataError
from varsec.io import atomic_path, not_a_file_message, sha256_bytes

CATEGORY_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# sha256 of the decompressed idx payloads.
FILES = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX_DTYPES = {0x08: np.uint8}


def cache_dir() -> Path:
    """The user cache folder for Fashion-MNIST (``$XDG_CACHE_HOME/varsec/fashion-mnist``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "varsec" / "fashion-mnist"


def candidate_dirs(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the four files, in order."""
    if path is not None:
        return [Path(path)]
    found: list[Path] = []
    env = os.environ.get("VARSEC_DATA")
    if env:
        found += [Path(env), Path(env) / "fashion-mnist"]
    return [*found, DEBIAN_DIR, cache_dir()]


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES)


def find_fashion_mnist(
    path: str | os.PathLike[str] | None = None, *, download: bool = False
) -> Path:
    """Return the folder holding the four Fashion-MNIST files, downloading only if allowed."""
    for directory in candidate_dirs(path):
        if _complete(directory):
            return directory
    if path is not None:
        missing = [n for n in FILES if not (Path(path) / n).is_file()]
        raise DataError(f"{path}: Fashion-MNIST file {missing[0]} is missing.")
    if download:
        return _download(cache_dir())
    raise DataError(
        "Fashion-MNIST was not found in $VARSEC_DATA, /usr/share/datasets/fashion-mnist or "
        f"{cache_dir()}; install it with `apt-get install dataset-fashion-mnist`, or run "
        "`varsec data fetch fashion-mnist --download`."
    )


def _download(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, digest in FILES.items():
        target = directory / name
        if target.is_file():
            continue
        with atomic_path(target) as tmp:
            try:
                urllib.request.urlretrieve(DOWNLOAD_URL + name, tmp)
            except OSError as exc:
                raise DataError(f"download of {DOWNLOAD_URL + name} failed ({exc}).") from exc
            _verified_payload(tmp, name, digest)
    return directory


def _verified_payload(path: Path, name: str, digest: str) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}).") from exc
    if sha256_bytes(payload) != digest:
        raise ChecksumError(
            f"{path}: sha256 of the content does not match the official {name} (corrupted file?)."
        )
    return payload


def parse_idx(payload: bytes, *, source: str = "idx data") -> np.ndarray:
    """Parse an IDX file (LeCun's format: magic, dims, big-endian sizes, unsigned bytes)."""
    if len(payload) < 4 or payload[0:2] != b"\x00\x00" or payload[2] not in _IDX_DTYPES:
        raise DataError(f"{source}: wrong magic number (not an unsigned-byte IDX file).")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header:
        raise DataError(f"{source}: truncated IDX header.")
    shape = struct.unpack(f">{ndim}I", payload[4:header])
    expected = header + int(np.prod(shape))
    if len(payload) != expected:
        raise DataError(
            f"{source}: truncated or oversized IDX data "
            f"({len(payload)} bytes, expected {expected})."
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_gz(path: str | os.PathLike[str], digest: str | None = None) -> np.ndarray:
    """Read one gzipped IDX file, checking its content's sha256 when ``digest`` is given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(not_a_file_message(path, "no such file"))
    if digest is not None:
        payload = _verified_payload(path, path.name, digest)
    else:
        try:
            with gzip.open(path, "rb") as handle:
                payload = handle.read()
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc}).") from exc
    return parse_idx(payload, source=str(path))


def load_fashion_mnist(
    path: str | os.PathLike[str] | None = None, *, download: bool = False, verify: bool = True
) -> ItemCatalog:
    """Load all 70,000 Fashion-MNIST images as one catalog (train first, then test).

    Item ids are ``train-00000`` ... ``test-09999``; ``extra`` keeps a ``source_split`` column
    (``train`` / ``test``) so the original split is never lost.
    """
    directory = find_fashion_mnist(path, download=download)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_name = f"{prefix}-images-idx3-ubyte.gz"
        labels_name = f"{prefix}-labels-idx1-ubyte.gz"
        images = read_idx_gz(directory / images_name, FILES[images_name] if verify else None)
        labels = read_idx_gz(directory / labels_name, FILES[labels_name] if verify else None)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {split} images and labels do not match in count.")
        parts[split] = (images, labels)
    images = np.concatenate([parts["train"][0], parts["test"][0]])[:, None, :, :]
    labels = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    ids = [f"train-{i:05d}" for i in range(len(parts["train"][0]))]
    ids += [f"test-{i:05d}" for i in range(len(parts["test"][0]))]
    splits = ["train"] * len(parts["train"][0]) + ["test"] * len(parts["test"][0])
    return ItemCatalog(
        item_ids=np.array(ids, dtype=object),
        images=np.ascontiguousarray(images),
        categories=labels,
        category_names=list(CATEGORY_NAMES),
        extra=pd.DataFrame({"source_split": splits}),
        name="fashion-mnist",
    )
