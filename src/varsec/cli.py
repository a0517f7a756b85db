"""The ``varsec`` command line: one root app; each layer registers its commands from its own
``commands`` module so the layers stay independent.

Every :class:`~varsec.errors.VarsecError` is printed as ``error: <message>`` with exit status 2;
``--debug`` shows the traceback instead. An interrupt (Ctrl-C, SIGINT or SIGTERM) ends every
command with one final ``error: interrupted...`` line and exit status 130; ``run`` and ``demo``
say where their finished stages are kept.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from varsec import __version__
from varsec.errors import VarsecError

_app = typer.Typer(
    name="varsec",
    help="Train, attack and defend visually-aware recommenders, and report what each defense buys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"varsec {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks instead of one-line errors."
    ),
) -> None:
    """varsec: security of visually-aware recommender systems.

    Example: varsec data info fashion-mnist
    """
    _state["debug"] = debug


_registered = [False]


def _register_layers() -> typer.Typer:
    """The root app with every layer's commands (importing them loads torch, so only on use)."""
    if _registered[0]:
        return _app
    from varsec.data import commands as data_commands

    _app.add_typer(data_commands.app, name="data")
    layers = (
        "varsec.vision.commands",
        "varsec.recsys.commands",
        "varsec.study.attack_command",
        "varsec.defenses.commands",
        "varsec.study.commands",
    )
    for module_name in layers:
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(_app)
    _registered[0] = True
    return _app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return _register_layers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


INTERRUPTED = 130  # 128 + SIGINT, the shell's status for a command ended by Ctrl-C
# Commands that resume where an interrupted run stopped: what the final line tells the user.
_RESUMABLE = {
    "run": "finished stages are kept in {out}, run the same command again to resume",
    "demo": "finished stages are kept in {out}, run the same command again to resume",
    "attack": "finished chunks are kept in {out}, run the same command with --resume to "
              "continue",
}


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so cleanups run and a final line is printed.

    A signal the parent process ignores (a shell's background job ignores SIGINT) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupt_line(args: list[str]) -> str:
    """The final line of an interrupted command; resumable ones name their output directory."""
    try:
        name, params = _command_params(args)
        hint = _RESUMABLE.get(name)
        out = params.get("out") or (_default_study_out(params) if name == "run" else None)
    except Exception:  # the hint is a courtesy: nothing may hide the interrupt itself
        hint = None
    if hint is None or out is None:
        return "error: interrupted."
    return f"error: interrupted; {hint.format(out=out)}."


def _command_params(args: list[str]) -> tuple[str, dict[str, object]]:
    """The name and parsed parameters of the (sub)command ``args`` invoke (no callbacks run)."""
    command = typer.main.get_command(_register_layers())
    ctx = command.make_context("varsec", list(args), resilient_parsing=True)
    name = ""
    while hasattr(command, "resolve_command"):  # a group: descend into its subcommand
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        if sub is None:
            break
        command = sub
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=True)
    return name, ctx.params


def _default_study_out(params: dict[str, object]) -> Path | None:
    """``varsec run``'s output directory when --out is not given: runs/<study name>."""
    from varsec.study.commands import find_study
    from varsec.study.runner import default_out, resolve_config

    study = params.get("study")
    return default_out(resolve_config(find_study(str(study)))) if study else None


# `varsec run` options that take a value (so the study argument can be found without the layers).
_RUN_VALUE_OPTIONS = {"--out", "--force", "--executor", "--address", "--profile"}


def _study_argument(args: list[str]) -> str | None:
    """The study file or name a ``varsec run`` command line names, else None."""
    words = [a for a in args if a != "--debug"]
    if not words or words[0] != "run":
        return None
    rest = iter(words[1:])
    for word in rest:
        if word in _RUN_VALUE_OPTIONS:
            next(rest, None)
        elif not word.startswith("-"):
            return word
    return None


def _precheck_study_file(args: list[str]) -> None:
    """Read a ``varsec run`` study file with the bounded YAML loader before torch is imported.

    A hostile or broken file is then refused in milliseconds and a few MB, not after the
    layers (and torch, about 700 MB) have loaded.
    """
    study = _study_argument(args)
    if study is None:
        return
    from varsec.study.commands import find_study
    from varsec.study.yamlfile import load_yaml

    load_yaml(find_study(study))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answered without loading the layers (and torch)
        typer.echo(f"varsec {__version__}")
        return 0
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
        with _signals_as_interrupts():
            _precheck_study_file(args)
            status = _register_layers()(args=args, prog_name="varsec", standalone_mode=False)
    except VarsecError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("error: aborted.", err=True)
        return INTERRUPTED
    except KeyboardInterrupt:
        typer.echo(_interrupt_line(args), err=True)
        return INTERRUPTED
    except typer.exceptions.TyperException as exc:  # usage errors: typer prints its own message
        exc.show()
        return 2
    if status == INTERRUPTED:
        # Typer turns a KeyboardInterrupt inside a command into a silent Exit(130); no varsec
        # command returns 130 itself, so this is an interrupt that still needs its final line.
        typer.echo(_interrupt_line(args), err=True)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
