"""The study commands: ``varsec run``, ``varsec study schema`` and ``varsec demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from varsec.errors import ConfigError

study_app = typer.Typer(help="Study configs: the schema of the YAML files `varsec run` reads.",
                        no_args_is_help=True)


def find_study(name: str) -> Path:
    """A study file by path, or one of the shipped studies by name (``demo``, ``aip``, ...)."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.stem if path.suffix in (".yaml", ".yml") else name
    for directory in _study_dirs():
        candidate = directory / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{name}: no such study file (shipped studies: "
                      f"{', '.join(shipped_studies()) or 'none found'}).")


def _study_dirs() -> list[Path]:
    import varsec

    return [Path.cwd() / "studies", Path(varsec.__file__).resolve().parents[2] / "studies"]


def shipped_studies() -> list[str]:
    """Names of the studies in ``studies/``."""
    for directory in _study_dirs():
        if directory.is_dir():
            return sorted(p.stem for p in directory.glob("*.yaml"))
    return []


def run(
    study: str = typer.Argument(..., help="A study YAML file, or the name of a shipped study "
                                "(demo, aip, taamr, denoise, item2item, imagenet)."),
    out: Path | None = typer.Option(None, "--out", help="Output directory [runs/<study>]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the stages with cached / to do "
                                 "status and a work estimate; compute nothing."),
    force: list[str] = typer.Option([], "--force", help="Recompute this stage kind and "
                                    "everything downstream (data, extractor, recommender, "
                                    "attack, defense, evaluation, all); repeatable."),
    executor: str | None = typer.Option(None, "--executor", help="local or ray [the study's "
                                        "executor.kind, local by default]."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with "
                                       "--executor ray); none starts a local Ray instance."),
    profile: str | None = typer.Option(None, "--profile", help="Override dataset.profile: "
                                       "quick, default or paper."),
    verify: bool = typer.Option(False, "--verify", help="Hash every cached file before reuse "
                                "(by default only files whose size or mtime changed)."),
) -> None:
    """Run a study: every stage not already in OUT/cache, then the results table and report.

    Killed or interrupted, run it again: finished stages are reused and the results are the
    same as an uninterrupted run's. A cached file changed since its stage wrote it is found
    (by size and mtime, or by its sha256 with --verify) and its stage computed again.

    Example: varsec run studies/demo.yaml --out runs/demo --dry-run
    """
    from varsec.study.runner import dry_run as plan_only
    from varsec.study.runner import run_study

    path = find_study(study)
    if executor is not None and executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be local or ray, got {executor!r}.")
    _check_out(out)
    if dry_run:
        typer.echo(plan_only(path, out, force=force, profile=profile, verify=verify).render())
        return
    result = run_study(path, out, force=force, executor=executor, address=address,
                       profile=profile, verify=verify)
    _summary(result)


def _check_out(out: Path | None) -> None:
    """Before any stage: --out must be a directory that can be written (never a file)."""
    if out is not None:
        from varsec.io import check_output_dir

        check_output_dir(out, None, in_place=True)


def _summary(result) -> None:
    typer.echo(f"{len(result.plan)} stages: {result.count('done')} computed, "
               f"{result.count('cached')} cached, {result.count('not-run')} not run; "
               f"{len(result.table)} result rows in {result.out / 'results.csv'}")
    if result.report is not None:
        typer.echo(f"report: {result.report.resolve()}")


def schema() -> None:
    """Print every key of the study schema with its default and description (commented YAML).

    Example: varsec study schema > my-study.yaml
    """
    from varsec.study.schema import schema_yaml

    typer.echo(schema_yaml(), nl=False)


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output directory."),
    quick: bool = typer.Option(False, "--quick", help="The quick profile (about two minutes) "
                               "instead of the default one (about ten)."),
    executor: str | None = typer.Option(None, "--executor", help="local or ray."),
) -> None:
    """Run the demo study (studies/demo.yaml: a compact version of all four works) and print
    where its report is.

    Example: varsec demo --quick --out runs/demo-quick
    """
    from varsec.study.runner import run_study

    _check_out(out)
    result = run_study(find_study("demo"), out, profile="quick" if quick else "default",
                       executor=executor)
    _summary(result)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``study schema`` and ``demo`` to the root ``varsec`` app."""
    app.command("run")(run)
    study_app.command("schema")(schema)
    app.add_typer(study_app, name="study")
    app.command("demo")(demo)


__all__ = ["demo", "find_study", "register", "run", "schema", "shipped_studies"]
