"""Study configs that used to fail only after compute (or never): one ConfigError naming the
file, the line and the YAML path, before any stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from study_standins import PIPELINE_MODELS, dry_run_error

from varsec.cli import main
from varsec.errors import ConfigError
from varsec.study.runner import default_out, dry_run
from varsec.study.schema import StudyConfig, load_study, load_study_text, study_from_data

BASE = "study: t\n" + PIPELINE_MODELS + """attacks:
  insa: {kind: insa, recommender: pipe, eps: [8]}
defenses:
  jpeg: {kind: jpeg, strengths: [50]}
"""  # 11 lines

GHOST = BASE + "overrides:\n  quick:\n    recommenders:\n      ghost: {k: 5}\n"
SAMPLED = BASE + ("evaluation:\n  protocols:\n    - {kind: full}\n"
                  "    - {kind: sampled, negatives: NEG}\n")  # negatives on line 15


def _evaluation(key: str, value: str) -> str:
    """BASE with ``evaluation.<key>: <value>`` (the key on line 13)."""
    return BASE + f"evaluation:\n  {key}: {value}\n"


TWO_STAGE = BASE.replace("ranker: vbpr}", "ranker: vbpr, k: K}")  # k on line 7

# (text, line, YAML path, the rest of the message)
CASES = {
    "override adds a model": (
        GHOST, 15, "overrides.quick.recommenders.ghost",
        "an override can only change one of the study's recommenders (known: bpr, vbpr, pipe); "
        "define 'ghost' under recommenders first."),
    "override of another profile adds an attack": (
        BASE + "overrides:\n  paper:\n    attacks:\n      insaa: {steps: 3}\n", 15,
        "overrides.paper.attacks.insaa", "(known: insa)"),
    "override adds an extractor": (
        BASE + "overrides:\n  quick:\n    extractors:\n      cnm: {epochs: 2}\n", 15,
        "overrides.quick.extractors.cnm", "(known: cnn)"),
    "override adds a defense": (
        BASE + "overrides:\n  default:\n    defenses:\n      jpg: {strengths: [30]}\n", 15,
        "overrides.default.defenses.jpg", "(known: jpeg)"),
    "empty ks": (_evaluation("ks", "[]"), 13, "evaluation.ks",
                 "give at least one cut-off N; an empty list evaluates nothing."),
    "zero k": (_evaluation("ks", "[5, 0]"), 13, "evaluation.ks[1]",
               "input should be greater than or equal to 1 (got 0)."),
    "negative k": (_evaluation("ks", "[-5]"), 13, "evaluation.ks[0]",
                   "greater than or equal to 1"),
    "empty metrics": (_evaluation("metrics", "[]"), 13, "evaluation.metrics",
                      "give at least one metric (HR, NDCG, Recall, MRR, AUC)"),
    "empty protocols": (_evaluation("protocols", "[]"), 13, "evaluation.protocols",
                        "give at least one protocol (full or sampled)"),
    "empty rank_min": (_evaluation("rank_min", "[]"), 13, "evaluation.rank_min",
                       "give at least one rank_min"),
    "negatives above the catalog": (
        SAMPLED.replace("NEG", "2000"), 15, "evaluation.protocols[1].negatives",
        "2,000 sampled negatives per user cannot be drawn: the quick profile simulates 2,000 "
        "warm items and every user has seen at least 5 of them, so at most 1,995 are unseen."),
    "two-stage k above the warm items": (
        TWO_STAGE.replace("k: K", "k: 1996"), 7, "recommenders.pipe.k",
        "a two-stage candidate set of k=1,996 unseen warm items per user cannot be filled"),
    "two-stage k raised by an override": (
        BASE + "overrides:\n  quick:\n    recommenders:\n      pipe: {k: 5000}\n", 15,
        "recommenders.pipe.k", "k=5,000"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_bad_config_is_one_error_with_file_line_and_path(case, tmp_path):
    text, line, where, message = CASES[case]
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    error = str(info.value)
    assert error.startswith(f"{path}:{line}: {where}: ") and message in error
    assert "\n" not in error


@pytest.mark.parametrize("case", CASES)
def test_the_same_errors_from_plain_data_name_the_path(case):
    text, _, where, message = CASES[case]
    with pytest.raises(ConfigError) as info:
        study_from_data(yaml.safe_load(text), source="data")
    assert str(info.value).startswith(f"data: {where}: ") and message in str(info.value)


def test_the_limits_follow_the_profile():
    config = load_study_text(SAMPLED.replace("NEG", "2000"), profile="default")
    assert config.evaluation.protocols[1].negatives == 2000  # 10,000 warm items there
    assert load_study_text(TWO_STAGE.replace("k: K", "k: 1995")).recommenders["pipe"].k == 1995
    with pytest.raises(ConfigError, match="the default profile simulates 10,000 warm items"):
        load_study_text(TWO_STAGE.replace("k: K", "k: 9999"), profile="default")


def test_an_override_of_a_known_model_still_merges():
    text = BASE + "overrides:\n  quick:\n    recommenders:\n      pipe: {k: 50}\n"
    assert load_study_text(text).recommenders["pipe"].k == 50
    assert load_study_text(text, profile="paper").recommenders["pipe"].k == 100


HOSTILE = ["../../x", "/an/absolute/path", ".hidden", "a/b", "a\\b", "..", "x\n", "a.b",
           "a" * 65]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_study_name_is_refused_with_its_line(name, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("study: t", f"study: {json.dumps(name)}"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}:1: study: the study name {name!r} names its "
                                      "output directory")


# A second entry right under each section's header (the line of the new entry).
ENTRIES = {"extractors": (3, "{epochs: 1}"), "recommenders": (5, "{kind: bpr-mf}"),
           "attacks": (9, "{kind: fgsm, extractor: cnn}"), "defenses": (11, "{kind: jpeg}")}


@pytest.mark.parametrize("section", ENTRIES)
@pytest.mark.parametrize("name", ["../x", "/abs", ".dot", "a/b", "x" * 65])
def test_a_hostile_name_in_each_named_section_is_refused_with_its_yaml_path(section, name):
    line, entry = ENTRIES[section]
    text = BASE.replace(f"{section}:\n", f"{section}:\n  {json.dumps(name)}: {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_study_text(text, source="s.yaml")
    assert str(info.value).startswith(f"s.yaml:{line}: {section}.{name}: name {name!r} must "
                                      "start with a letter")


def test_default_out_refuses_a_config_built_without_validation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = StudyConfig.model_validate({"study": "../../escape"})
    with pytest.raises(ConfigError, match=r"study name '../../escape' cannot name an output "
                       r"directory under runs/"):
        default_out(config)
    with pytest.raises(ConfigError, match="cannot name an output directory"):
        dry_run(config)
    assert list(tmp_path.iterdir()) == []
    assert default_out(StudyConfig(study="ok")) == Path("runs") / "ok"


def _cli_error(path, capsys) -> str:
    assert main(["run", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    lines = [t for t in captured.err.splitlines() if t.strip()]
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("case", ["override adds a model", "empty ks", "empty protocols",
                                  "negatives above the catalog",
                                  "two-stage k above the warm items"])
def test_the_cli_prints_one_error_line_with_file_line_and_path(case, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, line, where, message = CASES[case]
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    error = _cli_error(path, capsys)
    assert error.startswith(f"error: {path}:{line}: {where}: ") and message in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing written


def test_the_cli_refuses_a_study_name_that_escapes_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "results.csv").write_text("precious\n")
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("study: t", f"study: {victim}"), encoding="utf-8")
    error = _cli_error(path, capsys)
    assert error.startswith(f"error: {path}:1: study: the study name {str(victim)!r}")
    assert (victim / "results.csv").read_text() == "precious\n"
    assert not (tmp_path / "runs").exists()


# -- every method's params, checked against the registered classes (issue 14) ---------------


@pytest.mark.parametrize(("old", "new", "where", "what"), [
    ("strengths: [50]", "strengths: [100]", "s.yaml:11: defenses.jpeg.strengths[0]",
     "quality must be an integer >= 1 and <= 95, got 100."),
    ("eps: [8]}", "eps: [8], steps: 0}", "s.yaml:9: attacks.insa.steps",
     "must be at least 1 for insa, an iterative attack, got 0."),
    ("eps: [8]}", "eps: [8], params: {learning_rate: 1}}",
     "s.yaml:9: attacks.insa.params.learning_rate",
     "insa has no parameter 'learning_rate' (known: aggregate, batch_size, lr, random_start, "
     "users_per_step)."),
    ("eps: [8]}", "eps: [8], params: {lr: -1}}",
     "s.yaml:9: attacks.insa.params.lr", "must be a number > 0, got -1."),
    ("kind: jpeg", "kind: blur", "s.yaml:11: defenses.jpeg.kind", "unknown defense 'blur'"),
])
def test_every_bad_method_value_stops_a_dry_run_with_file_line_and_path(
        old, new, where, what, tmp_path, capsys):
    line = dry_run_error(tmp_path, capsys, BASE.replace(old, new))
    assert where in line and what in line
