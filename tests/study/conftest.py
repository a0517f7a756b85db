"""Fixtures of the study tests: stand-in stages (see study_standins.py) and tiny runs."""

from __future__ import annotations

import pytest
from study_standins import TINY_DEFENSE_STUDY, TINY_STUDY, tiny_data_stages, tiny_stages

from varsec.study.schema import load_study_text


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny study run once end to end (stand-in data, extractor and attack; real
    recommenders, evaluations and report)."""
    from varsec.study.runner import run_study

    config = load_study_text(TINY_STUDY)
    out = tmp_path_factory.mktemp("tiny")
    with tiny_stages():
        result = run_study(config, out, log=None)
    return result


@pytest.fixture(scope="session")
def defense_run(tmp_path_factory):
    """The tiny defense study run once: real attacks (and their adaptive versions), JPEG and the
    reconstruction defense (fit, apply with and without the random layer), evaluations, report."""
    import torch

    from varsec.study.runner import run_study

    out = tmp_path_factory.mktemp("defense")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that rerun its stages (tests/conftest.py): same sums
    try:
        with tiny_data_stages():
            return run_study(load_study_text(TINY_DEFENSE_STUDY), out, log=None)
    finally:
        torch.set_num_threads(before)
