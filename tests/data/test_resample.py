"""Serving a catalog at another image size and mode: Pillow's bytes, grey -> RGB replication,
identity when native, memory-mapped output, the data stage's key and the schema's errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from varsec.data import resample as resample_module
from varsec.data.catalog import ItemCatalog
from varsec.data.resample import check_resample, resample_catalog, resample_images
from varsec.errors import ConfigError, DataError
from varsec.study.builtin.data import build_dataset, dataset_info, serve_images
from varsec.study.plan import data_config, plan_study
from varsec.study.schema import load_study_text


@pytest.fixture(scope="module")
def grey(fmnist):
    """Four real Fashion-MNIST items (1 x 28 x 28)."""
    return fmnist.subset(np.array([0, 1, 2, 3]))


@pytest.fixture(scope="module")
def colour():
    """Three random RGB items of 20 x 20 pixels."""
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 20, 20), dtype=np.uint8)
    return ItemCatalog(item_ids=["a", "b", "c"], images=images, categories=[0, 1, 0],
                       category_names=["x", "y"], name="colour")


def _pillow(image: np.ndarray, size: int, filter_: int) -> np.ndarray:
    """Pillow's own resize of one C x H x W uint8 image, back to C x H x W."""
    if image.shape[0] == 1:
        return np.asarray(Image.fromarray(image[0], "L").resize((size, size), filter_))[None]
    picture = Image.fromarray(np.moveaxis(image, 0, -1), "RGB").resize((size, size), filter_)
    return np.moveaxis(np.asarray(picture), -1, 0)


@pytest.mark.parametrize(("name", "filter_"), [("bicubic", Image.Resampling.BICUBIC),
                                               ("lanczos", Image.Resampling.LANCZOS)])
def test_grey_resampling_is_pillows_bytes(grey, name, filter_):
    out = resample_catalog(grey, 64, resample=name)
    assert out.images.dtype == np.uint8 and out.images.shape == (4, 1, 64, 64)
    for row in range(4):
        assert out.images[row].tobytes() == _pillow(grey.images[row], 64, filter_).tobytes()


def test_colour_resampling_is_pillows_bytes(colour):
    out = resample_catalog(colour, 48, "RGB")
    assert out.images.shape == (3, 3, 48, 48)
    for row in range(3):
        expected = _pillow(colour.images[row], 48, Image.Resampling.BICUBIC)
        assert out.images[row].tobytes() == expected.tobytes()


def test_grey_to_rgb_repeats_the_resized_grey_channel(grey):
    rgb = resample_catalog(grey, 56, "RGB")
    assert rgb.images.shape == (4, 3, 56, 56)
    alone = resample_catalog(grey, 56, "L")
    for channel in range(3):
        np.testing.assert_array_equal(rgb.images[:, channel], alone.images[:, 0])
    same_size = resample_catalog(grey, None, "RGB")
    assert same_size.images.shape == (4, 3, 28, 28)
    np.testing.assert_array_equal(same_size.images[:, 2], grey.images[:, 0])


def test_rgb_to_grey_is_pillows_luma(colour):
    out = resample_catalog(colour, None, "L")
    picture = Image.fromarray(np.moveaxis(colour.images[1], 0, -1), "RGB").convert("L")
    assert out.images.shape == (3, 1, 20, 20)
    assert out.images[1, 0].tobytes() == np.asarray(picture).tobytes()


@pytest.mark.parametrize(("size", "mode"), [(None, None), (28, None), (28, "L"), (None, "L")])
def test_native_size_and_mode_return_the_catalog_itself(grey, size, mode):
    assert resample_catalog(grey, size, mode) is grey


def test_ids_categories_and_names_are_kept(colour):
    out = resample_catalog(colour, 32, "RGB")
    assert list(out.item_ids) == ["a", "b", "c"] and out.name == "colour"
    np.testing.assert_array_equal(out.categories, colour.categories)
    assert out.category_names == ["x", "y"]
    assert out.content_hash() != colour.content_hash()


def test_large_results_are_memory_mapped_into_the_scratch_file(grey, tmp_path, monkeypatch):
    monkeypatch.setattr(resample_module, "MMAP_THRESHOLD_BYTES", 1000)
    scratch = tmp_path / "images.npy"
    out = resample_catalog(grey, 32, "RGB", scratch=scratch)
    assert isinstance(out.images, np.memmap) and scratch.exists()
    np.testing.assert_array_equal(np.load(scratch), resample_catalog(grey, 32, "RGB").images)
    small = resample_catalog(grey, 8, scratch=tmp_path / "small.npy")  # 256 bytes
    assert not isinstance(small.images, np.memmap) and not (tmp_path / "small.npy").exists()


@pytest.mark.parametrize(("size", "mode", "filter_", "message"), [
    (7, None, "bicubic", "image size must be an integer in [8, 512]"),
    (513, None, "bicubic", "got 513"),
    (2.5, None, "bicubic", "got 2.5"),
    (True, None, "bicubic", "got True"),
    (None, "CMYK", "bicubic", "image mode must be 'L', 'RGB' or None"),
    (None, None, "nearest", "filter must be one of bicubic, lanczos, got 'nearest'"),
])
def test_bad_sizes_modes_and_filters_are_config_errors(size, mode, filter_, message):
    with pytest.raises(ConfigError) as caught:
        check_resample(size, mode, filter_)
    assert message in str(caught.value)


