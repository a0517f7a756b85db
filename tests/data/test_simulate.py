"""The interaction simulator (DESIGN.md section 3) on the real Fashion-MNIST catalog.

Thresholds were measured on seeds 0-4 of the ``quick`` profile (Gini 0.68-0.71, top-10% share
0.55-0.58, top-affinity match 0.45-0.52, affinity/share correlation 0.65-0.70, taste.style lift
2.3-2.5, oracle/behaviour correlation 0.61-0.64) and set with a margin below the lowest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from varsec.data.catalog import SPLIT_CODES, ItemCatalog
from varsec.data.simulate import (
    PROFILES,
    SimulationProfile,
    build_world,
    pixel_style_vectors,
    simulate,
    simulate_and_split,
)
from varsec.errors import ConfigError, DataError

N_CATEGORIES = 10


@pytest.fixture(scope="module")
def quick(fmnist):
    return simulate(fmnist, "quick", seed=0)


@pytest.fixture(scope="module")
def world(fmnist):
    return build_world(fmnist, "quick", seed=0)


def gini(values: np.ndarray) -> float:
    ordered = np.sort(values).astype(float)
    n = len(ordered)
    return float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))


def category_shares(dataset) -> np.ndarray:
    """users x categories: the share of each user's interactions in each category."""
    inter = dataset.interactions
    shares = np.zeros((dataset.n_users, N_CATEGORIES))
    np.add.at(shares, (inter.user, dataset.catalog.categories[inter.item]), 1.0)
    return shares / shares.sum(axis=1, keepdims=True)


def row_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


# -- determinism and sizes ----------------------------------------------------------------------
def test_same_seed_gives_identical_arrays(fmnist_small, quick):
    first = simulate(fmnist_small, "quick", seed=3)
    again = simulate(fmnist_small, "quick", seed=3)
    for name in ("user", "item", "timestamp"):
        np.testing.assert_array_equal(getattr(first.interactions, name),
                                      getattr(again.interactions, name))
    np.testing.assert_array_equal(first.cold_items, again.cold_items)
    np.testing.assert_array_equal(first.oracle, again.oracle)
    np.testing.assert_array_equal(first.catalog.item_ids, again.catalog.item_ids)


def test_another_seed_gives_other_data(fmnist_small):
    first = simulate(fmnist_small, "quick", seed=3)
    other = simulate(fmnist_small, "quick", seed=4)
    assert not np.array_equal(first.catalog.item_ids, other.catalog.item_ids)
    assert len(first.interactions) != len(other.interactions) or not np.array_equal(
        first.interactions.item, other.interactions.item
    )


def test_quick_profile_sizes(quick):
    profile = PROFILES["quick"]
    assert quick.n_users == profile.n_users == 500
    assert len(quick.catalog) == 2_100
    assert len(quick.cold_items) == 100
    assert len(quick.warm_items()) == 2_000
    # 500 users x 12 expected interactions; the total's std is about 170.
    assert 5_400 <= len(quick.interactions) <= 6_600
    assert quick.split is None


def test_profiles_match_their_documented_sizes():
    default = PROFILES["default"]
    assert (default.n_users, default.n_warm_items, default.n_cold_items) == (5_000, 10_000, 500)
    assert 50_000 <= default.n_users * default.mean_interactions <= 80_000
    paper = PROFILES["paper"]  # AIP Table 3, Amazon Men: 34,244 users, 254,870 interactions
    assert paper.n_users == 34_244
    assert paper.n_items == 70_000
    assert paper.n_users * paper.mean_interactions == pytest.approx(254_870)


def test_default_profile_lands_in_its_range(fmnist):
    dataset = simulate(fmnist, "default", seed=0)
    assert dataset.n_users == 5_000
    assert 50_000 <= len(dataset.interactions) <= 80_000
    assert dataset.oracle.shape == (5_000, 500)


def test_every_category_is_warm_and_cold(quick):
    categories = quick.catalog.categories
    assert set(categories[quick.warm_items()]) == set(range(N_CATEGORIES))
    assert set(categories[quick.cold_items]) == set(range(N_CATEGORIES))


