"""Benchmark of the stage cache's verification: what checking cached files costs a rerun.

Runs the demo once at the given profile (reusing ``--out`` when it already holds a run), then
times fully cached reruns in three modes, interleaved, ``--repeats`` times each:

* ``off``: no verification (``StageCache.verify`` patched out): the baseline;
* ``default``: sizes and mtimes compared, files whose stats changed hashed (every run);
* ``--verify``: every cached file hashed.

It also times the verification alone (``cache_check`` over the plan) and the sha256 check of
the cached datasets that ``Dataset.load(verify=True)`` adds to every stage that loads one. The
target (issue 3): default verification under 5% of a fully cached rerun.

    .venv/bin/python benchmarks/cache_verify.py [--profile quick|default] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

TARGET = 0.05


def _study() -> Path:
    from varsec.study.commands import find_study

    return find_study("demo")


def timed_rerun(profile: str, out: Path, mode: str) -> float:
    """CPU seconds of one fully cached rerun in ``mode`` (off, default, verify).

    CPU time of this process, not wall time: on a shared machine the wall clock mostly
    measures the neighbours (the runner itself is single-threaded when nothing computes)."""
    from varsec.study.cache import StageCache
    from varsec.study.runner import run_study

    patch = (mock.patch.object(StageCache, "verify", lambda self, stage, full=False: None)
             if mode == "off" else nullcontext())
    started = time.process_time()
    with patch:
        result = run_study(_study(), out, profile=profile, log=None, verify=mode == "verify")
    seconds = time.process_time() - started
    if result.count("done"):
        raise SystemExit(f"{out}: the rerun computed {result.count('done')} stages; the cache "
                         "is not complete (run the benchmark again).")
    return seconds


def verification_only(profile: str, out: Path, full: bool) -> tuple[float, int, int]:
    """(seconds, files, bytes) of verifying every cached stage once."""
    from varsec.study.cache import StageCache, _stage_files
    from varsec.study.plan import plan_study
    from varsec.study.runner import cache_check, resolve_config

    plan = plan_study(resolve_config(_study(), profile))
    cache = StageCache(out)
    started = time.process_time()
    todo, broken = cache_check(plan, cache, set(), full=full)
    seconds = time.process_time() - started
    assert not broken, broken
    files = [cache.path(s) / f for s in plan if s.key not in todo
             for f in _stage_files(cache.path(s))]
    return seconds, len(files), sum(f.stat().st_size for f in files)


def dataset_check(out: Path, repeats: int) -> tuple[float, float, int]:
    """(CPU seconds verified, unverified, count) of loading every cached dataset (best of
    ``repeats``, alternating)."""
    from varsec.data.catalog import Dataset

    found = sorted((out / "cache" / "data").glob("*/dataset"))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for verify in (False, True):
            started = time.process_time()
            for directory in found:
                Dataset.load(directory, verify=verify)
            times[verify].append(time.process_time() - started)
    return min(times[True]), min(times[False]), len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("quick", "default", "paper"), default="default")
    parser.add_argument("--out", type=Path, default=None,
                        help="Output directory [runs/bench-cache-verify/<profile>].")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    out = args.out or Path("runs/bench-cache-verify") / args.profile

    from varsec.study.runner import run_study

    started = time.perf_counter()
    first = run_study(_study(), out, profile=args.profile, log=None)
    print(f"demo --profile {args.profile}: first run {time.perf_counter() - started:.1f}s "
          f"({first.count('done')} stages computed, {first.count('cached')} cached)")

    times: dict[str, list[float]] = {"off": [], "default": [], "verify": []}
    for _ in range(args.repeats):
        for mode in times:
            times[mode].append(timed_rerun(args.profile, out, mode))
    base = statistics.median(times["off"])
    for mode, values in times.items():
        median = statistics.median(values)
        print(f"  cached rerun, {mode:<8} median {median:6.2f} CPU s over {len(values)} "
              f"(min {min(values):.2f}s), {100 * (median - base) / base:+5.1f}% vs off")

    cheap, n_files, n_bytes = verification_only(args.profile, out, full=False)
    full, _, _ = verification_only(args.profile, out, full=True)
    print(f"  verification alone: default {cheap * 1000:.0f} ms = {100 * cheap / base:.2f}% "
          f"of a cached rerun; --verify {full:.2f}s = {100 * full / base:.1f}% "
          f"({n_files} files, {n_bytes / 1e6:.0f} MB)")

    verified, plain, count = dataset_check(out, max(3, args.repeats))
    print(f"  Dataset.load of {count} cached dataset(s): {verified:.3f} CPU s verified vs "
          f"{plain:.3f} CPU s unverified ({verified - plain:+.3f}s per load, once per "
          "dataset and process)")

    verdict = "ok" if cheap / base < TARGET else "OVER TARGET"
    print(f"  target: default verification < {TARGET:.0%} of a cached rerun: {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
