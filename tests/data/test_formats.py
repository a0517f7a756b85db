"""Loaders of real formats: images, folder, VBPR .b + reviews, Tradesy, DVBPR .npy, detection.

Every test writes small files in the format with an independent writer (Pillow for PNG/JPEG,
``struct`` for .b records, ``json``/``repr``/``gzip`` for JSON, ``np.save`` of a pickled object
array for DVBPR), reads them back and compares; each bad input checks the error type and that the
message names the file or field.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varsec.data.catalog import Dataset
from varsec.data.dvbpr import load_dvbpr
from varsec.data.folder import load_folder
from varsec.data.formats import detect_format
from varsec.data.images import (
    decode_image_bytes,
    load_image,
    load_image_stack,
    probe_image,
)
from varsec.data.tradesy import load_tradesy
from varsec.data.vbpr import load_vbpr, read_vbpr_features
from varsec.errors import ConfigError, DataError, VarsecWarning

RNG = np.random.default_rng(0)


def esc(path: Path | str) -> str:
    return re.escape(str(path))


# -- fixture writers ------------------------------------------------------------------------------
def rgb(h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gray(h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format="PNG")
    return path


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with a tiny (bogus) IDAT: never decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b""))


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_folder(root: Path, images: dict[str, np.ndarray], *, categories=None,
                 interactions=None, modes=None) -> Path:
    """items.csv (item_id, image[, category]), images/<id>.png, interactions.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (item_id, array) in enumerate(images.items()):
        rel = f"images/{item_id}.png"
        write_png(root / rel, array, (modes or {}).get(item_id))
        rows.append([item_id, rel] + ([categories[k]] if categories else []))
    header = ["item_id", "image"] + (["category"] if categories else [])
    write_csv(root / "items.csv", header, rows)
    ids = list(images)
    if interactions is None:
        interactions = [["u1", ids[0], 10], ["u2", ids[-1], 5], ["u1", ids[-1], 20]]
    write_csv(root / "interactions.csv", ["user_id", "item_id", "timestamp"], interactions)
    return root


def write_b(path: Path, ids: list[str], features: np.ndarray) -> Path:
    """VBPR records with struct: 10-byte space-padded ASCII id + little-endian float32."""
    with open(path, "wb") as handle:
        for item_id, row in zip(ids, features, strict=True):
            handle.write(item_id.encode("ascii").ljust(10, b" "))
            handle.write(struct.pack(f"<{len(row)}f", *row.tolist()))
    return path


def write_lines(path: Path, records: list[dict], *, literal: bool = False) -> Path:
    text = "\n".join(repr(r) if literal else json.dumps(r) for r in records) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def write_dvbpr(path: Path, parts: list[object]) -> Path:
    array = np.empty(len(parts), dtype=object)
    for k, part in enumerate(parts):
        array[k] = part
    np.save(path, array, allow_pickle=True)
    return path


def chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# -- images ---------------------------------------------------------------------------------------
def test_png_rgb_and_gray_round_trip_exactly(tmp_path):
    colour, mono = rgb(), gray()
    assert np.array_equal(load_image(write_png(tmp_path / "c.png", colour)), chw(colour))
    out = load_image(write_png(tmp_path / "g.png", mono))
    assert out.shape == (1, 4, 5) and np.array_equal(out, chw(mono))
    assert np.array_equal(load_image(tmp_path / "g.png", mode="RGB"), np.repeat(chw(mono), 3, 0))


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.array([[[200, 10, 50, 0], [200, 10, 50, 255], [200, 10, 50, 128]]], np.uint8)
    out = load_image(write_png(tmp_path / "a.png", pixels, "RGBA"))
    assert out.shape == (3, 1, 3)
    assert out[:, 0, 0].tolist() == [255, 255, 255]
    assert out[:, 0, 1].tolist() == [200, 10, 50]
    expected = (pixels[0, 2, :3].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(out[:, 0, 2] - expected).max() <= 1


def test_la_composites_to_gray(tmp_path):
    pixels = np.array([[[40, 0], [40, 255]]], np.uint8)
    out = load_image(write_png(tmp_path / "la.png", pixels, "LA"))
    assert out.shape == (1, 1, 2) and out[0, 0].tolist() == [255, 40]


def test_palette_and_palette_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1])
    img.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png")[:, 0].T.tolist() == [[255, 0, 0], [0, 0, 255]]
    img.save(tmp_path / "pt.png", transparency=0)
    assert load_image(tmp_path / "pt.png")[:, 0].T.tolist() == [[255, 255, 255], [0, 0, 255]]


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert probe_image(tmp_path / "deep.png").mode.startswith("I")
    assert load_image(tmp_path / "deep.png")[0, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("resample", ["bicubic", "lanczos"])
def test_resize_matches_pillow(tmp_path, resample):
    array = rgb(8, 12)
    out = load_image(write_png(tmp_path / "r.png", array), size=(3, 5), resample=resample)
    filt = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[resample]
    expected = np.asarray(Image.fromarray(array).resize((5, 3), resample=filt))
    assert out.shape == (3, 3, 5) and np.array_equal(out, chw(expected))


def test_decode_jpeg_bytes_matches_pillow():
    data = jpeg_bytes(rgb(16, 16))
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode_image_bytes(data), chw(expected))
    assert decode_image_bytes(data, mode="L", size=(8, 8)).shape == (1, 8, 8)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, not pixels")
    with pytest.raises(DataError, match=f"{esc(path)}: not an image"):
        load_image(path)


def test_corrupt_image(tmp_path):
    path = tmp_path / "corrupt.png"
    data = bytearray(write_png(tmp_path / "ok.png", rgb(32, 32)).read_bytes())
    data[60:120] = bytes(60)  # clobber the compressed stream
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{esc(path)}: corrupt"):
        load_image(path)


