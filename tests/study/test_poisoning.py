"""TAaMR's threat model (001): category attacks poison the catalog the recommender is trained on
(``threat: poisoning``, the default) or are swapped into a clean-trained model (``threat:
evasion``); source and target categories can be chosen the paper's way (``auto``: least and
most popular by training interactions)."""

from __future__ import annotations

import numpy as np
import pytest
from study_standins import PIPELINE_MODELS

from varsec.data.catalog import SPLIT_CODES, Dataset, Interactions, ItemCatalog
from varsec.errors import ConfigError, DataError
from varsec.study.builtin.common import category_popularity, choose_categories
from varsec.study.plan import plan_study, threat_label
from varsec.study.schema import attack_threat, load_study_text, schema_yaml

PLAN_STUDY = """
study: threat
extractors:
  cnn: {{epochs: 1}}
recommenders:
  bpr:  {{kind: bpr-mf}}
  vbpr: {{kind: vbpr, extractor: cnn, params: {{epochs: 2}}}}
  amr:  {{kind: amr, extractor: cnn, params: {{epochs: 2}}}}
attacks:
  pgd: {{kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
        eps: [4, 8]{threat}}}
{extra}
"""


def _plan(threat: str = "", extra: str = ""):
    text = PLAN_STUDY.format(threat=f", threat: {threat}" if threat else "", extra=extra)
    return plan_study(load_study_text(text))


def _poisoned(plan):
    return [s for s in plan.of_kind("recommender") if "poison" in s.inputs]


# -- plan -----------------------------------------------------------------------------------------
def test_poisoning_is_the_default_and_retrains_every_evaluated_vbpr_and_amr_per_attack_run():
    plan = _plan()
    by_key = plan.by_key
    attacks = plan.of_kind("attack")
    assert len(attacks) == 2  # eps 4 and 8
    poisoned = _poisoned(plan)
    assert sorted((s.labels["recommender"], s.labels["eps"]) for s in poisoned) == \
        [("amr", 4), ("amr", 8), ("vbpr", 4), ("vbpr", 8)]
    clean = {s.labels["recommender"]: s for s in plan.of_kind("recommender")
             if "poison" not in s.inputs}
    for stage in poisoned:
        poison = by_key[stage.inputs["poison"]]
        assert poison.kind == "attack" and poison.labels["eps"] == stage.labels["eps"]
        twin = clean[stage.labels["recommender"]]
        # same recommender config and seed, same data and extractor: only the features differ
        assert stage.config == twin.config
        assert {k: v for k, v in stage.inputs.items() if k != "poison"} == twin.inputs
        assert stage.labels["attack"] == "pgd+poisoning"
        assert plan.stages.index(poison) < plan.stages.index(stage)


def test_poisoned_chr_is_measured_on_the_poisoned_model_and_before_on_the_clean_one():
    plan = _plan()
    by_key = plan.by_key
    category = [s for s in plan.of_kind("evaluation") if s.config["scenario"] == "category"]
    before = [s for s in category if s.labels["attack"] == "none"]
    after = [s for s in category if s.labels["attack"] != "none"]
    assert sorted(s.labels["recommender"] for s in before) == ["amr", "vbpr"]
    assert len(after) == 4
    for stage in after:
        model = by_key[stage.inputs["model"]]
        assert "poison" in model.inputs and "attack" not in stage.inputs
        assert stage.labels["attack"] == "pgd+poisoning"
        assert stage.labels["eps"] == model.labels["eps"]
        assert "pgd+poisoning" in stage.name
    for stage in before:
        assert "poison" not in by_key[stage.inputs["model"]].inputs


def test_evasion_adds_no_recommender_and_swaps_the_attack_into_the_clean_model():
    plan = _plan("evasion")
    assert not _poisoned(plan)
    assert len(plan.of_kind("recommender")) == 3
    after = [s for s in plan.of_kind("evaluation")
             if s.config["scenario"] == "category" and s.labels["attack"] != "none"]
    assert len(after) == 4
    for stage in after:
        assert stage.labels["attack"] == "pgd+evasion"
        assert plan.by_key[stage.inputs["attack"]].kind == "attack"
        assert "poison" not in plan.by_key[stage.inputs["model"]].inputs


