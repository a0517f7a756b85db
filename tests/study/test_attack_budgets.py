"""Attack budgets: step sizes in 8-bit levels, a warning before compute when steps x step size
cannot reach eps, step-size rules (eps/<n>, eps/steps) and the paper's budget beside the used."""

from __future__ import annotations

import warnings

import pytest
from study_standins import PIPELINE_MODELS

from varsec.errors import ConfigError, VarsecWarning
from varsec.study.schema import attack_reach, load_study_text, resolve_alpha

BASE = "\nstudy: t\ndataset: {source: fashion-mnist, profile: quick}\n" + PIPELINE_MODELS + \
    "attacks:\n"


def _load(attacks: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_study_text(BASE + attacks, source="s.yaml")
    return config, [str(w.message) for w in caught if issubclass(w.category, VarsecWarning)]


def test_pgd_that_cannot_reach_eps_warns_with_path_and_numbers():
    _, warned = _load("  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [4, 8]\n"
                      "    steps: 5\n    alpha: 1\n")
    assert len(warned) == 1
    message = warned[0]
    assert message.startswith("s.yaml:11: attacks.pgd: ")  # file, line and YAML path
    assert "5 steps x alpha 1 = 5 8-bit levels cannot reach eps 8" in message
    assert "eps 4" not in message  # 5 levels do reach 4


def test_a_paper_rate_copied_without_x255_warns():
    _, warned = _load("  insa:\n    kind: insa\n    recommender: pipe\n    eps: [32]\n"
                      "    steps: 5\n    params: {lr: 0.0001}\n")
    assert len(warned) == 1 and "attacks.insa" in warned[0]
    assert "x lr 0.0001 = 0.0005 8-bit levels cannot reach eps 32" in warned[0]


def test_insa_counts_epochs_times_user_minibatches():
    # quick profile: 500 users; 5 epochs x ceil(500 / 64) = 8 minibatches = 40 Adam steps
    config, warned = _load("  insa:\n    kind: insa\n    recommender: pipe\n    eps: [32]\n"
                           "    steps: 5\n    params: {lr: 0.5, users_per_step: 64}\n")
    reach = attack_reach(config, config.attacks["insa"], 32)
    assert (reach.steps, reach.step_size, reach.levels) == (40, 0.5, 20)
    assert len(warned) == 1
    assert "40 Adam steps (5 epochs x 8 minibatches of 64 of the 500 users)" in warned[0]
    config, warned = _load("  insa:\n    kind: insa\n    recommender: pipe\n    eps: [32]\n"
                           "    steps: 5\n    params: {lr: 1.0, users_per_step: 64}\n")
    assert warned == []  # 40 steps x 1 level reach 32


@pytest.mark.parametrize("attack", [
    "  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [8]\n    steps: 10\n",  # Madry default
    "  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [8]\n    steps: 8\n    alpha: 1\n",
    "  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [4, 8]\n    steps: 64\n"
    "    alpha: eps/steps\n",
    "  expa:\n    kind: expa\n    recommender: pipe\n    eps: [32]\n    steps: 50\n"
    "    params: {lr: 2.55}\n",
    "  fgsm:\n    kind: fgsm\n    extractor: cnn\n    eps: [16]\n",
    "  cw:\n    kind: cw\n    extractor: cnn\n    eps: [255]\n    steps: 10\n",
])
def test_budgets_that_reach_eps_do_not_warn(attack):
    _, warned = _load(attack)
    assert warned == []


def test_alpha_rules_resolve_per_eps():
    assert resolve_alpha("eps/6", 8.0, 10) == pytest.approx(8 / 6)
    assert resolve_alpha("eps/steps", 12.75, 128) == pytest.approx(12.75 / 128)
    assert resolve_alpha(2.0, 8.0, 10) == 2.0 and resolve_alpha(None, 8.0, 10) is None
    config, warned = _load("  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [8]\n"
                           "    steps: 3\n    alpha: eps / 6\n")
    assert config.attacks["pgd"].alpha == "eps/6"
    assert len(warned) == 1 and "3 steps x alpha 1.33333 = 4 8-bit levels" in warned[0]


@pytest.mark.parametrize("alpha, expected", [
    ("eps*2", "eps/<n>"), ("eps/0", "eps/<n>"), ("0", "eps/<n>"), (0, "(0, 255]"),
])
def test_bad_alpha_is_one_config_error(alpha, expected):
    with pytest.raises(ConfigError, match=r"s\.yaml:\d+: attacks\.pgd\.alpha") as info:
        _load(f"  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [8]\n    alpha: {alpha!r}\n")
    assert expected in str(info.value)


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "true", "'all'"])
def test_bad_users_per_step_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"attacks\.insa\.params\.users_per_step: must be an "
                                          r"integer >= 1"):
        _load(f"  insa:\n    kind: insa\n    recommender: pipe\n    eps: [8]\n"
              f"    params: {{users_per_step: {value}}}\n")


def test_paper_budget_is_validated():
    config, _ = _load("  expa:\n    kind: expa\n    recommender: pipe\n    eps: [8]\n"
                      "    paper_budget: {steps: 5000, step_size: 2.55, note: AIP}\n")
    assert config.attacks["expa"].paper_budget.steps == 5000
    with pytest.raises(ConfigError, match=r"attacks\.expa\.paper_budget\.stpes: unknown key"):
        _load("  expa:\n    kind: expa\n    recommender: pipe\n    eps: [8]\n"
              "    paper_budget: {stpes: 5000}\n")


def test_cli_prints_the_budget_warning_before_any_compute(tmp_path, capsys):
    from varsec.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(BASE + "  pgd:\n    kind: pgd\n    extractor: cnn\n    eps: [8]\n"
                     "    steps: 2\n    alpha: 1\n")
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warned and "attacks.pgd: 2 steps x alpha 1 = 2 8-bit levels" in warned[0], err
    assert not (out / "cache").exists()