def test_items_keep_their_source_ids(fmnist, quick):
    rows = fmnist.index_of(quick.catalog.item_ids)
    np.testing.assert_array_equal(fmnist.images[rows], quick.catalog.images)
    np.testing.assert_array_equal(fmnist.categories[rows], quick.catalog.categories)


# -- interaction log ----------------------------------------------------------------------------
def test_every_user_has_at_least_five_distinct_items(quick):
    inter = quick.interactions
    assert np.bincount(inter.user, minlength=quick.n_users).min() >= 5
    pairs = inter.user * len(quick.catalog) + inter.item
    assert len(np.unique(pairs)) == len(inter)  # drawn without replacement


def test_timestamps_increase_within_each_user(quick):
    inter = quick.interactions
    order = np.lexsort((np.arange(len(inter)), inter.user))
    users, stamps = inter.user[order], inter.timestamp[order]
    same_user = users[1:] == users[:-1]
    assert (np.diff(stamps)[same_user] > 0).all()


def test_cold_items_never_interacted(quick):
    assert not np.isin(quick.interactions.item, quick.cold_items).any()


def test_popularity_is_long_tailed(quick):
    counts = np.bincount(quick.interactions.item, minlength=len(quick.catalog))
    counts = counts[quick.warm_items()]
    top_tenth = np.sort(counts)[::-1][: len(counts) // 10]
    assert top_tenth.sum() / counts.sum() > 0.45
    assert gini(counts) > 0.55


def test_category_affinity_predicts_interactions(quick, world):
    shares = category_shares(quick)
    affinity = world.category_affinity
    favourite_matches = np.mean(affinity.argmax(axis=1) == shares.argmax(axis=1))
    assert favourite_matches > 0.3  # chance is 0.1
    assert row_correlations(affinity, shares).mean() > 0.5


def test_style_matters(quick, world):
    inter = quick.interactions
    chosen = np.einsum("nd,nd->n", world.tastes[inter.user], world.styles[inter.item])
    random_items = np.random.default_rng(1).choice(world.warm_items, len(inter))
    baseline = np.einsum("nd,nd->n", world.tastes[inter.user], world.styles[random_items])
    assert chosen.mean() - baseline.mean() > 1.5
    assert abs(baseline.mean()) < 0.3


def test_world_matches_dataset(quick, world):
    np.testing.assert_array_equal(world.cold_items, quick.cold_items)
    np.testing.assert_array_equal(world.catalog.item_ids, quick.catalog.item_ids)


# -- oracle -------------------------------------------------------------------------------------
def test_oracle_is_the_noise_free_logit(quick, world):
    assert quick.oracle.shape == (500, 100)
    assert quick.oracle.dtype == np.float32
    cold = quick.cold_items
    profile = world.profile
    affinity = np.log(np.maximum(world.category_affinity, 1e-6))
    expected = (
        profile.affinity_weight * affinity[:, quick.catalog.categories[cold]]
        + world.tastes @ world.styles[cold].T
        + profile.popularity_weight * world.log_popularity[cold][None, :]
    )
    np.testing.assert_allclose(quick.oracle, expected, rtol=1e-4, atol=1e-4)


def test_oracle_agrees_with_observed_behaviour(quick):
    """Users prefer (in the oracle) cold items of the categories they interacted with."""
    shares = category_shares(quick)
    cold_categories = quick.catalog.categories[quick.cold_items]
    mean_oracle = np.stack(
        [quick.oracle[:, cold_categories == c].mean(axis=1) for c in range(N_CATEGORIES)], axis=1
    )
    assert np.nanmean(row_correlations(mean_oracle, shares)) > 0.45


# -- styles -------------------------------------------------------------------------------------
def test_pixel_style_vectors_are_fixed_unit_vectors(fmnist_small):
    images = fmnist_small.images[:500]
    styles = pixel_style_vectors(images, dim=16)
    assert styles.shape == (500, 16) and styles.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(styles, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(styles, pixel_style_vectors(images, dim=16))
    assert not np.allclose(styles, pixel_style_vectors(images, dim=16, seed=1))
    # New images placed against a reference land where they would in the full batch.
    np.testing.assert_allclose(
        pixel_style_vectors(images[:7], reference=images), styles[:7], atol=1e-5
    )


def test_pixel_styles_reflect_appearance(fmnist_small):
    styles = pixel_style_vectors(fmnist_small.images)
    categories = fmnist_small.categories
    cosine = styles @ styles.T
    same = categories[:, None] == categories[None, :]
    assert cosine[same].mean() > cosine[~same].mean() + 0.3


def test_world_styles_do_not_depend_on_the_seed(fmnist_small):
    first = build_world(fmnist_small, "quick", seed=0)
    other = build_world(fmnist_small, "quick", seed=1)
    expected = pixel_style_vectors(first.catalog.images)
    np.testing.assert_array_equal(first.styles, expected)
    assert not np.array_equal(first.tastes, other.tastes)


# -- meta, custom profiles, split convenience ---------------------------------------------------
def test_meta_records_provenance(quick):
    meta = quick.meta
    assert meta["simulated"] is True
    assert (meta["profile"], meta["seed"], meta["source"]) == ("quick", 0, "fashion-mnist")
    assert meta["model"]["n_users"] == 500
    assert meta["model"]["style_dim"] == 16
    json.dumps(meta)  # recorded in the dataset manifest


def test_custom_profile(fmnist_small):
    profile = SimulationProfile("tiny", n_users=40, n_warm_items=200, n_cold_items=20,
                                mean_interactions=8.0)
    dataset = simulate(fmnist_small, profile, seed=1)
    assert dataset.n_users == 40
    assert len(dataset.catalog) == 220
    assert dataset.oracle.shape == (40, 20)
    assert dataset.meta["profile"] == "tiny"


def test_simulate_and_split(fmnist_small):
    profile = SimulationProfile("tiny", n_users=60, n_warm_items=300, n_cold_items=30,
                                mean_interactions=9.0)
    dataset = simulate_and_split(fmnist_small, profile, seed=2)
    assert dataset.n_users == 60  # everyone has >= 5 interactions: the 5-core keeps them all
    assert dataset.meta["split"]["mode"] == "latest"
    assert dataset.meta["split"]["k_core"]["dropped_users"] == 0
    for part in ("validation", "test"):
        assert len(dataset.part(part)) == 60
        assert not np.isin(dataset.part(part).item, dataset.cold_items).any()
    assert not np.isin(dataset.part("train").item, dataset.cold_items).any()
    assert set(np.unique(dataset.split)) == set(SPLIT_CODES.values())


# -- bad input ----------------------------------------------------------------------------------
def test_unknown_profile_lists_known_ones(fmnist_small):
    known = "known: quick, default, paper"
    with pytest.raises(ConfigError, match=f"unknown simulation profile 'huge' \\({known}\\)"):
        simulate(fmnist_small, "huge")


def test_catalog_too_small(fmnist_small):
    small = fmnist_small.subset(np.arange(1_000))
    with pytest.raises(DataError, match=r"1,000 items.*needs 2,100"):
        simulate(small, "quick")


def test_features_only_catalog(fmnist_small):
    catalog = ItemCatalog(
        item_ids=fmnist_small.item_ids, features=np.zeros((3_000, 4), dtype=np.float32),
        categories=fmnist_small.categories, name="features-only",
    )
    with pytest.raises(DataError, match="'features-only' has features but no images.*pixels"):
        simulate(catalog, "quick")


def test_catalog_without_categories(fmnist_small):
    catalog = ItemCatalog(item_ids=fmnist_small.item_ids, images=fmnist_small.images,
                          name="unlabelled")
    with pytest.raises(DataError, match="'unlabelled' has no categories"):
        simulate(catalog, "quick")


def test_negative_seed(fmnist_small):
    with pytest.raises(ConfigError, match="seed"):
        simulate(fmnist_small, "quick", seed=-1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_users": 0}, "n_users must be >= 1"),
        ({"mean_interactions": 3.0}, "mean_interactions must lie in"),
        ({"max_interactions": 4}, "max_interactions"),
        ({"affinity_concentration": 0.0}, "affinity_concentration must be > 0"),
    ],
)
def test_invalid_profile(overrides, message):
    settings = {"n_users": 10, "n_warm_items": 50, "n_cold_items": 5, "mean_interactions": 8.0}
    with pytest.raises(ConfigError, match=message):
        SimulationProfile("bad", **{**settings, **overrides})
