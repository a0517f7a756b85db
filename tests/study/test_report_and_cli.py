"""The end-to-end tiny study (real recommenders and evaluations), its report in headless
Chromium, the claims machinery, and the study commands."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from study_browser import chromium, inspect_page

from varsec.cli import main
from varsec.study.report import results_from_run
from varsec.study.report.claims import (
    CLAIMS,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_RUN,
    evaluate_claims,
)
from varsec.study.report.tables import TABLES

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_every_scenario_writes_its_rows(tiny_run):
    table = tiny_run.table
    assert tiny_run.count("not-run") == 0
    metrics = set(zip(table["protocol"], table["metric"], strict=True))
    for expected in [("full", "HR"), ("sampled-20", "NDCG"), ("full", "AUC"),
                     ("two-stage-20", "HR_test"), ("two-stage-20", "HR_cold"),
                     ("two-stage-20", "HR_coop"), ("two-stage-20", "prediction_shift"),
                     ("full", "CHR"), ("item2item", "success_rate"),
                     ("classifier-test", "accuracy"), ("attack", "success_rate")]:
        assert expected in metrics, expected
    ranking = table[(table["protocol"] == "full") & (table["metric"] == "HR")]
    assert ranking["value"].between(0, 1).all()
    assert (ranking["ci_low"] <= ranking["value"]).all()
    assert (ranking["value"] <= ranking["ci_high"]).all()
    insa = table[(table["attack"] == "insa") & (table["metric"] == "HR_cold")]
    assert set(insa["eps"]) == {32.0} and set(insa["recommender"]) == {"pipe"}


def test_the_report_files_and_their_contents(tiny_run):
    out = tiny_run.out
    for name in ("report.md", "report.html", "results.csv", "results.parquet",
                 "config.resolved.yaml", "status.json"):
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png")) and list((out / "tables").glob("*.tex"))
    assert list((out / "adversarial").glob("*/*_adv.png"))
    markdown = (out / "report.md").read_text()
    assert "were SIMULATED, not observed" in markdown
    for section in ("## Claims", "## AIP Table 5", "## TAaMR Table 1", "## Thesis: success"):
        assert section in markdown, section
    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert r"\begin{tabular}" in (out / "tables" / "aip-table5.tex").read_text()


def test_claims_give_a_verdict_or_say_not_run(tiny_run):
    verdicts = dict((c.id, v) for c, v in evaluate_claims(results_from_run(tiny_run)))
    assert len(verdicts) == len(CLAIMS)
    assert "Wilcoxon" in verdicts["000-insa"].test and "p=" in verdicts["000-insa"].evidence
    assert verdicts["002-restore"].status == NOT_RUN
    assert verdicts["001-at-push"].status == NOT_RUN
    for claim in ("000-insa", "varsec-protocols"):
        assert verdicts[claim].status in (HELD, NOT_HELD, INCONCLUSIVE)
        if verdicts[claim].status == INCONCLUSIVE:  # the tiny models may not beat popularity
            assert "not above the popularity ranking's" in verdicts[claim].reason


def test_paper_tables_are_built_from_the_results(tiny_run):
    results = results_from_run(tiny_run)
    built = {spec.id: spec.build(results) for spec in TABLES}
    assert built["aip-table5"].loc["Cooperative cold"].notna().all()
    assert any("INSA" in row for row in built["aip-table5"].index)
    assert built["thesis-success"] is not None and built["yin-table3"] is None


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed "
                    "(apt-get install -y chromium chromium-driver)")
def test_report_html_opens_in_headless_chromium(tiny_run):
    report = inspect_page(tiny_run.out / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "study-report.png").write_bytes(report.screenshot)
    assert report.title == "varsec study: tiny"
    assert report.images and all(done and width > 0 for done, width in report.images)
    assert report.errors == []


# -- commands -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [["run"], ["study", "schema"], ["demo"]])
def test_commands_have_help_with_an_example(path, capsys):
    from varsec.cli import app
    from varsec.study.commands import register

    if "run" not in {c.name for c in app.registered_commands}:
        register(app)
    assert main([*path, "--help"]) == 0
    assert "Example: varsec " + " ".join(path) in capsys.readouterr().out


def test_study_schema_and_dry_run_commands(capsys, tmp_path):
    from varsec.study.commands import demo, run, schema

    schema()
    assert "attacks:" in capsys.readouterr().out
    run("taamr", out=tmp_path, dry_run=True, force=[], executor=None, address=None,
        profile="quick")
    listing = capsys.readouterr().out
    assert "not available" in listing and "extractor" in listing
    assert callable(demo)


def test_run_command_errors_are_one_line(capsys, tmp_path):
    from varsec.cli import app
    from varsec.study.commands import register

    if "run" not in {c.name for c in app.registered_commands}:
        register(app)
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nattacks:\n  a: {kind: insa, recommender: nope}\n")
    assert main(["run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "attacks.a.recommender: 'nope' is not a recommender of this study" in err


def test_a_claim_holds_only_when_every_comparison_does(tiny_run):
    from varsec.study.report.claims import _Evidence

    results = results_from_run(tiny_run)
    assert _Evidence(results).verdict("rows of that kind").status == NOT_RUN
    evidence = _Evidence(results)
    p = evidence.p_value(np.arange(10.0) + 1, np.zeros(10))  # ten positive differences
    assert p == pytest.approx(2 / 2**10) and "Wilcoxon signed-rank, n=10" in evidence.test
    evidence.add("a", evidence.significant(p), 1.0, "a: yes")
    assert evidence.verdict("-").status == HELD
    evidence.add("b", False, 2.0, "b: no")
    verdict = evidence.verdict("-")
    assert verdict.status == NOT_HELD and verdict.numbers == {"a": 1.0, "b": 2.0}
    assert verdict.evidence == "a: yes; b: no"
