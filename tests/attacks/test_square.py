"""Square Attack (Andriushchenko et al. 2020): a query-only attack with a per-image query count;
its success rate matches torchattacks' Square at the same budget; it is a registered attack
(Python, ``varsec attack``, a study)."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from attack_helpers import category_attack_study, run_attack_cli

from varsec.attacks import ClassifierObjective, run_attack
from varsec.attacks.registry import attack_method, param_problems
from varsec.attacks.square import SquareStep, window_share
from varsec.errors import ConfigError


@pytest.fixture(scope="module")
def correct(easy_classifier, fmnist_small):
    """The first 200 images of the slice that the classifier gets right, and their labels."""
    images = torch.from_numpy(fmnist_small.images[:200].copy())
    labels = torch.from_numpy(fmnist_small.categories[:200]).long()
    with torch.no_grad():
        keep = easy_classifier(images.float() / 255).argmax(1) == labels
    return images[keep], labels[keep]


def test_the_schedule_halves_p_at_the_paper_s_marks():
    assert window_share(0.8, 0, 10000) == 0.8
    assert window_share(0.8, 11, 10000) == 0.4
    assert window_share(0.8, 51, 10000) == 0.2
    assert window_share(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert window_share(0.8, 1, 100) == 0.2  # step 1 of 100 is 100 of 10,000: p / 4
    assert window_share(0.8, 3, 100) == pytest.approx(0.8 / 8)  # 300 of 10,000


def test_it_stays_on_the_grid_in_the_ball_and_counts_queries(easy_classifier, correct):
    images, labels = correct
    objective = ClassifierObjective(easy_classifier, labels=labels)
    result = run_attack(objective, images, SquareStep(eps=8, steps=60), seed=0)
    moved = (result.images.int() - images.int()).abs()
    assert result.images.dtype == torch.uint8 and int(moved.max()) <= 8
    # one query for the start, one per proposal; a success stops its image
    assert int(result.steps.min()) >= 1 and int(result.steps.max()) <= 61
    assert bool((result.steps[~result.success] == 61).all())
    assert float(result.steps[result.success].float().mean()) < 61
    history = result.history  # best score after each query: it never falls
    assert history.shape == (61, len(images))
    assert bool((history[1:] >= history[:-1] - 1e-6).all())
    before, after = objective.evaluate(images), objective.evaluate(result.images)
    assert float(after.mean()) > float(before.mean())


def test_success_matches_torchattacks_square_at_the_same_budget(easy_classifier, correct):
    images, labels = correct
    ours = run_attack(ClassifierObjective(easy_classifier, labels=labels), images,
                      SquareStep(eps=8, steps=200, p_init=0.8), seed=0).success_rate
    reference = torchattacks.Square(easy_classifier, eps=8 / 255, n_queries=200, p_init=0.8,
                                    n_restarts=1, loss="margin", seed=0)
    with torch.no_grad():
        adversarial = reference(images.float() / 255, labels)
        theirs = float((easy_classifier(adversarial).argmax(1) != labels).float().mean())
    n = len(labels)
    noise = 3 * (0.25 / n) ** 0.5 * 2 ** 0.5  # 3 sigma of a difference of two rates
    assert abs(ours - theirs) <= max(noise, 0.05), (ours, theirs)
    assert ours > 0.1


def test_square_is_a_registered_query_attack():
    method = attack_method("square")
    rule = method.build(8)
    assert isinstance(rule, SquareStep) and rule.steps == 5000 and rule.p_init == 0.8
    assert method.step_unit == "queries" and not method.uses_alpha
    assert param_problems("square", "classifier-untargeted", {"p_init": 0}) == [
        ("p_init", "must be a number > 0 and <= 1, got 0.")]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"p_init": 0.0}, r"p_init must be a number > 0 and <= 1, got 0.0"),
    ({"p_init": 1.5}, r"p_init must be a number > 0 and <= 1, got 1.5"),
    ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
    ({"steps": 2.5}, r"steps must be an integer >= 1, got 2.5"),
    ({"eps": 0}, "eps")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SquareStep(**kwargs)


def test_a_study_plans_square_with_its_query_budget():
    from varsec.study.plan import plan_study
    from varsec.study.schema import budget_warnings, load_study_text

    text = category_attack_study("square", 300, "{p_init: 0.5}")
    config = load_study_text(text)
    assert budget_warnings(config) == []  # queries are not pixel steps
    (stage,) = plan_study(config).of_kind("attack")
    assert (stage.config["kind"], stage.config["steps"]) == ("square", 300)
    with pytest.raises(ConfigError, match=r"attacks\.a\.params\.p_init: must be a number"):
        load_study_text(text.replace("p_init: 0.5", "p_init: 2"))


def test_the_cli_runs_square_and_records_the_queries(tmp_path, simulated, small_cnn):
    import json

    result, out = run_attack_cli(tmp_path, simulated, small_cnn, "square", 3, "--eps", "8",
                                 "--steps", "20")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    queries = [entry["steps"] for entry in manifest["models"]["cnn"]["items"].values()]
    assert len(queries) == 3 and all(1 <= q <= 21 for q in queries)
