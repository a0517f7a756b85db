"""Fashion-MNIST loader: real files, counts, label histogram, search order, bad files."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest

from varsec.data import fashion_mnist as fm
from varsec.errors import ChecksumError, DataError


def test_counts_and_label_histogram_are_the_official_ones(fmnist):
    assert len(fmnist) == 70_000
    assert fmnist.images.shape == (70_000, 1, 28, 28)
    assert fmnist.images.dtype == np.uint8
    # Fashion-MNIST is balanced: 6,000 train + 1,000 test images per category.
    assert np.bincount(fmnist.categories).tolist() == [7_000] * 10
    split = fmnist.extra["source_split"].to_numpy()
    assert (split == "train").sum() == 60_000 and (split == "test").sum() == 10_000
    train_labels = fmnist.categories[split == "train"]
    assert np.bincount(train_labels).tolist() == [6_000] * 10
    assert fmnist.category_names[5] == "Sandal" and fmnist.category_names[7] == "Sneaker"


def test_first_items_match_the_known_images(fmnist):
    # The first training image is an ankle boot, the first test image too (label 9).
    assert fmnist.item_ids[0] == "train-00000" and fmnist.categories[0] == 9
    assert fmnist.item_ids[60_000] == "test-00000" and fmnist.categories[60_000] == 9
    assert fmnist.images[0].max() == 255 and fmnist.images[0, 0, 0, 0] == 0


def _copy_files(tmp_path):
    source = fm.find_fashion_mnist()
    for name in fm.FILES:
        shutil.copy(source / name, tmp_path / name)
    return tmp_path


def test_explicit_path_and_env_var_take_precedence(tmp_path, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    _copy_files(folder)
    assert fm.find_fashion_mnist(folder) == folder
    monkeypatch.setenv("VARSEC_DATA", str(tmp_path))
    assert fm.candidate_dirs()[:2] == [tmp_path, tmp_path / "fashion-mnist"]
    monkeypatch.setenv("VARSEC_DATA", str(folder))
    assert fm.find_fashion_mnist() == folder


def test_missing_everywhere_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VARSEC_DATA", raising=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fm.find_fashion_mnist()


def test_explicit_folder_missing_a_file_names_it(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is missing"):
        fm.find_fashion_mnist(tmp_path)


def _write_gz(path, payload: bytes):
    with gzip.open(path, "wb") as handle:
        handle.write(payload)


def test_sha256_mismatch_is_detected(tmp_path):
    folder = _copy_files(tmp_path)
    labels = fm.read_idx_gz(folder / "t10k-labels-idx1-ubyte.gz").copy()
    labels[0] = (labels[0] + 1) % 10
    _write_gz(folder / "t10k-labels-idx1-ubyte.gz",
              struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + labels.tobytes())
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: sha256"):
        fm.load_fashion_mnist(folder)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "x.gz"
    _write_gz(path, b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="x.gz: wrong magic number"):
        fm.read_idx_gz(path)


def test_truncated_idx_payload(tmp_path):
    path = tmp_path / "t.gz"
    _write_gz(path, struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28) + bytes(28 * 28))
    with pytest.raises(DataError, match="t.gz: truncated"):
        fm.read_idx_gz(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    _write_gz(path, struct.pack(">BBBBI", 0, 0, 8, 1, 5000) + bytes(5000))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="cut.gz: not a readable gzip file"):
        fm.read_idx_gz(path)


def test_parse_idx_reads_a_hand_made_file():
    payload = struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3) + bytes([1, 2, 3, 4, 5, 6])
    assert fm.parse_idx(payload).tolist() == [[1, 2, 3], [4, 5, 6]]
