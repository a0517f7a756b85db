"""The Recommender base: declared parameters, index checks, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varsec.errors import ConfigError, DataError, ModelError
from varsec.recsys import (
    AMR,
    BPRMF,
    DVBPR,
    VBPR,
    AlexRank,
    Recommender,
    VisualKNN,
    create_recommender,
)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (BPRMF, {"factors": 0}, "BPRMF parameter factors must be an integer >= 1, got 0."),
        (BPRMF, {"factors": 2.5}, "BPRMF parameter factors must be an integer >= 1, got 2.5."),
        (BPRMF, {"lr": 0.0}, "BPRMF parameter lr must be a number > 0, got 0.0."),
        (BPRMF, {"optimizer": "adagrad"},
         "BPRMF parameter optimizer must be one of 'adam', 'sgd', got 'adagrad'."),
        (VBPR, {"shared_factors": "yes"},
         "VBPR parameter shared_factors must be true or false, got 'yes'."),
        (AMR, {"adv_eps": -1.0}, "AMR parameter adv_eps must be a number > 0, got -1.0."),
        (AMR, {"epochs": 3, "adv_warmup_epochs": 3},
         "AMR parameter adv_warmup_epochs (3) must be smaller than epochs (3)"),
        (VisualKNN, {"neighbours": -2},
         "VisualKNN parameter neighbours must be an integer >= 1, got -2."),
        (AlexRank, {"history": "all"},
         "AlexRank parameter history must be one of 'train', 'train+validation', got 'all'."),
        (BPRMF, {"device": "gpu0"},
         "BPRMF parameter device must be cpu, cuda or cuda:N, got 'gpu0'."),
    ],
)
def test_bad_parameters_raise_config_error_naming_them(cls, kwargs, message):
    with pytest.raises(ConfigError) as caught:
        cls(**kwargs)
    assert str(caught.value).startswith(message)


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match=r"BPRMF has no parameter 'factor' \(known: seed"):
        BPRMF(factor=8)


def test_hyperparameters_and_signature_are_declared():
    model = VBPR(factors=4)
    assert model.hyperparameters["factors"] == 4
    assert model.hyperparameters["visual_factors"] == VBPR.params["visual_factors"].default
    import inspect

    assert "shared_factors" in inspect.signature(VBPR).parameters
    assert isinstance(create_recommender("vbpr", factors=3), VBPR)
    with pytest.raises(ConfigError, match="unknown recommender 'mf'"):
        create_recommender("mf")


def test_unfitted_model_cannot_score():
    with pytest.raises(ModelError, match="BPRMF is not fitted: call fit"):
        BPRMF().score([0])


@pytest.mark.parametrize("name", ["bpr", "vbpr", "dvbpr", "alexrank", "knn"])
def test_unknown_users_and_items_raise_data_error(fitted, planted, name):
    model = fitted[name]
    with pytest.raises(DataError, match="user index 60 is unknown to the model: it knows 60 users"):
        model.score([0, 60])
    with pytest.raises(DataError, match=r"item index -1 is unknown to the model: it knows 100 "):
        model.score([0], [-1, 3])
    with pytest.raises(DataError, match="user indices must be integers"):
        model.score(np.array([0.5]))


def test_score_shapes_and_item_subsets_agree(fitted, planted):
    for model in fitted.values():
        full = model.score([3, 1])
        assert full.shape == (2, planted.n_items)
        subset = model.score([3, 1], [5, 0, 99])
        torch.testing.assert_close(subset, full[:, [5, 0, 99]])


def test_non_visual_model_refuses_images(fitted):
    with pytest.raises(ModelError, match="BPRMF is not a visual model: it cannot score images"):
        fitted["bpr"].score_images([0], torch.rand(1, 1, 28, 28))


def test_image_and_feature_inputs_are_checked(fitted):
    with pytest.raises(DataError, match=r"images must be a float tensor of shape \(B, C, H, W\)"):
        fitted["vbpr"].score_images([0], torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"VBPR scores feature vectors of shape \(B, 16\)"):
        fitted["vbpr"].score_features([0], torch.zeros(2, 5))
    with pytest.raises(DataError, match=r"DVBPR was trained on images of shape \(1, 28, 28\)"):
        fitted["dvbpr"].score_images([0], torch.rand(1, 1, 30, 30))


@pytest.mark.parametrize("name", ["bpr", "vbpr", "vbpr-shared", "amr", "dvbpr", "alexrank", "knn"])
def test_save_load_round_trip_gives_identical_scores(fitted, planted, tmp_path, name):
    model = fitted[name]
    path = model.save(tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left over
    loaded = Recommender.load(path)
    assert type(loaded) is type(model)
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.dataset_hash == planted.content_hash()
    assert loaded.training_log == model.training_log
    users = np.arange(planted.n_users)
    torch.testing.assert_close(loaded.score(users), model.score(users), rtol=0, atol=0)
    if model.visual:
        features = torch.as_tensor(planted.catalog.features[:4])
        if name == "dvbpr":
            features = model.image_features(torch.rand(4, 1, 28, 28))
        torch.testing.assert_close(loaded.score_features(users, features),
                                   model.score_features(users, features), rtol=0, atol=0)


def test_checkpoint_records_class_hyperparameters_and_dataset(fitted, tmp_path):
    path = fitted["vbpr"].save(tmp_path / "vbpr.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["class"] == "VBPR"
    assert payload["hyperparameters"]["visual_factors"] == 8
    assert len(payload["dataset_hash"]) == 64


def test_loading_checks_class_and_file(fitted, tmp_path):
    path = fitted["vbpr"].save(tmp_path / "vbpr.pt")
    assert isinstance(VBPR.load(path), VBPR)
    with pytest.raises(ModelError, match="holds a VBPR checkpoint, not a BPRMF"):
        BPRMF.load(path)
    with pytest.raises(ModelError, match="no such varsec recommender checkpoint"):
        Recommender.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable varsec recommender checkpoint"):
        Recommender.load(tmp_path / "junk.pt")


def test_loaded_visual_model_needs_its_extractor_again(fitted, planted, extractor, tmp_path):
    loaded = VBPR.load(fitted["vbpr"].save(tmp_path / "vbpr.pt"))
    images = torch.rand(2, 1, 28, 28)
    with pytest.raises(ModelError, match="has no image extractor: pass extractor= to fit"):
        loaded.score_images([0], images)
    loaded.attach_extractor(extractor)
    torch.testing.assert_close(loaded.score_images([0, 1], images),
                               fitted["vbpr"].score_images([0, 1], images))


def test_dvbpr_is_deterministic_under_its_seed(planted):
    def scores(seed):
        model = DVBPR(factors=4, epochs=1, batch_size=128, early_stopping=False, seed=seed,
                      backbone_options={"widths": [4, 4, 4]})
        return model.fit(planted).score([0, 1])

    torch.testing.assert_close(scores(3), scores(3), rtol=0, atol=0)
    assert not torch.equal(scores(3), scores(4))
