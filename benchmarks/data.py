"""Data-layer benchmark: time and peak memory to load Fashion-MNIST and simulate a profile.

Each measurement runs in its own subprocess so its peak resident memory is its own. The peer is
torchvision's ``FashionMNIST`` reader on the same (decompressed) files, measured in the same run.

Usage: python benchmarks/data.py [--profile default] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# Each case: (imports, timed work). Import time is excluded from the timing, not from memory.
CASES = {
    "varsec: load Fashion-MNIST (gunzip + sha256 + parse)": (
        "from varsec.data.fashion_mnist import load_fashion_mnist",
        """
        catalog = load_fashion_mnist()
        assert len(catalog) == 70_000
        """,
    ),
    "torchvision: FashionMNIST train+test (pre-decompressed, no checksum)": (
        "from torchvision.datasets import FashionMNIST",
        """
        train = FashionMNIST(ROOT, train=True, download=False)
        test = FashionMNIST(ROOT, train=False, download=False)
        assert len(train) + len(test) == 70_000
        """,
    ),
    "varsec: load + simulate + split ({profile})": (
        "from varsec.data import load_fashion_mnist, simulate_and_split",
        """
        dataset = simulate_and_split(load_fashion_mnist(), "{profile}", seed=0)
        print("interactions:", len(dataset.interactions), file=sys.stderr)
        """,
    ),
}

_RUNNER = """
import resource, sys, time
ROOT = {root!r}
{setup}
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(elapsed, peak_mb)
"""


def _torchvision_root() -> Path:
    from varsec.data.fashion_mnist import find_fashion_mnist

    source = find_fashion_mnist()
    root = Path(tempfile.mkdtemp(prefix="varsec-bench-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in source.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def _measure(setup: str, body: str, root: Path) -> tuple[float, float, str]:
    code = _RUNNER.format(root=str(root), setup=setup, body=textwrap.dedent(body))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    elapsed, peak = map(float, result.stdout.split()[-2:])
    return elapsed, peak, result.stderr.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = _torchvision_root()
    rows = []
    try:
        for title, (setup, body) in CASES.items():
            title = title.format(profile=args.profile)
            work = body.format(profile=args.profile)
            runs = [_measure(setup, work, root) for _ in range(args.repeat)]
            times = [r[0] for r in runs]
            rows.append({"case": title, "median_s": statistics.median(times),
                         "min_s": min(times), "peak_rss_mb": max(r[1] for r in runs),
                         "note": runs[-1][2]})
    finally:
        shutil.rmtree(root)
    print("| case | median s | min s | peak RSS MB | note |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['case']} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
              f"{row['peak_rss_mb']:.0f} | {row['note']} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
