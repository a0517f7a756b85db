"""The defense registry: every defense declared once (its swept parameter, default sweep,
attacker), the schema reading it, and a property test over every registered input transform."""

from __future__ import annotations

import numpy as np
import pytest

from varsec.defenses import defend_images
from varsec.defenses.registry import (
    DefenseMethod,
    build_transform,
    defense_class,
    is_transform,
    known_defenses,
    register_defense,
    strength_problem,
)
from varsec.errors import ConfigError
from varsec.study.schema import load_study_text

TRANSFORMS = [name for name in known_defenses() if is_transform(name)]

STUDY = """\
study: t
extractors:
  cnn: {epochs: 1}
recommenders:
  vbpr: {kind: vbpr, extractor: cnn}
defenses:
  d: {kind: jpeg, strengths: [50]}
"""


def test_the_builtin_defenses_are_registered_with_their_facts():
    assert set(known_defenses()) == {"jpeg", "bit-depth", "median", "resize-pad",
                                     "adversarial-training", "reconstruction", "external"}
    assert set(TRANSFORMS) == {"jpeg", "bit-depth", "median", "resize-pad"}
    facts = {n: (defense_class(n).strength, defense_class(n).default_sweep,
                 defense_class(n).adaptive, defense_class(n).pixel) for n in known_defenses()}
    assert facts == {
        "jpeg": ("quality", (90, 70, 50, 30, 10), "bpda", True),  # 000 Table 7
        "bit-depth": ("bits", (7, 6, 5, 4, 3, 2), "bpda", True),
        "median": ("window", (3, 5), "bpda", True),
        "resize-pad": ("ratio", (0.95, 0.9, 0.8), "eot", True),
        "adversarial-training": (None, (), None, False),
        "reconstruction": (None, (), "detector-aware", True),
        "external": (None, (), "the transform's own (bpda or eot)", True),  # built by a factory
    }


def test_names_are_unique_and_unknown_ones_list_the_known():
    with pytest.raises(ConfigError, match="defense name 'jpeg' is already registered"):
        register_defense("jpeg")(type("Other", (DefenseMethod,), {}))
    with pytest.raises(TypeError, match="not a defense class"):
        register_defense("thing")(object)
    with pytest.raises(ConfigError, match=r"unknown defense 'blur' \(known: "
                                          r"adversarial-training, bit-depth, external, jpeg"):
        defense_class("blur")


@pytest.mark.parametrize(("kind", "value", "message"), [
    ("jpeg", 100, "JPEG compression parameter quality must be an integer >= 1 and <= 95, "
                  "got 100."),
    ("jpeg", 50.5, "JPEG compression parameter quality must be an integer >= 1 and <= 95, "
                   "got 50.5."),
    ("bit-depth", 9, "bit-depth reduction parameter bits must be an integer >= 1 and <= 8, "
                     "got 9."),
    ("median", 4, "median smoothing parameter window must be an odd positive integer"),
    ("resize-pad", 1.5, "random resize-pad parameter ratio must be a number > 0 and <= 1, "
                        "got 1.5."),
    ("reconstruction", 3, "a reconstruction defense has no strength sweep."),
])
def test_a_bad_strength_is_the_class_s_own_message(kind, value, message):
    assert strength_problem(kind, value).startswith(message)


def test_good_strengths_build_the_transform():
    assert [strength_problem(k, v) for k, v in (("jpeg", 95), ("median", 5.0),
                                                ("resize-pad", 0.9))] == [None] * 3
    assert build_transform("jpeg", 50.0).quality == 50
    assert build_transform("resize-pad", 0.9, seed=3).ratio == pytest.approx(0.9)


def test_the_schema_takes_the_default_sweep_from_the_registry():
    config = load_study_text(STUDY.replace("{kind: jpeg, strengths: [50]}", "{kind: bit-depth}"))
    assert config.defenses["d"].sweep() == [7, 6, 5, 4, 3, 2]


@pytest.mark.parametrize("name", TRANSFORMS)
def test_every_transform_round_trips_uint8(name):
    cls = defense_class(name)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 3, 28, 28), dtype=np.uint8)
    transform = build_transform(name, cls.default_sweep[-1])
    defended = np.asarray(defend_images(transform, images))
    assert defended.dtype == np.uint8 and defended.shape == images.shape
    again = np.asarray(defend_images(transform, images))
    if cls.adaptive == "bpda":  # deterministic transforms give the same bytes twice
        assert np.array_equal(defended, again)
