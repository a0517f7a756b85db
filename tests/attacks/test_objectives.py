"""Objectives: each improves over the steps; INSA promotes a cold item above its cooperative
twin; EXPA pulls features towards the hook; BPR-untargeted raises the BPR loss; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.attacks import (
    INSA,
    PGD,
    AdamStep,
    BPRUntargeted,
    ClassifierObjective,
    FeatureTarget,
    PGDStep,
    catalog_pixels,
    expa_objective,
    most_interacted_item,
    poison_catalog,
    resolve_hook,
    run_attack,
)
from varsec.data.catalog import ItemCatalog
from varsec.errors import ConfigError, DataError, ModelError
from varsec.metrics.attack import aip_measures
from varsec.recsys.two_stage import TwoStage


def _improves(objective, images, rule_for_steps, index=None):
    """Mean objective on quantised images: clean, after 1 step, after more steps."""
    values = [float(objective.evaluate(images, index).mean())]
    for steps in (1, 6):
        result = run_attack(objective, images, rule_for_steps(steps), index=index,
                            early_stop=False)
        values.append(float(objective.evaluate(result.images, index).mean()))
    return values


def _pgd(steps):
    return PGDStep(8, alpha=2, steps=steps, random_start=False)


@pytest.fixture(scope="module")
def cold(simulated):
    items = np.asarray(simulated.cold_items[:8])
    return items, catalog_pixels(simulated, items)


def test_classifier_objectives_improve_over_the_steps(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    untargeted = _improves(ClassifierObjective(easy_classifier, labels), images, _pgd)
    targeted = _improves(ClassifierObjective(easy_classifier, labels, target=7), images, _pgd)
    for clean, one, many in (untargeted, targeted):
        assert clean < one < many


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_feature_objectives_improve_over_the_steps(metric, small_cnn, fmnist_batch):
    images, _ = fmnist_batch
    objective = FeatureTarget(small_cnn, target_images=images[:1], metric=metric)
    clean, one, many = _improves(objective, images[1:9], _pgd)
    assert clean < one < many


def test_insa_and_bpr_objectives_improve_over_the_steps(ranker, simulated, cold):
    _, images = cold
    clean, one, many = _improves(INSA(ranker), images, _pgd)
    assert clean < one < many
    warm = simulated.warm_items()[:16]
    bpr = BPRUntargeted(ranker, simulated, warm)
    clean, one, many = _improves(bpr, bpr.images, _pgd)
    assert clean < one < many


def test_insa_lifts_cold_items_above_their_cooperative_twins(ranker, first_stage, simulated,
                                                             cold):
    items, images = cold
    result = run_attack(INSA(ranker, users_per_step=128, seed=0), images,
                        AdamStep(eps=16, lr=2.0, steps=10))
    two_stage = TwoStage(first_stage, ranker, k=50)
    sets = two_stage.prepare(simulated)
    measures = aip_measures(two_stage, sets, images, result.images, items=items)
    per_item = measures.items
    assert (per_item["delta"] > 0).all()  # every user's score rises on average (Δ_i > 0)
    assert (per_item["rank_adv"] < per_item["rank_coop"]).all()
    assert measures.value("HR_cold_adv", 10) > measures.value("HR_cold_coop", 10)
    assert measures.value("delta_cold") > 0


def test_expa_moves_features_towards_the_hook(extractor, simulated, cold):
    _, images = cold
    objective = expa_objective(extractor, simulated)
    hook = most_interacted_item(simulated)
    before = -objective.evaluate(images)
    result = run_attack(objective, images, AdamStep(eps=16, lr=2.0, steps=10))
    after = -objective.evaluate(result.images)
    assert (after < before).all()
    hook_features = extractor.features(catalog_pixels(simulated, [hook]).float() / 255)
    assert torch.allclose(objective.targets, hook_features)


def test_hook_choice_default_and_given(simulated):
    train = simulated.part("train")
    counts = np.bincount(train.item, minlength=simulated.n_items)
    assert resolve_hook(simulated) == int(np.argmax(counts)) == most_interacted_item(simulated)
    some_id = simulated.catalog.item_ids[5]
    assert resolve_hook(simulated, some_id) == 5
    with pytest.raises(ConfigError, match="^hook item 'nope' is not in catalog"):
        resolve_hook(simulated, "nope")
    with pytest.raises(ConfigError, match="needs interactions; give a hook item id"):
        resolve_hook(simulated.catalog)


def test_bpr_untargeted_attack_over_the_catalog_leaves_cold_items_alone(ranker, simulated):
    items = np.concatenate([simulated.warm_items()[:12], simulated.cold_items[:4]])
    done, result = poison_catalog(ranker, simulated, PGDStep(8, steps=2, random_start=False),
                                  items)
    assert np.array_equal(done, items)
    clean = catalog_pixels(simulated, items)
    changed = (result.images != clean).flatten(1).any(1)
    assert changed[:12].all() and not changed[12:].any()  # cold items: no triplet, no gradient


def test_objectives_needing_a_visual_recommender_refuse_a_non_visual_one(first_stage,
                                                                          simulated):
    with pytest.raises(ModelError, match="^INSA needs a visual recommender .* TinyBPR is not"):
        INSA(first_stage)
    with pytest.raises(ModelError, match="BPR-untargeted attack needs a visual recommender"):
        BPRUntargeted(first_stage, simulated)


def test_targeted_attacks_need_a_target(easy_classifier, fmnist_batch):
    _, labels = fmnist_batch
    with pytest.raises(ConfigError, match="^a targeted classifier attack needs a target class"):
        ClassifierObjective(easy_classifier, labels, targeted=True)
    with pytest.raises(ConfigError, match=r"^a targeted attack needs a target class: \.targeted"):
        PGD(easy_classifier).targeted()
    with pytest.raises(ConfigError, match="untargeted classifier attack needs the true labels"):
        ClassifierObjective(easy_classifier)
    with pytest.raises(ConfigError, match="feature-target attack needs exactly one of"):
        FeatureTarget(easy_classifier)


def test_pixel_attacks_on_a_features_only_catalog_fail_clearly(extractor):
    catalog = ItemCatalog(item_ids=["a", "b"], features=np.ones((2, 4), np.float32),
                          name="vbpr-release")
    with pytest.raises(DataError, match="^EXPA .* catalog 'vbpr-release' is features-only"):
        expa_objective(extractor, catalog, "a")
    with pytest.raises(DataError, match="perturbs pixels, but catalog 'vbpr-release'"):
        catalog_pixels(catalog, [0])


def test_insa_refuses_unknown_users_when_built(ranker):
    with pytest.raises(DataError, match="user index 100000 is unknown to the model"):
        INSA(ranker, users=[0, 100000])
