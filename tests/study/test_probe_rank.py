"""The query-only merchant with probe accounts: rank-only feedback (the item's mean reciprocal
rank in P probes' top-N lists), attacked by Square Attack with a query budget, evaluated on the
other users."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from study_standins import tiny_real_study, tiny_run_fixture
from torch import nn

from varsec.attacks.probe_rank import ProbeRank
from varsec.attacks.registry import param_problems
from varsec.errors import ConfigError
from varsec.study.schema import attack_family, load_study_text

STUDY = tiny_real_study("tiny-probes", """\
  rank: {kind: square, objective: probe-rank, recommender: pipe, eps: [32], steps: 30,
         n_items: 8, params: {probes: 10, top_n: 20}}
""")


class _Pipeline:
    ranker = nn.Linear(1, 1)

    def score_images(self, sets, x):
        return torch.zeros(2, len(x))


class _Sets:
    def rank_injected(self, scores):  # probe x item: ranks 1, 3 / 25, 2
        return SimpleNamespace(expected_rank=torch.tensor([[1.0, 3.0], [25.0, 2.0]]))


def test_the_objective_is_the_mean_reciprocal_rank_within_the_top_n():
    objective = ProbeRank(_Pipeline(), _Sets(), top_n=20)
    values = objective.loss(torch.zeros(2, 1, 4, 4), torch.arange(2))
    # item 0: (1/1 + 0) / 2 (rank 25 is outside the top 20); item 1: (1/3 + 1/2) / 2
    assert torch.allclose(values, torch.tensor([0.5, (1 / 3 + 1 / 2) / 2]))
    assert not objective.has_success  # a query-only attack spends its whole budget


probe_run = tiny_run_fixture(STUDY, "probe_run")


def _info(run, kind: str, **labels) -> dict:
    stage = next(s for s in run.plan.of_kind(kind)
                 if all(s.labels.get(k) == v for k, v in labels.items()))
    return json.loads((run.out / "cache" / kind / stage.key / "info.json").read_text()), stage


def test_the_probes_are_drawn_kept_and_left_out_of_the_evaluation(probe_run):
    info, attack = _info(probe_run, "attack", attack="rank")
    probes = np.load(probe_run.out / "cache" / "attack" / attack.key / "probes.npy")
    assert info["probes"] == len(probes) == 10 and len(np.unique(probes)) == 10
    assert info["convergence"]["steps"] == 31  # the start and 30 queries per item
    clean, _ = _info(probe_run, "evaluation", attack="none", recommender="pipe")
    attacked, _ = _info(probe_run, "evaluation", attack="rank")
    assert attacked["users"] == clean["users"] - 10
    rows = probe_run.table[(probe_run.table.attack == "rank")]
    assert {"HR_cold", "HR_coop", "delta_HR_cold"} <= set(rows.metric)


def test_probe_rank_is_a_promotion_objective_with_its_params():
    config = load_study_text(STUDY)
    assert attack_family(config.attacks["rank"]) == "promotion"
    assert param_problems("square", "probe-rank", {"probes": 0}) == [
        ("probes", "must be an integer >= 1, got 0.")]


@pytest.mark.parametrize(("old", "new", "match"), [
    ("params: {probes: 10", "params: {probes: 80",
     r"attacks\.rank\.params\.probes: 80 probe accounts leave no other user"),
    ("recommender: pipe, eps", "recommender: vbpr, eps",
     r"attacks\.rank\.recommender: square promotes cold items through a two-stage"),
    ("top_n: 20", "top_n: 0", r"attacks\.rank\.params\.top_n: must be an integer >= 1"),
])
def test_bad_probe_settings_stop_before_compute(old, new, match):
    text = STUDY.replace(old, new).replace("study: tiny-probes", "study: tiny-probes\ndataset: "
                                           "{n_users: 80}")
    with pytest.raises(ConfigError, match=match):
        load_study_text(text)
