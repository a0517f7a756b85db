"""The defense stages in a study: the reconstruction defense (fit, apply, detection rows), the
adaptive attacks through a defense, and what the report makes of them (002 Tables 2-3, the
robustness table, the claims). The tiny defense study runs once (conftest ``defense_run``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from study_standins import TINY_DEFENSE_STUDY, tiny_data_stages

from varsec.study.cache import StageCache
from varsec.study.plan import plan_study
from varsec.study.report import results_from_run
from varsec.study.report.claims import (
    DETECTOR_FLOOR,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_RUN,
    evaluate_claims,
)
from varsec.study.report.robustness import (
    INEFFECTIVE,
    NOT_ROBUST,
    ROBUST,
    UNTESTED,
    Robustness,
    robustness,
)
from varsec.study.report.tables import TABLES
from varsec.study.runner import run_study
from varsec.study.schema import load_study_text

DETECTION = {"detection_accuracy", "detection_precision", "detection_recall", "roc_auc",
             "threshold", "detection_tn", "detection_fp", "detection_fn", "detection_tp"}


def _stage(run, kind, name):
    matches = [s for s in run.plan if s.kind == kind and s.name.startswith(name)]
    assert len(matches) == 1, [s.name for s in run.plan if s.kind == kind]
    return matches[0]


def _load(run, stage, name):
    return np.load(StageCache(run.out).path(stage) / name)


def _rows(table, **labels):
    mask = pd.Series(True, index=table.index)
    for column, value in labels.items():
        mask &= (table[column] == value).fillna(False).astype(bool)
    return table[mask]


def _dataset(run, stage):
    from varsec.study.builtin.common import load_dataset

    return load_dataset(StageCache(run.out).output(stage, run.plan.by_key).inputs["data"])


def _network(run):
    from varsec.defenses import load_defense

    fit = _stage(run, "defense", "defense recon: fit")
    network, detector = load_defense(StageCache(run.out).path(fit))
    return network.network, detector.detector


def test_every_stage_of_the_defense_study_runs(defense_run):
    assert defense_run.count("not-run") == 0, [
        (s.name, st.reason) for s in defense_run.plan
        if (st := defense_run.statuses[s.key]).state == "not-run"]


# -- fit ------------------------------------------------------------------------------------------
def test_one_fit_per_recommender_saves_paired_networks_and_detection_rows(defense_run):
    fits = [s for s in defense_run.plan if s.config.get("action") == "fit"]
    assert len(fits) == 1  # recon and recon-rand share the training params: one network
    assert fits[0].labels["recommender"] == "vbpr" and fits[0].config["detection_eps"] == [16, 32]
    _, detector = _network(defense_run)
    rows = _rows(defense_run.table, protocol="detection", attack="fgsm")
    rows = rows[rows["metric"] != "flagged"]  # the apply stages' rows
    assert set(rows["eps"]) == {16.0, 32.0}
    assert set(rows["recommender"]) == {"vbpr"} and set(rows["defense"]) == {"recon"}
    for _, group in rows.groupby("eps"):
        value = dict(zip(group["metric"], group["value"], strict=True))
        assert set(value) == DETECTION
        n = int(group["n"].iloc[0])
        assert sum(value[f"detection_{c}"] for c in ("tn", "fp", "fn", "tp")) == n
        assert value["detection_accuracy"] == pytest.approx(
            (value["detection_tn"] + value["detection_tp"]) / n)
        assert 0 <= value["roc_auc"] <= 1
        assert value["threshold"] == pytest.approx(detector.threshold)
    path = StageCache(defense_run.out).path(fits[0])
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["calibration"]["method"] == "accuracy"
    with np.load(path / "distances.npz") as data:
        assert list(data["eps"]) == [16.0, 32.0]
        assert data["by_eps"].shape == (2, len(data["adversarial"]))
        assert len(data["clean"]) + len(data["adversarial"]) == n


# -- apply ----------------------------------------------------------------------------------------
def test_apply_stages_pass_the_attacked_and_clean_images_through_the_network(defense_run):
    from varsec.defenses import defend_images

    network, _ = _network(defense_run)
    attacked = _load(defense_run, _stage(defense_run, "attack", "attack fgsm on"),
                     "adversarial.npy")
    applied = _stage(defense_run, "defense", "defense recon on fgsm eps")
    np.testing.assert_array_equal(_load(defense_run, applied, "adversarial.npy"),
                                  defend_images(network, attacked).numpy())
    path = StageCache(defense_run.out).path(applied)
    assert not (path / "cooperative.npy").exists()  # only promotion evaluations read it
    rand = _load(defense_run, _stage(defense_run, "defense", "defense recon-rand on fgsm eps"),
                 "adversarial.npy")
    assert rand.shape == attacked.shape and np.any(rand != _load(defense_run, applied,
                                                                  "adversarial.npy"))
    clean = _stage(defense_run, "defense", "defense recon on clean")
    images = np.asarray(_dataset(defense_run, clean).catalog.images)
    np.testing.assert_array_equal(_load(defense_run, clean, "catalog.npy"),
                                  defend_images(network, images).numpy())
    jpeg = StageCache(defense_run.out).path(_stage(defense_run, "defense", "defense jpeg=50 on "
                                                                          "insa eps"))
    assert (jpeg / "cooperative.npy").is_file()


def test_reconstruction_rows_of_table2_and_table3(defense_run):
    table = defense_run.table
    for attack, defense in [("none", "recon"), ("fgsm", "recon"), ("fgsm+adaptive", "recon"),
                            ("fgsm", "recon-rand")]:
        rows = _rows(table, recommender="vbpr", attack=attack, defense=defense)
        cells = set(zip(rows["protocol"], rows["metric"], rows["k"], strict=True))
        for protocol in ("full", "sampled-20"):
            for metric in ("HR", "NDCG"):
                assert {(protocol, metric, k) for k in (5, 10, 20)} <= cells, (attack, defense)
    built = {spec.id: spec.build(results_from_run(defense_run)) for spec in TABLES}
    assert {"vbpr-FGSM, eps 16 + recon", "vbpr-FGSM, eps 16 + recon-rand",
            "vbpr-fgsm+adaptive (FGSM), eps 16 + recon", "vbpr-Clean + recon",
            "vbpr-FGSM, eps 16"} <= set(built["yin-table2"].index)
    assert "bpr-Clean" not in built["yin-table2"].index  # 002 Table 2: visual BPR models only
    table3 = built["yin-table3"]
    assert list(table3.columns) == ["eps 16", "eps 32"]
    assert {i.split(" ", 1)[1] for i in table3.index} == {"accuracy", "ROC-AUC",
                                                          "calibrated threshold"}


# -- adaptive attacks -----------------------------------------------------------------------------
@pytest.mark.parametrize(("attack", "eps", "through"), [("fgsm", 16, "reconstruction"),
                                                         ("insa", 32, "jpeg")])
def test_adaptive_attacks_run_through_the_defense_and_differ(defense_run, attack, eps, through):
    plain = _stage(defense_run, "attack", f"attack {attack} on")
    adaptive = _stage(defense_run, "attack", f"attack {attack}+adaptive on")
    assert adaptive.config["through"]["kind"] == through
    fit = next(s for s in defense_run.plan if s.config.get("action") == "fit")
    assert (adaptive.inputs.get("defense") == fit.key) == (through == "reconstruction")
    items = _load(defense_run, plain, "items.npy")
    np.testing.assert_array_equal(items, _load(defense_run, adaptive, "items.npy"))
    a, b = (_load(defense_run, s, "adversarial.npy").astype(int) for s in (plain, adaptive))
    assert np.any(a != b)
    clean = np.asarray(_dataset(defense_run, adaptive).catalog.images)[items].astype(int)
    assert np.abs(b - clean).max() <= eps  # inside the budget after quantisation
    rows = _rows(defense_run.table, attack=f"{attack}+adaptive")  # attack and evaluation rows
    assert {"linf", "HR" if attack == "fgsm" else "HR_cold"} <= set(rows["metric"])
    assert set(rows["defense"]) == {"recon" if attack == "fgsm" else "jpeg=50"}


def test_the_detector_flags_rows_beside_the_adaptive_ones(defense_run):
    rows = _rows(defense_run.table, metric="flagged", defense="recon")
    flagged = dict(zip(rows["attack"], rows["value"], strict=True))
    assert set(flagged) == {"none", "fgsm", "fgsm+adaptive"}
    assert all(0 <= v <= 1 for v in flagged.values())
    assert set(rows["recommender"]) == {"vbpr"}


def test_robustness_records_pair_the_adaptive_with_the_non_adaptive_attacker(defense_run):
    records = {(r.attack, r.defense): r for r in robustness(results_from_run(defense_run))}
    assert set(records) == {("insa", "jpeg=50"), ("fgsm", "recon"), ("fgsm", "recon-rand")}
    recon = records[("fgsm", "recon")]
    table = defense_run.table
    hr10 = dict(protocol="sampled-20", metric="HR", k=10, recommender="vbpr")
    for value, attack, defense in [(recon.undefended, "fgsm", "none"),
                                   (recon.defended, "fgsm", "recon"),
                                   (recon.adaptive, "fgsm+adaptive", "recon"),
                                   (recon.reference, "none", "none")]:
        expected = _rows(table, attack=attack, defense=defense, **hr10)["value"]
        assert value == pytest.approx(float(expected.iloc[0]))
    assert recon.stopped_at == pytest.approx(0.8 * recon.reference)  # 80% of clean HR@10
    assert records[("fgsm", "recon-rand")].verdict == UNTESTED  # no adaptive attacker for it
    frame = {spec.id: spec for spec in TABLES}["robustness"].build(results_from_run(defense_run))
    assert set(frame.columns) >= {"undefended", "non-adaptive", "adaptive", "verdict"}


@pytest.mark.parametrize(("scenario", "values", "verdict"), [
    ("ranking", (0.2, 0.7, 0.9, 1.0), ROBUST),  # (undefended, defended, adaptive, reference)
    ("ranking", (0.2, 0.9, 0.3, 1.0), NOT_ROBUST),  # stops only the non-adaptive attacker
    ("ranking", (0.2, 0.9, None, 1.0), UNTESTED),
    ("ranking", (0.95, 0.9, 0.9, 1.0), INEFFECTIVE),
    ("promotion", (0.5, 0.01, 0.02, 0.01), NOT_ROBUST),
    ("promotion", (0.5, 0.01, 0.01, 0.01), ROBUST),
])
def test_a_defense_is_robust_only_against_the_adaptive_attacker(scenario, values, verdict):
    undefended, defended, adaptive, reference = values
    record = Robustness(scenario, "m", "a", 8.0, "d", "HR@10", undefended, defended, adaptive,
                        reference)
    assert record.verdict == verdict


# -- claims ---------------------------------------------------------------------------------------
def test_the_reconstruction_claims_are_computed_from_the_rows(defense_run):
    results = results_from_run(defense_run)
    verdicts = {claim.id: verdict for claim, verdict in evaluate_claims(results)}
    restore = verdicts["002-restore"]
    assert "Wilcoxon" in restore.test
    assert set(restore.numbers) == {"vbpr / fgsm / recon", "vbpr / fgsm / recon-rand"}
    hr10 = dict(protocol="sampled-20", metric="HR", k=10, recommender="vbpr")
    table = defense_run.table
    value = {(a, d): float(_rows(table, attack=a, defense=d, **hr10)["value"].iloc[0])
             for a, d in [("fgsm", "recon"), ("fgsm", "recon-rand"), ("fgsm", "none"),
                          ("none", "none")]}
    for defense in ("recon", "recon-rand"):
        assert restore.numbers[f"vbpr / fgsm / {defense}"] == pytest.approx(value[("fgsm",
                                                                                  defense)])
    restored = min(value[("fgsm", "recon")], value[("fgsm", "recon-rand")])
    popularity = _rows(table, attack="none", defense="none", **{**hr10, "metric": "HR_popularity"})
    if value[("none", "none")] <= float(popularity["value"].iloc[0]):  # the tiny VBPR may lose
        assert restore.status == INCONCLUSIVE and "recommender vbpr" in restore.reason
    elif restored <= value[("fgsm", "none")] or restored < 0.8 * value[("none", "none")]:
        assert restore.status == NOT_HELD
    else:
        assert restore.status in (HELD, NOT_HELD)
    accuracy = _rows(table, metric="detection_accuracy")["value"]
    calibration = [c["accuracy"] for c in results.detector_calibration("vbpr")]
    assert calibration
    assert verdicts["002-detect"].status == (
        INCONCLUSIVE if min(calibration) < DETECTOR_FLOOR else
        HELD if accuracy.min() > 0.85 else NOT_HELD)
    records = [r for r in robustness(results) if r.verdict not in (UNTESTED, INEFFECTIVE)]
    expected = NOT_RUN if not records else \
        HELD if all(r.verdict == ROBUST for r in records) else NOT_HELD
    adaptive = verdicts["varsec-adaptive"]
    if adaptive.status == INCONCLUSIVE:  # a "robust" against an attack that did not converge
        assert expected == HELD and "did not converge" in adaptive.reason
    else:
        assert adaptive.status == expected


def test_a_forced_rerun_of_the_defense_stages_gives_the_same_rows(defense_run, tmp_path):
    out = tmp_path / "rerun"
    shutil.copytree(defense_run.out, out)
    with tiny_data_stages():
        again = run_study(load_study_text(TINY_DEFENSE_STUDY), out, force=["defense"],
                          log=None, report=False)
    recomputed = {s.kind for s in again.plan if again.statuses[s.key].state == "done"}
    assert recomputed == {"defense", "attack", "evaluation"}  # the adaptive attacks read the fit
    pd.testing.assert_frame_equal(again.table, defense_run.table)


def test_a_defense_its_recommender_cannot_serve_is_an_error_naming_its_params(defense_run,
                                                                              tmp_path):
    from varsec.errors import ConfigError

    out = tmp_path / "bad"
    shutil.copytree(defense_run.out, out)  # every stage but the (new) fit is cached
    text = TINY_DEFENSE_STUDY.replace("perceptual_stages: [1, 2], ", "")
    with tiny_data_stages(), pytest.raises(ConfigError, match=r"defenses\.recon\.params: "
                                           r"perceptual stages \[1, 2, 3\] do not exist"):
        run_study(load_study_text(text), out, log=None, report=False)
    assert not list((out / "cache" / "defense").glob(".*"))  # nothing half-written


# -- planning -------------------------------------------------------------------------------------
def test_the_fit_is_shared_by_the_attacks_on_one_recommender_and_adaptive_lists_select():
    text = TINY_DEFENSE_STUDY.replace(
        "recon: {kind: reconstruction, attacks: [fgsm], adaptive: true,",
        "recon: {kind: reconstruction, attacks: [fgsm, insa], adaptive: [insa],")
    plan = plan_study(load_study_text(text))
    fits = [s for s in plan if s.config.get("action") == "fit"]
    assert len(fits) == 1  # insa goes through pipe, whose ranker is vbpr: the same network
    applied = [s for s in plan if s.config.get("action") == "apply" and
               s.config["kind"] == "reconstruction"]
    assert applied and all(s.inputs["model"] == fits[0].key for s in applied)
    adaptive = {s.labels["attack"] for s in plan if s.kind == "attack" and "through" in s.config
                and s.config["through"]["kind"] == "reconstruction"}
    assert adaptive == {"insa+adaptive"}


def test_the_shipped_studies_use_the_reconstruction_defense_and_adaptive_attacks():
    from varsec.study.commands import find_study
    from varsec.study.schema import load_study

    def plan(name, profile):
        return plan_study(load_study(find_study(name), profile=profile))

    def through(stages):
        return {(s.labels["attack"], s.config["through"]["kind"]) for s in stages
                if s.kind == "attack" and "through" in s.config}

    demo = plan("demo", "quick")
    fits = [s for s in demo if s.config.get("action") == "fit"]
    assert len(fits) == 1 and fits[0].config["params"]["width"] == 8  # tiny quick budgets
    assert ("insa+adaptive", "jpeg") in through(demo)
    denoise = plan("denoise", "default")
    fits = [s for s in denoise if s.config.get("action") == "fit"]
    assert {s.labels["recommender"] for s in fits} == {"vbpr", "amr"}
    assert all(s.config["detection_eps"] == [8, 16, 32, 64] for s in fits)
    assert any(s.config.get("params", {}).get("random_resize_pad") for s in denoise
               if s.config.get("action") == "apply")
    assert through(plan("aip", "quick")) == {("insa+adaptive", "jpeg"),
                                              ("insa+adaptive", "bit-depth")}
