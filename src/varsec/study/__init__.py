"""varsec.study: one YAML file runs a whole attack/defense grid (DESIGN.md section 9).

    from varsec.study import load_study, run_study
    result = run_study("studies/demo.yaml", out="runs/demo")   # cached, resumable
    result.table        # the tidy results table (also results.csv / results.parquet)
    result.report       # report.html (self-contained)

Stage implementations are registered per kind with :func:`register_stage`; the built-in ones
live in :mod:`varsec.study.builtin`.
"""

from varsec.study.plan import Plan, plan_study
from varsec.study.results import COLUMNS, read_results
from varsec.study.runner import DryRun, RunResult, dry_run, run_study
from varsec.study.schema import StudyConfig, load_study, load_study_text, schema_yaml
from varsec.study.stages import (
    Stage,
    StageContext,
    StageOutput,
    StageUnavailableError,
    override_stage,
    register_stage,
)

__all__ = [
    "COLUMNS",
    "DryRun",
    "Plan",
    "RunResult",
    "Stage",
    "StageContext",
    "StageOutput",
    "StageUnavailableError",
    "StudyConfig",
    "dry_run",
    "load_study",
    "load_study_text",
    "override_stage",
    "plan_study",
    "read_results",
    "register_stage",
    "run_study",
    "schema_yaml",
]
