"""YAML bomb benchmark: how fast and how cheaply `varsec run --dry-run` refuses a billion-laughs
study file (nine levels of anchors and aliases in ~370 bytes that expand to 10^9 nodes).

Each measurement runs in its own subprocess (wall time and peak resident memory are its own),
under an address-space limit so that a regression fails the run instead of the machine. Three
cases: the CLI on the bomb, the CLI on a two-line broken file (the CLI's start-up cost: `varsec
run` reads the study file with the bounded loader before it loads torch and the layers), and
``load_study`` alone on the bomb (wall time and the peak of
the memory Python allocates, by tracemalloc).

Usage: python benchmarks/yaml_bomb.py [--levels 9] [--repeat 3]
Targets: the bomb is refused in under 1 s and under 100 MB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MEMORY_LIMIT = 4 << 30  # bytes of address space a measured process may map
TIMEOUT = 120.0  # seconds before a measured process counts as hung

_CLI = """
import json, resource, sys, time
start = time.perf_counter()
from varsec.cli import main
status = main(["run", {path!r}, "--dry-run"])
elapsed = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"status": status, "seconds": elapsed, "peak_mb": peak_mb}}))
"""

_LOAD = """
import json, resource, sys, time, tracemalloc
from varsec.errors import ConfigError
from varsec.study.schema import load_study
tracemalloc.start()
start = time.perf_counter()
try:
    load_study({path!r})
    message = None
except ConfigError as exc:
    message = str(exc)
elapsed = time.perf_counter() - start
traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({{"message": message, "seconds": elapsed, "traced_mb": traced_mb}}))
"""


def bomb_text(levels: int = 9) -> str:
    """The classic billion laughs: level 1 holds nine strings, each next level nine aliases of
    the one before (9 levels: 9^9 = 387,420,489 strings in 370 bytes)."""
    names = "abcdefghijklmnopqrstuvwxyz"
    laughs = ", ".join(['"lol"'] * 9)
    lines = ["study: laughs", f"{names[0]}: &{names[0]} [{laughs}]"]
    for prev, name in itertools.pairwise(names[:levels]):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _measure(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_limit_memory, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"measured process failed ({done.returncode}): {done.stderr[-500:]}")
    result = json.loads(lines[-1])
    result["stderr"] = done.stderr.strip()
    return result


def _best(code: str, repeat: int) -> dict:
    runs = [_measure(code) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    best["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    return best


def main() -> None:
    """Measure the three cases and print one line for BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=9, help="levels of aliases (9 = 10^9)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp) / "laughs.yaml"
        bomb.write_text(bomb_text(args.levels), encoding="utf-8")
        broken = Path(tmp) / "broken.yaml"
        broken.write_text("study: broken\na: [1\n", encoding="utf-8")
        cli = _best(_CLI.format(path=str(bomb)), args.repeat)
        base = _best(_CLI.format(path=str(broken)), args.repeat)
        load = _best(_LOAD.format(path=str(bomb)), args.repeat)
        size = bomb.stat().st_size
    if cli["status"] != 2 or load["message"] is None:
        raise SystemExit(f"the bomb was not refused: {cli} {load}")
    print(f"refusal: {load['message']}")
    print(f"varsec run laughs.yaml --dry-run: exit {cli['status']}, {cli['seconds']:.2f} s "
          f"(median {cli['median_seconds']:.2f} s), peak RSS {cli['peak_mb']:.0f} MB")
    print(f"varsec run broken.yaml --dry-run (start-up only): {base['seconds']:.2f} s, peak RSS "
          f"{base['peak_mb']:.0f} MB")
    print(f"load_study(laughs.yaml): {load['seconds'] * 1000:.1f} ms, {load['traced_mb']:.2f} MB "
          "allocated at peak (tracemalloc)")
    print()
    print(f"| YAML bomb: {args.levels}-level billion laughs ({size} B), `varsec run FILE "
          f"--dry-run` | refused (exit 2) in {cli['seconds']:.2f} s, peak RSS "
          f"{cli['peak_mb']:.0f} MB; CLI start-up alone {base['seconds']:.2f} s, "
          f"{base['peak_mb']:.0f} MB; load_study {load['seconds'] * 1000:.1f} ms, "
          f"{load['traced_mb']:.2f} MB |")


if __name__ == "__main__":
    main()
