"""The command line: help with examples, version, one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from varsec import __version__
from varsec.cli import app, main


def _subcommands(group, prefix=()):
    import typer.main

    command = typer.main.get_command(group)
    stack = [(prefix, command)]
    while stack:
        path, cmd = stack.pop()
        children = getattr(cmd, "commands", None)
        if children:
            for name, child in children.items():
                stack.append(((*path, name), child))
        else:
            yield path


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"varsec {__version__}"


@pytest.mark.parametrize("path", sorted(_subcommands(app)))
def test_every_subcommand_has_help_with_an_example(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example: varsec " + " ".join(path) in out


def test_errors_are_one_line_with_exit_status_2(capsys):
    assert main(["data", "info", "/no/such/place"]) == 2
    err = capsys.readouterr().err
    expected = "/no/such/place: no such file or directory (named sources: fashion-mnist)."
    assert err == f"error: {expected}\n"


def test_usage_errors_exit_2(capsys):
    assert main(["data", "info"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_console_script_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "varsec.cli", "data", "info", "/no/such/place"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_version_answers_without_loading_the_layers():
    probe = ("import sys; from varsec.cli import main; status = main(['--version']); "
             "print(status, 'torch' in sys.modules, 'varsec.vision' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.splitlines() == [f"varsec {__version__}", "0 False False"]


def test_debug_shows_the_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "varsec.cli", "--debug", "data", "info", "/no/such/place"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_data_info_on_fashion_mnist(capsys):
    assert main(["data", "info", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "items: 70,000" in out and "1x28x28" in out and "Ankle boot" in out
