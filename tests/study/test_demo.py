"""`varsec demo --quick`: the main job at the quick profile runs whatever stages exist today
and reports the rest as not run (its time is a benchmark: benchmarks/demo.py)."""

from __future__ import annotations

import re
from pathlib import Path

from varsec.study.commands import demo
from varsec.study.results import read_results


def test_demo_quick_runs_and_prints_where_the_report_is(tmp_path, capsys):
    demo(out=tmp_path, quick=True, executor=None)
    printed = capsys.readouterr().out
    report = Path(printed.strip().splitlines()[-1].removeprefix("report: "))
    assert report == (tmp_path / "report.html").resolve() and report.is_file()
    table = read_results(tmp_path)
    clean = table[(table["attack"] == "none") & (table["protocol"] == "sampled-20")]
    assert {"bpr", "vbpr", "amr", "vbpr-at", "alexrank", "knn"} <= set(clean["recommender"])
    markdown = (tmp_path / "report.md").read_text()
    assert "were SIMULATED" in markdown and "## Claims" in markdown
    assert "not available yet" in markdown or "held" in markdown
    # the reconstruction defense (002 Tables 2-3) and an adaptive attack through JPEG
    recon = table[(table["defense"] == "recon") & (table["protocol"] == "sampled-20")]
    assert set(recon["attack"]) == {"none", "fgsm-bpr", "fgsm-bpr-user"}  # 002-restore: per user
    assert (table["metric"] == "detection_accuracy").any()
    assert ((table["attack"] == "insa+adaptive") & (table["defense"] == "jpeg=30")).any()
    for claim in ("002-restore", "002-detect"):
        assert re.search(rf"\| {claim} \|[^|]*\|[^|]*\| (held|not held|inconclusive) \|",
                         markdown), claim
    assert "## Defenses against the non-adaptive and the adaptive attacker" in markdown
