"""The ``varsec`` command line: one root app; each layer registers its commands from its own
``commands`` module so the layers stay independent.

Every :class:`~varsec.errors.VarsecError` is printed as ``error: <message>`` with exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
import warnings

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
        "varsec.attacks.commands",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answered without loading the layers (and torch)
        typer.echo(f"varsec {__version__}")
        return 0
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
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
        return 130
    except KeyboardInterrupt:
        typer.echo("error: interrupted.", err=True)
        return 130
    except typer.exceptions.TyperException as exc:  # usage errors: typer prints its own message
        exc.show()
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