def test_both_threats_share_one_attack_stage_and_keep_their_own_labels():
    extra = """  pgd-e: {kind: pgd, extractor: cnn, source_category: Sandal,
          target_category: Sneaker, eps: [4, 8], threat: evasion}"""
    plan = _plan("", extra)
    assert len(plan.of_kind("attack")) == 2  # threat is not part of the attack stage's config
    assert all("threat" not in s.config for s in plan.of_kind("attack"))
    labels = {s.labels["attack"] for s in plan.of_kind("evaluation")
              if s.config["scenario"] == "category"}
    assert labels == {"none", "pgd+poisoning", "pgd-e+evasion"}


def test_the_threat_does_not_change_the_attack_or_clean_recommender_keys():
    poisoning, evasion = _plan("poisoning"), _plan("evasion")
    keys = {s.key for s in evasion.of_kind("attack", "recommender", "extractor", "data")}
    assert keys <= {s.key for s in poisoning}


def test_a_defended_poisoning_retrains_on_the_defended_images():
    extra = "defenses:\n  jpeg: {kind: jpeg, strengths: [50], attacks: [pgd]}"
    plan = _plan("", extra)
    defended = [s for s in _poisoned(plan) if s.labels["defense"] == "jpeg=50"]
    assert len(defended) == 4
    for stage in defended:
        source = plan.by_key[stage.inputs["poison"]]
        assert source.kind == "defense" and source.config["action"] == "apply"
    evaluations = [s for s in plan.of_kind("evaluation") if s.labels["defense"] == "jpeg=50"
                   and s.config["scenario"] == "category"]
    assert len(evaluations) == 4
    assert all(s.labels["attack"] == "pgd+poisoning" for s in evaluations)


def test_an_adaptive_poisoning_retrains_on_the_adaptive_images_behind_the_defense():
    extra = "defenses:\n  jpeg: {kind: jpeg, strengths: [50], attacks: [pgd], adaptive: true}"
    plan = _plan("", extra)
    adaptive = [s for s in _poisoned(plan) if s.labels["attack"] == "pgd+poisoning+adaptive"]
    assert len(adaptive) == 4 and {s.labels["defense"] for s in adaptive} == {"jpeg=50"}
    for stage in adaptive:
        applied = plan.by_key[stage.inputs["poison"]]
        attack = plan.by_key[applied.inputs["attack"]]
        assert attack.labels["attack"] == "pgd+adaptive" and "through" in attack.config


def test_the_threat_label_keeps_the_adaptive_suffix_last():
    assert threat_label("pgd", "poisoning") == "pgd+poisoning"
    assert threat_label("pgd+adaptive", "evasion") == "pgd+evasion+adaptive"


def test_other_families_keep_their_labels_and_plan_no_poisoned_model():
    text = "study: s\n" + PIPELINE_MODELS + """attacks:
  insa: {kind: insa, recommender: pipe, eps: [8]}
  yin: {kind: fgsm, objective: bpr, recommender: vbpr, eps: [16]}
"""
    config = load_study_text(text)
    assert attack_threat(config.attacks["insa"]) is None
    assert attack_threat(config.attacks["yin"]) is None
    plan = plan_study(config)
    assert not _poisoned(plan)
    assert {s.labels["attack"] for s in plan.of_kind("evaluation")} == {"none", "insa", "yin"}


# -- schema ---------------------------------------------------------------------------------------
def test_the_schema_defaults_category_attacks_to_poisoning_and_documents_it():
    config = load_study_text(PLAN_STUDY.format(threat="", extra=""))
    assert config.attacks["pgd"].threat is None
    assert attack_threat(config.attacks["pgd"]) == "poisoning"
    lines = schema_yaml().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "threat: null")
    assert "poisoning" in lines[at - 1] and "evasion" in lines[at - 1]


