"""Popularity that follows looks (``popularity_look_correlation``): off by default, and when on,
the same Zipf values dealt by look appeal, with nothing else in the world changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from varsec.data.simulate import PROFILES, build_world, look_appeal, simulate
from varsec.errors import ConfigError
from varsec.study.schema import load_study_text


def _profile(rho: float):
    return dataclasses.replace(PROFILES["quick"], popularity_look_correlation=rho)


@pytest.fixture(scope="module")
def worlds(fmnist):
    return {rho: build_world(fmnist, _profile(rho), seed=0) for rho in (0.0, 0.5, 0.95)}


def test_zero_is_the_default_world_byte_for_byte(fmnist, worlds):
    default = build_world(fmnist, "quick", seed=0)
    for field in ("log_popularity", "styles", "tastes", "category_affinity", "warm_items"):
        assert np.array_equal(getattr(default, field), getattr(worlds[0.0], field)), field


def test_only_the_dealing_of_popularity_changes(worlds):
    base, moved = worlds[0.0], worlds[0.95]
    assert np.array_equal(np.sort(base.log_popularity), np.sort(moved.log_popularity))
    assert not np.array_equal(base.log_popularity, moved.log_popularity)
    for field in ("styles", "tastes", "category_affinity", "warm_items", "cold_items"):
        assert np.array_equal(getattr(base, field), getattr(moved, field)), field


def test_rank_correlation_with_look_appeal_rises_with_rho(worlds):
    rank = {rho: spearmanr(look_appeal(w), w.log_popularity).statistic
            for rho, w in worlds.items()}
    assert abs(rank[0.0]) < 0.1
    assert 0.3 < rank[0.5] < rank[0.95]
    assert rank[0.95] > 0.8


def test_look_appeal_is_the_mean_utility_without_popularity(worlds):
    world = worlds[0.0]
    users, items = np.arange(world.n_users), np.arange(10)
    popularity = world.profile.popularity_weight * world.log_popularity[items]
    mean_utility = world.logits(users, items).mean(axis=0) - popularity
    assert np.allclose(look_appeal(world)[items], mean_utility, atol=1e-4)


def test_the_simulated_interactions_follow(fmnist):
    data = simulate(fmnist, _profile(0.95), seed=0)
    world = build_world(fmnist, _profile(0.95), seed=0)
    counts = np.bincount(data.interactions.item, minlength=len(world.log_popularity))
    warm = world.warm_items
    assert spearmanr(look_appeal(world)[warm], counts[warm]).statistic > 0.5
    assert data.meta["model"]["popularity_look_correlation"] == 0.95


@pytest.mark.parametrize("rho", [-0.1, 1.5, float("nan")])
def test_out_of_range_values_are_config_errors(rho):
    with pytest.raises(ConfigError, match="popularity_look_correlation must lie in"):
        _profile(rho)


def test_a_study_sets_it_and_keeps_its_key_when_absent():
    from varsec.study.plan import data_config

    assert "popularity_look_correlation" not in data_config(load_study_text("study: s\n"))
    text = "study: s\ndataset: {popularity_look_correlation: 0.5}\n"
    assert data_config(load_study_text(text))["popularity_look_correlation"] == 0.5
    with pytest.raises(ConfigError, match=r"s.yaml:2: dataset.popularity_look_correlation"):
        load_study_text(text.replace("0.5", "2"), source="s.yaml")
