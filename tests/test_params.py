"""The declared-parameter mechanism (varsec.params) and the checks built on it.

Every expected message below is written out by hand from the rule
``"<name> must be <what is expected>, got <value!r>."``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from varsec.errors import ConfigError
from varsec.params import (
    Param,
    bad_value,
    check_choice,
    check_int,
    check_number,
    check_params,
    check_value,
    describe,
    field_defaults,
    plain_fields,
    unknown_names,
)


def _raises(message: str):
    """pytest.raises for a ConfigError with exactly ``message``."""
    return pytest.raises(ConfigError, match="^" + re.escape(message) + "$")


# -- check_int ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_check_int_accepts_python_and_numpy_integers_as_plain_int(value):
    checked = check_int(value, "steps", low=1, high=5)
    assert checked == 3 and type(checked) is int


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (True, {"low": 1}, "steps must be an integer >= 1, got True."),
        (np.bool_(True), {"low": 1}, "steps must be an integer >= 1, got np.True_."),
        (2.0, {"low": 1}, "steps must be an integer >= 1, got 2.0."),
        ("3", {"low": 1}, "steps must be an integer >= 1, got '3'."),
        (None, {"low": 1}, "steps must be an integer >= 1, got None."),
        (0, {"low": 1}, "steps must be an integer >= 1, got 0."),
        (6, {"low": 1, "high": 5}, "steps must be an integer >= 1 and <= 5, got 6."),
        (9, {"high": 8}, "steps must be an integer <= 8, got 9."),
        (1.5, {}, "steps must be an integer, got 1.5."),
    ],
)
def test_check_int_rejects_with_one_sentence(value, kwargs, message):
    with _raises(message):
        check_int(value, "steps", **kwargs)


def test_check_int_bounds_are_inclusive():
    assert check_int(1, "k", low=1, high=1) == 1
    assert check_int(-4, "offset") == -4


def test_check_int_owner_and_hint():
    with _raises("detector parameter embed_dim must be an integer >= 1, got 0."):
        check_int(0, "embed_dim", low=1, owner="detector")
    with _raises("replays must be an integer >= 1 (free-at's replays m), got 0."):
        check_int(0, "replays", low=1, hint=" (free-at's replays m)")


# -- check_number ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2, 2.0), (0.25, 0.25), (np.float32(0.5), 0.5), (np.int64(3), 3.0), (np.float64(1.0), 1.0)],
)
def test_check_number_accepts_ints_floats_and_numpy_as_plain_float(value, expected):
    checked = check_number(value, "lr", low=0)
    assert checked == expected and type(checked) is float


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (True, "True"), ("1", "'1'"),
     (np.float64("nan"), "np.float64(nan)")],
)
def test_check_number_rejects_non_finite_bool_and_text(value, shown):
    with _raises(f"lr must be a number, got {shown}."):
        check_number(value, "lr")


def test_check_number_closed_and_open_bounds():
    # closed: the bound itself is accepted
    assert check_number(0, "alpha", low=0) == 0.0
    assert check_number(1, "share", low=0, high=1) == 1.0
    with _raises("alpha must be a number >= 0, got -0.5."):
        check_number(-0.5, "alpha", low=0)
    # open: the bound is refused, anything inside is accepted
    assert check_number(1e-9, "lr", low=0, low_open=True) == 1e-9
    with _raises("lr must be a number > 0, got 0."):
        check_number(0, "lr", low=0, low_open=True)
    with _raises("val_fraction must be a number > 0 and < 1, got 1.0."):
        check_number(1.0, "val_fraction", low=0, high=1, low_open=True, high_open=True)
    with _raises("min_gain must be a number >= 0 and < 1, got 1."):
        check_number(1, "min_gain", low=0, high=1, high_open=True)
    with _raises("ratio must be a number <= 1, got 1.5."):
        check_number(1.5, "ratio", high=1)


def test_check_number_owner_prefix():
    with _raises("detector parameter temperature must be a number > 0, got -1."):
        check_number(-1, "temperature", low=0, low_open=True, owner="detector")


# -- check_choice and check_value -----------------------------------------------------------


def test_check_choice_accepts_a_choice_as_plain_value():
    assert check_choice("adam", "optimizer", ("sgd", "adam")) == "adam"
    assert check_choice(np.str_("sgd"), "optimizer", ["sgd", "adam"]) == "sgd"
    two = check_choice(np.int64(2), "bits", (1, 2, 4))
    assert two == 2 and type(two) is int


def test_check_choice_rejects_with_the_choices_listed():
    with _raises("optimizer must be one of 'sgd', 'adam', got 'lbfgs'."):
        check_choice("lbfgs", "optimizer", ("sgd", "adam"))
    with _raises("JPEG parameter mode must be one of 'a', 'b', got None."):
        check_choice(None, "mode", ("a", "b"), owner="JPEG")
    # a bool is not the integer it equals
    with _raises("bits must be one of 1, 2, 4, got True."):
        check_choice(True, "bits", (1, 2, 4))


def test_check_choice_with_mixed_types():
    assert check_choice(None, "stages", (None, "all")) is None
    assert check_choice("all", "stages", (None, "all")) == "all"
    with _raises("stages must be one of None, 'all', got 'some'."):
        check_choice("some", "stages", (None, "all"))


def test_check_value_uses_the_declaration():
    spec = Param(75, int, low=1, high=95)
    assert check_value(np.int16(50), "quality", spec) == 50
    with _raises("JPEG parameter quality must be an integer >= 1 and <= 95, got 100."):
        check_value(100, "quality", spec, owner="JPEG")


# -- the declaration-level functions ----------------------------------------------------------

DECLARED = {
    "steps": Param(10, int, low=1, doc="iterations"),
    "lr": Param(0.5, float, low=0, low_open=True, doc="step size"),
    "mode": Param("fast", str, choices=("fast", "exact"), doc="how"),
    "seed": Param(None, int, low=0, doc="seed (None: global)"),
}


def test_check_params_fills_defaults():
    assert check_params("Demo", DECLARED, {}) == {
        "steps": 10, "lr": 0.5, "mode": "fast", "seed": None}


def test_check_params_returns_plain_python_values():
    values = check_params("Demo", DECLARED, {"steps": np.int64(3), "lr": np.float32(0.25),
                                             "seed": np.int32(7)})
    assert values == {"steps": 3, "lr": 0.25, "mode": "fast", "seed": 7}
    assert [type(values[k]) for k in ("steps", "lr", "seed")] == [int, float, int]
    assert type(check_params("Demo", DECLARED, {"lr": 2})["lr"]) is float


def test_check_params_optional_parameter_is_still_checked_when_given():
    assert check_params("Demo", DECLARED, {"seed": None})["seed"] is None
    with _raises("Demo parameter seed must be an integer >= 0, got -1."):
        check_params("Demo", DECLARED, {"seed": -1})


def test_check_params_bad_value_and_unknown_names():
    with _raises("Demo parameter steps must be an integer >= 1, got 0."):
        check_params("Demo", DECLARED, {"steps": 0})
    with _raises("Demo parameter mode must be one of 'fast', 'exact', got 'slow'."):
        check_params("Demo", DECLARED, {"mode": "slow"})
    with _raises("Demo has no parameter 'step' (known: lr, mode, seed, steps)."):
        check_params("Demo", DECLARED, {"step": 3})


def test_unknown_names_lists_every_unknown_and_the_known():
    assert unknown_names("Demo", DECLARED, {"steps": 1, "lr": 1.0}) == ""
    assert unknown_names("Demo", DECLARED, {"z": 1, "a": 2}) == (
        "Demo has no parameter 'a', 'z' (known: lr, mode, seed, steps).")
    assert unknown_names("Empty", {}, {"x": 1}) == "Empty has no parameter 'x' (known: none)."


def test_bad_value_sentence():
    assert bad_value("VBPR", "dim", Param(20, int, low=1), 0) == (
        "VBPR parameter dim must be an integer >= 1, got 0.")


def test_describe_records():
    assert describe(DECLARED) == [
        {"name": "steps", "default": 10, "expects": "an integer >= 1", "doc": "iterations"},
        {"name": "lr", "default": 0.5, "expects": "a number > 0", "doc": "step size"},
        {"name": "mode", "default": "fast", "expects": "one of 'fast', 'exact'", "doc": "how"},
        {"name": "seed", "default": None, "expects": "an integer >= 0",
         "doc": "seed (None: global)"},
    ]


def test_plain_fields_replaces_numpy_scalars_only():
    @dataclass(frozen=True)
    class Config:
        count: object
        rate: object
        name: object = "x"

    config = Config(np.int64(4), 2)
    plain_fields(config)
    assert (config.count, config.rate, config.name) == (4, 2, "x")
    assert type(config.count) is int and type(config.rate) is int


# -- the checks in use ----------------------------------------------------------------------


def test_input_transform_parameters_and_describe():
    from varsec.defenses import JPEG, ResizePad

    jpeg = JPEG(np.int64(50))
    assert jpeg.quality == 50 and type(jpeg.quality) is int
    with _raises("JPEG compression parameter quality must be an integer >= 1 and <= 95, got 100."):
        JPEG(100)
    with _raises("JPEG compression has no parameter 'qualty', 'size' (known: quality)."):
        JPEG.from_params(qualty=5, size=3)
    assert ResizePad(ratio=0.5).seed is None
    with _raises("random resize-pad parameter seed must be an integer >= 0, got -1."):
        ResizePad(seed=-1)
    assert jpeg.describe() == {
        "defense": "jpeg", "adaptive": "bpda",
        "params": [{"name": "quality", "default": 75, "expects": "an integer >= 1 and <= 95",
                    "doc": "JPEG quality (1 worst, 95 best)", "value": 50}],
    }


def test_defend_images_batch_size():
    from varsec.defenses import JPEG
    from varsec.defenses.base import defend_images

    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    assert defend_images(JPEG(90), images, batch_size=np.int64(1)).shape == images.shape
    with _raises("batch_size must be an integer >= 1, got True."):
        defend_images(JPEG(90), images, batch_size=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pgd_steps": 0}, "pgd_steps must be an integer >= 1, got 0."),
        ({"seed": -1}, "seed must be an integer >= 0, got -1."),
        ({"max_items": 1}, "max_items must be an integer >= 2, got 1."),
        ({"gamma": -0.1}, "gamma must be a number >= 0, got -0.1."),
        ({"lr": 0.0}, "lr must be a number > 0, got 0.0."),
        ({"holdout_fraction": 1.0}, "holdout_fraction must be a number > 0 and < 1, got 1.0."),
        ({"target_fpr": 0}, "target_fpr must be a number > 0 and < 1, got 0."),
        ({"threshold": -0.2}, "threshold must be a number >= 0, got -0.2."),
        ({"detector_init": "zeros"},
         "detector_init must be one of 'extractor', 'random', got 'zeros'."),
    ],
)
def test_defense_config_values(changes, message):
    from varsec.defenses import DefenseConfig

    with _raises(message):
        DefenseConfig(**changes)


def test_defense_config_keeps_plain_values():
    from varsec.defenses import DefenseConfig

    config = DefenseConfig(pgd_steps=np.int64(3), lr=np.float32(0.5), alpha=2)
    assert (config.pgd_steps, config.lr, config.alpha) == (3, 0.5, 2)
    assert [type(v) for v in (config.pgd_steps, config.lr, config.alpha)] == [int, float, int]


def test_detector_and_reconstruction_values():
    from varsec.defenses.detector import ContrastiveDetector
    from varsec.defenses.reconstruction import ReconstructionNet

    with _raises("reconstruction network parameter heads must be an integer >= 1, got 0."):
        ReconstructionNet(heads=0)
    with _raises("detector parameter embed_dim must be an integer >= 1, got 0."):
        ContrastiveDetector(embed_dim=0)
    with _raises("detector parameter hidden_dim must be an integer >= 1, got 2.5."):
        ContrastiveDetector(hidden_dim=2.5)
    with _raises("detector parameter temperature must be a number > 0, got inf."):
        ContrastiveDetector(temperature=math.inf)
    detector = ContrastiveDetector(embed_dim=np.int64(8), temperature=np.float32(0.5))
    assert (detector.embed_dim, detector.temperature) == (8, 0.5)
    with _raises("detector threshold must be a number, got nan."):
        detector.set_threshold(math.nan)
    assert detector.set_threshold(np.float32(0.25)).threshold == 0.25
    with _raises("calibration method must be one of 'accuracy', 'fpr', got 'f1'."):
        detector.calibrate([0.1], [0.9], method="f1")
    with _raises("target_fpr must be a number > 0 and < 1, got 1."):
        detector.calibrate([0.1], [0.9], method="fpr", target_fpr=1)


def test_train_config_values():
    from varsec.vision.training import TrainConfig

    with _raises("min_gain must be a number >= 0 and < 1, got 1."):
        TrainConfig(min_gain=1)
    with _raises("momentum must be a number >= 0, got nan."):
        TrainConfig(momentum=math.nan)
    with _raises("max_batches must be an integer >= 1, got 0."):
        TrainConfig(max_batches=0)
    with _raises("select_on must be one of 'auto', 'clean', 'robust', got 'test'."):
        TrainConfig(select_on="test")
    config = TrainConfig(epochs=np.int64(2), lr=np.float32(0.5))
    assert (config.epochs, config.lr) == (2, 0.5) and type(config.epochs) is int


def test_single_argument_checks():
    from varsec.data.catalog import Interactions
    from varsec.data.splits import k_core
    from varsec.defenses.evaluation import distance_histograms
    from varsec.metrics.attack import random_item_pairs
    from varsec.vision.robustness import evaluate_robustness

    log = Interactions(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 2, 3]),
                       np.array(["u0", "u1"]))
    with _raises("k-core k must be an integer >= 1, got 0."):
        k_core(log, 0)
    with _raises("bins must be an integer >= 1, got 2.0."):
        distance_histograms([], bins=2.0)
    assert len(distance_histograms([], bins=np.int64(3))) == 0
    with _raises("n_pairs must be an integer >= 1, got 0."):
        random_item_pairs([0, 1, 0, 1], 0)
    pairs = random_item_pairs([0, 1, 0, 1], np.int64(3), seed=1)
    assert pairs.shape == (3, 2)
    assert np.array_equal(pairs, random_item_pairs([0, 1, 0, 1], 3, seed=1))
    with _raises("steps must be an integer >= 1, got False."):
        evaluate_robustness(None, None, (8,), steps=False)


def test_field_defaults_are_a_config_dataclass_defaults():
    from dataclasses import field

    @dataclass(frozen=True)
    class Config:
        name: str
        rate: float = 0.5
        widths: list[int] = field(default_factory=lambda: [16, 32])

    defaults = field_defaults(Config)
    assert defaults == {"rate": 0.5, "widths": [16, 32]}  # a required field has none
    assert defaults["widths"] is not field_defaults(Config)["widths"]  # a fresh list each time


def test_the_training_commands_offer_their_configs_defaults():
    import inspect

    from varsec.defenses.commands import train_defense_command
    from varsec.defenses.joint import DefenseConfig
    from varsec.vision.commands import train_extractor
    from varsec.vision.training import TrainConfig

    for command, config, renamed in ((train_defense_command, DefenseConfig,
                                      {"holdout": "holdout_fraction"}),
                                     (train_extractor, TrainConfig, {})):
        defaults = field_defaults(config)
        options = {renamed.get(name, name): p.default.default
                   for name, p in inspect.signature(command).parameters.items()}
        shared = set(options) & set(defaults) - {"detector_eps"}  # given as text: "16"
        assert len(shared) >= 15
        assert all(options[name] == defaults[name] for name in shared)
