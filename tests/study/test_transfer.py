"""Transfer attacks: a surrogate recommender fitted on the interactions an attacker observes
(``observed_users``), a promotion attack crafted on it and evaluated on the platform's model,
and the report's transfer matrix beside the white-box diagonal."""

from __future__ import annotations

import numpy as np
import pytest
from study_standins import TINY_MODELS, TINY_SURROGATE, run_tiny_real_study, tiny_catalog

from varsec.data.catalog import SPLIT_CODES
from varsec.errors import ConfigError
from varsec.study.builtin.recsys import observed_view
from varsec.study.plan import plan_study
from varsec.study.report.data import StudyResults
from varsec.study.report.transfer import transfer_table
from varsec.study.schema import load_study_text

STUDY = "\nstudy: tiny-transfer\n" + TINY_MODELS + TINY_SURROGATE + """attacks:
  insa: {kind: insa, recommender: pipe-sur, eps: [32], steps: 3, n_items: 8,
         evaluate: [pipe-sur, pipe]}
evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  cold_items: 8
  bootstrap: 0
"""


def test_the_surrogate_sees_only_the_observed_users_train_interactions():
    from varsec.data.simulate import SimulationProfile, simulate_and_split

    profile = SimulationProfile("tiny", n_users=80, n_warm_items=240, n_cold_items=40,
                                mean_interactions=9.0)
    dataset = simulate_and_split(tiny_catalog(), profile, 0, validation=True)
    view = observed_view(dataset, 0.25, seed=0)
    train = SPLIT_CODES["train"]
    seen = np.unique(view.interactions.user[view.split == train])
    assert len(seen) == 20  # a quarter of 80 users
    kept = np.isin(dataset.interactions.user, seen) | (dataset.split != train)
    assert len(view.interactions) == int(kept.sum())
    assert view.n_users == dataset.n_users and view.n_items == dataset.n_items
    assert np.array_equal(view.part("test").item, dataset.part("test").item)
    again = observed_view(dataset, 0.25, seed=0)  # seeded: the same accounts
    assert np.array_equal(again.interactions.user, view.interactions.user)


def test_only_surrogates_get_a_new_stage_key():
    config = load_study_text(STUDY)
    recs = {s.labels["recommender"]: s for s in plan_study(config).of_kind("recommender")}
    assert recs["vbpr-sur"].config["observed_users"] == 0.3
    assert "observed_users" not in recs["vbpr"].config  # the platform's models keep their keys


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    return run_tiny_real_study(STUDY, tmp_path_factory.mktemp("transfer"))


def test_the_report_has_the_transfer_matrix_with_the_white_box_diagonal(transfer_run):
    results = StudyResults(transfer_run.config, transfer_run.table, transfer_run.plan,
                           transfer_run.statuses, transfer_run.out)
    frame = transfer_table(results)
    assert list(frame.index) == ["insa eps 32 / crafted on pipe-sur"]
    assert set(frame.columns) == {"pipe", "pipe-sur"}
    for column in frame.columns:  # "adversarial (cooperative)", both measured
        adversarial, cooperative = frame.loc[frame.index[0], column].replace(")", "").split(" (")
        assert 0 <= float(adversarial) <= 1 and 0 <= float(cooperative) <= 1


def test_no_transfer_no_table(transfer_run):
    results = StudyResults(transfer_run.config, transfer_run.table, transfer_run.plan,
                           transfer_run.statuses, transfer_run.out)
    white_box = results._relabelled(lambda label, eps: label)
    white_box.plan.stages = [s for s in white_box.plan.stages if not (
        s.kind == "evaluation" and s.labels.get("recommender") == "pipe")]
    assert transfer_table(white_box) is None


@pytest.mark.parametrize(("entry", "match"), [
    ("  x: {kind: bpr-mf, observed_users: 0}\n", r"recommenders\.x\.observed_users"),
    ("  x: {kind: bpr-mf, observed_users: 1.5}\n", r"recommenders\.x\.observed_users"),
    ("  x: {kind: two-stage, first_stage: bpr, ranker: vbpr, observed_users: 0.5}\n",
     r"recommenders\.x\.observed_users: a two-stage pipeline is fitted through its parts"),
])
def test_bad_observed_users_are_refused(entry, match):
    text = "study: s\n" + TINY_MODELS + entry
    with pytest.raises(ConfigError, match=match):
        load_study_text(text)


def test_surrogate_extractors_train_on_disjoint_halves_with_their_own_seed():
    from varsec.study.builtin.vision import _half

    catalog = tiny_catalog(101)
    halves = [_half({"catalog_half": h, "seed": 3 + offset, "seed_offset": offset}, catalog)
              for h, offset in ((0, 0), (1, 5))]
    ids = [set(h.item_ids) for h in halves]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == set(catalog.item_ids)
    assert abs(len(ids[0]) - len(ids[1])) <= 1
    assert _half({"seed": 3}, catalog) is catalog  # no half: all of it
    text = ("study: s\nextractors:\n  cnn: {epochs: 1}\n  cnn-sur: {epochs: 1, catalog_half: 1, "
            "seed_offset: 5}\n")
    extractors = {s.labels["extractor"]: s for s in
                  plan_study(load_study_text(text)).of_kind("extractor")}
    assert extractors["cnn-sur"].config["catalog_half"] == 1
    assert extractors["cnn-sur"].config["seed"] == 5  # study seed 0 plus the offset
    alone = plan_study(load_study_text("study: s\nextractors:\n  cnn: {epochs: 1}\n"))
    assert alone.of_kind("extractor")[0].key == extractors["cnn"].key  # keys kept
    with pytest.raises(ConfigError, match=r"extractors\.cnn-sur\.catalog_half"):
        load_study_text(text.replace("catalog_half: 1", "catalog_half: 2"))
