"""Transfer attacks: a surrogate recommender fitted on the interactions an attacker observes
(``observed_users``), a promotion attack crafted on it and evaluated on the platform's model,
and the report's transfer matrix beside the white-box diagonal."""

from __future__ import annotations

import re

import numpy as np
import pytest
from study_standins import TINY_MODELS, TINY_SURROGATE, run_tiny_real_study, tiny_catalog

from varsec.data.catalog import SPLIT_CODES
from varsec.errors import ConfigError
from varsec.study.builtin.recsys import observed_view
from varsec.study.plan import plan_study
from varsec.study.report import results_from_run
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
    results = results_from_run(transfer_run)
    frame = transfer_table(results)
    assert list(frame.index) == ["insa eps 32 / crafted on pipe-sur"]
    assert set(frame.columns) == {"pipe", "pipe-sur"}
    for column in frame.columns:  # "adversarial (cooperative)", both measured
        adversarial, cooperative = frame.loc[frame.index[0], column].replace(")", "").split(" (")
        assert 0 <= float(adversarial) <= 1 and 0 <= float(cooperative) <= 1


def test_no_transfer_no_table(transfer_run):
    results = results_from_run(transfer_run)
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


# -- category and item-to-item attacks crafted on a surrogate extractor -------------------------
EXTRACTOR_STUDY = """
study: tiny-transfer-extractors
threads: 1
extractors:
  cnn: {epochs: 1}
  cnn-sur: {epochs: 1, catalog_half: 1, seed_offset: 1}
  pub: {backbone: efficientnet-lite0, training: none, backbone_options: {input_size: 32}}
recommenders:
  vbpr: {kind: vbpr, extractor: cnn, params: {factors: 8, visual_factors: 8, epochs: 2,
                                             early_stopping: false}}
  vbpr-sur: {kind: vbpr, extractor: cnn-sur, params: {factors: 8, visual_factors: 8, epochs: 2,
                                                     early_stopping: false}}
  knn: {kind: knn, extractor: cnn, params: {neighbours: 5}}
attacks:
  taamr: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
          eps: [32], steps: 3, n_items: 12}
  taamr-sur: {kind: pgd, extractor: cnn-sur, source_category: Sandal,
              target_category: Sneaker, eps: [32], steps: 3, n_items: 12,
              evaluate: [vbpr-sur, vbpr]}
  i2i: {kind: pgd, items: pairs, extractor: cnn, eps: [32], steps: 3, n_items: 12}
  i2i-sur: {kind: pgd, items: pairs, extractor: cnn-sur, eps: [32], steps: 3, n_items: 12,
            evaluate: [cnn-sur, knn]}
  i2i-pub: {kind: pgd, items: pairs, extractor: pub, eps: [32], steps: 3, n_items: 12,
            evaluate: [pub, cnn]}
evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  chr_k: 5
  rank_min: [1, 3]
  bootstrap: 0
report: {enabled: false}
"""


def _evaluations(plan, attack: str) -> list:
    return [s for s in plan.of_kind("evaluation") if str(s.labels["attack"]).startswith(attack)
            and s.labels["attack"] != "none"]


def test_the_planner_measures_surrogate_attacks_on_the_platforms_models():
    from varsec.study.plan import transferred

    config = load_study_text(EXTRACTOR_STUDY)
    plan = plan_study(config)
    by_key = plan.by_key
    seen = {(s.config["scenario"], s.labels["recommender"], s.labels["extractor"],
             transferred(config, s.labels)) for s in _evaluations(plan, "taamr-sur")}
    assert seen == {("category", "vbpr-sur", "cnn-sur", False),  # the white-box diagonal
                    ("category", "vbpr", "cnn", True),  # CHR on the platform's VBPR
                    ("classifier", None, "cnn", True)}  # the platform's classifier judges
    for stage in _evaluations(plan, "taamr-sur"):
        assert stage.labels["crafted_on"] == "cnn-sur"
    poisoned = next(s for s in plan.of_kind("recommender") if "poison" in s.inputs
                    and s.labels["recommender"] == "vbpr"
                    and s.labels["attack"] == "taamr-sur+poisoning")
    # the platform's VBPR is retrained on its own extractor's features of the surrogate's images
    assert by_key[poisoned.inputs["extractor"]].labels["extractor"] == "cnn"
    assert by_key[poisoned.inputs["poison"]].labels["crafted_on"] == "cnn-sur"
    assert {(s.labels["extractor"], transferred(config, s.labels))
            for s in _evaluations(plan, "i2i-pub")} == {("pub", False), ("cnn", True)}
    assert {(s.labels["recommender"], s.labels["extractor"]) for s in
            _evaluations(plan, "i2i-sur")} == {(None, "cnn-sur"), ("knn", "cnn")}
    assert not any(transferred(config, s.labels) for s in _evaluations(plan, "i2i+")
                   + [s for s in plan.of_kind("evaluation") if s.labels["attack"] == "i2i"])


