"""make_transform: the input transform of a kind at one strength of a sweep."""

from __future__ import annotations

import pytest

from varsec.defenses import make_transform
from varsec.defenses.registry import defense_class, is_transform, known_defenses
from varsec.errors import ConfigError


def test_each_kind_builds_its_transform_at_the_level():
    assert make_transform("jpeg", 30).quality == 30
    assert make_transform("bit-depth", 3.0).bits == 3
    assert make_transform("median", 5).window == 5
    assert make_transform("resize-pad", 0.9).ratio == pytest.approx(0.9)


def test_every_level_of_every_default_sweep_builds():
    transforms = [name for name in known_defenses() if is_transform(name)]
    assert {"jpeg", "bit-depth", "median", "resize-pad"} <= set(transforms)
    for name in transforms:
        cls = defense_class(name)
        assert cls.default_sweep, name
        for level in cls.default_sweep:
            built = make_transform(name, level)
            assert type(built) is cls and getattr(built, cls.strength) == level


@pytest.mark.parametrize(("kind", "level", "message"), [
    ("jpeg", 50.5, "quality must be an integer >= 1 and <= 95, got 50.5"),
    ("bit-depth", True, "bits must be an integer >= 1 and <= 8, got True"),
    ("median", 4, "window must be an odd positive integer"),
    ("blur", 3, "unknown defense 'blur' \\(known: "),
    ("reconstruction", 1, "defense has no strength to sweep"),
])
def test_a_bad_kind_or_level_is_refused(kind, level, message):
    with pytest.raises(ConfigError, match=message):
        make_transform(kind, level)
