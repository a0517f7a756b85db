"""`varsec data ...`: inspect, fetch, simulate and validate data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from varsec.data.catalog import Dataset

app = typer.Typer(
    help="Inspect, fetch, simulate and validate catalogs and datasets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_TRUST_HELP = "Allow loading a pickled DVBPR .npy (only for files from a trusted source)."
_OUTSIDE_HELP = ("Allow a folder dataset's items.csv to name images outside its folder "
                 "(absolute paths, '..', symlinks that leave it).")


@app.command("info")
def info(
    source: str = typer.Argument(..., help="fashion-mnist, or a path in any supported format."),
    reviews: Path | None = typer.Option(None, help="Reviews JSON(.gz) for a VBPR .b file."),
    features: Path | None = typer.Option(None, help="Features .b file for a Tradesy JSON."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=_TRUST_HELP),
    allow_outside: bool = typer.Option(False, "--allow-outside", help=_OUTSIDE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Print counts, density, the category table, popularity Gini and image size.

    Example: varsec data info fashion-mnist
    """
    from varsec.data.sources import open_source
    from varsec.data.summary import summarize

    data = open_source(source, trust_pickle=trust_pickle, reviews=reviews, features=features,
                       allow_outside=allow_outside)
    summary = summarize(data)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        typer.echo("\n".join(summary.lines()))


@app.command("fetch")
def fetch(
    name: str = typer.Argument("fashion-mnist", help="The dataset to make available."),
    download: bool = typer.Option(
        False, "--download", help="Download from the official source if no local copy exists."
    ),
) -> None:
    """Find a named dataset's files locally (or download them, sha256-verified) and print where.

    Example: varsec data fetch fashion-mnist --download
    """
    from varsec.data.fashion_mnist import find_fashion_mnist, load_fashion_mnist
    from varsec.errors import DataError

    if name != "fashion-mnist":
        raise DataError(f"unknown dataset {name!r} (known: fashion-mnist).")
    directory = find_fashion_mnist(download=download)
    catalog = load_fashion_mnist(directory)
    typer.echo(f"fashion-mnist: {len(catalog):,} items verified in {directory}")


@app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", help="Directory to write the dataset to."),
    profile: str = typer.Option("quick", help="Scale profile: quick, default or paper."),
    seed: int = typer.Option(0, help="Random seed (same seed, same machine: same data)."),
    source: str = typer.Option("fashion-mnist", help="The catalog whose items are simulated."),
    split_mode: str = typer.Option("latest", help="Leave-one-out mode: latest or random."),
    force: bool = typer.Option(False, "--force", help="Replace --out even when it is a "
                               "non-empty directory that is not a saved varsec dataset."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help=_OUTSIDE_HELP),
) -> None:
    """Simulate users' interactions with a catalog, split them, and save the dataset.

    An earlier dataset in --out is replaced; any other non-empty directory needs --force.

    Example: varsec data simulate --profile default --seed 0 --out runs/sim
    """
    from varsec.data.simulate import simulate_and_split
    from varsec.data.sources import open_source
    from varsec.data.summary import summarize
    from varsec.errors import DataError
    from varsec.io import check_output_dir

    check_output_dir(out, "dataset", overwrite=force)
    catalog = open_source(source, allow_outside=allow_outside)
    if isinstance(catalog, Dataset):
        catalog = catalog.catalog
    if not catalog.has_pixels:
        raise DataError(f"{source}: the simulator needs item images, but this catalog has none.")
    dataset = simulate_and_split(catalog, profile, seed=seed, mode=split_mode)
    dataset.save(out, overwrite=force)
    typer.echo("\n".join(summarize(dataset).lines()))
    typer.echo(f"written to {out}")


@app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="A saved varsec dataset or any supported format."),
    reviews: Path | None = typer.Option(None, help="Reviews JSON(.gz) for a VBPR .b file."),
    features: Path | None = typer.Option(None, help="Features .b file for a Tradesy JSON."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=_TRUST_HELP),
    allow_outside: bool = typer.Option(False, "--allow-outside", help=_OUTSIDE_HELP),
) -> None:
    """Check a data source completely: checksums, ids, references, split and cold items.

    Example: varsec data validate runs/sim
    """
    from varsec.data.sources import open_source
    from varsec.data.validate import validate_data

    data = open_source(path, trust_pickle=trust_pickle, reviews=reviews, features=features,
                       allow_outside=allow_outside)
    for line in validate_data(data):
        typer.echo(line)
    typer.echo(f"{path}: valid")
