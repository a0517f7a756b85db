"""Attack benchmarks, each measured side by side with its peer in the same run.

1. PGD-10 (eps 8, alpha 2, random start) at batch 256 on ``fmnist-cnn``: varsec's front against
   torchattacks' ``PGD`` on the same model and images (target: varsec <= 1.0x torchattacks).
2. INSA and EXPA time per step against the backbone's forward + backward floor (gradient of the
   features with respect to the pixels, eval mode) on the same batch
   (target: <= 1.2x the floor). INSA goes through a real VBPR's ``score_images`` for all users.
   A second floor evaluates batch norm as an affine map, as the engine does while attacking
   (``vs affine floor``: what an attack step adds on top of the network it differentiates).
3. Images per second of each attack on ``fmnist-cnn`` and ``efficientnet-lite0``.

The engine's speed over torchattacks comes from eval-mode batch norm: attacks differentiate
fixed networks, where batch norm is a per-channel affine map with a much cheaper backward pass
than the native kernel's (:func:`varsec.attacks.engine.affine_batch_norm`; same values up to
float rounding). The rest of an attack step costs what torchattacks' costs.

Runs are interleaved (peer, varsec, peer, ...) and the median of ``--repeat`` runs is reported,
so load on a shared machine hits both sides alike. Weights do not change the timings; the
backbones use their default initialisation (fmnist-cnn) or ImageNet weights (efficientnet-lite0).

Usage: nice .venv/bin/python benchmarks/attacks.py [--repeat 5] [--threads 1] [--skip-efficientnet]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from varsec.attacks import (
    CW,
    INSA,
    PGD,
    AdamStep,
    ClassifierObjective,
    CWLinfStep,
    FeatureTarget,
    FGSMStep,
    PGDStep,
    csema_batch,
    run_attack,
)
from varsec.attacks.engine import affine_batch_norm, evaluating


def _median_times(
    cases: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, float, float]]:
    """Warm every case up once, then time ``repeat`` interleaved rounds (the order rotates each
    round, so no case always runs first). Returns ``(wall median, CPU median, wall minimum)`` in
    seconds: on a shared machine the CPU time of this process and the best run are much less
    sensitive to other jobs than the median wall time."""
    for run in cases.values():
        run()
    names = list(cases)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            cases[name]()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in values),
                   statistics.median(c for _, c in values), min(w for w, _ in values))
            for name, values in times.items()}


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from varsec.data import load_fashion_mnist

    catalog = load_fashion_mnist()
    start = 60_000  # the official test part
    images = torch.from_numpy(np.ascontiguousarray(catalog.images[start : start + n]))
    labels = torch.from_numpy(catalog.categories[start : start + n]).long()
    return images, labels


def _vbpr(backbone: torch.nn.Module, n_users: int = 1000):
    """A real VBPR (one epoch) on a small hand-made dataset, with ``backbone`` as extractor."""
    from varsec.data import load_fashion_mnist
    from varsec.data.catalog import Dataset, Interactions
    from varsec.data.splits import leave_one_out
    from varsec.recsys import VBPR

    catalog = load_fashion_mnist().subset(np.arange(400))
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 8)
    items = np.concatenate([rng.choice(350, 8, replace=False) for _ in range(n_users)])
    log = Interactions(users, items, np.arange(len(users)), [f"u{k}" for k in range(n_users)])
    dataset = leave_one_out(Dataset(catalog, log, cold_items=np.arange(350, 400)), mode="random",
                            seed=0, validation=False)
    model = VBPR(factors=16, visual_factors=16, epochs=1, early_stopping=False)
    return model.fit(dataset, extractor=backbone)


def pgd_against_torchattacks(model, images, labels, repeat: int) -> list[dict]:
    import torchattacks

    x = images.float() / 255
    ours = PGD(model, eps=8, alpha=2, steps=10, random_start=True, batch_size=len(x))
    theirs = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    times = _median_times({"torchattacks PGD-10": lambda: theirs(x, labels),
                           "varsec PGD-10": lambda: ours(x, labels)}, repeat)
    peer_wall, peer_cpu, peer_best = times["torchattacks PGD-10"]
    return [{"case": name, "batch": len(x), "seconds": wall, "images/s": len(x) / wall,
             "ratio": wall / peer_wall, "cpu ratio": cpu / peer_cpu, "best ratio": best / peer_best}
            for name, (wall, cpu, best) in times.items()]


def _floor(backbone, x: torch.Tensor, steps: int, affine: bool = False) -> Callable[[], object]:
    """``steps`` gradients of the features w.r.t. the pixels: as long as the attack runs.

    ``affine=True`` evaluates the backbone's batch norms as affine maps, as the engine does
    while attacking (:func:`varsec.attacks.engine.affine_batch_norm`): the same computation
    as an attack step minus the attack's own work."""

    def run() -> None:
        with evaluating([backbone]), (affine_batch_norm([backbone]) if affine
                                      else contextlib.nullcontext()):
            for _ in range(steps):
                leaf = x.clone().requires_grad_(True)
                torch.autograd.grad(backbone.features(leaf).sum(), leaf)

    return run


NATIVE_FLOOR = "floor: features fwd+bwd (native modules)"
AFFINE_FLOOR = "floor: same, batch norm as affine map"


