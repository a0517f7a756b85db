"""Plugins: a platform registers its own method through an entry point (``varsec.recommenders``,
``varsec.attacks``, ``varsec.defenses``, ``varsec.backbones``) and audits it without forking.

The in-process tests put a distribution's metadata (``*.dist-info/entry_points.txt``) on
``sys.path``, as an installer would; the last test installs ``examples/varsec-example-plugin``
with pip into a directory of its own and audits its model with ``varsec run`` in a subprocess.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from varsec import registry
from varsec.cli import main
from varsec.errors import ConfigError
from varsec.recsys import create_recommender, known_recommenders

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "varsec-example-plugin"
GROUP = "varsec.recommenders"

PLUGIN_MODULE = '''
from varsec.recsys.alexrank import AlexRank


class Mine(AlexRank):
    """A platform's model (here AlexRank under another name)."""


def not_a_model():
    return None
'''


def _distribution(root: Path, name: str, entry: str, module: str | None = None) -> None:
    """Write an installed distribution's files: its module and its entry point metadata."""
    if module is not None:
        (root / f"{name}_mod.py").write_text(module)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry}\n")
    importlib.invalidate_caches()  # as after an install: the path's listing changed


@pytest.fixture
def plugin_path(tmp_path, monkeypatch, scratch_registry):
    """A fresh sys.path entry for fake distributions; the group is loaded again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_IMPORTED", set(registry._IMPORTED) - {GROUP})
    yield tmp_path
    for module in [m for m in sys.modules if m.endswith("_mod")]:
        del sys.modules[module]


def test_an_entry_point_class_is_registered_under_its_name(plugin_path):
    _distribution(plugin_path, "good", "mine = good_mod:Mine", PLUGIN_MODULE)
    assert "mine" in known_recommenders()
    model = create_recommender("mine")
    assert type(model).__name__ == "Mine" and type(model).visual


def test_a_plugin_that_does_not_import_is_one_line(plugin_path):
    _distribution(plugin_path, "broken", "broken = nowhere_mod:Thing")
    with pytest.raises(ConfigError, match=r"^plugin 'broken' \(varsec\.recommenders: "
                       r"nowhere_mod:Thing\) cannot be loaded: ModuleNotFoundError: "):
        known_recommenders()


def test_a_plugin_that_is_not_a_model_is_one_line(plugin_path):
    _distribution(plugin_path, "odd", "odd = odd_mod:not_a_model", PLUGIN_MODULE)
    with pytest.raises(ConfigError, match=r"^plugin 'odd' .* is not usable: .* is not a varsec "
                       r"Recommender class or a module\.$"):
        known_recommenders()


def test_a_study_naming_a_broken_plugin_stops_before_compute(plugin_path, capsys):
    _distribution(plugin_path, "broken", "broken = nowhere_mod:Thing")
    study = plugin_path / "s.yaml"
    study.write_text("study: s\nrecommenders:\n  r: {kind: broken}\n")
    assert main(["run", str(study), "--dry-run", "--out", str(plugin_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "plugin 'broken'" in lines[0]
    assert not (plugin_path / "out").exists()


AUDIT_STUDY = """
study: audit
threads: 1
dataset: {source: <data>}
extractors:
  cnn: {epochs: 1, max_train: 300, eval_eps: [], eval_limit: 100,
        backbone_options: {widths: [8, 16, 32]}}
recommenders:
  bpr: {kind: bpr-mf, params: {factors: 8, epochs: 2, early_stopping: false}}
  mine: {kind: pop-visual, extractor: cnn, params: {popularity_weight: 0.2}}
  built: {kind: external, factory: "varsec_example_plugin.model:build", extractor: cnn,
          params: {popularity_weight: 0.2}}
  pipe: {kind: two-stage, first_stage: bpr, ranker: mine, k: 20}
attacks:
  insa: {kind: insa, recommender: pipe, eps: [16], steps: 5, n_items: 10, params: {lr: 4}}
  expa: {kind: expa, recommender: pipe, eps: [16], steps: 5, n_items: 10, params: {lr: 4}}
  score: {kind: square, objective: insa, recommender: pipe, eps: [16], steps: 8, n_items: 10}
  rank: {kind: square, objective: probe-rank, recommender: pipe, eps: [16], steps: 8,
         n_items: 10, params: {probes: 5}}
  csema: {kind: csema, recommender: pipe, n_items: 10}
evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  cold_items: 10
  bootstrap: 0
report: {figures: false}
"""


def test_the_example_plugin_is_installed_and_audited_by_varsec_run(tmp_path, fmnist_small):
    from varsec.data import simulate_and_split

    simulated = simulate_and_split(fmnist_small, "quick", seed=0)
    source, target = tmp_path / "plugin", tmp_path / "site"
    shutil.copytree(EXAMPLE, source)  # a build writes beside the sources: not in the repository
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}
    varsec = [sys.executable, "-m", "varsec"]
    schema = subprocess.run([*varsec, "study", "schema"], capture_output=True, text=True,
                            env=env, check=False)
    assert schema.returncode == 0 and "#   pop-visual: PopVisual" in schema.stdout
    simulated.save(tmp_path / "data")
    study = tmp_path / "audit.yaml"
    study.write_text(textwrap.dedent(AUDIT_STUDY).replace("<data>", str(tmp_path / "data")))
    run = subprocess.run([*varsec, "run", str(study), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, check=False, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    import pandas as pd

    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    promoted = rows[(rows.recommender == "pipe") & (rows.metric == "HR_cold")]
    assert {"insa", "expa", "score", "rank", "csema"} <= set(promoted.attack)
    # the report's threat ladder places each merchant on its rung against the plugin's model
    report = (tmp_path / "out" / "report.md").read_text()
    ladder = report[report.index("## The threat ladder"):]
    for rung in ("| insider |", "| expert |", "| query (score) |", "| query (rank) |",
                 "| semantic |"):
        assert rung in ladder.split("\n## ")[0], rung
    assert "mine" in set(rows.recommender)
    # the same model built by the package's factory (kind: external) gives the same numbers
    sampled = rows[rows.protocol.str.startswith("sampled") & (rows.attack == "none")]

    def ranking(name: str) -> pd.Series:
        return sampled[sampled.recommender == name].set_index(["metric", "k"])["value"].sort_index()

    assert len(ranking("built")) > 5 and ranking("built").equals(ranking("mine"))

    configs = [json.loads(p.read_text())["config"]
               for p in (tmp_path / "out" / "cache" / "recommender").glob("*/stage.json")]
    built = next(c for c in configs if c.get("factory"))
    assert built["package"] == "varsec-example-plugin==0.1.0"  # keys the cache with its code
