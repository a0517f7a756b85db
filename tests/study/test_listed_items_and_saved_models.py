"""What ``varsec attack`` needed from the study layer, tested as study features: explicit item
lists (``item_ids``) in every attack family, attacks without evaluation cut into cached chunks,
sources used as they are, extractors kept without features, recommenders from checkpoints, and
the attack stage's per-item table."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_standins import TINY_MODELS, run_tiny_real_study

from varsec.errors import ConfigError, DataError
from varsec.study.cache import StageCache
from varsec.study.plan import plan_study
from varsec.study.schema import load_study_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
from attack_helpers import TinyRanker

EVALUATION = """evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  cold_items: 8
  bootstrap: 0
"""


def _study(attacks: str, models: str = TINY_MODELS, name: str = "listed") -> str:
    listed = f"attacks:\n{attacks}" if attacks else "attacks: {}\n"
    return f"study: {name}\n{models}{listed}{EVALUATION}"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """The tiny stand-in dataset (its data stage run alone) and where its cache is."""
    from varsec.study.builtin.common import load_dataset

    out = tmp_path_factory.mktemp("listed")
    run = run_tiny_real_study(_study("", name="listed"), out)
    (data,) = run.plan.of_kind("data")
    return load_dataset(StageCache(out).output(data, run.plan.by_key)), out


@pytest.fixture(scope="module")
def listed_run(tiny_dataset):
    """Every attack family on explicit items, evaluated as usual."""
    dataset, out = tiny_dataset
    ids = dataset.catalog.item_ids
    cold = ", ".join(ids[dataset.cold_items[[3, 0, 5]]])
    warm = ", ".join(ids[dataset.warm_items()[[7, 2, 9, 4]]])
    attacks = f"""  insa: {{kind: insa, recommender: pipe, eps: [32], steps: 2, item_ids: [{cold}]}}
  pgd: {{kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker,
        eps: [8], steps: 2, item_ids: [{warm}]}}
  i2i: {{kind: pgd, objective: feature-cosine, extractor: cnn, eps: [8], steps: 2,
        item_ids: [{warm}], hook_item: {ids[11]}}}
  poison: {{kind: fgsm, objective: bpr, recommender: vbpr, eps: [16], item_ids: [{warm}]}}
"""
    run = run_tiny_real_study(_study(attacks), out)
    return run, dataset, {"cold": cold.split(", "), "warm": warm.split(", ")}


def _attack_dir(run, name: str) -> Path:
    (stage,) = [s for s in run.plan.of_kind("attack") if s.labels["attack"] == name]
    return StageCache(run.out).path(stage)


@pytest.mark.parametrize(("name", "listed"), [("insa", "cold"), ("pgd", "warm"),
                                              ("i2i", "warm"), ("poison", "warm")])
def test_every_family_attacks_exactly_the_listed_items(listed_run, name, listed):
    run, dataset, ids = listed_run
    items = np.load(_attack_dir(run, name) / "items.npy")
    assert items.tolist() == dataset.catalog.index_of(ids[listed]).tolist()  # in their order
    evaluations = [s for s in run.plan.of_kind("evaluation")
                   if s.labels["attack"].startswith(name)]
    assert evaluations and all(run.statuses[s.key].ok for s in evaluations)


def test_listed_pairs_pull_each_item_towards_the_hook(listed_run):
    run, dataset, ids = listed_run
    pairs = np.load(_attack_dir(run, "i2i") / "pairs.npy")
    hook = dataset.catalog.index_of(dataset.catalog.item_ids[11])[0]
    assert pairs[:, 0].tolist() == dataset.catalog.index_of(ids["warm"]).tolist()
    assert set(pairs[:, 1]) == {hook}


@pytest.mark.parametrize("name", ["insa", "pgd", "i2i", "poison"])
def test_the_per_item_table_agrees_with_the_stage_rows(listed_run, name):
    run, dataset, _ = listed_run
    directory = _attack_dir(run, name)
    table = pd.read_parquet(directory / "item_measures.parquet")
    rows = pd.read_parquet(directory / "rows.parquet").set_index("metric")["value"]
    means = table.groupby("metric")["value"].mean()
    for metric in ("linf", "l2", "ssim"):
        assert means[metric] == pytest.approx(rows[metric])
    if "success_rate" in rows:
        assert means["success"] == pytest.approx(rows["success_rate"])
    items = np.load(directory / "items.npy")
    assert table.groupby("metric").size().eq(len(items)).all()
    assert set(table["item_id"]) == set(dataset.catalog.item_ids[items])
    objective = {"insa": "mean_score", "pgd": "predicted", "i2i": "distance_to_hook",
                 "poison": "bpr_loss"}[name]
    assert {f"{objective}_before", f"{objective}_after"} <= set(table["metric"])


def test_insa_raises_the_listed_items_mean_score(listed_run):
    run, _, _ = listed_run
    table = pd.read_parquet(_attack_dir(run, "insa") / "item_measures.parquet")
    wide = table.pivot(index="item", columns="metric", values="value")
    assert np.allclose(wide["prediction_shift"],
                       wide["mean_score_after"] - wide["mean_score_before"])
    assert (wide["prediction_shift"] > 0).all()


def test_an_unknown_listed_item_is_one_error(tiny_dataset, tmp_path):
    _, out = tiny_dataset
    shutil.copytree(out / "cache", tmp_path / "cache")
    attacks = ("  pgd: {kind: pgd, extractor: cnn, source_category: Sandal, eps: [8], "
               "steps: 1, item_ids: [i1, nope]}\n")
    with pytest.raises(DataError, match=r"item id\(s\) are not in catalog 'tiny' .*'nope'"):
        run_tiny_real_study(_study(attacks), tmp_path)


# -- planning -------------------------------------------------------------------------------------
BARE = """study: bare
dataset: {source: cat, as_is: true}
extractors:
  cnn: {backbone: fmnist-cnn, training: none, features: false}
