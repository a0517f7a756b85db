"""Auditing a model behind an HTTP endpoint: the reference server serves the VBPR a study fitted,
and the same study with that ranker as ``kind: http`` runs the query-only rungs (Square on
INSA's score, Square on the probes' ranks) and c-SEMA through the endpoint, with the same
numbers as in process and every query counted in the stages' info."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from study_standins import TINY_MODELS, run_tiny_real_study

from varsec.recsys.serve import load_served_model, serve_model
from varsec.study.files import ITEM_MEASURES
from varsec.study.report.data import StudyResults
from varsec.study.report.ladder import ladder_table

STEPS, ITEMS, PROBES = 6, 4, 10
ATTACKS = f"""attacks:
  score: {{kind: square, objective: insa, recommender: pipe, eps: [32], steps: {STEPS},
          n_items: {ITEMS}}}
  rank: {{kind: square, objective: probe-rank, recommender: pipe, eps: [32], steps: {STEPS},
         n_items: {ITEMS}, params: {{probes: {PROBES}}}}}
  csema: {{kind: csema, recommender: pipe, n_items: {ITEMS}}}
evaluation:
  protocols: [{{kind: full}}]
  cold_items: {ITEMS}
  bootstrap: 0
"""
IN_PROCESS = "\nstudy: audit\n" + TINY_MODELS + ATTACKS
VBPR = """  vbpr: {kind: vbpr, extractor: cnn,
    params: {factors: 8, visual_factors: 8, epochs: 2, early_stopping: false}}"""
COLUMNS = ["recommender", "attack", "eps", "defense", "protocol", "metric", "k"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(in-process run, run through the endpoint): one output directory, so the second run
    reuses the data, the extractor and the first stage."""
    out = tmp_path_factory.mktemp("audit")
    local = run_tiny_real_study(IN_PROCESS, out)
    model = next(s for s in local.plan.of_kind("recommender")
                 if s.labels["recommender"] == "vbpr")
    extractor = local.plan.of_kind("extractor")[0]
    served = load_served_model(str(out / "cache" / "recommender" / model.key / "model.pt"),
                               str(out / "cache" / "extractor" / extractor.key / "extractor.pt"))
    server = serve_model(served, threads=1)  # the study's threads: the same sums
    try:
        assert VBPR in IN_PROCESS
        http = f'  vbpr: {{kind: http, params: {{url: "{server.url}"}}}}'
        remote = IN_PROCESS.replace(VBPR, http)
        return local, run_tiny_real_study(remote, out)
    finally:
        server.close()


def _rows(run):
    table = run.table[run.table.metric != "feature_loss"]  # on the extractor, not the ranker
    return table.set_index(COLUMNS)["value"].sort_index()


def test_every_number_through_the_endpoint_is_the_in_process_number(runs):
    local, remote = runs
    assert all(s.ok for s in remote.statuses.values())
    ours, theirs = _rows(local), _rows(remote)
    assert len(theirs) > 60 and theirs.index.equals(ours.index)
    assert theirs.equals(ours)  # the same scores, adversarial images and HR values
    rungs = {a for a in theirs.index.get_level_values("attack")}
    assert {"score", "rank", "csema", "none"} <= rungs
    # what the endpoint cannot give: the feature loss, measured on the ranker's extractor
    missing = set(local.table.metric) - set(remote.table.metric)
    assert missing == {"feature_loss"}


def test_the_ladder_of_the_endpoint_is_the_in_process_ladder(runs):
    frames = [ladder_table(StudyResults(r.config, r.table, r.plan, r.statuses, r.out))
              for r in runs]
    assert list(frames[1].index) == ["query (score)", "query (rank)", "semantic"]
    assert frames[1].equals(frames[0])


def _stage(run, attack: str):
    return next(s for s in run.plan.of_kind("attack") if s.labels.get("attack") == attack)


def _info(run, kind: str, **labels) -> dict:
    stage = next(s for s in run.plan.of_kind(kind)
                 if all(s.labels.get(k) == v for k, v in labels.items()))
    return json.loads((run.out / "cache" / kind / stage.key / "info.json").read_text())


def test_every_query_to_the_endpoint_is_counted_in_the_stage_info(runs):
    local, remote = runs
    score = _info(remote, "attack", attack="score")["endpoint"]
    # Square scores the start image and one proposal per step, for every item, one request
    # each; the stage then measures the objective on the clean and the adversarial images (its
    # per-item table), two requests more that are the auditor's, not the merchant's
    assert score == {"requests": STEPS + 1 + 2, "images": ITEMS * (STEPS + 1 + 2)}
    rank = _info(remote, "attack", attack="rank")["endpoint"]
    # the same uploads, scored for the probes only, plus one request for the probes' lists
    assert rank == {"requests": STEPS + 2 + 2, "images": ITEMS * (STEPS + 1 + 2)}
    table = pd.read_parquet(remote.out / "cache" / "attack" / _stage(remote, "score").key /
                            ITEM_MEASURES)
    steps = table[table["metric"] == "steps"]["value"]
    assert len(steps) == ITEMS and (steps == STEPS + 1).all()  # its uploads: start + proposals
    assert "endpoint" not in _info(remote, "attack", attack="csema")  # no model at all
    assert _info(remote, "recommender", recommender="vbpr")["endpoint"] == {"requests": 1}
    assert "endpoint" not in _info(local, "attack", attack="score")


def test_an_unreachable_endpoint_stops_the_run_with_one_line(tmp_path):
    import socket

    from varsec.errors import ModelError

    with socket.socket() as bound:  # bound, not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        text = IN_PROCESS.replace(VBPR, f'  vbpr: {{kind: http, params: {{url: '
                                        f'"http://127.0.0.1:{port}"}}}}')
        with pytest.raises(ModelError, match=rf"^endpoint http://127\.0\.0\.1:{port}/info is "
                           r"unreachable \(.*\)\.$"):
            run_tiny_real_study(text, tmp_path)
