"""002's attack read per test triplet in a study (objective ``bpr-per-user``): the schema asks for
a sampled protocol, the plan keys the attack by the lists it attacks, the attack stage attacks
each user's sampled list for that user, the evaluation measures those lists (sampled protocol
only, also behind a defense), and claim 002-collapse rests on it."""

from __future__ import annotations

import numpy as np
import pytest
from study_standins import TINY_MODELS, run_tiny_real_study

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError
from varsec.study.builtin.common import evaluation_lists
from varsec.study.plan import plan_study
from varsec.study.report.claims import NOT_RUN, evaluate_claims
from varsec.study.report.data import StudyResults
from varsec.study.schema import load_study_text, per_user

STUDY = """
study: per-user
""" + TINY_MODELS + """attacks:
  fgsm-bpr: {kind: fgsm, objective: bpr, recommender: vbpr, eps: [16]}
  fgsm-user: {kind: fgsm, objective: bpr-per-user, recommender: vbpr, eps: [16]}
  pgd-user: {kind: pgd, objective: bpr-per-user, recommender: vbpr, eps: [16], steps: 3,
             params: {users: 15}}
defenses:
  jpeg: {kind: jpeg, strengths: [50], attacks: [fgsm-user]}
evaluation:
  protocols: [{kind: full}, {kind: sampled, negatives: 20}]
  cold_items: 20
  bootstrap: 0
"""


# -- schema and plan ------------------------------------------------------------------------------
def test_a_per_user_attack_needs_a_sampled_protocol_and_its_own_items():
    text = STUDY.replace("protocols: [{kind: full}, {kind: sampled, negatives: 20}]",
                         "protocols: [{kind: full}]")
    with pytest.raises(ConfigError, match=r"attacks\.fgsm-user\.objective: bpr-per-user attacks "
                       r"each user's sampled list; add a sampled protocol"):
        load_study_text(text)
    text = STUDY.replace("objective: bpr-per-user, recommender: vbpr, eps: [16]}",
                         "objective: bpr-per-user, recommender: vbpr, eps: [16], items: cold}")
    with pytest.raises(ConfigError, match=r"attacks\.fgsm-user\.items: bpr-per-user attacks the "
                       r"items of each user's sampled list; leave items at auto, not 'cold'"):
        load_study_text(text)
    text = STUDY.replace("recommender: vbpr, eps: [16], steps: 3", "recommender: bpr, eps: [16], "
                         "steps: 3")
    with pytest.raises(ConfigError, match=r"attacks\.pgd-user\.recommender: the BPR objective "
                       r"needs a visual pairwise recommender"):
        load_study_text(text)
    with pytest.raises(ConfigError, match=r"attacks\.pgd-user\.params\.users: must be"):
        load_study_text(STUDY.replace("users: 15", "users: 0"))


def test_the_plan_keys_a_per_user_attack_by_the_lists_it_attacks():
    config = load_study_text(STUDY.replace("bootstrap: 0", "bootstrap: 0\n  max_users: 40"))
    assert per_user(config.attacks["fgsm-user"]) and not per_user(config.attacks["fgsm-bpr"])
    attacks = {s.labels["attack"]: s for s in plan_study(config).of_kind("attack")}
    assert attacks["fgsm-user"].config["lists"] == {"negatives": 20, "max_users": 40}
    assert attacks["fgsm-user"].config["family"] == "ranking"
    assert "lists" not in attacks["fgsm-bpr"].config  # the catalog-wide attack's key is unchanged


# -- a real run -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_tiny_real_study(STUDY, tmp_path_factory.mktemp("per-user"))


def _stage(run, kind, **labels):
    found = [s for s in run.plan.of_kind(kind)
             if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, labels
    return found[0], run.out / "cache" / kind / found[0].key


def test_the_attack_stage_attacks_each_users_sampled_list(run):
    stage, path = _stage(run, "attack", attack="fgsm-user")
    saved = np.load(path / "lists.npz")
    users, lists = saved["users"], saved["items"]
    dataset = Dataset.load(_stage(run, "data")[1] / "dataset")
    drawn_users, drawn = evaluation_lists(dataset, 20, None, stage.config["seed"])
    assert np.array_equal(users, drawn_users) and np.array_equal(lists, drawn)
    test = dataset.part("test")
    assert set(zip(users.tolist(), lists[:, 0].tolist(), strict=True)) <= \
        set(zip(test.user.tolist(), test.item.tolist(), strict=True))
    items = np.load(path / "items.npy")
    adversarial = np.load(path / "adversarial.npy")
    assert np.array_equal(items, lists.reshape(-1)) and len(adversarial) == lists.size
    moved = np.abs(adversarial.astype(int) - dataset.catalog.images[items].astype(int))
    assert moved.max() == 16  # FGSM at eps 16, quantised
    sample = np.load(_stage(run, "attack", attack="pgd-user")[1] / "lists.npz")
    assert len(sample["users"]) == 15 and np.isin(sample["users"], users).all()


def test_the_evaluation_measures_the_attacked_lists_under_the_sampled_protocol_only(run):
    rows = run.table
    rec = rows[(rows["recommender"] == "vbpr") & (rows["metric"] == "HR") & (rows["k"] == 10)]
    by = {(a, d, p): v for a, d, p, v in zip(rec["attack"], rec["defense"], rec["protocol"],
                                             rec["value"], strict=True)}
    assert ("fgsm-user", "none", "full") not in by  # a per-user attack has no full ranking
    clean = by[("none", "none", "sampled-20")]
    assert by[("fgsm-user", "none", "sampled-20")] < clean
    assert by[("pgd-user", "none", "sampled-20")] < clean
    assert ("fgsm-user", "jpeg=50", "sampled-20") in by  # the lists travel through a defense
    _, path = _stage(run, "evaluation", attack="pgd-user", defense="none")
    units = np.load(path / "units.npz")
    assert len(units["sampled-20|users"]) == len(units["sampled-20|HR@10"]) == 15


def test_claim_002_collapse_rests_on_the_per_user_attacks(run):
    results = StudyResults(run.config, run.table, run.plan, run.statuses, run.out)
    verdict = dict((c.id, v) for c, v in evaluate_claims(results.primary()))["002-collapse"]
    assert verdict.status != NOT_RUN
    assert not verdict.reason.startswith("measured under another threat model")
    assert "per user (002's threat model): vbpr / fgsm-user eps 16" in verdict.evidence
    assert "catalog-wide (one image per item" in verdict.evidence
