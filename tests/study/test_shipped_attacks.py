"""Every attack of every shipped study, built from its planned stage config the way the attack
stage builds it (:func:`varsec.study.builtin.attacks._rule`), moves pixels after quantisation and
improves its own objective, at the quick profile, on tiny real models (a few images each)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
from attack_helpers import RandomFeatures, TinyRanker, logistic_classifier

from varsec.attacks import (
    INSA,
    BPRUntargeted,
    ClassifierObjective,
    FeatureTarget,
    catalog_pixels,
    expa_objective,
    run_attack,
)
from varsec.attacks.bpr_per_user import BPRPerUser
from varsec.study.builtin.attacks import _rule
from varsec.study.builtin.common import evaluation_lists
from varsec.study.commands import find_study, shipped_studies
from varsec.study.plan import plan_study
from varsec.study.schema import load_study

SANDAL, SNEAKER = 5, 7


def _attack_configs() -> list[tuple[str, dict]]:
    """(id, stage config) of each distinct non-adaptive gradient attack of the shipped studies."""
    found: dict[str, tuple[str, dict]] = {}
    for name in shipped_studies():
        config = load_study(find_study(name), profile="quick")
        for stage in plan_study(config):
            slice_ = stage.config
            if stage.kind != "attack" or slice_.get("through") or slice_["kind"] == "csema":
                continue
            key = repr({k: v for k, v in slice_.items()
                        if k in ("kind", "eps", "steps", "alpha", "params", "objective")})
            found.setdefault(key, (f"{name}-{stage.labels['attack']}-eps{slice_['eps']:g}",
                                   slice_))
    return list(found.values())


CONFIGS = _attack_configs()


@pytest.fixture(scope="module")
def world(fmnist_small):
    from varsec.data import simulate_and_split

    simulated = simulate_and_split(fmnist_small, "quick", seed=0)
    features = RandomFeatures().eval()
    classifier = logistic_classifier(fmnist_small, 1500, epochs=40)
    return {"data": simulated, "features": features, "classifier": classifier,
            "ranker": TinyRanker(seed=0).fit(simulated, extractor=features),
            "catalog": fmnist_small}


def _problem(config: dict, world: dict):
    """(objective, clean uint8 images, optimizer steps) as the attack stage builds them."""
    family, params, data = config["family"], config["params"], world["data"]
    cold = catalog_pixels(data, np.asarray(data.cold_items[:4]))
    if config["kind"] == "insa":
        objective = INSA(world["ranker"], users_per_step=params.get("users_per_step"),
                         aggregate=params.get("aggregate", "logsumexp"), seed=config["seed"])
        return objective, cold, objective.optimizer_steps(config["steps"])
    if config["kind"] == "expa":
        return expa_objective(world["features"], data), cold, None
    catalog = world["catalog"]
    if family == "category":
        items = np.flatnonzero(catalog.categories == SANDAL)[:4]
        goal = None
        if config["objective"] == "classifier-targeted":
            goal = np.full(len(items), SNEAKER)
        objective = ClassifierObjective(world["classifier"], labels=catalog.categories[items],
                                        target=goal, kappa=params.get("kappa", 0.0))
        return objective, torch.from_numpy(catalog.images[items]), None
    if family == "item2item":
        images = torch.from_numpy(catalog.images[:8])
        targets = world["features"].features(images[4:].float() / 255).detach()
        metric = "cosine" if config["objective"] != "feature-l2" else "l2"
        return FeatureTarget(world["features"], target_features=targets, metric=metric), \
            images[:4], None
    if "lists" in config:  # per user: two users' sampled lists
        users, lists = evaluation_lists(data, config["lists"]["negatives"], None, config["seed"])
        objective = BPRPerUser(world["ranker"], data, users[:2], lists[:2])
        return objective, objective.images, None
    objective = BPRUntargeted(world["ranker"], data, data.warm_items()[:4], seed=config["seed"])
    return objective, objective.images, None


def test_every_shipped_study_has_gradient_attacks():
    kinds = {config["kind"] for _, config in CONFIGS}
    assert {"insa", "expa", "pgd", "fgsm", "cw", "cw-linf"} <= kinds


@pytest.mark.parametrize("config", [c for _, c in CONFIGS], ids=[i for i, _ in CONFIGS])
def test_shipped_attack_moves_pixels_and_improves_its_objective(config, world):
    objective, clean, steps = _problem(config, world)
    rule = _rule(config, steps)
    result = run_attack(objective, clean, rule, seed=config["seed"], early_stop=False)
    moved = (result.images.int() - clean.int()).abs().flatten(1).amax(1)
    assert int(moved.max()) > 0, "quantised images equal the clean ones: the budget is a no-op"
    if config["eps"] < 255:
        assert int(moved.max()) <= int(np.floor(config["eps"] + 1e-6))
    before, after = objective.evaluate(clean), objective.evaluate(result.images)
    if config["kind"] == "cw":  # C&W-L2 minimises f + distortion: its f must fall
        index = torch.arange(len(clean))
        with torch.no_grad():
            assert float(objective.cw_loss(result.float_images(), index).mean()) < \
                float(objective.cw_loss(clean.float() / 255, index).mean())
    else:
        assert float(after.mean()) > float(before.mean())
