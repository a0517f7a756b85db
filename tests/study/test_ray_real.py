"""The study's ``threads``: real stages give byte-identical results on the local and the Ray
executor, whatever thread count the calling process (or the machine) has; ``threads`` keys the
cache, is validated, and is shown in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info

from varsec.errors import ConfigError
from varsec.study.cache import StageCache
from varsec.study.execute import thread_limits
from varsec.study.executors import _num_cpus
from varsec.study.plan import plan_study
from varsec.study.runner import run_study
from varsec.study.schema import load_study_text

# Real stages at a tiny size: quick-profile Fashion-MNIST data, a 1-epoch fmnist-cnn, VBPR
# trained by SGD, a PGD attack and the ranking and category evaluations (about 4 s locally).
# Its numbers differ between threads: 1 and threads: 2, so it detects a stage that ignores them.
REAL_STUDY = """
study: ray-real
threads: {threads}
dataset: {{profile: quick}}
extractors:
  cnn: {{epochs: 1, max_train: 600, eval_eps: [], backbone_options: {{widths: [8, 16, 32]}},
        options: {{val_fraction: 0.02}}}}
recommenders:
  vbpr: {{kind: vbpr, extractor: cnn, params: {{epochs: 2, early_stopping: false}}}}
attacks:
  pgd: {{kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker, eps: [8],
        steps: 3, n_items: 20}}
evaluation: {{protocols: [{{kind: sampled, negatives: 20}}], bootstrap: 20}}
executor: {{num_cpus: 2}}
"""


def _study(threads: int = 2):
    return load_study_text(REAL_STUDY.format(threads=threads))


def _run_local(out: Path, caller_threads: int, threads: int = 2) -> bytes:
    """results.csv of a local run from a process whose torch uses ``caller_threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    try:
        result = run_study(_study(threads), out, log=None, report=False)
        assert torch.get_num_threads() == caller_threads, "a stage changed the caller's threads"
    finally:
        torch.set_num_threads(before)
    assert result.count("done") == len(result.plan)
    return (out / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def local_one(tmp_path_factory) -> bytes:
    """The real study run locally from a process on one torch thread."""
    return _run_local(tmp_path_factory.mktemp("local-1"), caller_threads=1)


def test_local_results_do_not_depend_on_the_callers_thread_count(tmp_path, local_one):
    assert _run_local(tmp_path, caller_threads=2) == local_one
    plan = plan_study(_study())
    meta = json.loads((StageCache(tmp_path).path(plan.stages[-1]) / "stage.json").read_text())
    assert meta["config"]["threads"] == 2


def test_the_ray_executor_gives_the_local_bytes_on_real_stages(tmp_path, local_one):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'varsec[ray]')")
    result = run_study(_study(), tmp_path, executor="ray", log=None, report=False)
    assert result.count("done") == len(result.plan)
    assert (tmp_path / "results.csv").read_bytes() == local_one


def test_threads_keys_every_stage_and_changes_the_numbers(tmp_path, local_one):
    two, one = plan_study(_study(2)), plan_study(_study(1))
    assert not {s.key for s in two} & {s.key for s in one}
    assert [s.config["threads"] for s in one] == [1] * len(one)
    # other sums: the study is sensitive, so the identity tests above can fail
    assert _run_local(tmp_path, caller_threads=2, threads=1) != local_one


def test_thread_limits_sets_torch_and_blas_and_restores_them():
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    before_blas = [i["num_threads"] for i in blas]
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), thread_limits(3):
        assert torch.get_num_threads() == 3
        assert all(i["num_threads"] == 3 for i in threadpool_info()
                   if i["user_api"] == "blas")
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == \
        before_blas


class _FakeRay:
    def __init__(self, cpus: float) -> None:
        self.cpus = cpus

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}


@pytest.mark.parametrize(("threads", "cluster", "expected"), [(2, 8, 2), (4, 2, 2), (1, 2, 1)])
def test_a_ray_task_reserves_its_threads_at_most_the_clusters_cpus(threads, cluster, expected):
    config = _study(threads)
    stage = plan_study(config).stages[1]
    assert _num_cpus(_FakeRay(cluster), stage, config) == expected


def test_configured_resources_of_a_kind_win_over_threads():
    config = load_study_text(REAL_STUDY.format(threads=2).replace(
        "executor: {num_cpus: 2}", "executor: {resources: {extractor: {num_cpus: 0.5}}}"))
    plan = plan_study(config)
    extractor = next(s for s in plan if s.kind == "extractor")
    attack = next(s for s in plan if s.kind == "attack")
    assert _num_cpus(_FakeRay(8), extractor, config) == 0.5
    assert _num_cpus(_FakeRay(8), attack, config) == 2


@pytest.mark.parametrize("value", ["0", "-2", "true", "2.5", "'3'", "many"])
def test_a_bad_thread_count_is_one_config_error_naming_the_key_and_line(value):
    with pytest.raises(ConfigError) as caught:
        load_study_text(f"study: s\nthreads: {value}\n", source="s.yaml")
    message = str(caught.value)
    assert message.startswith("s.yaml:2: threads: ") and "\n" not in message


def test_the_default_is_two_threads_and_the_schema_explains_it():
    from varsec.study.schema import schema_yaml

    assert load_study_text("study: s\n").threads == 2
    lines = schema_yaml().splitlines()
    at = lines.index("threads: 2")
    assert "CPU threads of torch and BLAS" in lines[at - 1]


def test_the_report_names_the_thread_count(tiny_run):
    markdown = (tiny_run.out / "report.md").read_text()
    assert "executor local, device cpu, 1 thread(s) per stage, seeds 0" in markdown