def test_several_surrogates_each_measured_on_their_own_and_the_platforms():
    old = "  i2i: {kind: pgd, items: pairs, extractor: cnn, eps: [32], steps: 3, n_items: 12}\n"
    text = EXTRACTOR_STUDY.replace(old, """  i2i: {kind: pgd, items: pairs,
        extractor: [cnn-sur, pub], eps: [32], steps: 3, n_items: 12,
        evaluate: [cnn-sur, pub, knn]}
""")
    assert text != EXTRACTOR_STUDY
    plan = plan_study(load_study_text(text))
    measured = {(s.labels["crafted_on"], s.labels["extractor"])
                for s in plan.of_kind("evaluation") if s.labels["attack"] == "i2i"}
    assert measured == {("cnn-sur", "cnn-sur"), ("cnn-sur", "cnn"), ("pub", "pub"),
                        ("pub", "cnn")}


@pytest.mark.parametrize(("attack", "match"), [
    ("{kind: pgd, extractor: pub, source_category: Sandal, target_category: Sneaker}",
     r"attacks\.x\.extractor: a classifier attack needs a head on the catalog's categories, "
     r"and extractor 'pub' keeps efficientnet-lite0's own, on ImageNet's 1000 classes "
     r"\(training: none\)"),
    ("{kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker, "
     "evaluate: [pub]}", r"attacks\.x\.evaluate\[0\]: extractor 'pub' keeps efficientnet-lite0's "
     r"own head, on ImageNet's 1000 classes \(training: none\), which cannot judge a category "
     r"attack"),
    ("{kind: insa, recommender: pipe, evaluate: [cnn]}",
     r"attacks\.x\.evaluate\[0\]: 'cnn' is an extractor, and a promotion attack is measured on "
     r"recommenders only"),
    ("{kind: pgd, items: pairs, extractor: cnn, evaluate: [nowhere]}",
     r"attacks\.x\.evaluate\[0\]: 'nowhere' is not a recommender or an extractor of this study"),
])
def test_impossible_transfers_are_refused_in_one_sentence(attack, match):
    text = "study: s\n" + TINY_MODELS.replace("extractors:\n", """extractors:
  pub: {backbone: efficientnet-lite0, training: none}
""") + f"attacks:\n  x: {attack}\n"
    with pytest.raises(ConfigError, match=match) as info:
        load_study_text(text)
    assert str(info.value).count(". ") == 0  # one sentence


def test_a_backbone_built_for_the_catalog_keeps_a_catalog_head_with_its_own_weights():
    """fmnist-cnn's head is sized for the catalog's categories, so a classifier attack on it
    with its own (random or given) weights is a category attack; efficientnet-lite0's own head
    is ImageNet's and is refused above."""
    from varsec.study.schema import catalog_classifier

    text = "study: s\n" + TINY_MODELS.replace("extractors:\n", """extractors:
  raw: {backbone: fmnist-cnn, training: none}
  pub: {backbone: efficientnet-lite0, training: none}
""") + "attacks:\n  x: {kind: pgd, extractor: raw, source_category: Sandal, " \
        "target_category: Sneaker}\n"
    config = load_study_text(text)
    assert catalog_classifier(config.extractors["raw"])
    assert not catalog_classifier(config.extractors["pub"])
    assert catalog_classifier(config.extractors["cnn"])  # trained here


