"""The study report: report.md, report.html (one self-contained file), tables/*.tex, figures/.

Everything is generated from the results table (plus the per-unit vectors the evaluations kept
for paired tests): the data section (which says plainly when interactions were simulated), the
run status (what did not run and why), the claims of the four works with held / not held /
inconclusive (a model below its sanity floor, an attack that did not converge) / not run, the
tables laid out like the papers' next to the papers' own numbers, and the figures.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

import varsec
from varsec.io import atomic_path
from varsec.study.report.budgets import NOTE as BUDGET_NOTE
from varsec.study.report.budgets import STEM as BUDGET_STEM
from varsec.study.report.budgets import TITLE as BUDGET_TITLE
from varsec.study.report.budgets import budget_table
from varsec.study.report.claims import (
    CLAIMS,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_RUN,
    evaluate_claims,
)
from varsec.study.report.convergence import NOTE as CONVERGENCE_NOTE
from varsec.study.report.convergence import convergence_table
from varsec.study.report.data import StudyResults
from varsec.study.report.diagnosis import DIAGNOSIS_NOTE, diagnosis_table
from varsec.study.report.figures import draw_figures
from varsec.study.report.render import Section, Table, to_html, to_latex, to_markdown
from varsec.study.report.tables import TABLES

if TYPE_CHECKING:
    from varsec.study.runner import RunResult

PAPERS = {
    "000": "Liu & Larson, Adversarial Item Promotion (AIP)",
    "001": "Anelli et al., perceptual and recommendation mutation (TAaMR)",
    "002": "Yin et al., adversarial image reconstruction and detection",
    "004": "Normann, attacks and defenses for image-based recommendation (thesis)",
    "varsec": "varsec's own checks",
}


def results_from_run(result: RunResult) -> StudyResults:
    """The report's view of a finished run."""
    return StudyResults(result.config, result.table, result.plan, result.statuses, result.out)


def _data_section(results: StudyResults) -> Section:
    section = Section("Data")
    info = results.dataset_info
    config = results.config
    if not info:
        section.add("p", "The data stage did not run.")
        return section
    section.add("p", f"Source {config.dataset.source}: {info.get('users', '?'):,} users, "
                f"{info.get('items', '?'):,} items ({info.get('cold_items', 0):,} cold), "
                f"{info.get('interactions', '?'):,} interactions; leave-one-out split "
                f"({config.dataset.split}): {info.get('train', 0):,} train, "
                f"{info.get('validation', 0):,} validation, {info.get('test', 0):,} test.")
    if info.get("simulated"):
        section.add("note", "The interactions in this study were SIMULATED, not observed: a "
                    f"seeded simulator (profile {info.get('profile')}, seed {info.get('seed')}) "
                    "gave users category affinities and style tastes over the real product "
                    "images of the catalog. The numbers describe the models and attacks on "
                    "that simulated market, not the behaviour of real shoppers.")
    else:
        section.add("p", "The interactions come from the source as recorded (not simulated).")
    return section


def _run_section(results: StudyResults, seconds: float) -> Section:
    section = Section("Run")
    counts = Counter(s.state for s in results.statuses.values())
    config = results.config
    section.add("p", f"{len(results.plan)} stages: {counts.get('done', 0)} computed, "
                f"{counts.get('cached', 0)} from the cache, {counts.get('not-run', 0)} not run; "
                f"{len(results.table)} result rows; executor {config.executor.kind}, device "
                f"{config.device}, {config.threads} thread(s) per stage, seeds "
                f"{', '.join(map(str, config.seeds))}, profile "
                f"{config.dataset.profile}, varsec {varsec.__version__}, {seconds:.0f}s.")
    reasons: Counter[str] = Counter()
    for stage, reason in results.not_run():
        if "did not run" not in reason:
            reasons[f"{stage.kind}: {reason}"] += 1
    if reasons:
        section.add("p", "Not run (everything downstream of these stages was skipped too; no "
                    "number in this report stands in for them):")
        section.add("list", [f"{reason} ({n} stage{'s' if n > 1 else ''})"
                             for reason, n in reasons.items()])
    return section


def _claims_section(results: StudyResults) -> tuple[Section, pd.DataFrame, list]:
    section = Section("Claims")
    verdicts = evaluate_claims(results.primary())
    frame = pd.DataFrame(
        [{"paper": claim.paper, "claim": claim.statement, "verdict": verdict.status,
          "evidence": verdict.evidence, "test": verdict.test} for claim, verdict in verdicts],
        index=[claim.id for claim, _ in verdicts])
    frame.index.name = "id"
    tally = Counter(v.status for _, v in verdicts)
    section.add("p", f"{tally.get(HELD, 0)} held, {tally.get(NOT_HELD, 0)} not held, "
                f"{tally.get(INCONCLUSIVE, 0)} inconclusive (a model the verdict rests on is "
                "below its sanity floor, the measurement is not the paper's threat model or "
                "budget, or an attack that did not converge or a defense trained below the "
                f"paper's schedule leaves the verdict open), {tally.get(NOT_RUN, 0)} not run "
                "(the study has no rows for them). Paired "
                f"tests use the per-user / per-item values at significance "
                f"{results.config.evaluation.significance}.")
    section.add("table", Table(frame, "Headline claims of the four works, re-tested here",
                               "claims"))
    return section, frame, verdicts


