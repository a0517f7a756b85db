"""Planning, caching, --force, --dry-run, not-available stages and the results table."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from study_standins import FAKE_STUDY, fake_stages

from varsec.errors import ConfigError
from varsec.study.cache import LOCK, RunLock, StageCache
from varsec.study.plan import plan_study
from varsec.study.results import COLUMNS, read_results
from varsec.study.runner import dry_run, forced_keys, run_study
from varsec.study.schema import load_study_text
from varsec.study.stages import StageUnavailableError, override_stage, stage_key


@pytest.fixture
def config():
    return load_study_text(FAKE_STUDY)


def test_plan_is_topological_deduplicated_and_keyed(config):
    plan = plan_study(config)
    seen = set()
    for stage in plan:
        assert all(key in seen for key in stage.inputs.values()), stage.name
        seen.add(stage.key)
    assert len(seen) == len(plan)
    kinds = [s.kind for s in plan]
    assert kinds.count("data") == 1 and kinds.count("extractor") == 2
    assert kinds.count("attack") == 4  # 2 extractors x 2 eps
    # a category attack on extractor a is evaluated on r2 (built on a), with and without attack;
    # it poisons the catalog (001): r2 / r3 are retrained once per attack run
    category = [s for s in plan if s.config.get("scenario") == "category"]
    assert {(s.labels["recommender"], s.labels["attack"]) for s in category} == {
        ("r2", "none"), ("r2", "p+poisoning"), ("r3", "none"), ("r3", "p+poisoning")}
    assert kinds.count("recommender") == 3 + 4


def test_keys_change_with_config_inputs_and_version(config):
    key = stage_key("evaluation", {"a": 1}, {"data": "x"})
    assert key == stage_key("evaluation", {"a": 1.0}, {"data": "x"})
    assert key != stage_key("evaluation", {"a": 2}, {"data": "x"})
    assert key != stage_key("evaluation", {"a": 1}, {"data": "y"})
    with override_stage("evaluation", lambda c, cfg, i: [], version="other"):
        assert key != stage_key("evaluation", {"a": 1}, {"data": "x"})
    changed = load_study_text(FAKE_STUDY.replace("b: {epochs: 2}", "b: {epochs: 3}"))
    before = {s.name: s.key for s in plan_study(config)}
    after = {s.name: s.key for s in plan_study(changed)}
    assert before["extractor a (seed 0)"] == after["extractor a (seed 0)"]
    assert before["extractor b (seed 0)"] != after["extractor b (seed 0)"]
    assert before["recommender r3 (seed 0)"] != after["recommender r3 (seed 0)"]


def test_rerun_computes_nothing_and_force_recomputes_downstream(config, tmp_path):
    with fake_stages():
        first = run_study(config, tmp_path, log=None, report=False)
        assert first.count("done") == len(first.plan)
        again = run_study(config, tmp_path, log=None, report=False)
        assert again.count("cached") == len(again.plan)
        pd.testing.assert_frame_equal(first.table, again.table)
        forced = run_study(config, tmp_path, force=["recommender"], log=None, report=False)
    recomputed = {s.kind for s in forced.plan if forced.statuses[s.key].state == "done"}
    assert recomputed == {"recommender", "evaluation"}
    assert forced_keys(forced.plan, ["all"]) == {s.key for s in forced.plan}
    with pytest.raises(ConfigError, match="--force takes a stage kind"):
        forced_keys(forced.plan, ["models"])


def test_results_table_is_tidy_and_written_as_csv_and_parquet(config, tmp_path):
    with fake_stages():
        result = run_study(config, tmp_path, log=None, report=False)
    assert tuple(result.table.columns) == COLUMNS
    csv, parquet = read_results(tmp_path / "results.csv"), read_results(tmp_path)
    pd.testing.assert_frame_equal(csv, parquet, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(parquet, result.table)
    assert set(result.table["study"]) == {"fake"} and set(result.table["seed"]) == {0}
    assert (tmp_path / "config.resolved.yaml").is_file()
    status = json.loads((tmp_path / "status.json").read_text())["stages"]
    assert len(status) == len(result.plan)


def test_not_available_stages_skip_downstream_and_are_reported(config, tmp_path):
    def unavailable(ctx, cfg, inputs):
        raise StageUnavailableError("attacks are not available yet")

    with fake_stages(), override_stage("attack", unavailable):
        result = run_study(config, tmp_path, log=None, report=False)
    states = {s.kind: set() for s in result.plan}
    for stage in result.plan:
        states[stage.kind].add(result.statuses[stage.key].state)
    assert states["attack"] == {"not-run"}
    attacks = {s.key for s in result.plan if s.kind == "attack"}
    attacked = [s for s in result.plan if s.key in result.plan.downstream(attacks) - attacks]
    assert attacked  # the poisoned recommenders (001) and their evaluations
    assert all(result.statuses[s.key].state == "not-run" for s in attacked)
    assert "did not run" in result.statuses[attacked[0].key].reason
    assert not result.table["attack"].str.startswith("p").any()
    assert not any(StageCache(tmp_path).is_done(s) for s in result.plan if s.kind == "attack")


def test_dry_run_lists_status_and_estimates(config, tmp_path):
    def unavailable(ctx, cfg, inputs):
        raise StageUnavailableError("attacks are not available yet")

    with fake_stages(kinds=("data", "extractor", "recommender", "evaluation")), \
            override_stage("attack", unavailable, available=lambda cfg: "not yet"):
        listing = dry_run(config, tmp_path)
        assert {e.status for e in listing.entries} >= {"to do", "not available"}
        run_study(config, tmp_path, log=None, report=False)
        listing = dry_run(config, tmp_path)
    statuses = {e.stage.kind: e.status for e in listing.entries}
    assert statuses["data"] == "cached" and statuses["attack"] == "not available"
    text = listing.render()
    assert "cached" in text and "not available yet" in text


def test_stage_errors_name_the_stage_and_leave_nothing_behind(config, tmp_path):
    def broken(ctx, cfg, inputs):
        (ctx.workdir / "half-written").write_text("x")
        raise RuntimeError("boom")

    with fake_stages(), override_stage("extractor", broken), \
            pytest.raises(ConfigError.__mro__[1], match=r"stage 'extractor a \(seed 0\)' "
                                                         r"failed: RuntimeError: boom"):
        run_study(config, tmp_path, log=None, report=False)
    cache = StageCache(tmp_path)
    assert not list((cache.root / "extractor").iterdir())
    assert not (tmp_path / LOCK).exists()


def test_stale_temporary_directories_are_removed_and_the_lock_is_exclusive(tmp_path):
    stale = tmp_path / "cache" / "data" / ".abc.xyz.tmp"
    stale.mkdir(parents=True)
    assert StageCache(tmp_path).clean_stale() == 1 and not stale.exists()
    with RunLock(tmp_path), pytest.raises(ConfigError, match="another varsec run"), \
            RunLock(tmp_path):
        pass
    (tmp_path / LOCK).write_text("999999999")  # a dead owner's lock is taken over
    with RunLock(tmp_path):
        pass


def test_an_interrupted_run_sweeps_temporary_directories_and_releases_the_lock(config, tmp_path):
    # A stray temporary directory stands for one whose cleanup the interrupt pre-empted.
    def interrupted(ctx, config, inputs):
        (tmp_path / "cache" / "extractor" / ".x.abc.tmp").mkdir(parents=True)
        raise KeyboardInterrupt

    with fake_stages(), override_stage("extractor", interrupted), \
            pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path, log=None, report=False)
    assert not list((tmp_path / "cache").glob("*/.*"))
    assert not (tmp_path / LOCK).exists()
