"""Fixtures of the study tests: stand-in stages (see study_standins.py) and tiny runs."""

from __future__ import annotations

import pytest
from study_standins import TINY_STUDY, tiny_stages

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
