"""The recsys layer's commands: ``varsec serve-model``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from varsec.errors import ConfigError


def serve_model_command(
    model: Path = typer.Argument(..., help="A saved varsec recommender (.pt), e.g. the model.pt "
                                 "of a study's recommender stage."),
    extractor: Path | None = typer.Option(None, "--extractor", help="The backbone checkpoint "
                                          "whose features the model scores images with (a "
                                          "feature-based visual model)."),
    layer: str | None = typer.Option(None, "--layer", help="Its feature layer [the "
                                     "backbone's default]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: a free one)."),
    threads: int = typer.Option(2, "--threads", help="Torch threads for scoring (a study's "
                                "threads, for the same numbers as in process)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Serve a saved recommender over HTTP (protocol varsec-scores/1), so a study can audit it
    as `kind: http`: GET /info, POST /score and POST /score-images. Ctrl-C stops it.

    Example: varsec serve-model runs/vbpr.pt --extractor runs/cnn.pt --port 8000
    """
    import torch

    from varsec.recsys.serve import ModelServer, load_served_model

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {port}.")
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}.")
    torch.set_num_threads(threads)
    served = load_served_model(str(model), None if extractor is None else str(extractor), layer,
                               device)
    try:
        server = ModelServer(served, host, port, threads=threads,
                             log=lambda line: typer.echo(line, err=True))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    typer.echo(f"serving {model} ({type(served).__name__}, {served.n_users} users, "
               f"{served.n_items} items) on {server.url} (protocol varsec-scores/1); Ctrl-C "
               "stops it.")
    sys.stdout.flush()  # the line a script waits for, also when stdout is a pipe
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped.")
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add the recsys commands to the root ``varsec`` app."""
    app.command("serve-model")(serve_model_command)


__all__ = ["register", "serve_model_command"]
