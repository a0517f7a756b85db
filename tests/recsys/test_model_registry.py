"""The recommender registry: names, aliases, facts and refusals (DESIGN.md section 1)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from varsec.errors import ConfigError
from varsec.recsys import (
    AMR,
    BPRMF,
    DVBPR,
    RECOMMENDERS,
    VBPR,
    AlexRank,
    Recommender,
    VisualKNN,
    create_recommender,
    known_recommenders,
    recommender_class,
    register_recommender,
)
from varsec.recsys import base as recsys_base
from varsec.recsys.http_endpoint import HttpRecommender

# name -> (class, aliases, visual, needs_features, pairwise, item_to_item)
BUILTINS = {
    "bpr-mf": (BPRMF, (), False, False, True, False),
    "vbpr": (VBPR, (), True, True, True, False),
    "amr": (AMR, (), True, True, True, False),
    "dvbpr": (DVBPR, (), True, False, True, False),
    "alexrank": (AlexRank, (), True, True, False, False),
    "knn": (VisualKNN, ("visual-knn",), True, True, False, True),
    "http": (HttpRecommender, (), True, False, False, False),
}
# What a model needs to be built at all (the endpoint of an http model; nothing is contacted).
REQUIRED = {"http": {"url": "http://127.0.0.1:9"}}


def test_the_builtins_are_registered_under_their_names_sorted():
    assert known_recommenders() == sorted(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_class_is_found_by_name_and_alias_with_its_facts(name):
    cls, aliases, visual, needs_features, pairwise, item_to_item = BUILTINS[name]
    for key in (name, *aliases):
        assert recommender_class(key) is cls
        assert RECOMMENDERS[key] is cls
        assert type(create_recommender(key, seed=1, **REQUIRED.get(name, {}))) is cls
    assert cls.name == name and cls.aliases == aliases
    facts = (cls.visual, cls.needs_features, cls.pairwise, cls.item_to_item)
    assert facts == (visual, needs_features, pairwise, item_to_item)


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        recommender_class("mf")
    assert str(caught.value) == ("unknown recommender 'mf' (known: alexrank, amr, bpr-mf, dvbpr, "
                                 "http, knn, vbpr).")


def test_a_new_model_registers_from_its_own_file(scratch_registry):
    @register_recommender("plain", aliases=("plain-model",))
    class Plain(Recommender):
        needs_features: ClassVar[bool] = True

    assert "plain" in known_recommenders() and "plain-model" not in known_recommenders()
    assert recommender_class("plain-model") is Plain and RECOMMENDERS["plain"] is Plain
    assert recsys_base._REGISTRY["Plain"] is Plain  # checkpoints find it by class name


def test_registering_the_same_class_again_is_harmless(scratch_registry):
    register_recommender("vbpr")(VBPR)
    assert recommender_class("vbpr") is VBPR


@pytest.mark.parametrize(("name", "aliases", "message"), [
    ("vbpr", (), "recommender name 'vbpr' is already registered (by VBPR)."),
    ("other", ("visual-knn",), "recommender name 'visual-knn' is already registered "
     "(by VisualKNN)."),
    ("two-stage", (), "recommender name 'two-stage' is reserved for the pipeline of two "
     "registered models."),
])
def test_a_taken_or_reserved_name_is_refused(scratch_registry, name, aliases, message):
    class Clash(Recommender):
        pass

    with pytest.raises(ConfigError) as caught:
        register_recommender(name, aliases=aliases)(Clash)
    assert str(caught.value) == message
    assert "other" not in RECOMMENDERS  # nothing of a refused registration is kept


def test_only_recommenders_can_be_registered():
    with pytest.raises(TypeError, match="is not a Recommender subclass"):
        register_recommender("thing")(dict)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backbone": "nope"}, "DVBPR parameter backbone must be a registered backbone (alexnet, "),
    ({"backbone_options": {"widht": 8}}, "DVBPR parameter backbone_options: backbone "
     "'fmnist-cnn' has no argument 'widht' (accepted: "),
])
def test_dvbpr_checks_its_backbone_when_built(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        DVBPR(**kwargs)
    assert str(caught.value).startswith(message)
    assert DVBPR(backbone_options={"widths": [8, 16]}).hp.backbone_options == {"widths": [8, 16]}


@pytest.mark.parametrize("name", known_recommenders())
def test_every_visual_recommender_scores_images_differentiably(name, fitted, planted):
    """Every registered model (one fitted instance of each in conftest's ``fitted``): a visual
    one scores images through a graph the attacks can follow back to the pixels (a query-only
    model declares that it does not: tests/recsys/test_http_endpoint.py)."""
    cls = recommender_class(name)
    if not cls.differentiable:
        assert cls.visual  # it scores images, without gradients
        return
    model = next((m for m in fitted.values() if type(m) is cls), None)
    assert model is not None, f"add a fitted {cls.__name__} to tests/recsys/conftest.py"
    if not cls.visual:
        return
    images = (torch.from_numpy(np.asarray(planted.catalog.images[:3])).float() / 255)
    images.requires_grad_(True)
    scores = model.score_images([0, 1], images)
    assert scores.shape == (2, 3)
    (grad,) = torch.autograd.grad(scores.sum(), images)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
