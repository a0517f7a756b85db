"""Model behaviour on planted data: learning, visual signal, cold items, AMR, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recsys_helpers import FAST, cold_auc, hit_rate_at_10

from varsec.data.catalog import Dataset, ItemCatalog
from varsec.errors import DataError
from varsec.metrics.ranking import build_exclusion, evaluate_full
from varsec.recsys import AMR, BPRMF, DVBPR, VBPR, AlexRank, VisualKNN


def full_ranking(model, dataset):
    seen = np.isin(dataset.split, (0, 1))
    held = dataset.part("test")
    tests = np.full(dataset.n_users, -1)
    tests[held.user] = held.item
    everyone = np.arange(dataset.n_users)
    exclude = build_exclusion(
        np.concatenate([dataset.interactions.user[seen],
                        np.repeat(everyone, len(dataset.cold_items))]),
        np.concatenate([dataset.interactions.item[seen],
                        np.tile(dataset.cold_items, len(everyone))]),
        dataset.n_users, dataset.n_items,
    )
    return evaluate_full(model.score, dataset.n_items, tests, exclude, ks=(10,))


def without_features(dataset: Dataset) -> Dataset:
    catalog = ItemCatalog(dataset.catalog.item_ids, images=dataset.catalog.images, name="pixels")
    return Dataset(catalog, dataset.interactions, dataset.split, dataset.cold_items,
                   dataset.oracle)


def without_images(dataset: Dataset) -> Dataset:
    catalog = ItemCatalog(dataset.catalog.item_ids, features=dataset.catalog.features,
                          name="features-only")
    return Dataset(catalog, dataset.interactions, dataset.split, dataset.cold_items,
                   dataset.oracle)


def test_bpr_mf_learns_the_planted_preferences(fitted, planted):
    random_hit_rate = 10 / (planted.n_items - len(planted.cold_items) - 11)
    assert hit_rate_at_10(fitted["bpr"], planted) > 3 * random_hit_rate


def test_vbpr_beats_bpr_mf_when_preference_follows_the_features(fitted, planted):
    bpr, vbpr = full_ranking(fitted["bpr"], planted), full_ranking(fitted["vbpr"], planted)
    assert vbpr["HR@10"].mean() > bpr["HR@10"].mean()
    assert vbpr["AUC"].mean() > bpr["AUC"].mean() + 0.01


@pytest.mark.parametrize("name", ["vbpr", "vbpr-shared", "amr", "alexrank", "knn"])
def test_visual_models_rank_cold_items_above_random(fitted, planted, name):
    scores = fitted[name].score(np.arange(planted.n_users), planted.cold_items)
    assert cold_auc(scores, planted.oracle) > 0.65


def test_dvbpr_learns_from_pixels(planted):
    model = DVBPR(factors=8, epochs=12, lr=3e-3, batch_size=64, patience=4,
                  backbone_options={"widths": [8, 16, 16]}).fit(planted)
    random_hit_rate = 10 / (planted.n_items - len(planted.cold_items) - 11)
    assert hit_rate_at_10(model, planted) > 2 * random_hit_rate
    scores = model.score(np.arange(planted.n_users), planted.cold_items)
    assert cold_auc(scores, planted.oracle) > 0.6


def test_cold_items_are_scored_by_content_only(fitted, planted):
    users = np.arange(planted.n_users)
    cold = planted.cold_items
    features = torch.as_tensor(planted.catalog.features[cold])
    for name in ("vbpr", "vbpr-shared", "amr", "alexrank", "knn"):
        model = fitted[name]
        torch.testing.assert_close(model.score_features(users, features), model.score(users, cold))
    images = torch.as_tensor(planted.catalog.images[cold]).float() / 255
    dvbpr = fitted["dvbpr"]
    torch.testing.assert_close(dvbpr.score_images(users, images), dvbpr.score(users, cold),
                               atol=1e-5, rtol=1e-5)


def test_vbpr_with_extractor_only_scores_images_like_catalog_items(planted, extractor):
    pixels_only = without_features(planted)
    model = VBPR(factors=4, visual_factors=4, epochs=3, early_stopping=False)
    model.fit(pixels_only, extractor=extractor)
    images = torch.as_tensor(planted.catalog.images[planted.cold_items]).float() / 255
    torch.testing.assert_close(model.score_images([0, 5], images),
                               model.score([0, 5], planted.cold_items), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["vbpr", "vbpr-shared", "amr", "dvbpr", "alexrank"])
def test_score_images_is_differentiable_in_the_pixels(fitted, planted, name):
    images = torch.as_tensor(planted.catalog.images[planted.cold_items[:3]]).float() / 255
    images.requires_grad_(True)
    scores = fitted[name].score_images(np.arange(planted.n_users), images)
    assert scores.shape == (planted.n_users, 3)
    scores.mean(0).sum().backward()
    assert torch.isfinite(images.grad).all()
    assert (images.grad.reshape(3, -1).abs().sum(1) > 0).all()


def test_a_gradient_step_on_pixels_raises_the_mean_score(fitted, planted):
    model = fitted["vbpr"]
    users = np.arange(planted.n_users)
    images = torch.as_tensor(planted.catalog.images[planted.cold_items[:1]]).float() / 255
    images.requires_grad_(True)
    before = model.score_images(users, images).mean()
    before.backward()
    stepped = (images + 2 / 255 * images.grad.sign()).clamp(0, 1)
    assert model.score_images(users, stepped).mean() > before


def test_amr_perturbation_raises_the_bpr_loss(planted):
    model = AMR(factors=8, visual_factors=8, adv_eps=0.5, **FAST).fit(planted)
    train = planted.part("train")
    users, pos = torch.as_tensor(train.user), torch.as_tensor(train.item)
    neg = torch.as_tensor(np.random.default_rng(0).choice(planted.warm_items(), len(users)))
    clean = model.bpr_loss(users, pos, neg)
    delta_pos, delta_neg = model.adversarial_perturbation(users, pos, neg)
    perturbed = model._loss_with_deltas(users, pos, neg, delta_pos, delta_neg)
    reversed_ = model._loss_with_deltas(users, pos, neg, -delta_pos, -delta_neg)
    assert perturbed > clean > reversed_
    adversarial = model.adversarial_loss(users, pos, neg)
    assert float(adversarial.detach()) == pytest.approx(float(perturbed.detach()))
    size = float(model.hp.adv_eps / model.feature_scale)
    torch.testing.assert_close(delta_pos.norm(dim=1), torch.full((len(users),), size))


def test_amr_matches_vbpr_quality_on_clean_data(fitted, planted):
    amr, vbpr = hit_rate_at_10(fitted["amr"], planted), hit_rate_at_10(fitted["vbpr"], planted)
    assert amr >= 0.85 * vbpr


def test_amr_warm_up_trains_plain_vbpr_first(planted):
    model = AMR(factors=4, visual_factors=4, epochs=4, adv_warmup_epochs=2, patience=1,
                lr=0.01).fit(planted)
    assert [entry["val_hr@10"] is None for entry in model.training_log][:2] == [True, True]
    assert model.best_epoch > 2


def test_pixel_model_refuses_a_features_only_catalog(planted):
    with pytest.raises(DataError, match="DVBPR learns from pixels, but catalog 'features-only' "
                                        "is features-only"):
        DVBPR(epochs=1).fit(without_images(planted))


@pytest.mark.parametrize("cls", [VBPR, AMR, AlexRank, VisualKNN])
def test_feature_model_needs_features_or_an_extractor(planted, cls):
    with pytest.raises(DataError, match=f"{cls.__name__} needs visual features, but catalog "
                                        "'pixels' has none and no extractor was given"):
        cls().fit(without_features(planted))


def test_feature_matrix_argument_is_checked(planted):
    with pytest.raises(DataError, match=r"VBPR: features have shape \(3, 2\), expected \(100, D\)"):
        VBPR().fit(planted, features=np.zeros((3, 2)))


def test_shared_factor_form_has_no_separate_visual_user_vector(fitted):
    shared = fitted["vbpr-shared"]
    assert not hasattr(shared, "user_theta")
    assert shared.embedding.out_features == shared.hp.factors


def test_bpr_only_model_types_train_with_plain_bpr(planted):
    model = BPRMF(factors=4, epochs=2, early_stopping=False).fit(planted)
    assert not model.visual