def steps_against_floor(name: str, backbone, vbpr, images, steps: int,
                        repeat: int) -> list[dict]:
    """Time per step of EXPA and INSA (PGD, no early stop) against two floors: the backbone's
    plain forward+backward (``ratio``: the target) and the same with the engine's eval-mode
    batch norm (``vs affine floor``: what the attack adds on top of the network)."""
    x = images.float() / 255
    expa = FeatureTarget(backbone, target_images=images[:1])
    insa = INSA(vbpr)
    rule = PGDStep(16, alpha=2, steps=steps, random_start=False)
    batch = len(images)
    cases = {
        NATIVE_FLOOR: _floor(backbone, x, steps),
        AFFINE_FLOOR: _floor(backbone, x, steps, affine=True),
        "EXPA step": lambda: run_attack(expa, images, rule, batch_size=batch, early_stop=False),
        f"INSA step (VBPR, {vbpr.n_users} users)": lambda: run_attack(
            insa, images, rule, batch_size=batch, early_stop=False),
    }
    times = _median_times(cases, repeat)
    floor_wall, floor_cpu, floor_best = times[NATIVE_FLOOR]
    affine_wall = times[AFFINE_FLOOR][0]
    return [{"backbone": name, "case": case, "batch": batch, "ms/step": 1000 * wall / steps,
             "ratio": wall / floor_wall, "cpu ratio": cpu / floor_cpu,
             "best ratio": best / floor_best, "vs affine floor": wall / affine_wall}
            for case, (wall, cpu, best) in times.items()]


def throughput(name: str, backbone, vbpr, images, labels, steps: int, repeat: int) -> list[dict]:
    batch = len(images)
    classifier = ClassifierObjective(backbone, labels)
    expa = FeatureTarget(backbone, target_images=images[:1])
    hook = images[0]
    cases = {
        "FGSM (classifier)": lambda: run_attack(classifier, images, FGSMStep(8),
                                                batch_size=batch, early_stop=False),
        f"PGD-{steps} (classifier)": lambda: run_attack(
            classifier, images, PGDStep(8, alpha=2, steps=steps), batch_size=batch,
            early_stop=False),
        f"C&W-L2 {steps} steps": lambda: CW(
            backbone, steps=steps, binary_search_steps=1, batch_size=batch).run(images, labels),
        f"C&W-Linf {steps} steps": lambda: run_attack(
            classifier, images, CWLinfStep(8, steps=steps, check_every=steps),
            batch_size=batch),
        f"EXPA Adam-{steps}": lambda: run_attack(expa, images, AdamStep(16, lr=1, steps=steps),
                                                 batch_size=batch),
        f"INSA Adam-{steps} (VBPR)": lambda: run_attack(
            INSA(vbpr), images, AdamStep(16, lr=1, steps=steps), batch_size=batch),
        "c-SEMA inset": lambda: csema_batch(images, hook),
    }
    times = _median_times(cases, repeat)
    return [{"backbone": name, "attack": case, "batch": batch, "seconds": wall,
             "images/s": batch / wall, "images/cpu-s": batch / cpu}
            for case, (wall, cpu, _) in times.items()]


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("case", "attack", "backbone") else "---:"
                            for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-efficientnet", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides [1: on a shared 2-core machine one "
                             "thread is faster and far steadier than two]")
    args = parser.parse_args()
    from varsec.vision import create_backbone

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; command: {' '.join(sys.argv)}", flush=True)
    cnn = create_backbone("fmnist-cnn").eval()
    images, labels = _images(256)
    cnn_vbpr = _vbpr(cnn)

    print("\n## PGD-10 at batch 256 on fmnist-cnn, varsec vs torchattacks\n", flush=True)
    pgd = pgd_against_torchattacks(cnn, images, labels, args.repeat)
    print(_table(pgd, ["case", "batch", "seconds", "images/s", "ratio", "cpu ratio",
                       "best ratio"]), flush=True)

    print("\n## Time per step vs the backbone's forward+backward floor\n", flush=True)
    per_step = steps_against_floor("fmnist-cnn", cnn, cnn_vbpr, images, 10, args.repeat)
    rows = throughput("fmnist-cnn", cnn, cnn_vbpr, images, labels, 10, max(1, args.repeat // 2))
    if not args.skip_efficientnet:
        eff = create_backbone("efficientnet-lite0").eval()
        eff_images, eff_labels = images[:8], labels[:8]
        eff_vbpr = _vbpr(eff, n_users=200)
        per_step += steps_against_floor("efficientnet-lite0", eff, eff_vbpr, eff_images, 3,
                                        args.repeat)
        rows += throughput("efficientnet-lite0", eff, eff_vbpr, eff_images, eff_labels, 3,
                           max(1, args.repeat // 3))
    print(_table(per_step, ["backbone", "case", "batch", "ms/step", "ratio", "cpu ratio",
                            "best ratio", "vs affine floor"]), flush=True)
    print("\n## Images per second per attack\n", flush=True)
    print(_table(rows, ["backbone", "attack", "batch", "seconds", "images/s", "images/cpu-s"]),
          flush=True)


if __name__ == "__main__":
    main()
