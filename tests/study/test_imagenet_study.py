"""The shipped ``imagenet`` study: Fashion-MNIST served at 224 x 224 RGB through EfficientNet-Lite0
(it loads and plans at every profile), and a tiny real run of the same study at 32 px."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import yaml

from varsec.errors import VarsecWarning
from varsec.study.commands import find_study, shipped_studies
from varsec.study.plan import plan_study
from varsec.study.runner import dry_run
from varsec.study.schema import load_study, study_from_data


def test_the_imagenet_study_is_shipped_and_dry_runs(tmp_path):
    assert "imagenet" in shipped_studies()
    listing = dry_run(find_study("imagenet"), tmp_path).render()
    assert "to do" in listing and "attack pgd-i2i on imagenet eps 7.65" in listing


@pytest.mark.parametrize("profile", ["quick", "default", "paper"])
def test_every_profile_serves_224_px_rgb_on_a_cpu_sized_catalog(profile):
    config = load_study(find_study("imagenet"), profile=profile)
    data = next(s for s in plan_study(config) if s.kind == "data")
    assert (data.config["image_size"], data.config["mode"]) == (224, "RGB")
    items = data.config["n_warm_items"] + data.config["n_cold_items"]
    assert items * 3 * 224 * 224 < 400 * 2**20  # the resampled catalog stays under 400 MiB
    assert config.extractors["imagenet"].backbone == "efficientnet-lite0"
    assert config.extractors["imagenet"].training == "none"


@pytest.mark.parametrize("profile", ["quick", "default"])
def test_the_papers_budgets_are_kept_and_reachable(profile):
    with warnings.catch_warnings():
        warnings.simplefilter("error", VarsecWarning)  # e.g. steps x lr that cannot reach eps
        config = load_study(find_study("imagenet"), profile=profile)
    attacks = config.attacks
    assert max(attacks["insa"].eps) == 32 and max(attacks["expa"].eps) == 32  # AIP
    assert attacks["pgd-i2i"].eps == [7.65] and attacks["fgsm-i2i"].eps == [7.65]  # thesis
    insa, expa = attacks["insa"], attacks["expa"]
    batches = math.ceil(config.dataset.n_users / insa.params["users_per_step"])
    assert insa.steps * batches * insa.params["lr"] >= 32  # Adam lr in 8-bit levels
    assert expa.steps * expa.params["lr"] >= 32


def _tiny_imagenet() -> dict:
    """The shipped study at 32 px on a tiny simulated market with one- and two-step attacks."""
    data = yaml.safe_load(find_study("imagenet").read_text())
    data.pop("overrides")
    data["dataset"].update(profile="quick", image_size=32, n_users=30, n_warm_items=200,
                           n_cold_items=4)
    data["recommenders"]["bpr"]["params"] = {"factors": 8, "epochs": 1, "early_stopping": False}
    data["recommenders"]["vbpr"]["params"] = {"factors": 8, "visual_factors": 8, "epochs": 1,
                                              "early_stopping": False}
    data["recommenders"]["knn"]["params"] = {"neighbours": 10}
    data["recommenders"]["bpr-vbpr"]["k"] = 10
    for name, steps in (("insa", 1), ("expa", 2), ("pgd-i2i", 2)):
        data["attacks"][name]["steps"] = steps
    data["attacks"]["insa"].update(eps=[32], params={"lr": 32.0})  # steps x lr reach eps 32
    data["attacks"]["expa"]["params"] = {"lr": 16.0}
    data["attacks"]["pgd-i2i"]["n_items"] = data["attacks"]["fgsm-i2i"]["n_items"] = 3
    data["evaluation"].update(cold_items=4, bootstrap=0, protocols=[{"kind": "full"}],
                              rank_min=[3])
    data["report"] = {"enabled": False}
    return data


@pytest.mark.benchmark
def test_a_tiny_run_attacks_32_px_rgb_images(tmp_path):
    from varsec.data.catalog import Dataset
    from varsec.study.runner import run_study

    result = run_study(study_from_data(_tiny_imagenet()), tmp_path, log=None)
    assert result.count("done") == len(result.plan)
    data = next(s for s in result.plan if s.kind == "data")
    dataset = Dataset.load(tmp_path / "cache" / "data" / data.key / "dataset")
    assert dataset.catalog.image_shape == (3, 32, 32)
    assert np.array_equal(dataset.catalog.images[:, 0], dataset.catalog.images[:, 2])
    table = result.table
    protocols = set(table["protocol"])
    assert "item2item" in protocols and any(p.startswith("two-stage") for p in protocols)
    assert set(table["attack"]) >= {"insa", "expa", "pgd-i2i", "fgsm-i2i"}
