"""The study schema reads the recommender registry: kinds, facts and params (issue 14)."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from varsec.errors import ConfigError
from varsec.params import Param
from varsec.recsys import Recommender, register_recommender
from varsec.study.plan import plan_study
from varsec.study.schema import (
    BPR_KINDS,
    FEATURE_KINDS,
    ITEM2ITEM_KINDS,
    POISON_KINDS,
    RECOMMENDER_KINDS,
    RECONSTRUCTION_MODELS,
    VISUAL_KINDS,
    load_study_text,
)

HEAD = "extractors:\n  cnn: {epochs: 1}\nrecommenders:\n"


def _load(*entries: str):
    return load_study_text(HEAD + "".join(f"  {e}\n" for e in entries), source="s.yaml")


def _error(*entries: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(*entries)
    return str(caught.value)


@pytest.mark.parametrize(("table", "before"), [
    (RECOMMENDER_KINDS, ("bpr-mf", "vbpr", "amr", "dvbpr", "alexrank", "knn", "http",
                         "two-stage", "external")),
    (VISUAL_KINDS, ("vbpr", "amr", "dvbpr", "alexrank", "knn", "http")),
    (FEATURE_KINDS, ("vbpr", "amr", "alexrank", "knn")),
    (POISON_KINDS, ("vbpr", "amr", "alexrank", "knn")),
    (RECONSTRUCTION_MODELS, ("vbpr", "amr")),
    (BPR_KINDS, ("vbpr", "amr", "dvbpr")),  # the BPR objective's models
    (ITEM2ITEM_KINDS, ("knn",)),
])
def test_the_derived_tables_hold_the_hand_written_ones(table, before):
    assert set(table) == set(before) and len(table) == len(before)
    names = [n for n in before if n not in ("two-stage", "external")]
    assert list(table)[: len(names)] == sorted(names)  # registry names sorted, extras last


def test_a_derived_table_behaves_like_a_tuple():
    assert FEATURE_KINDS == ("alexrank", "amr", "knn", "vbpr")
    assert FEATURE_KINDS == ["alexrank", "amr", "knn", "vbpr"]
    assert "knn" in ITEM2ITEM_KINDS and "bpr-mf" not in VISUAL_KINDS
    assert ", ".join(RECONSTRUCTION_MODELS) == "amr, vbpr" and RECONSTRUCTION_MODELS[-1] == "vbpr"
    assert RECOMMENDER_KINDS[-2:] == ("two-stage", "external")
    assert repr(BPR_KINDS) == "('amr', 'dvbpr', 'vbpr')"
    assert FEATURE_KINDS != ("vbpr",)


def test_importing_the_schema_does_not_load_torch():
    probe = "import sys, varsec.study.schema; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_an_unknown_kind_lists_the_registered_names():
    assert _error("r: {kind: mf}") == ("s.yaml:4: recommenders.r.kind: unknown recommender kind "
                                       "'mf' (known: alexrank, amr, bpr-mf, dvbpr, http, knn, "
                                       "vbpr, two-stage, external).")


def test_an_alias_is_read_as_the_name_and_plans_the_same_stages():
    alias = _load("r: {kind: visual-knn, extractor: cnn, params: {neighbours: 5}}")
    name = _load("r: {kind: knn, extractor: cnn, params: {neighbours: 5}}")
    assert alias.recommenders["r"].kind == "knn"
    assert [s.key for s in plan_study(alias).stages] == [s.key for s in plan_study(name).stages]


@pytest.mark.parametrize("kind", ["bpr-mf", "vbpr", "amr", "dvbpr", "alexrank", "knn"])
def test_each_kind_plans_one_recommender_stage_of_that_kind(kind):
    extractor = ", extractor: cnn" if kind in FEATURE_KINDS else ""
    config = _load(f"r: {{kind: {kind}{extractor}}}")
    stages = [s for s in plan_study(config).stages if s.kind == "recommender"]
    assert [s.config["kind"] for s in stages] == [kind]
    assert ("extractor" in stages[0].inputs) == (kind in FEATURE_KINDS)


@pytest.mark.parametrize(("entry", "message"), [
    ("r: {kind: bpr-mf, params: {factorz: 3}}",
     "s.yaml:4: recommenders.r.params.factorz: unknown bpr-mf parameter 'factorz' (known: "
     "epochs, batch_size, lr, optimizer, reg, early_stopping, patience, val_max_users, "
     "factors)."),
    ("r: {kind: vbpr, extractor: cnn, params: {shared_factors: 1}}",
     "s.yaml:4: recommenders.r.params.shared_factors: must be true or false, got 1."),
    ("r: {kind: bpr-mf, params: {optimizer: adagrad}}",
     "s.yaml:4: recommenders.r.params.optimizer: must be one of 'adam', 'sgd', got 'adagrad'."),
    ("r: {kind: knn, extractor: cnn, params: {neighbours: 0}}",
     "s.yaml:4: recommenders.r.params.neighbours: must be an integer >= 1, got 0."),
    ("r: {kind: alexrank, extractor: cnn, params: {seed: 3}}",
     "s.yaml:4: recommenders.r.params.seed: seed is set by the study (seeds / device), not per "
     "model."),
    ("r: {kind: amr, extractor: cnn, params: {epochs: 3, adv_warmup_epochs: 3}}",
     "s.yaml:4: recommenders.r.params.adv_warmup_epochs: AMR parameter adv_warmup_epochs (3) "
     "must be smaller than epochs (3), or AMR never trains adversarially."),
    ("r: {kind: amr, extractor: cnn, params: {adv_warmup_epochs: 30}}",  # epochs by default 30
     "s.yaml:4: recommenders.r.params.adv_warmup_epochs: AMR parameter adv_warmup_epochs (30) "
     "must be smaller than epochs (30)"),
    ("r: {kind: dvbpr, params: {backbone: resnet5}}",
     "s.yaml:4: recommenders.r.params.backbone: DVBPR parameter backbone must be a registered "
     "backbone (alexnet, efficientnet-lite0, fmnist-cnn, resnet50, vgg16), got 'resnet5'."),
    ("r: {kind: dvbpr, params: {backbone_options: {widht: 8}}}",
     "s.yaml:4: recommenders.r.params.backbone_options: DVBPR parameter backbone_options: "
     "backbone 'fmnist-cnn' has no argument 'widht'"),
    ("r: {kind: dvbpr, extractor: cnn}",
     "s.yaml:4: recommenders.r.extractor: a dvbpr recommender learns its own CNN (set "
     "params.backbone); remove the extractor."),
    ("r: {kind: bpr-mf, extractor: cnn}",
     "s.yaml:4: recommenders.r.extractor: a bpr-mf recommender uses no image features; remove "
     "the extractor."),
    ("r: {kind: knn}",
     "s.yaml:4: recommenders.r.extractor: a knn recommender needs an extractor (known: cnn, "
     "catalog)."),
])
def test_bad_recommender_params_are_refused_at_load_with_their_path(entry, message):
    error = _error(entry)
    assert error.startswith(message) and error.count("\n") == 0


def test_a_registered_model_is_a_study_kind_with_its_params_and_facts(scratch_registry):
    @register_recommender("plain")
    class Plain(Recommender):
        needs_features: ClassVar[bool] = True
        params: ClassVar[dict[str, Param]] = {
            **Recommender.params, "width": Param(4, int, low=1, doc="a width")}

    assert "plain" in RECOMMENDER_KINDS and "plain" in FEATURE_KINDS
    assert "plain" not in VISUAL_KINDS
    assert _load("r: {kind: plain, extractor: cnn, params: {width: 2}}").recommenders["r"].kind \
        == "plain"
    assert _error("r: {kind: plain, extractor: cnn, params: {width: 0}}") == \
        "s.yaml:4: recommenders.r.params.width: must be an integer >= 1, got 0."
    assert _error("r: {kind: plain}").startswith("s.yaml:4: recommenders.r.extractor: a plain "
                                                 "recommender needs an extractor")