def test_a_bad_threat_is_one_config_error_naming_the_key():
    with pytest.raises(ConfigError) as caught:
        load_study_text(PLAN_STUDY.format(threat=", threat: both", extra=""), source="t.yaml")
    message = str(caught.value)
    assert "attacks.pgd.threat" in message and "poisoning" in message and "\n" not in message


def test_threat_on_a_non_category_attack_is_rejected():
    text = """
study: s
recommenders:
  bpr: {kind: bpr-mf}
  vbpr: {kind: vbpr, extractor: catalog}
  pipe: {kind: two-stage, first_stage: bpr, ranker: vbpr}
attacks:
  insa: {kind: insa, recommender: pipe, eps: [8], threat: poisoning}
"""
    with pytest.raises(ConfigError, match=r"attacks\.insa\.threat: threat applies to category "
                       r"attacks.*this is a promotion attack"):
        load_study_text(text, source="s.yaml")


def test_poisoning_a_model_without_extracted_features_is_rejected_but_evasion_is_not():
    extra = ""
    text = PLAN_STUDY.format(threat=", evaluate: [bpr]", extra=extra)
    with pytest.raises(ConfigError, match=r"attacks\.pgd\.evaluate: a poisoning attack retrains "
                       r"'bpr'.*it is a bpr-mf.*threat: evasion"):
        load_study_text(text, source="t.yaml")
    evasion = PLAN_STUDY.format(threat=", evaluate: [bpr], threat: evasion", extra=extra)
    assert attack_threat(load_study_text(evasion).attacks["pgd"]) == "evasion"


# -- the paper's category choice -----------------------------------------------------------------
def _market() -> Dataset:
    """Five categories (A..E, 2 items each; item 9 is cold) and hand-counted training
    interactions per category: A 1, B 4, C 2, D 4, E 0 (E's only item with any interaction is
    in the test part)."""
    categories = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    catalog = ItemCatalog(item_ids=[f"i{i}" for i in range(10)], categories=categories,
                          category_names=["A", "B", "C", "D", "E"],
                          features=np.zeros((10, 2), np.float32), name="market")
    #            A  B  B  B  B  C  C  D  D  D  D  E(test) B(validation)
    items = np.array([0, 2, 3, 2, 3, 4, 5, 6, 7, 6, 7, 8, 2])
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0, 1])
    split = np.array([SPLIT_CODES["train"]] * 11 + [SPLIT_CODES["test"],
                                                    SPLIT_CODES["validation"]])
    interactions = Interactions(users, items, np.arange(len(items)),
                                [f"u{u}" for u in range(4)])
    return Dataset(catalog, interactions, split=split, cold_items=np.array([9]))


def test_category_popularity_ranks_by_training_interactions_ties_by_code():
    table = category_popularity(_market())
    assert [(e["category"], e["interactions"], e["rank"]) for e in table] == [
        ("B", 4, 1), ("D", 4, 2), ("C", 2, 3), ("A", 1, 4), ("E", 0, 5)]


def test_auto_picks_the_least_popular_source_and_the_most_popular_target():
    choice = choose_categories(_market(), "auto", "auto")
    assert (choice["source"], choice["source_rank"], choice["source_interactions"]) == \
        ("E", 5, 0)
    assert (choice["target"], choice["target_rank"], choice["target_interactions"]) == \
        ("B", 1, 4)
    assert choice["source_code"] == 4 and choice["target_code"] == 1
    assert choice["source_chosen"] == choice["target_chosen"] == "auto"
    assert choice["categories"] == 5


def test_auto_never_picks_the_category_the_config_names_for_the_other_role():
    named_target = choose_categories(_market(), "auto", "E")
    assert (named_target["source"], named_target["source_rank"]) == ("A", 4)
    assert named_target["target_chosen"] == "config" and named_target["target_rank"] == 5
    named_source = choose_categories(_market(), "B", "auto")
    assert (named_source["target"], named_source["target_rank"]) == ("D", 2)
    untargeted = choose_categories(_market(), "C", None)
    assert untargeted["target"] is None and untargeted["source_rank"] == 3


