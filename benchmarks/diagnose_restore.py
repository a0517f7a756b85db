"""Why Yin et al.'s reconstruction does or does not restore HR@10 under the per-user FGSM
(002 Table 2, claim 002-restore): the defense's training budget.

Writes a copy of a study (by default ``studies/demo.yaml``) whose reconstruction defense is
replaced by one variant per training schedule, each applied to the same attacks, and runs it
with ``varsec run`` into ``--out``. Run it on the output of that study (``varsec demo --out
DIR``) and only the new defense stages are computed: the dataset, models and attacks come from
the cache. Prints, per variant and attack, HR@10 (sampled, 20 negatives) attacked,
reconstructed and clean on the attack's users, and the share of clean HR@10 restored (002
Table 2: FGSM 0.0465 -> 0.6669 of clean 0.7129 on Amazon Men, 94%).

Usage: python benchmarks/diagnose_restore.py --out /tmp/demo [--study studies/demo.yaml]
       [--variants demo,002]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

# 002 sec 4.3: about 10 epochs on (clean, FGSM), 3 on (clean, FGSM, PGD), 2 of the detector,
# then the joint fine-tuning of eq 12; the demo's network (width 16, 3 blocks) is kept so that
# only the schedule changes.
SCHEDULES = {
    "demo": {},  # the study's own parameters
    "002": {"recon_epochs": 10, "mix_epochs": 3, "detector_epochs": 2, "joint_epochs": 1},
    "002-wide": {"recon_epochs": 10, "mix_epochs": 3, "detector_epochs": 2, "joint_epochs": 1,
                 "width": 32, "blocks": 9},
}


def variant_study(study: Path, variants: list[str], target: Path) -> tuple[str, list[str]]:
    """Write the study with its reconstruction defense replaced by one per variant."""
    data = yaml.safe_load(study.read_text())
    name, recon = next((n, d) for n, d in data["defenses"].items()
                       if d.get("kind") == "reconstruction")
    del data["defenses"][name]
    labels = []
    for variant in variants:
        label = name if variant == "demo" else f"{name}-{variant}"
        data["defenses"][label] = {**recon, "params": {**recon.get("params", {}),
                                                       **SCHEDULES[variant]}}
        labels.append(label)
    for profile in data.get("overrides", {}).values():
        profile.get("defenses", {}).pop(name, None)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return name, labels


def restore_table(results: Path, labels: list[str]) -> pd.DataFrame:
    rows = pd.read_csv(results)
    hr = rows[(rows.metric == "HR") & (rows.k == 10) & (rows.protocol == "sampled-20")]
    out = []
    for (recommender, attack, eps), group in hr[hr.defense.isin(labels)].groupby(
            ["recommender", "attack", "eps"]):
        attacked = hr[(hr.recommender == recommender) & (hr.attack == attack) &
                      (hr.eps == eps) & (hr.defense == "none")]["value"]
        clean = hr[(hr.recommender == recommender) & (hr.attack == "none") &
                   (hr.defense == "none")]["value"]
        for _, row in group.iterrows():
            out.append({"defense": row.defense, "recommender": recommender, "attack": attack,
                        "eps": eps, "users": int(row.n), "attacked": float(attacked.iloc[0]),
                        "reconstructed": float(row.value), "clean (all users)":
                        float(clean.iloc[0])})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--study", default="studies/demo.yaml", type=Path)
    parser.add_argument("--variants", default="demo,002")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in SCHEDULES]
    if unknown:
        sys.exit(f"error: unknown variant {unknown[0]!r} (known: {', '.join(SCHEDULES)}).")
    args.out.mkdir(parents=True, exist_ok=True)
    study = args.out / "restore_variants.yaml"
    _, labels = variant_study(args.study, variants, study)
    subprocess.run([sys.executable, "-m", "varsec", "run", str(study), "--out", str(args.out)],
                   check=True)
    print(restore_table(args.out / "results.csv", labels).to_string(index=False))


if __name__ == "__main__":
    main()