def _diagnosis_section(results: StudyResults, verdicts: list) -> tuple[Section, Table] | None:
    """What each claim not held would take, from the study's diagnosis sweeps (None when every
    claim holds or is open)."""
    frame = diagnosis_table(results, verdicts)
    if frame is None:
        return None
    table = Table(frame, f"This study. {DIAGNOSIS_NOTE}", "diagnosis")
    return Section("Diagnosis of the claims not held", [("table", table)]), table


def _table_sections(results: StudyResults) -> tuple[list[Section], list[Table]]:
    sections, tables, missing = [], [], []
    white_box = results.white_box()  # what the papers' tables rest on: no transfer number
    for spec in TABLES:
        frame = spec.build(results if spec.transfer else white_box)
        if frame is None:
            missing.append(f"{spec.title} ({PAPERS.get(spec.paper, spec.paper)})")
            continue
        section = Section(spec.title)
        table = Table(frame, f"This study. {spec.note}".strip(), spec.id)
        section.add("table", table)
        tables.append(table)
        if spec.reference is not None and results.config.report.paper_reference:
            section.add("table", Table(spec.reference, f"For orientation: {spec.reference_note}"))
        sections.append(section)
    if missing:
        section = Section("Tables not run")
        section.add("p", "These tables need stages the study did not define or could not run:")
        section.add("list", missing)
        sections.append(section)
    return sections, tables


def _convergence_section(results: StudyResults) -> tuple[Section, Table] | None:
    """The "Convergence" table of every iterative attack (None when the study has none)."""
    frame = convergence_table(results)
    if frame is None:
        return None
    table = Table(frame, f"This study. {CONVERGENCE_NOTE}", "convergence")
    return Section("Convergence", [("table", table)]), table


def _budget_section(results: StudyResults) -> tuple[Section, Table] | None:
    """The budget each attack ran with beside the paper's (None when no stage recorded one)."""
    frame = budget_table(results)
    if frame is None:
        return None
    table = Table(frame, f"This study. {BUDGET_NOTE}", BUDGET_STEM)
    return Section(BUDGET_TITLE, [("table", table)]), table


def _copy_adversarial_pngs(results: StudyResults) -> None:
    """OUT/adversarial/<attack>[-eps<e>]-<target>[-<defense>]-seed<s>/: each attack's example
    PNGs (an adaptive attack names the defense it went through)."""
    root = results.out / "adversarial"
    shutil.rmtree(root, ignore_errors=True)
    for stage in results.stages("attack"):
        source = results.cache.path(stage) / "adversarial"
        if not source.is_dir():
            continue
        labels = stage.labels
        eps = f"-eps{labels['eps']:g}" if labels.get("eps") is not None else ""
        target = labels.get("recommender") or labels.get("extractor") or "target"
        through = f"-{labels['defense']}" if labels.get("defense") else ""
        name = f"{labels['attack']}{eps}-{target}{through}-seed{labels['seed']}"
        shutil.copytree(source, root / name.replace(" ", "_"))


def write_report(result: RunResult) -> Path:
    """Write the report of a finished run into ``result.out``; returns report.html's path."""
    results = results_from_run(result)
    out = result.out
    figures_dir, tables_dir = out / "figures", out / "tables"
    for directory in (figures_dir, tables_dir):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    _copy_adversarial_pngs(results)
    sections = [_data_section(results), _run_section(results, result.seconds)]
    if results.config.description:
        sections.insert(0, Section("Study", [("p", results.config.description)]))
    claims, _, verdicts = _claims_section(results)
    sections.append(claims)
    diagnosis = _diagnosis_section(results, verdicts)
    table_sections, tables = _table_sections(results.primary())
    if diagnosis is not None:
        sections.append(diagnosis[0])
        tables.append(diagnosis[1])
    sections.extend(table_sections)
    convergence = _convergence_section(results)
    if convergence is not None:
        sections.append(convergence[0])
        tables.append(convergence[1])
    budgets = _budget_section(results)
    if budgets is not None:
        sections.append(budgets[0])
        tables.append(budgets[1])
    if results.config.report.figures:
        figure_section = Section("Figures")
        for path, caption in draw_figures(results.primary(), figures_dir):
            figure_section.add("figure", (path, caption))
        if figure_section.blocks:
            sections.append(figure_section)
    sections.append(Section("Files", [("list", [
        "results.csv / results.parquet: the tidy results table",
        "config.resolved.yaml: the study with every default filled in",
        "status.json: what each stage did", "tables/*.tex: the tables above, for LaTeX",
        "figures/*.png: the figures above", "adversarial/: example adversarial PNGs per attack",
        "cache/: every stage's output (reused by reruns)"])]))
    for block_table in tables + [b[1] for s in sections for b in s.blocks
                                 if b[0] == "table" and b[1].stem == "claims"]:
        (tables_dir / f"{block_table.stem}.tex").write_text(to_latex(block_table))
    title = f"varsec study: {results.config.study}"
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(to_markdown(title, sections, out), encoding="utf-8")
    html_path = out / "report.html"
    with atomic_path(html_path) as tmp:
        tmp.write_text(to_html(title, sections), encoding="utf-8")
    return html_path


__all__ = ["CLAIMS", "TABLES", "results_from_run", "write_report"]