def test_a_name_that_is_both_a_recommender_and_an_extractor_is_ambiguous():
    text = "study: s\n" + TINY_MODELS + """  cnn: {kind: knn, extractor: cnn}
attacks:
  x: {kind: pgd, items: pairs, extractor: cnn, evaluate: [cnn]}
"""
    with pytest.raises(ConfigError, match=r"'cnn' names both a recommender and an extractor"):
        load_study_text(text)


@pytest.fixture(scope="module")
def extractor_run(tmp_path_factory):
    return run_tiny_real_study(EXTRACTOR_STUDY, tmp_path_factory.mktemp("transfer-x"))


def test_the_platforms_classifier_judges_the_surrogates_images(extractor_run):
    from varsec.metrics.attack import predict
    from varsec.study.builtin.common import load_backbone
    from varsec.study.cache import StageCache

    results = results_from_run(extractor_run)
    stage, = results.stages("evaluation", "classifier")
    cache = StageCache(extractor_run.out)
    attack = cache.output(results.plan.by_key[stage.inputs["attack"]], results.plan.by_key)
    backbone = load_backbone(cache.output(results.plan.by_key[stage.inputs["extractor"]],
                                          results.plan.by_key))
    sneaker = 2  # the tiny catalog's categories: Top, Sandal, Sneaker, Bag
    expected = predict(backbone, np.load(attack.file("adversarial.npy"))) == sneaker
    units = results.units(stage)
    assert np.array_equal(units["items|success_rate"], expected.astype(float))
    row = extractor_run.table.query("protocol == 'classifier' and metric == 'success_rate'")
    assert row["value"].item() == pytest.approx(expected.mean())
    assert row["crafted_on"].item() == "cnn-sur" and row["extractor"].item() == "cnn"


def test_the_item_rank_in_the_platforms_knn_is_the_cosine_rank(extractor_run):
    from varsec.study.builtin.common import extractor_features, features_of
    from varsec.study.cache import StageCache

    results = results_from_run(extractor_run)
    stage = next(s for s in results.stages("evaluation", "item2item", attack="i2i-pub")
                 if s.labels["extractor"] == "cnn")
    cache = StageCache(extractor_run.out)
    by_key = results.plan.by_key
    attack = cache.output(by_key[stage.inputs["attack"]], by_key)
    cnn = cache.output(by_key[stage.inputs["extractor"]], by_key)
    features = extractor_features(cnn).astype(np.float64)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    adversarial = features_of(cnn, np.load(attack.file("adversarial.npy"))).astype(np.float64)
    adversarial /= np.linalg.norm(adversarial, axis=1, keepdims=True)
    pairs = np.load(attack.file("pairs.npy"))
    ranks = results.units(stage)["pairs|rank_adv"]
    for p, (item, target) in enumerate(pairs):
        sims = features @ features[target]
        others = np.delete(sims, [item, target])
        assert ranks[p] == 1 + int((others > adversarial[p] @ features[target] + 1e-6).sum()) \
            or ranks[p] == 1 + int((others > adversarial[p] @ features[target] - 1e-6).sum())


def test_the_transfer_matrices_carry_the_white_box_diagonal(extractor_run):
    from varsec.study.report.transfer import category_table, item2item_table

    results = results_from_run(extractor_run)
    category = category_table(results)
    assert list(category.index) == ["taamr eps 32 / crafted on cnn",
                                    "taamr-sur eps 32 / crafted on cnn-sur"]
    transfer = category.loc["taamr-sur eps 32 / crafted on cnn-sur", "cnn"]
    assert transfer.startswith("success rate ") and "CHR@5 of vbpr (poisoning) " in transfer
    diagonal = category.loc["taamr-sur eps 32 / crafted on cnn-sur", "cnn-sur"]
    assert "CHR@5 of vbpr-sur (poisoning)" in diagonal and "success rate" in diagonal
    assert category.loc["taamr eps 32 / crafted on cnn", "cnn-sur"] == ""  # never measured
    item2item = item2item_table(results)
    assert set(item2item.index) == {"i2i eps 32 / crafted on cnn",
                                    "i2i-sur eps 32 / crafted on cnn-sur",
                                    "i2i-pub eps 32 / crafted on pub"}
    assert set(item2item.columns) == {"cnn", "cnn-sur", "pub"}
    cell = item2item.loc["i2i-pub eps 32 / crafted on pub", "cnn"]
    assert cell.startswith("success@1 ") and "; success@3 " in cell