def test_auto_needs_two_categories():
    catalog = ItemCatalog(item_ids=["a", "b"], categories=np.array([0, 0]),
                          category_names=["Only"], features=np.zeros((2, 2), np.float32),
                          name="one")
    dataset = Dataset(catalog, Interactions([0, 0], [0, 1], [0, 1], ["u"]),
                      split=np.array([0, 2]))
    with pytest.raises(DataError, match="has 1 category; choosing a source and a target "
                       "category automatically needs two or more"):
        choose_categories(dataset, "auto", "auto")


# -- a real tiny poisoning run --------------------------------------------------------------------
REAL_POISON = """
study: poison-real
threads: 1
dataset: {profile: quick}
extractors:
  cnn: {epochs: 1, max_train: 600, eval_eps: [], backbone_options: {widths: [8, 16, 32]},
        options: {val_fraction: 0.02}}
recommenders:
  vbpr: {kind: vbpr, extractor: cnn, params: {factors: 8, visual_factors: 8, epochs: 2,
                                             early_stopping: false}}
attacks:
  pgd: {kind: pgd, extractor: cnn, source_category: auto, target_category: auto, eps: [16],
        steps: 3, n_items: 20}
  pgd-e: {kind: pgd, extractor: cnn, source_category: auto, target_category: auto, eps: [16],
          steps: 3, n_items: 20, threat: evasion}
evaluation: {protocols: [{kind: sampled, negatives: 20}], bootstrap: 0, chr_k: 20}
report: {figures: false}
"""


@pytest.fixture(scope="module")
def poison_run(tmp_path_factory):
    from varsec.study.runner import run_study

    out = tmp_path_factory.mktemp("poison")
    return run_study(load_study_text(REAL_POISON), out, log=None)


def test_a_real_poisoning_run_measures_chr_on_the_clean_and_the_poisoned_model(poison_run):
    assert poison_run.count("done") == len(poison_run.plan)
    table = poison_run.table
    chr_rows = table[(table["metric"] == "CHR") & (table["k"] == 20)]
    assert set(chr_rows["attack"]) == {"none", "pgd+poisoning", "pgd-e+evasion"}
    assert len(chr_rows) == 3 and chr_rows["value"].notna().all()
    poisoned = [s for s in poison_run.plan.of_kind("recommender") if "poison" in s.inputs]
    assert len(poisoned) == 1
    from varsec.study.cache import StageCache

    cache = StageCache(poison_run.out)
    info = cache.info(poisoned[0])
    assert info["poisoned_items"] == 20 and info["epochs_run"] == 2
    clean = next(s for s in poison_run.plan.of_kind("recommender") if "poison" not in s.inputs)
    # two trained models: their weights differ because their features differ
    assert cache.path(clean).joinpath("model.pt").read_bytes() != \
        cache.path(poisoned[0]).joinpath("model.pt").read_bytes()


def test_the_real_run_records_the_automatic_choice_and_the_report_prints_the_ranks(poison_run):
    from varsec.study.cache import StageCache

    attack = poison_run.plan.of_kind("attack")[0]
    choice = StageCache(poison_run.out).info(attack)["categories"]
    ranks = {e["category"]: e["rank"] for e in choice["popularity"]}
    assert choice["categories"] == 10 and sorted(ranks.values()) == list(range(1, 11))
    assert choice["source_rank"] == 10 and choice["target_rank"] == 1
    assert ranks[choice["source"]] == 10 and ranks[choice["target"]] == 1
    counts = [e["interactions"] for e in choice["popularity"]]
    assert counts == sorted(counts, reverse=True)
    report = (poison_run.out / "report.md").read_text()
    assert "TAaMR's premise" in report
    assert f"{choice['source']} (auto)" in report and "10/10" in report and "1/10" in report
    assert "pgd+poisoning" in report and "pgd-e+evasion" in report
