"""Benchmark of the main job: `varsec demo` at the quick and default profiles.

Measures wall time and peak resident memory (of this process and its children) of a fresh run
(empty output directory) and of a rerun (everything cached), and prints one line per run in
the format of BENCHMARKS.md. Targets (issue 7): default profile within 10 minutes and under
4 GB on 2 cores; quick profile within 2 minutes.

    .venv/bin/python benchmarks/demo.py [--profile quick|default] [--out runs/bench-demo]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

TARGETS = {"quick": (120.0, 4.0), "default": (600.0, 4.0)}  # seconds, GB


def peak_rss_gb() -> float:
    """Peak resident set size of this process and its waited-for children, in GB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024**2  # ru_maxrss is in KiB on Linux


def run_once(profile: str, out: Path) -> tuple[float, int, int]:
    """Run the demo; returns (seconds, stages computed, stages not run)."""
    from varsec.study.commands import find_study
    from varsec.study.runner import run_study

    started = time.perf_counter()
    result = run_study(find_study("demo"), out, profile=profile, log=None)
    return time.perf_counter() - started, result.count("done"), result.count("not-run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(TARGETS), default="default")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-demo"))
    args = parser.parse_args(argv)
    out = args.out / args.profile
    shutil.rmtree(out, ignore_errors=True)
    limit_s, limit_gb = TARGETS[args.profile]
    fresh, done, not_run = run_once(args.profile, out)
    memory = peak_rss_gb()
    cached, _, _ = run_once(args.profile, out)
    verdict = "ok" if fresh <= limit_s and memory <= limit_gb else "OVER TARGET"
    print(f"demo --profile {args.profile}: fresh {fresh:.0f}s ({done} stages computed, "
          f"{not_run} not run yet), rerun {cached:.1f}s (all cached), peak RSS {memory:.2f} GB; "
          f"target {limit_s:.0f}s / {limit_gb:.0f} GB: {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