def test_each_transfer_cell_says_whether_the_merchant_still_succeeds(extractor_run):
    from varsec.study.report.transfer import verdict_table

    frame = verdict_table(results_from_run(extractor_run))
    cells = {(f, a, m, s.split(" (mean rank")[0]) for f, a, m, s in zip(
        frame.index, frame["attack"], frame["measured on"], frame["measure"], strict=True)}
    assert cells == {("category", "taamr-sur eps 32", "cnn", "success rate"),
                     ("category", "taamr-sur eps 32", "cnn", "CHR@5 of vbpr (poisoning)"),
                     ("item2item", "i2i-sur eps 32", "cnn", "success@3"),
                     ("item2item", "i2i-pub eps 32", "cnn", "success@3")}
    for measure in frame.loc["item2item", "measure"]:  # how far the pairs moved, and its test
        assert re.fullmatch(r"success@3 \(mean rank \d+\.\d vs \d+\.\d clean \(p=[-+.e\d]+\)\)",
                            measure)
    assert frame["p"].astype(float).between(0, 1).all()
    assert set(frame["succeeds"]) <= {"yes", "no"}
    crafted = dict(zip(frame["attack"], frame["crafted on"], strict=False))
    assert crafted["i2i-pub eps 32"] == "efficientnet-lite0's public weights at 32 px"
    assert crafted["i2i-sur eps 32"] == ("extractor cnn-sur (trained on one half of the "
                                         "catalog, seed +1)")


def test_the_papers_tables_and_claims_see_no_transfer_number(extractor_run):
    from varsec.study.report.tables import taamr_table1, thesis_success

    results = results_from_run(extractor_run)
    table = extractor_run.table
    transfer_rows = table[(table["crafted_on"] == "pub") & (table["extractor"] == "cnn")]
    assert len(transfer_rows)  # the rows say what they were crafted on...
    white = results.white_box()
    assert not ((white.table["crafted_on"] == "pub") & (white.table["extractor"] == "cnn")).any()
    assert not ((white.table["crafted_on"] == "cnn-sur") & (white.table["extractor"] == "cnn")
                ).any()
    assert len(white.table) < len(table)
    rows = " ".join(thesis_success(white).index)  # ...and the thesis' table never shows them
    assert "i2i-pub" not in rows.replace("i2i-pub (PGD) on pub", "")
    assert "taamr-sur" not in " ".join(taamr_table1(white).index).replace(
        "vbpr-sur / taamr-sur", "")


@pytest.mark.parametrize(("succeeds", "status"), [([True, False], "held"),
                                                  ([False, False], "not held")])
def test_the_transfer_claim_both_ways(extractor_run, monkeypatch, succeeds, status):
    import varsec.study.report.transfer as transfer
    from varsec.study.report.claims import CLAIMS

    claim = next(c for c in CLAIMS if c.id == "varsec-transfer")
    results = results_from_run(extractor_run)
    real = transfer.transfer_verdicts(results)
    assert len(real) == 4
    fake = [transfer.Verdict(v.measurement, 0.01, ok) for v, ok in zip(real, succeeds,
                                                                       strict=False)]
    monkeypatch.setattr(transfer, "transfer_verdicts", lambda results: fake)
    verdict = claim.judge(results)
    assert verdict.status in (status, "inconclusive")  # the untrained stand-ins' floors
    assert "item2item" not in verdict.evidence or "crafted on" in verdict.evidence
    assert "category: taamr-sur eps 32 crafted on extractor cnn-sur" in verdict.evidence
    monkeypatch.setattr(transfer, "transfer_verdicts", lambda results: [])
    assert claim.judge(results).status == "not run"


def test_public_weights_have_no_catalog_accuracy_in_the_report(extractor_run):
    from varsec.study.report.tables import extractor_accuracy

    table = extractor_run.table
    assert len(table[(table["extractor"] == "pub") & (table["metric"] == "accuracy")])
    frame = extractor_accuracy(results_from_run(extractor_run))
    assert "cnn (standard)" in frame.index  # ImageNet's head scored on the catalog's classes:
    assert not any(name.startswith("pub") for name in frame.index)  # meaningless, left out