def test_a_features_only_catalog_and_float_images_are_data_errors(colour):
    features = ItemCatalog(item_ids=["a"], features=np.ones((1, 4), np.float32), name="feats")
    with pytest.raises(DataError, match="'feats' has features but no images"):
        resample_catalog(features, 32)
    with pytest.raises(DataError, match="must be uint8 N x C x H x W"):
        resample_images(colour.images.astype(np.float32), 32)


# -- the study: schema, the data stage's key, the data stage itself ------------------------------
STUDY = "study: t\ndataset:\n  profile: quick\n{extra}"


def _config(extra: str = ""):
    return load_study_text(STUDY.format(extra=extra), source="s.yaml")


@pytest.mark.parametrize(("extra", "message"), [
    ("  image_size: 4\n", "s.yaml:4: dataset.image_size: input should be greater than or "
                          "equal to 8 (got 4)"),
    ("  image_size: 1024\n", "dataset.image_size: input should be less than or equal to 512"),
    ("  image_size: 100.5\n", "dataset.image_size:"),
    ("  mode: CMYK\n", "s.yaml:4: dataset.mode: input should be 'L' or 'RGB' (got 'CMYK')"),
    ("  n_warm_items: 2\n", "dataset.n_warm_items: input should be greater than or equal to 5"),
])
def test_bad_dataset_image_options_are_one_config_error_with_the_path(extra, message):
    with pytest.raises(ConfigError) as caught:
        _config(extra)
    assert message in str(caught.value)


def _data_key(extra: str = "") -> str:
    return next(s.key for s in plan_study(_config(extra)) if s.kind == "data")


def test_the_data_stage_key_follows_image_size_and_mode():
    native = _data_key()
    keys = {native, _data_key("  image_size: 64\n"), _data_key("  image_size: 224\n"),
            _data_key("  image_size: 224\n  mode: RGB\n"), _data_key("  n_warm_items: 500\n")}
    assert len(keys) == 5
    # Left null, the new keys stay out of the config: earlier caches keep their key.
    assert "image_size" not in data_config(_config()) and "mode" not in data_config(_config())
    assert data_config(_config("  image_size: 64\n  mode: RGB\n"))["image_size"] == 64


FULL_ONLY = "evaluation:\n  protocols: [{kind: full}]\n"


def test_a_two_stage_k_beyond_the_overridden_warm_items_is_refused():
    extra = ("  n_warm_items: 40\nrecommenders:\n  bpr: {kind: bpr-mf}\n"
             "  knn: {kind: knn, extractor: e}\n  pipe: {kind: two-stage, first_stage: bpr, "
             "ranker: knn, k: 100}\nextractors:\n  e: {}\n" + FULL_ONLY)
    with pytest.raises(ConfigError, match="recommenders.pipe.k: .*simulates 40 warm items"):
        _config(extra)
    _config(extra.replace("k: 100", "k: 30"))


def test_the_data_stage_resamples_after_simulating_the_native_market(tmp_path):
    config = data_config(_config("  n_users: 40\n  n_warm_items: 60\n  n_cold_items: 6\n"
                                 "  image_size: 32\n  mode: RGB\n" + FULL_ONLY))
    native = build_dataset(config)
    assert (native.n_users, native.n_items, len(native.cold_items)) == (40, 66, 6)
    served = serve_images(native, config, tmp_path / "scratch.npy")
    assert served.catalog.image_shape == (3, 32, 32)
    np.testing.assert_array_equal(served.catalog.images,
                                  resample_catalog(native.catalog, 32, "RGB").images)
    # The market (interactions, split, cold items, oracle) is the native one.
    np.testing.assert_array_equal(served.interactions.item, native.interactions.item)
    np.testing.assert_array_equal(served.split, native.split)
    np.testing.assert_array_equal(served.oracle, native.oracle)
    assert served.meta["resampled"]["to"] == [3, 32, 32]
    assert dataset_info(served)["resampled"]["from"] == [1, 28, 28]
    assert dataset_info(served)["image_shape"] == [3, 32, 32]
    assert serve_images(native, {"image_size": None, "mode": None}, tmp_path / "x") is native


def test_simulation_sizes_on_a_source_with_its_own_interactions_are_a_config_error(tmp_path):
    config = data_config(_config("  n_users: 40\n  n_warm_items: 60\n  n_cold_items: 6\n"
                                 + FULL_ONLY))
    build_dataset(config).save(tmp_path / "saved")
    with pytest.raises(ConfigError, match="dataset.n_users: .* brings its own interactions"):
        build_dataset({**config, "source": str(tmp_path / "saved")})
    served = build_dataset({**config, "source": str(tmp_path / "saved"), "n_users": None,
                            "n_warm_items": None, "n_cold_items": None})
    assert served.n_items == 66  # a saved dataset is served as is