attacks:
"""


def test_chunks_are_stages_keyed_by_their_items():
    text = BARE + ("  a: {kind: fgsm, extractor: cnn, item_ids: [a, b, c, d, e], chunk: 2,\n"
                   "      evaluation: false}\n")
    plan = plan_study(load_study_text(text))
    attacks = plan.of_kind("attack")
    assert [s.config["item_ids"] for s in attacks] == [["a", "b"], ["c", "d"], ["e"]]
    assert not plan.of_kind("evaluation") and "chunk" not in attacks[0].config
    # the same items in the same chunk give the same stage, whatever the rest of the list
    other = plan_study(load_study_text(text.replace("c, d, e], chunk: 2", "c, d], chunk: 2")))
    assert [s.key for s in other.of_kind("attack")] == [s.key for s in attacks[:2]]
    assert plan.only(["attack"]).stages == plan.stages  # data, extractor and the attacks


def test_csema_with_no_model_is_an_attack_stage_on_the_data_alone():
    plan = plan_study(load_study_text(BARE + "  s: {kind: csema, item_ids: [a], hook_item: b,"
                                             " evaluation: false}\n"))
    (stage,) = plan.of_kind("attack")
    assert list(stage.inputs) == ["data"] and stage.config["family"] == "item2item"


def test_new_keys_left_at_their_defaults_keep_the_stage_keys():
    config = load_study_text(_study("  pgd: {kind: pgd, extractor: cnn, source_category: "
                                    "Sandal, eps: [8]}\n"))
    plan = plan_study(config)
    (data,) = plan.of_kind("data")
    (extractor,) = plan.of_kind("extractor")
    (attack,) = plan.of_kind("attack")
    assert "as_is" not in data.config and "features" not in extractor.config
    assert not {"item_ids", "chunk", "evaluation"} & set(attack.config)


def test_an_extractor_checkpoint_keys_its_stage_by_content(tmp_path, small_cnn):
    from varsec.vision.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "a.pt", small_cnn)
    text = BARE.replace("backbone: fmnist-cnn", f"checkpoint: {tmp_path / 'a.pt'}") + \
        "  a: {kind: fgsm, extractor: cnn, item_ids: [a], evaluation: false}\n"
    before = plan_study(load_study_text(text)).of_kind("extractor")[0].key
    with open(tmp_path / "a.pt", "ab") as handle:
        handle.write(b"\0")  # other bytes, same path
    assert plan_study(load_study_text(text)).of_kind("extractor")[0].key != before


# -- saved recommenders ---------------------------------------------------------------------------
def test_a_saved_recommender_evaluates_as_the_fitted_one_it_was_saved_from(tmp_path):
    from varsec.study.files import MODEL
    from varsec.study.results import read_results

    fitted = run_tiny_real_study(_study("", name="fitted"), tmp_path / "fitted")
    (vbpr,) = [s for s in fitted.plan.of_kind("recommender")
               if s.labels["recommender"] == "vbpr"]
    saved = tmp_path / "vbpr.pt"
    shutil.copyfile(StageCache(fitted.out).path(vbpr) / MODEL, saved)
    models = TINY_MODELS.replace(
        "  vbpr: {kind: vbpr, extractor: cnn,\n"
        "    params: {factors: 8, visual_factors: 8, epochs: 2, early_stopping: false}}\n",
        f"  vbpr: {{checkpoint: {saved}, extractor: cnn}}\n")
    assert "checkpoint" in models
    config = load_study_text(_study("", models, name="saved"))
    assert config.recommenders["vbpr"].kind == "vbpr"  # read from the file
    again = run_tiny_real_study(_study("", models, name="saved"), tmp_path / "saved")
    key = ["extractor", "recommender", "protocol", "metric", "k"]
    a = read_results(fitted.out).query("recommender == 'vbpr'").set_index(key)["value"]
    b = read_results(again.out).query("recommender == 'vbpr'").set_index(key)["value"]
    assert len(a) and a.sort_index().equals(b.sort_index())


def test_a_saved_recommender_of_an_unregistered_class_is_its_own_kind(tmp_path, simulated,
                                                                      small_cnn):
    TinyRanker(seed=0).fit(simulated, extractor=small_cnn).save(tmp_path / "tiny.pt")
    text = BARE.replace("attacks:\n", f"recommenders:\n  r: {{checkpoint: {tmp_path / 'tiny.pt'}"
                        ", extractor: cnn}\nattacks:\n") + \
        "  i: {kind: adam, objective: insa, recommender: r, item_ids: [a], evaluation: false}\n"
    config = load_study_text(text)
    assert config.recommenders["r"].kind == "TinyRanker"
    (stage,) = plan_study(config).of_kind("recommender")
    assert len(stage.config["sha256"]) == 64 and stage.inputs.keys() == {"data", "extractor"}


# -- one error, with the YAML path, before compute ------------------------------------------------
SAVED_ERRORS = [
    ("{checkpoint: NOFILE}", "recommenders.r.checkpoint", "no such varsec recommender checkpoint"),
    ("{checkpoint: TEXT}", "recommenders.r.checkpoint", "not a readable varsec recommender"),
    ("{checkpoint: TINY, kind: vbpr, extractor: cnn}", "recommenders.r",
     "kind 'vbpr' differs from the TinyRanker its checkpoint holds; leave kind out"),
    ("{checkpoint: TINY, extractor: cnn, params: {factors: 4}}", "recommenders.r.params",
     "a recommender from a checkpoint is not fitted; remove params"),
    ("{kind: TinyRanker}", "recommenders.r.kind", "unknown recommender kind 'TinyRanker'"),
]


@pytest.mark.parametrize(("section", "where", "message"), SAVED_ERRORS)
def test_bad_saved_recommenders_are_one_error(section, where, message, tmp_path, simulated,
                                              small_cnn):
    TinyRanker(seed=0).fit(simulated, extractor=small_cnn).save(tmp_path / "tiny.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    section = section.replace("NOFILE", str(tmp_path / "no.pt")).replace(
        "TEXT", str(tmp_path / "text.pt")).replace("TINY", str(tmp_path / "tiny.pt"))
    text = BARE.replace("attacks:\n", f"recommenders:\n  r: {section}\nattacks:\n") + \
        "  i: {kind: adam, objective: insa, recommender: r, item_ids: [a], evaluation: false}\n"
    with pytest.raises(ConfigError, match=rf"{where.replace('.', '[.]')}: .*{message}"):
        load_study_text(text)


ATTACK_ERRORS = [
    ("{kind: fgsm, extractor: cnn, chunk: 2, evaluation: false}", "attacks.a.chunk",
     "chunk splits item_ids into stages; give item_ids"),
    ("{kind: fgsm, extractor: cnn, item_ids: [a, b, a], evaluation: false}",
     "attacks.a.item_ids", "item id 'a' is listed twice"),
    ("{kind: fgsm, extractor: cnn, item_ids: [], evaluation: false}", "attacks.a.item_ids",
     "give at least one item id"),
    ("{kind: fgsm, extractor: cnn, item_ids: [a], items: all, evaluation: false}",
     "attacks.a.items", "item_ids name the attacked items; remove items"),
    ("{kind: fgsm, extractor: cnn, item_ids: [a]}", "attacks.a.evaluation",
     "extractor 'cnn' keeps no features"),
    ("{kind: pgd, objective: feature-l2, extractor: cnn, evaluation: false}",
     "attacks.a.item_ids", "random pairs are drawn by the features of extractor 'cnn'"),
    ("{kind: csema, item_ids: [a]}", "attacks.a.recommender",
     "a csema attack needs the recommender it promotes through, or an extractor"),
    ("{kind: pgd, extractor: cnn, item_ids: [a], evaluation: false, diagnose: {eps: [16]}}",
     "attacks.a.diagnose", "a diagnosis sweep is evaluated"),
    ("{kind: pgd, extractor: cnn, item_ids: [a], evaluation: false, "
     "objective: classifier-targeted}", "attacks.a.target_category",
     "a targeted classifier attack needs a target_category"),
]


@pytest.mark.parametrize(("section", "where", "message"), ATTACK_ERRORS)
def test_bad_attacks_without_evaluation_are_one_error(section, where, message):
    with pytest.raises(ConfigError, match=rf"{where.replace('.', '[.]')}: {message}"):
        load_study_text(BARE + f"  a: {section}\n")


def test_other_new_keys_are_checked_where_they_are_used(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset[.]n_users: a source used as it is"):
        load_study_text(BARE.replace("as_is: true", "as_is: true, n_users: 5") +
                        "  a: {kind: fgsm, extractor: cnn, item_ids: [a], evaluation: false}\n")
    with pytest.raises(ConfigError, match=r"extractors[.]cnn[.]checkpoint: checkpoint '.*no.pt'"
                                          r" does not exist"):
        load_study_text(BARE.replace("backbone: fmnist-cnn", f"checkpoint: {tmp_path}/no.pt") +
                        "  a: {kind: fgsm, extractor: cnn, item_ids: [a], evaluation: false}\n")
    fitted = BARE.replace("attacks:\n", "recommenders:\n  v: {kind: vbpr, extractor: cnn}\n"
                          "attacks:\n")
    with pytest.raises(ConfigError, match=r"recommenders[.]v[.]extractor: .*keeps none"):
        load_study_text(fitted + "  a: {kind: fgsm, extractor: cnn, item_ids: [a], "
                                 "evaluation: false}\n")
    with pytest.raises(ConfigError, match=r"defenses[.]j[.]attacks: attack 'a' is not "
                                          r"evaluated"):
        load_study_text(BARE + "  a: {kind: fgsm, extractor: cnn, item_ids: [a], "
                               "evaluation: false}\ndefenses:\n  j: {kind: jpeg, attacks: [a]}\n")


def test_what_only_an_evaluation_needs_is_refused_with_the_models_it_names():
    models = BARE.replace(", features: false", "").replace(
        "attacks:\n", "recommenders:\n  knn: {kind: knn, extractor: cnn}\nattacks:\n")
    with pytest.raises(ConfigError, match=r"attacks[.]a[.]chunk: an evaluation reads one "
                                          r"attack stage; chunk only an attack with evaluation"):
        load_study_text(models + "  a: {kind: fgsm, extractor: cnn, item_ids: [a], chunk: 2}\n")
    with pytest.raises(ConfigError, match=r"attacks[.]a[.]evaluate: nothing is evaluated on "
                                          r"this attack .evaluation: false.; remove evaluate"):
        load_study_text(models + "  a: {kind: fgsm, extractor: cnn, item_ids: [a], "
                                 "evaluation: false, evaluate: [knn]}\n")