def test_truncated_image(tmp_path):
    data = write_png(tmp_path / "ok.png", rgb(64, 64)).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{esc(path)}: corrupt or truncated"):
        load_image(path)
    jpeg = jpeg_bytes(rgb(64, 64))
    with pytest.raises(DataError, match="item 7: corrupt or truncated"):
        decode_image_bytes(jpeg[: len(jpeg) // 2], label="item 7")


def test_zero_size_image(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(png_with_header(0, 4))
    with pytest.raises(DataError, match=f"{esc(path)}: image has zero width or height"):
        load_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(10_000, 10_000))  # 100 M pixels, never decoded
    with pytest.raises(DataError, match=f"{esc(path)}: image is 10000x10000 .* above the limit"):
        load_image(path)
    small = write_png(tmp_path / "small.png", rgb(4, 5))
    with pytest.raises(DataError, match=f"{esc(small)}: image is 5x4 = 20 pixels"):
        load_image(small, max_pixels=19)
    assert load_image(small, max_pixels=20).shape == (3, 4, 5)


def test_bad_arguments_are_config_errors(tmp_path):
    path = write_png(tmp_path / "c.png", rgb())
    with pytest.raises(ConfigError, match="'CMYK'"):
        load_image(path, mode="CMYK")
    with pytest.raises(ConfigError, match="'box'"):
        load_image(path, resample="box")
    with pytest.raises(ConfigError, match="size"):
        load_image(path, size=(0, 4))


def test_image_stack_defaults_and_warning(tmp_path):
    paths = [write_png(tmp_path / f"{k}.png", rgb(4, 4, k)) for k in range(3)]
    paths.append(write_png(tmp_path / "big.png", rgb(6, 6, 9)))
    with pytest.warns(VarsecWarning, match=r"1 of 4 images were converted to RGB 4x4 "
                                           r"\(0 differed in mode, 1 in size\)"):
        out = load_image_stack(paths, [str(p) for p in paths], origin="shop")
    assert out.shape == (4, 3, 4, 4)


# -- folder ---------------------------------------------------------------------------------------
def test_folder_round_trip(tmp_path):
    images = {"007": rgb(seed=1), "b": rgb(seed=2), "a": rgb(seed=3)}
    root = write_folder(tmp_path / "shop", images, categories=["shoe", "bag", "shoe"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_folder(root)
    assert isinstance(data, Dataset)
    assert data.catalog.item_ids.tolist() == ["007", "b", "a"]
    assert np.array_equal(data.catalog.images, np.stack([chw(a) for a in images.values()]))
    assert data.catalog.category_names == ["bag", "shoe"]
    assert data.catalog.categories.tolist() == [1, 0, 1]
    log = data.interactions
    assert log.user_ids.tolist() == ["u1", "u2"]
    assert log.user.tolist() == [0, 1, 0] and log.item.tolist() == [0, 2, 2]
    assert log.timestamp.tolist() == [10, 5, 20]
    assert data.split is None and len(data.cold_items) == 0
    assert data.meta == {"source": "folder", "path": str(root)}


def test_folder_without_timestamps_or_categories(tmp_path):
    root = write_folder(tmp_path / "shop", {"x": gray(seed=1), "y": gray(seed=2)})
    write_csv(root / "interactions.csv", ["user_id", "item_id"], [["u", "y"], ["v", "x"]])
    data = load_folder(root)
    assert data.catalog.categories is None and data.catalog.images.shape == (2, 1, 4, 5)
    assert data.interactions.timestamp.tolist() == [0, 1]


def test_folder_iso_timestamps(tmp_path):
    root = write_folder(tmp_path / "shop", {"x": gray(), "y": gray()}, interactions=[
        ["u", "x", "1970-01-02T00:00:00Z"], ["u", "y", "86401"]])
    assert load_folder(root).interactions.timestamp.tolist() == [86400, 86401]


def test_folder_bad_timestamp(tmp_path):
    root = write_folder(tmp_path / "shop", {"x": gray()}, interactions=[["u", "x", "soon"]])
    with pytest.raises(DataError, match=f"{esc(root / 'interactions.csv')}: column 'timestamp'"
                                        ".*'soon' on line 2"):
        load_folder(root)


def test_folder_grayscale_mixing_goes_rgb_with_warning(tmp_path):
    images = {"g1": gray(seed=1), "g2": gray(seed=2), "c": rgb(seed=3)}
    root = write_folder(tmp_path / "shop", images)
    with pytest.warns(VarsecWarning, match=f"{esc(root)}: 2 of 3 images were converted to RGB "
                                           r"4x5 \(2 differed in mode, 0 in size\)"):
        data = load_folder(root)
    assert data.catalog.images.shape == (3, 3, 4, 5)
    assert np.array_equal(data.catalog.images[0], np.repeat(chw(images["g1"]), 3, axis=0))
    assert np.array_equal(data.catalog.images[2], chw(images["c"]))


def test_folder_all_grayscale_stays_one_channel(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray(seed=1), "b": gray(seed=2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_folder(root).catalog.images.shape == (2, 1, 4, 5)


def test_folder_size_normalised_to_most_common(tmp_path):
    images = {"a": rgb(4, 5, 1), "b": rgb(4, 5, 2), "big": rgb(8, 10, 3)}
    root = write_folder(tmp_path / "shop", images)
    with pytest.warns(VarsecWarning, match=r"1 of 3 images .* \(0 differed in mode, 1 in size\)"):
        data = load_folder(root)
    expected = np.asarray(Image.fromarray(images["big"]).resize((5, 4), Image.Resampling.BICUBIC))
    assert np.array_equal(data.catalog.images[2], chw(expected))


def test_folder_explicit_mode_and_size(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": rgb(seed=1), "b": rgb(seed=2)})
    with pytest.warns(VarsecWarning, match="2 of 2 images were converted to L 2x2"):
        data = load_folder(root, mode="L", size=(2, 2))
    assert data.catalog.images.shape == (2, 1, 2, 2)


def test_folder_rgba_and_palette_images(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)  # fully transparent: white after compositing
    pal = Image.fromarray(rgb(seed=4)).convert("P")
    root = write_folder(tmp_path / "shop", {"c": rgb(seed=1), "t": rgba}, modes={"t": "RGBA"})
    pal.save(root / "images" / "p.png")
    with open(root / "items.csv", "a") as handle:
        handle.write("p,images/p.png\n")
    with pytest.warns(VarsecWarning, match=r"2 of 3 images .* \(2 differed in mode"):
        data = load_folder(root)
    assert (data.catalog.images[1] == 255).all()
    assert np.array_equal(data.catalog.images[2], chw(np.asarray(pal.convert("RGB"))))


def test_folder_missing_directory(tmp_path):
    with pytest.raises(DataError, match=f"{esc(tmp_path / 'nope')}: no such directory"):
        load_folder(tmp_path / "nope")


@pytest.mark.parametrize("name", ["items.csv", "interactions.csv"])
def test_folder_missing_csv(tmp_path, name):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    (root / name).unlink()
    with pytest.raises(DataError, match=f"{esc(root / name)}: no such file"):
        load_folder(root)


@pytest.mark.parametrize(("name", "header", "missing"), [
    ("items.csv", ["item_id", "picture"], "image"),
    ("items.csv", ["id", "image"], "item_id"),
    ("interactions.csv", ["user", "item_id"], "user_id"),
    ("interactions.csv", ["user_id", "item"], "item_id"),
])
def test_folder_csv_missing_column(tmp_path, name, header, missing):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    write_csv(root / name, header, [["a", "images/a.png"]])
    with pytest.raises(DataError, match=f"{esc(root / name)}: missing required column '{missing}'"):
        load_folder(root)


def test_folder_duplicate_item_ids(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    write_csv(root / "items.csv", ["item_id", "image"], [["a", "images/a.png"]] * 2)
    with pytest.raises(DataError, match=f"{esc(root / 'items.csv')}: item_id must be unique.*'a'"):
        load_folder(root)


def test_folder_unknown_items(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray()}, interactions=[["u", "zz", 1]])
    with pytest.raises(DataError, match=f"{esc(root / 'interactions.csv')}: 1 item id.*'zz'"):
        load_folder(root)


def test_folder_empty_interactions(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    write_csv(root / "interactions.csv", ["user_id", "item_id"], [])
    with pytest.raises(DataError, match=f"{esc(root / 'interactions.csv')}: .*empty"):
        load_folder(root)


def test_folder_missing_image_file(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    (root / "images" / "a.png").unlink()
    with pytest.raises(DataError, match=f"{esc(root / 'items.csv')}: image .*a.png.* of item 'a'"):
        load_folder(root)


@pytest.mark.parametrize(("content", "problem"), [
    (b"GIF? no, plain text", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt image header"),
    ("truncated", "corrupt or truncated"),
    (png_with_header(4, 0), "image has zero width or height"),
    (png_with_header(9000, 9000), "image is 9000x9000 .* above the limit"),
])
def test_folder_bad_image(tmp_path, content, problem):
    root = write_folder(tmp_path / "shop", {"a": gray(), "b": gray()})
    bad = root / "images" / "b.png"
    if content == "truncated":
        content = write_png(bad, rgb(64, 64)).read_bytes()[:200]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"{esc(bad)}: {problem}"):
        load_folder(root)


def test_folder_pixel_limit_is_configurable(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray()})
    with pytest.raises(DataError, match=f"{esc(root / 'images' / 'a.png')}: image is 5x4"):
        load_folder(root, max_pixels=10)


# -- VBPR -----------------------------------------------------------------------------------------
IDS = ["B000ASIN01", "B7", "X 1"]


def features(n: int = 3, dim: int = 8) -> np.ndarray:
    return RNG.standard_normal((n, dim)).astype(np.float32)


def test_read_vbpr_features(tmp_path):
    values = features()
    path = write_b(tmp_path / "image_features_test.b", IDS, values)
    assert path.stat().st_size == 3 * (10 + 4 * 8)
    ids, out = read_vbpr_features(path, dim=8)
    assert ids.tolist() == IDS
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, values)


def test_vbpr_features_default_dim_is_4096(tmp_path):
    values = features(2, 4096)
    ids, out = read_vbpr_features(write_b(tmp_path / "f.b", ["a", "b"], values))
    assert ids.tolist() == ["a", "b"] and np.array_equal(out, values)


def test_vbpr_size_not_a_multiple(tmp_path):
    path = write_b(tmp_path / "f.b", IDS, features())
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=f"{esc(path)}: size 123 bytes is not a multiple of the "
                                        "42-byte record"):
        read_vbpr_features(path, dim=8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_vbpr_non_finite_features(tmp_path, bad):
    values = features()
    values[1, 3] = bad
    path = write_b(tmp_path / "f.b", IDS, values)
    with pytest.raises(DataError, match=f"{esc(path)}: the features of item 'B7' hold NaN or inf"):
        read_vbpr_features(path, dim=8)


def test_vbpr_empty_and_duplicate(tmp_path):
    empty = tmp_path / "empty.b"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"{esc(empty)}: the features file is empty"):
        read_vbpr_features(empty, dim=8)
    twice = write_b(tmp_path / "twice.b", ["a", "a"], features(2))
    with pytest.raises(DataError, match=f"{esc(twice)}: item id 'a' appears more than once"):
        read_vbpr_features(twice, dim=8)


def reviews(*pairs: tuple[str, str, int]) -> list[dict]:
    return [{"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0} for u, a, t in pairs]


REVIEWS = reviews(("U2", "B7", 300), ("U1", "B000ASIN01", 100), ("U1", "NOFEAT", 50),
                  ("U1", "B7", 200))


@pytest.mark.parametrize(("name", "literal"), [("r.json", False), ("r.json.gz", False),
                                               ("r.json.gz", True), ("r.txt", True)])
def test_load_vbpr(tmp_path, name, literal):
    values = features()
    b_path = write_b(tmp_path / "image_features_Women.b", IDS, values)
    r_path = write_lines(tmp_path / name, REVIEWS, literal=literal)
    with pytest.warns(VarsecWarning, match=f"{esc(r_path)}: 1 of 4 interactions name items "
                                           "without features"):
        data = load_vbpr(b_path, r_path, dim=8)
    assert data.catalog.images is None and not data.catalog.has_pixels
    assert data.catalog.item_ids.tolist() == IDS and np.array_equal(data.catalog.features, values)
    log = data.interactions
    assert log.user_ids.tolist() == ["U1", "U2"]
    assert log.user.tolist() == [1, 0, 0] and log.item.tolist() == [1, 0, 1]
    assert log.timestamp.tolist() == [300, 100, 200]
    assert data.split is None and len(data.cold_items) == 0
    assert data.meta["source"] == "vbpr" and data.meta["path"] == str(b_path)
    assert data.meta["dropped_interactions"] == 1


def test_load_vbpr_json_array_and_only_reviewed(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = tmp_path / "r.json"
    r_path.write_text(json.dumps(REVIEWS[:2], indent=1))
    data = load_vbpr(b_path, r_path, dim=8, only_reviewed=True)
    assert data.catalog.item_ids.tolist() == ["B000ASIN01", "B7"]
    assert data.interactions.item.tolist() == [1, 0]


def test_load_vbpr_keeps_a_repeated_pair_once(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json", reviews(("U", "B7", 9), ("U", "B7", 3)))
    data = load_vbpr(b_path, r_path, dim=8)
    assert data.interactions.timestamp.tolist() == [3]
    assert data.meta["duplicates_dropped"] == 1


def test_vbpr_reviews_missing_key(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json", [REVIEWS[0], {"reviewerID": "U", "asin": "B7"}])
    with pytest.raises(DataError, match=f"{esc(r_path)}: line 2 has no 'unixReviewTime' field"):
        load_vbpr(b_path, r_path, dim=8)


def test_vbpr_reviews_garbage_line(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = tmp_path / "r.json"
    r_path.write_text(json.dumps(REVIEWS[0]) + "\n{oops: __import__('os')}\n")
    with pytest.raises(DataError, match=f"{esc(r_path)}: line 2 is neither JSON nor a Python"):
        load_vbpr(b_path, r_path, dim=8)


def test_vbpr_no_review_matches(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json", reviews(("U", "NOFEAT", 1)))
    message = f"{esc(r_path)}: none of its 1 interactions .*{esc(b_path)}"
    with pytest.raises(DataError, match=message):
        load_vbpr(b_path, r_path, dim=8)


def test_vbpr_wrong_dim(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json", REVIEWS)
    with pytest.raises(DataError, match=f"{esc(b_path)}: size 126 bytes .* 16394-byte record"):
        load_vbpr(b_path, r_path)


def test_vbpr_broken_gzip(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json.gz", REVIEWS * 50)
    r_path.write_bytes(r_path.read_bytes()[:30])
    with pytest.raises(DataError, match=f"{esc(r_path)}: not a readable"):
        load_vbpr(b_path, r_path, dim=8)


# -- Tradesy --------------------------------------------------------------------------------------
USERS = [
    {"uid": "9", "lists": {"bought": ["B7", "X 1"], "want": ["B7", "B000ASIN01"], "selling": []}},
    {"uid": 3, "lists": {"bought": [], "want": ["MISSING"], "sold": ["X 1"]}},
    {"uid": "4", "lists": {"bought": ["B000ASIN01"], "want": []}},
]


@pytest.mark.parametrize(("name", "style"), [("t.json.gz", "lines"), ("t.json", "literal"),
                                             ("t.json", "array"), ("t.json.gz", "array")])
def test_load_tradesy(tmp_path, name, style):
    values = features()
    b_path = write_b(tmp_path / "image_features_tradesy.b", IDS, values)
    j_path = tmp_path / name
    if style == "array":
        text = json.dumps(USERS)
        j_path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    else:
        write_lines(j_path, USERS, literal=style == "literal")
    with pytest.warns(VarsecWarning, match=f"{esc(j_path)}: 1 of 6 interactions"):
        data = load_tradesy(j_path, b_path, dim=8)
    assert data.catalog.images is None and np.array_equal(data.catalog.features, values)
    log = data.interactions
    assert log.user_ids.tolist() == ["4", "9"]
    # file order: 9 bought B7, X 1; 9 want (B7 again: kept once), B000ASIN01; 3 want MISSING; 4
    assert log.user.tolist() == [1, 1, 1, 0]
    assert log.item.tolist() == [1, 2, 0, 0]
    assert log.timestamp.tolist() == [0, 1, 3, 5]
    assert data.split is None and len(data.cold_items) == 0
    assert data.meta["source"] == "tradesy" and data.meta["path"] == str(j_path)
    assert data.meta["duplicates_dropped"] == 1


def test_tradesy_other_lists(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    j_path = write_lines(tmp_path / "t.json", USERS)
    data = load_tradesy(j_path, b_path, lists=("sold",), dim=8)
    assert data.interactions.user_ids.tolist() == ["3"] and data.interactions.item.tolist() == [2]


def test_tradesy_unknown_list(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    j_path = write_lines(tmp_path / "t.json", USERS)
    with pytest.raises(DataError, match=f"{esc(j_path)}: no record has a list named 'bougth'"):
        load_tradesy(j_path, b_path, lists=("bougth",), dim=8)


def test_tradesy_record_without_uid(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    j_path = write_lines(tmp_path / "t.json", [USERS[0], {"lists": {"bought": ["B7"]}}])
    with pytest.raises(DataError, match=f"{esc(j_path)}: line 2 has no 'uid' field"):
        load_tradesy(j_path, b_path, dim=8)


# -- DVBPR ----------------------------------------------------------------------------------------
def dvbpr_parts(str_keys: bool = False) -> tuple[list[object], list[np.ndarray]]:
    def k(name: str) -> str | bytes:
        return name if str_keys else name.encode()

    arrays = [rgb(12, 10, s) for s in range(3)]
    items = [{k("imgs"): jpeg_bytes(a), k("c"): k(c), k("asin"): k(f"A{i}")}
             for i, (a, c) in enumerate(zip(arrays, ["shoe", "bag", "shoe"], strict=True))]

    def e(item: int, t: int) -> dict:
        return {k("productid"): item, k("reviewerID"): k("R"), k("timestamp"): t}

    train = {0: [e(0, 10), e(1, 11)], 1: [e(2, 5)]}
    validation = {0: [e(2, 12)], 1: [e(0, 6)]}
    test = {0: [e(1, 13)], 1: [e(1, 7)]}
    return [train, validation, test, items, 2, 3], arrays


def test_dvbpr_needs_trust(tmp_path):
    path = write_dvbpr(tmp_path / "AmazonFashion6ImgPartitioned.npy", dvbpr_parts()[0])
    with pytest.raises(DataError, match=f"{esc(path)}: this DVBPR file is a Python pickle.*"
                                        "arbitrary code.*trust_pickle=True.*--trust-pickle"):
        load_dvbpr(path)


def test_dvbpr_plain_array_is_not_dvbpr(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros((2, 3)))
    with pytest.raises(DataError, match=f"{esc(path)}: holds a plain float64 array"):
        load_dvbpr(path, trust_pickle=True)


@pytest.mark.parametrize("str_keys", [False, True])
def test_load_dvbpr(tmp_path, str_keys):
    parts, arrays = dvbpr_parts(str_keys)
    path = write_dvbpr(tmp_path / "TradesyImgPartitioned.npy", parts)
    data = load_dvbpr(path, trust_pickle=True)
    catalog = data.catalog
    assert catalog.item_ids.tolist() == ["A0", "A1", "A2"]
    decoded = [np.asarray(Image.open(io.BytesIO(jpeg_bytes(a))).convert("RGB")) for a in arrays]
    assert np.array_equal(catalog.images, np.stack([chw(d) for d in decoded]))
    assert catalog.category_names == ["bag", "shoe"] and catalog.categories.tolist() == [1, 0, 1]
    log = data.interactions
    assert log.user_ids.tolist() == ["0", "1"]
    assert log.user.tolist() == [0, 0, 1, 0, 1, 0, 1]
    assert log.item.tolist() == [0, 1, 2, 2, 0, 1, 1]
    assert log.timestamp.tolist() == [10, 11, 5, 12, 6, 13, 7]
    assert data.split.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert data.part("test").item.tolist() == [1, 1]
    assert data.meta == {"source": "dvbpr", "path": str(path), "timestamps": "file"}


def test_dvbpr_plain_int_entries_and_resize(tmp_path):
    parts, _ = dvbpr_parts()
    parts[:3] = [{0: [0, 1]}, {0: [2]}, {0: [1]}]
    path = write_dvbpr(tmp_path / "d.npy", parts)
    with pytest.warns(VarsecWarning, match="3 of 3 images were converted to L 6x5"):
        data = load_dvbpr(path, trust_pickle=True, mode="L", size=(6, 5))
    assert data.catalog.images.shape == (3, 1, 6, 5)
    assert data.interactions.timestamp.tolist() == [0, 1, 2, 3]
    assert data.meta["timestamps"] == "file order"


def test_dvbpr_productid_out_of_range(tmp_path):
    parts, _ = dvbpr_parts()
    parts[2] = {0: [{b"productid": 3}]}
    path = write_dvbpr(tmp_path / "d.npy", parts)
    with pytest.raises(DataError, match=f"{esc(path)} user_test: productid 3 is outside Item"):
        load_dvbpr(path, trust_pickle=True)


def test_dvbpr_missing_or_corrupt_jpeg(tmp_path):
    parts, _ = dvbpr_parts()
    del parts[3][1][b"imgs"]
    path = write_dvbpr(tmp_path / "d.npy", parts)
    with pytest.raises(DataError, match=rf"{esc(path)}: Item\[1\] has no JPEG bytes"):
        load_dvbpr(path, trust_pickle=True)
    jpeg = jpeg_bytes(rgb(64, 64))
    parts[3][1][b"imgs"] = jpeg[: len(jpeg) // 2]
    write_dvbpr(path, parts)
    with pytest.raises(DataError, match=rf"{esc(path)} Item\[1\]: corrupt or truncated"):
        load_dvbpr(path, trust_pickle=True)


def test_dvbpr_wrong_structure(tmp_path):
    path = write_dvbpr(tmp_path / "d.npy", [{"a": 1}, 2])
    with pytest.raises(DataError, match=f"{esc(path)}: expected \\[user_train"):
        load_dvbpr(path, trust_pickle=True)


# -- detection ------------------------------------------------------------------------------------
def test_detect_format(tmp_path):
    root = write_folder(tmp_path / "shop", {"a": gray(), "b": gray()})
    assert detect_format(root) == "folder"
    saved = load_folder(root).save(tmp_path / "saved")
    assert detect_format(saved) == "varsec"
    assert detect_format(write_b(tmp_path / "image_features_x.b", IDS, features())) == "vbpr"
    literal = write_lines(tmp_path / "tradesy.json.gz", USERS, literal=True)
    assert detect_format(literal) == "tradesy"
    assert detect_format(write_lines(tmp_path / "tradesy.json", USERS)) == "tradesy"
    assert detect_format(write_dvbpr(tmp_path / "d.npy", dvbpr_parts()[0])) == "dvbpr"


@pytest.mark.parametrize("name", ["notes.txt", "other.json", "emptydir"])
def test_detect_format_unknown(tmp_path, name):
    path = tmp_path / name
    if name == "emptydir":
        path.mkdir()
    else:
        path.write_text('{"hello": 1}\n')
    with pytest.raises(DataError, match=f"{esc(path)}: .*expected a varsec directory.*DVBPR"):
        detect_format(path)


def test_detect_format_reviews_and_missing(tmp_path):
    r_path = write_lines(tmp_path / "reviews_Women.json.gz", REVIEWS)
    with pytest.raises(DataError, match=f"{esc(r_path)}: looks like Amazon reviews"):
        detect_format(r_path)
    with pytest.raises(DataError, match=f"{esc(tmp_path / 'gone')}: no such file or directory"):
        detect_format(tmp_path / "gone")


def test_loaded_datasets_save_and_load(tmp_path):
    b_path = write_b(tmp_path / "f.b", IDS, features())
    r_path = write_lines(tmp_path / "r.json", REVIEWS[:2])
    vbpr = load_vbpr(b_path, r_path, dim=8)
    dvbpr = load_dvbpr(write_dvbpr(tmp_path / "d.npy", dvbpr_parts()[0]), trust_pickle=True)
    for name, data in (("vbpr", vbpr), ("dvbpr", dvbpr)):
        back = Dataset.load(data.save(tmp_path / name))
        assert back.content_hash() == data.content_hash() and back.meta == data.meta
