"""DeepFool (Moosavi-Dezfooli et al. 2016) in L-inf: hand-computed steps on a linear model, its
registration (Python, ``varsec attack`` and a study), and its bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from attack_helpers import category_attack_study, run_attack_cli
from torch import nn

from varsec.attacks import ClassifierObjective, FeatureTarget, run_attack
from varsec.attacks.deepfool import DeepFoolStep
from varsec.attacks.registry import attack_method, param_problems
from varsec.errors import ConfigError


def _linear(weights: torch.Tensor, bias: float) -> nn.Module:
    """Two logits, [0, w . x + b]: class 1 wins when w . x + b > 0."""
    layer = nn.Linear(weights.numel(), 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = weights.flatten()
        layer.bias.copy_(torch.tensor([0.0, bias]))
    return nn.Sequential(nn.Flatten(), layer).eval()


def test_one_step_lands_just_past_a_linear_boundary():
    # f(x) = w . x + b on a 2 x 2 image, ||w||_1 = 2; at x = 128/255 everywhere f = x - 0.3 > 0
    # (class 1). The L-inf DeepFool step is -(|f| + xi) / ||w||_1 * sign(w) per pixel, against
    # sign(w) = (+, +, -, 0); times 1.02 (overshoot) and rounded to the 8-bit grid.
    w = torch.tensor([[1.0, 0.5], [-0.5, 0.0]])
    model = _linear(w, -0.3)
    clean = torch.full((1, 1, 2, 2), 128, dtype=torch.uint8)
    objective = ClassifierObjective(model, labels=torch.tensor([1]))
    result = run_attack(objective, clean, DeepFoolStep(eps=128, steps=1, overshoot=0.02), seed=0)
    x = clean.float() / 255
    f = float((w * x[0, 0]).sum()) - 0.3
    shift = (f + 1e-4) / 2.0 * 1.02
    expected = torch.round((x - shift * w.sign()).clamp(0, 1) * 255).to(torch.uint8)
    assert f > 0 and torch.equal(result.images, expected)
    assert bool(result.success.all())  # w . x' + b < 0: class 0 now


def test_eps_caps_the_minimal_perturbation(easy_classifier, fmnist_batch):
    images, labels = fmnist_batch
    objective = ClassifierObjective(easy_classifier, labels=labels)
    small = run_attack(objective, images, DeepFoolStep(eps=2, steps=20), seed=0)
    large = run_attack(objective, images, DeepFoolStep(eps=32, steps=20), seed=0)
    assert int((small.images.int() - images.int()).abs().max()) <= 2
    assert large.success_rate > small.success_rate
    assert large.success_rate >= 0.9
    # minimal: the successful images use far less than the budget on average
    moved = (large.images.int() - images.int()).abs().flatten(1).float().mean(1)
    assert float(moved[large.success].mean()) < 32 / 4


def test_deepfool_is_a_registered_attack_with_declared_settings():
    method = attack_method("deepfool")
    rule = method.build(8, 30)
    assert isinstance(rule, DeepFoolStep) and (rule.steps, rule.overshoot) == (30, 0.02)
    assert method.steps == 50 and method.iterative and not method.uses_alpha
    assert param_problems("deepfool", "classifier-untargeted", {"overshoot": 1.5}) == [
        ("overshoot", "must be a number >= 0 and < 1, got 1.5.")]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"overshoot": -0.1}, r"overshoot must be a number in \[0, 1\), got -0.1"),
    ({"overshoot": True}, r"overshoot must be a number in \[0, 1\), got True"),
    ({"steps": 0}, "steps"), ({"eps": 0}, "eps")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DeepFoolStep(**kwargs)


def test_an_objective_without_a_boundary_is_refused_before_any_step(small_cnn, fmnist_batch):
    images, _ = fmnist_batch
    objective = FeatureTarget(small_cnn, target_features=torch.zeros(len(images), 16),
                              metric="l2")
    with pytest.raises(ConfigError, match="DeepFool needs an objective with a decision boundary"):
        run_attack(objective, images, DeepFoolStep(eps=8, steps=3), seed=0)


def test_the_cli_runs_deepfool(tmp_path, simulated, small_cnn):
    result, out = run_attack_cli(tmp_path, simulated, small_cnn, "deepfool", 4, "--eps", "8",
                                 "--steps", "5")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["settings"]["attack"] == "deepfool"


def test_a_study_plans_deepfool_and_checks_its_params():
    from varsec.study.plan import plan_study
    from varsec.study.schema import load_study_text

    text = category_attack_study("deepfool", 20, "{overshoot: 0.05}")
    plan = plan_study(load_study_text(text))
    (stage,) = plan.of_kind("attack")
    assert stage.config["kind"] == "deepfool" and stage.config["params"] == {"overshoot": 0.05}
    with pytest.raises(ConfigError, match=r"attacks\.a\.params\.overshoot: must be a number"):
        load_study_text(text.replace("overshoot: 0.05", "overshoot: 2"))
