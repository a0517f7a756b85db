"""varsec.study: one YAML file runs a whole attack/defense grid (DESIGN.md section 9).

    from varsec.study import load_study, run_study
    result = run_study("studies/demo.yaml", out="runs/demo")   # cached, resumable
    result.table        # the tidy results table (also results.csv / results.parquet)
    result.report       # report.html (self-contained)

Stage implementations are registered per kind with :func:`register_stage`; the built-in ones
live in :mod:`varsec.study.builtin`.
"""

import importlib
from typing import Any

# Public names and the submodule that defines each; imported on first use, so that reading a
# study file (varsec.study.yamlfile) does not pull in pandas, pydantic and the stage graph.
_EXPORTS = {
    "Plan": "plan", "plan_study": "plan",
    "COLUMNS": "results", "read_results": "results",
    "DryRun": "runner", "RunResult": "runner", "dry_run": "runner", "run_study": "runner",
    "StudyConfig": "schema", "load_study": "schema", "load_study_text": "schema",
    "schema_yaml": "schema",
    "Stage": "stages", "StageContext": "stages", "StageOutput": "stages",
    "StageUnavailableError": "stages", "override_stage": "stages", "register_stage": "stages",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"varsec.study.{module}"), name)


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
