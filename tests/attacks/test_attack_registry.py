"""The attack registry: every method declared once, and a property test over all of them (like
torchattacks' test over ``__all__``): each registered gradient attack keeps every quantised image
inside its eps-ball and improves its own objective."""

from __future__ import annotations

import pytest
import torch

from varsec.attacks import ClassifierObjective, run_attack
from varsec.attacks.registry import (
    STAGE_PARAMS,
    AttackMethod,
    attack_method,
    attack_names,
    declared_params,
    known_attacks,
    known_objectives,
    param_problems,
    register_attack,
)
from varsec.errors import ConfigError

GRADIENT_ATTACKS = [n for n in known_attacks()
                    if attack_method(n).gradient and attack_method(n).uses_eps]


def test_the_builtin_attacks_and_objectives_are_registered():
    assert {"fgsm", "pgd", "pgd-l2", "adam", "cw", "cw-linf", "insa", "expa", "csema",
            "bpr-untargeted"} <= set(known_attacks())
    assert {"classifier-targeted", "classifier-untargeted", "feature-l2", "feature-cosine",
            "insa", "bpr"} <= set(known_objectives())


def test_an_alias_names_the_same_method():
    assert attack_method("cw-l2") is attack_method("cw")
    assert "cw-l2" in attack_names() and "cw-l2" not in known_attacks()


def test_an_unknown_attack_lists_the_known_names():
    with pytest.raises(ConfigError, match=r"unknown attack 'deep-fool' \(known: .*cw-l2.*pgd"):
        attack_method("deep-fool")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ConfigError, match="attack name 'pgd' is already registered"):
        register_attack("pgd")(type("Other", (AttackMethod,), {}))
    with pytest.raises(TypeError, match="not an AttackMethod subclass"):
        register_attack("thing")(object)


def test_declared_params_join_the_method_the_objective_and_the_stage():
    assert set(declared_params("insa", "insa")) == {*STAGE_PARAMS, "lr", "random_start",
                                                    "users_per_step", "aggregate"}
    assert set(declared_params("pgd", "classifier-targeted")) == {*STAGE_PARAMS, "kappa",
                                                                  "random_start"}
    assert set(declared_params("csema", "none")) == {*STAGE_PARAMS, "size", "corner", "margin",
                                                     "caption"}


@pytest.mark.parametrize(("attack", "objective", "params", "expected"), [
    ("pgd", "classifier-targeted", {"lr": 1.0}, ("lr", "pgd has no parameter 'lr' (known: "
                                                 "batch_size, kappa, random_start).")),
    ("cw", "classifier-targeted", {"binary_steps": 0},
     ("binary_steps", "must be an integer >= 1, got 0.")),
    ("insa", "insa", {"users_per_step": True},
     ("users_per_step", "must be an integer >= 1, got True.")),
    ("insa", "insa", {"aggregate": "max"},
     ("aggregate", "must be one of 'logsumexp', 'mean', got 'max'.")),
    ("expa", "feature-l2", {"lr": float("nan")}, ("lr", "must be a number > 0, got nan.")),
    ("csema", "none", {"corner": "middle"}, ("corner", "must be one of 'top-left', 'top-right', "
                                            "'bottom-left', 'bottom-right', got 'middle'.")),
])
def test_bad_params_are_one_sentence_each(attack, objective, params, expected):
    assert param_problems(attack, objective, params) == [expected]


def test_optional_params_may_be_null_and_good_values_pass():
    assert param_problems("insa", "insa", {"users_per_step": None, "lr": 0.0255}) == []
    assert param_problems("csema", "none", {"caption": None, "size": 0.3}) == []


def test_rules_take_the_declared_defaults():
    cw = attack_method("cw").build(8, 10)
    assert (cw.c, cw.lr, cw.binary_search_steps, cw.eps) == (1.0, 0.01, 5, 8)
    uncapped = attack_method("cw").build(255, 10)
    assert uncapped.eps is None
    pgd = attack_method("pgd").build(8, 10)
    assert pgd.random_start is True and pgd.alpha == pytest.approx(2.0)
    assert attack_method("bpr-untargeted").build(8, 1).name == "fgsm"
    assert attack_method("csema").build(8) is None


@pytest.mark.parametrize("name", GRADIENT_ATTACKS)
def test_every_gradient_attack_stays_in_its_ball_and_improves_its_objective(
        name, easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    method = attack_method(name)
    steps = 1 if not method.iterative else 8
    alpha = 2.0 if method.uses_alpha else None
    params = method.settings({"lr": 2.0} if "lr" in method.params and
                             method.step_unit != "tanh" else {})
    rule = method.build(8, steps, alpha, params)
    objective = ClassifierObjective(easy_classifier, labels=labels)
    result = run_attack(objective, images, rule, seed=0, early_stop=False)
    assert result.images.dtype == torch.uint8
    moved = (result.images.int() - images.int()).abs()
    if rule.norm == "linf":
        assert int(moved.max()) <= 8
    else:
        assert float(moved.float().flatten(1).norm(dim=1).max()) <= 8 + 1e-3 * 255
    before, after = objective.evaluate(images), objective.evaluate(result.images)
    if method.step_unit == "tanh":  # C&W-L2 minimises distortion once it succeeds
        assert bool((after >= before - 1e-6).all()) or result.success_rate > 0
    else:
        assert float(after.mean()) > float(before.mean())


@pytest.mark.parametrize("name", ["pgd", "pgd-l2", "adam", "cw", "cw-linf", "deepfool",
                                  "square"])
def test_a_registered_attack_and_its_rule_share_every_default(name):
    """What the registry declares (steps, params) is what the step rule does by default, so
    a rule built by hand and the same attack from a study or the CLI agree."""
    method = attack_method(name)
    by_hand = type(method.build(8))(eps=8) if name != "cw" else type(method.build(8))()
    registered = method.build(8)
    assert by_hand.steps == registered.steps == method.steps
    for key, spec in method.params.items():
        attribute = {"binary_steps": "binary_search_steps"}.get(key, key)
        assert getattr(by_hand, attribute) == getattr(registered, attribute) == spec.default


def test_one_set_of_defaults_per_attack_wherever_it_is_used():
    import inspect

    from varsec.attacks import CWL2Step, CWLinfStep
    from varsec.study.attack_command import AttackJob
    from varsec.study.schema import load_study_text

    for name, cls in (("cw", CWL2Step), ("cw-linf", CWLinfStep)):
        signature = inspect.signature(cls.__init__).parameters
        method = attack_method(name)
        assert method.steps == signature["steps"].default
        assert method.params["lr"].default == signature["lr"].default
        assert method.params["binary_steps"].default == \
            signature["binary_search_steps"].default
        assert AttackJob.build(None, {"attack": name}).steps == method.steps  # the CLI
    study = load_study_text("study: s\nextractors:\n  cnn: {epochs: 1}\nattacks:\n"
                            "  c: {kind: cw, extractor: cnn}\n  f: {kind: fgsm, extractor: cnn}\n")
    assert (study.attacks["c"].steps, study.attacks["f"].steps) == (100, 1)  # a study
