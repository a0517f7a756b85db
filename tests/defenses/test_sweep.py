"""Strength sweeps (000 Table 7) over callables."""

from __future__ import annotations

import pytest

from varsec.defenses import (
    JPEG,
    BitDepth,
    make_transform,
    run_sweep,
    sweep_levels,
    sweep_table,
    weakest_level,
)
from varsec.errors import ConfigError


def test_levels_are_table_7s_weakest_first():
    assert sweep_levels("jpeg") == (90, 70, 50, 30, 10)
    assert sweep_levels("bit-depth") == (7, 6, 5, 4, 3, 2)
    assert isinstance(make_transform("jpeg", 30), JPEG)
    assert make_transform("bit-depth", 3).bits == 3


def test_weakest_level_is_the_first_success():
    levels = [90, 70, 50, 30, 10]
    assert weakest_level(levels, [0.5, 0.4, 0.2, 0.1, 0.3], 0.2) == 50
    assert weakest_level(levels, [0.5] * 5, 0.2) is None
    assert weakest_level(levels, [0.5, 0.1, 0.1, 0.1, 0.1], [0.6, 0, 0, 0, 0]) == 90
    with pytest.raises(ConfigError, match="one adversarial and cooperative HR per level"):
        weakest_level(levels, [0.1], 0.2)


def test_run_sweep_measures_every_level_and_the_cost():
    def adversarial(t: BitDepth) -> float:  # stronger reduction -> lower adversarial HR
        return t.bits / 10

    result = run_sweep("bit-depth", adversarial, 0.45, clean_hr=lambda t: 0.5 + t.bits / 100,
                       baseline_clean_hr=0.6, labels={"recommender": "vbpr", "attack": "insa"})
    assert [p.level for p in result.points] == [7, 6, 5, 4, 3, 2]
    assert result.weakest == 4
    assert result.cost == pytest.approx(0.6 - 0.54)
    frame = result.to_frame()
    assert frame["weakest"].sum() == 1 and set(frame["recommender"]) == {"vbpr"}
    table = sweep_table([result])
    assert table.loc[0, "weakest_level"] == 4


def test_cooperative_hr_may_depend_on_the_defense():
    result = run_sweep("jpeg", lambda t: 0.3, lambda t: t.quality / 200, levels=[90, 50])
    assert result.weakest == 90 and result.cost is None


def test_unknown_kind():
    with pytest.raises(ConfigError, match="unknown defense kind 'blur'"):
        sweep_levels("blur")


def test_two_stage_sweep_non_adaptive_and_adaptive(tiny_dataset, tiny_vbpr):
    import numpy as np
    import torch

    from varsec.attacks import INSA, FGSMStep, run_attack
    from varsec.defenses.sweep import defended_catalog_hr, two_stage_sweep
    from varsec.recsys import BPRMF, TwoStage

    first = BPRMF(factors=4, epochs=2, early_stopping=False).fit(tiny_dataset)
    pipeline = TwoStage(first, tiny_vbpr, k=20)
    sets = pipeline.prepare(tiny_dataset)
    cold = np.asarray(tiny_dataset.cold_items[:6])
    coop = torch.from_numpy(np.ascontiguousarray(tiny_dataset.catalog.images[cold]))
    adv = run_attack(INSA(tiny_vbpr), coop, FGSMStep(32)).images
    calls = []

    def adaptive(transform):
        calls.append(transform.bits)
        return run_attack(INSA(tiny_vbpr), coop, FGSMStep(32),
                          transform=transform.adaptive_hook()).images

    baseline = defended_catalog_hr(tiny_vbpr, tiny_dataset, None)
    plain = two_stage_sweep(pipeline, sets, coop, adv, "bit-depth", levels=(7, 2),
                            clean_hr=lambda t: defended_catalog_hr(tiny_vbpr, tiny_dataset, t),
                            baseline_clean_hr=baseline)
    known = two_stage_sweep(pipeline, sets, coop, adaptive, "bit-depth", levels=(7, 2))
    assert calls == [7, 2]
    for result in (plain, known):
        assert [p.level for p in result.points] == [7, 2]
        assert all(0 <= p.hr_adversarial <= 1 for p in result.points)
    assert plain.points[0].hr_cooperative == known.points[0].hr_cooperative
    assert 0 <= baseline <= 1 and plain.points[0].clean_hr is not None
