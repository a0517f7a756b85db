"""The report's tables, laid out like the papers' and generated from the results table.

A :class:`PaperTable` has a builder (results -> DataFrame, or None when the study has no rows
for it) and, where the paper printed one, the paper's own numbers (measured on other data sets,
shown beside ours for orientation only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from varsec.study.plan import ADAPTIVE
from varsec.study.report.data import StudyResults
from varsec.study.report.ladder import LADDER_NOTE, QUERY_NOTE, ladder_table, query_curve
from varsec.study.report.robustness import robustness
from varsec.study.report.transfer import (
    CATEGORY_NOTE,
    ITEM2ITEM_NOTE,
    TRANSFER_NOTE,
    VERDICT_NOTE,
    category_table,
    item2item_table,
    transfer_table,
    verdict_table,
)
from varsec.study.results import CLEAN

Builder = Callable[[StudyResults], "pd.DataFrame | None"]


@dataclass(frozen=True)
class PaperTable:
    """One table of the report."""

    id: str
    paper: str
    title: str
    build: Builder
    reference: pd.DataFrame | None = None
    reference_note: str = ""
    note: str = ""
    transfer: bool = False  # built from every measurement; the others from the white-box ones


def _ref(rows: dict[str, list[float | str]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def _attack_name(results: StudyResults, attack: str, eps: float | None) -> str:
    kind = results.attack_kind(attack)
    pretty = {"csema": "c-SEMA", "bpr-untargeted": "BPR-untargeted"}.get(kind or "",
                                                                         (kind or attack).upper())
    name = pretty if attack.lower() == (kind or "") else f"{attack} ({pretty})"
    if eps is not None and not (isinstance(eps, float) and np.isnan(eps)):
        name += f", eps {eps:g}"
    return name


def _nonempty(frame: pd.DataFrame) -> pd.DataFrame | None:
    frame = frame.dropna(how="all").dropna(axis=1, how="all")
    return frame if frame.size else None


# -- varsec's own tables ------------------------------------------------------------------------
def clean_quality(results: StudyResults) -> pd.DataFrame | None:
    """HR and NDCG of every recommender, clean, under every protocol side by side."""
    rows = results.rows(attack=CLEAN, defense=CLEAN, metric=["HR", "NDCG"],
                        protocol=lambda p: p == "full" or str(p).startswith("sampled"))
    if not len(rows):
        return None
    rows = rows.assign(column=rows["protocol"] + " " + rows["metric"] + "@" +
                       rows["k"].astype(str))
    table = rows.pivot_table(index="recommender", columns="column", values="value",
                             aggfunc="mean", sort=False)
    return _nonempty(table)


def extractor_accuracy(results: StudyResults) -> pd.DataFrame | None:
    """Clean and PGD test accuracy of every classifier extractor (public weights kept with their
    own head, e.g. ImageNet's 1000 classes, do not classify the catalog: left out)."""
    from varsec.study.schema import catalog_classifier

    rows = results.rows(metric="accuracy", protocol="classifier-test")
    sections = results.config.extractors
    rows = rows[rows["extractor"].map(lambda e: e not in sections or
                                      catalog_classifier(sections[e])).astype(bool)]
    if not len(rows):
        return None
    label = rows["attack"].where(rows["attack"] == CLEAN, rows["attack"] + " eps " +
                                 rows["eps"].map(lambda e: f"{e:g}"))
    rows = rows.assign(column=label.replace(CLEAN, "clean"))
    table = rows.pivot_table(index="extractor", columns="column", values="value",
                             aggfunc="mean", sort=False)
    table.index = [f"{e} ({results.training(e)})" for e in table.index]
    return _nonempty(table)


# -- 000: AIP -------------------------------------------------------------------------------------
def _promotion_rows(results: StudyResults, metric: str, k: int | None = None,
                    defense: str = CLEAN) -> pd.DataFrame:
    filters = {"metric": metric, "defense": defense,
               "protocol": lambda p: str(p).startswith("two-stage")}
    if k is not None:
        filters["k"] = k
    return results.rows(**filters)


def _paper_eps(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep eps 32 (the papers' setting) where present, else each attack's largest eps."""
    keep = []
    for _, group in rows.groupby("attack", sort=False):
        eps = group["eps"].dropna()
        chosen = 32.0 if (eps == 32).any() else (eps.max() if len(eps) else None)
        keep.append(group if chosen is None else group[group["eps"].isna() |
                                                        (group["eps"] == chosen)])
    return pd.concat(keep) if keep else rows


def aip_table4(results: StudyResults) -> pd.DataFrame | None:
    rows = _paper_eps(_promotion_rows(results, "prediction_shift"))
    if not len(rows):
        return None
    rows = rows.assign(column=rows["recommender"] + " " +
                       rows["attack"].map(lambda a: _attack_name(results, a, None)))
    table = rows.pivot_table(index="dataset", columns="column", values="value", aggfunc="mean",
                             sort=False)
    return _nonempty(table)


def aip_table5(results: StudyResults) -> pd.DataFrame | None:
    parts = []
    for metric, label in (("HR_test", "Original test"), ("HR_cold", "Cooperative cold")):
        rows = _promotion_rows(results, metric).query("attack == @CLEAN")
        parts.append(rows.assign(row=label))
    attacked = _paper_eps(_promotion_rows(results, "HR_cold").query("attack != @CLEAN"))
    tests = _paper_eps(_promotion_rows(results, "HR_test").query("attack != @CLEAN"))
    for frame, template in ((tests, "Test with {}"), (attacked, "{} adv cold")):
        names = [template.format(_attack_name(results, a, e))
                 for a, e in zip(frame["attack"], frame["eps"], strict=True)]
        parts.append(frame.assign(row=names))
    rows = pd.concat(parts)
    if not len(rows):
        return None
    rows = rows.assign(column=rows["recommender"] + " HR@" + rows["k"].astype(str))
    return _nonempty(rows.pivot_table(index="row", columns="column", values="value",
                                      aggfunc="mean", sort=False))


def aip_table6(results: StudyResults) -> pd.DataFrame | None:
    delta = _paper_eps(_promotion_rows(results, "delta_HR_cold", 5))
    tests = _paper_eps(_promotion_rows(results, "HR_test", 5).query("attack != @CLEAN"))
    base = _promotion_rows(results, "HR_test", 5).query("attack == @CLEAN")
    records = []
    for _, r in delta.iterrows():
        records.append({"row": f"{_attack_name(results, r['attack'], r['eps'])} adv cold vs. "
                        "cooperative cold", "column": r["recommender"], "value": r["value"]})
    for _, r in tests.iterrows():
        original = base[(base["recommender"] == r["recommender"]) & (base["seed"] == r["seed"])]
        if len(original):
            records.append({"row": f"{_attack_name(results, r['attack'], r['eps'])} test vs. "
                            "original test", "column": r["recommender"],
                            "value": r["value"] - float(original["value"].mean())})
    if not records:
        return None
    frame = pd.DataFrame(records)
    return _nonempty(frame.pivot_table(index="row", columns="column", values="value",
                                       aggfunc="mean", sort=False))


def aip_table7(results: StudyResults) -> pd.DataFrame | None:
    """Defended adversarial HR_cold@5 per defense level; ▲ where it falls to the cooperative
    item's HR@5 (the defense works at that level)."""
    defended = _promotion_rows(results, "HR_cold", 5, defense=lambda d: d != CLEAN)
    if not len(defended):
        return None
    coop = _promotion_rows(results, "HR_coop", 5)
    records = []
    for _, r in defended.iterrows():
        match = coop[(coop["recommender"] == r["recommender"]) & (coop["attack"] == r["attack"])
                     & (coop["eps"] == r["eps"]) & (coop["seed"] == r["seed"])]
        reference = float(match["value"].mean()) if len(match) else np.nan
        mark = " ▲" if np.isfinite(reference) and r["value"] <= reference else ""
        name = _attack_name(results, r["attack"], r["eps"])
        records.append({"row": f"{r['recommender']} / {name}", "column": r["defense"],
                        "value": f"{r['value']:.4f}{mark}"})
    frame = pd.DataFrame(records)
    return frame.pivot_table(index="row", columns="column", values="value", aggfunc="first",
                             sort=False)


# -- 001: TAaMR -----------------------------------------------------------------------------------
def taamr_table1(results: StudyResults) -> pd.DataFrame | None:
    k = results.config.evaluation.chr_k
    rows = results.rows(metric="CHR", k=k, defense=CLEAN)
    if not len(rows):
        return None
    names = [("No-Attack" if a == CLEAN else _attack_name(results, a, e))
             for a, e in zip(rows["attack"], rows["eps"], strict=True)]
    rows = rows.assign(row=[f"{r} / {n}" for r, n in zip(rows["recommender"], names,
                                                          strict=True)])
    table = rows.pivot_table(index="row", columns="extractor", values="value", aggfunc="mean",
                             sort=False)
    table.columns = [f"{c} ({results.training(c)})" for c in table.columns]
    return _nonempty(table)


def taamr_categories(results: StudyResults) -> pd.DataFrame | None:
    """Per category attack (label with its threat model): the source and target categories,
    their popularity ranks among the catalog's categories by training interactions, and
    whether 001's premise (a low-popularity source pushed towards a very popular target)
    holds on this data."""
    records: dict[str, dict[str, object]] = {}
    for stage in results.stages("evaluation", "category"):
        attack = str(stage.labels["attack"])
        choice = results.info(stage).get("categories")
        if attack == CLEAN or attack in records or not choice:
            continue
        n = int(choice["categories"])
        record: dict[str, object] = {}
        for role in ("source", "target"):
            name, rank = choice.get(role), choice.get(f"{role}_rank")
            how = " (auto)" if choice.get(f"{role}_chosen") == "auto" else ""
            record[role] = f"{name}{how}" if name is not None else "all items"
            record[f"{role} rank"] = f"{rank}/{n}" if rank is not None else ""
            record[f"{role} train interactions"] = choice.get(f"{role}_interactions")
        holds, _ = results.category_premise(stage)
        record["001's premise"] = "holds" if holds else "does not hold"
        records[attack] = record
    if not records:
        return None
    return pd.DataFrame.from_dict(records, orient="index")


def taamr_table2(results: StudyResults) -> pd.DataFrame | None:
    rows = results.rows(protocol="attack", metric=["success_rate", "feature_loss", "lpips"],
                        recommender=None)
    if not len(rows):
        return None
    rows = rows.assign(row=[_attack_name(results, a, e) for a, e in
                            zip(rows["attack"], rows["eps"], strict=True)],
                       column=rows["extractor"] + " " + rows["metric"])
    return _nonempty(rows.pivot_table(index="row", columns="column", values="value",
                                      aggfunc="mean", sort=False))


# -- 002: Yin et al. ------------------------------------------------------------------------------
def _yin_protocol(results: StudyResults) -> str | None:
    sampled = sorted((p.negatives, p.name) for p in results.config.evaluation.protocols
                     if p.kind == "sampled")
    return sampled[0][1] if sampled else ("full" if results.config.evaluation.protocols else None)


_YIN_MODELS = ("vbpr", "amr", "dvbpr")  # the BPR-trained visual models of 002 Table 2


def yin_table2(results: StudyResults) -> pd.DataFrame | None:
    """HR / NDCG of the BPR-trained visual recommenders: clean, under the untargeted attacks
    (and their adaptive versions), behind each defense."""
    protocol = _yin_protocol(results)
    bpr_attacks = [n for n, a in results.config.attacks.items()
                   if a.kind == "bpr-untargeted" or (a.recommender and a.kind in
                                                     ("fgsm", "pgd", "cw", "cw-linf"))]
    if protocol is None or (not bpr_attacks and not any(
            d.kind == "reconstruction" for d in results.config.defenses.values())):
        return None
    models = [n for n, r in results.config.recommenders.items() if r.kind in _YIN_MODELS]
    rows = results.rows(protocol=protocol, metric=["HR", "NDCG"], recommender=models,
                        attack=lambda a: str(a).removesuffix(ADAPTIVE) in (CLEAN, *bpr_attacks))
    if not len(rows):
        return None
    labels = []
    for rec, attack, eps, defense in zip(rows["recommender"], rows["attack"], rows["eps"],
                                         rows["defense"], strict=True):
        name = f"{rec}-" + ("Clean" if attack == CLEAN else _attack_name(results, attack, eps))
        labels.append(name if defense == CLEAN else f"{name} + {defense}")
    rows = rows.assign(row=labels, column=rows["metric"] + "@" + rows["k"].astype(str))
    return _nonempty(rows.pivot_table(index="row", columns="column", values="value",
                                      aggfunc="mean", sort=False))


_DETECTION = {"detection_accuracy": "accuracy", "roc_auc": "ROC-AUC",
              "threshold": "calibrated threshold"}


def yin_table3(results: StudyResults) -> pd.DataFrame | None:
    """Detection accuracy (the paper's row), ROC-AUC and the calibrated threshold per eps."""
    rows = results.rows(metric=list(_DETECTION), protocol="detection")
    if not len(rows):
        return None
    several = rows["defense"].nunique() > 1 or rows["recommender"].nunique() > 1
    names = [f"{d} " + (f"({r}, {x}) " if several else "") + _DETECTION[m]
             for d, r, x, m in zip(rows["dataset"], rows["recommender"], rows["defense"],
                                   rows["metric"], strict=True)]
    rows = rows.assign(row=names, column=rows["eps"].map(lambda e: f"eps {e:g}"))
    return _nonempty(rows.pivot_table(index="row", columns="column", values="value",
                                      aggfunc="mean", sort=False))


# -- varsec: robustness against the attacker that knows the defense -------------------------------
def defense_robustness(results: StudyResults) -> pd.DataFrame | None:
    """Each defended attack without the defense, behind it (non-adaptive attacker) and behind
    it against the adaptive attacker; robust only when the adaptive attacker is stopped."""
    records = robustness(results)
    if not records:
        return None
    frame = pd.DataFrame.from_records([{
        "row": f"{r.target} / {_attack_name(results, r.attack, r.eps)} / {r.defense}",
        "metric": r.metric, "undefended": r.undefended, "non-adaptive": r.defended,
        "adaptive": r.adaptive, "stopped at": r.stopped_at, "verdict": r.verdict}
        for r in records])
    return frame.set_index("row")


# -- 004: thesis ----------------------------------------------------------------------------------
def thesis_success(results: StudyResults) -> pd.DataFrame | None:
    rows = results.rows(protocol="item2item", metric="success_rate", defense=CLEAN)
    if not len(rows):
        return None
    rows = rows.assign(
        row=[f"{_attack_name(results, a, None)} on {x} / rank_min {k}" for a, x, k in
             zip(rows["attack"], rows["extractor"], rows["k"], strict=True)],
        column=rows["eps"].map(lambda e: f"eps {e / 255:.2f}"),
        value=rows["value"] * 100)
    return _nonempty(rows.pivot_table(index="row", columns="column", values="value",
                                      aggfunc="mean", sort=False))


def thesis_defenses(results: StudyResults) -> pd.DataFrame | None:
    rows = results.rows(protocol="item2item", metric="success_rate", k=3, defense=CLEAN)
    if not len(rows):
        return None
    top = rows[rows["eps"] == rows.groupby("attack")["eps"].transform("max")]
    top = top.assign(row=[f"{x} ({results.training(x)})" for x in top["extractor"]],
                     column=top["attack"].map(lambda a: _attack_name(results, a, None)),
                     value=top["value"] * 100)
    return _nonempty(top.pivot_table(index="row", columns="column", values="value",
                                     aggfunc="mean", sort=False))


# -- paper numbers (Amazon Men unless said otherwise) ---------------------------------------------
_AIP4 = _ref({"Amazon Men": [16.13, 15.94, 11.1, 3.27, 3.16, 0.88, 13.54, 4.80, 4.82]},
             [f"{r} {a}" for r in ("AlexRank", "VBPR", "DVBPR") for a in
              ("INSA", "EXPA", "c-SEMA")])
_AIP5 = _ref({
    "Original test": [0.0195, 0.0372, 0.0681, 0.0191, 0.0373, 0.0691, 0.0187, 0.0461, 0.0808],
    "Cooperative cold": [0.0010, 0.0023, 0.0053, 0.0017, 0.0037, 0.0082, 0.0011, 0.0038,
                         0.0092],
    "Test with INSA": [0.0140, 0.0423, 0.0784, 0.0190, 0.0375, 0.0676, 0.0170, 0.0352, 0.0659],
    "INSA adv cold": [0.8296, 0.8960, 0.9365, 0.2678, 0.2939, 0.3252, 0.7211, 0.7403, 0.7605],
    "Test with EXPA": [0.0188, 0.0461, 0.0808, 0.0198, 0.0382, 0.0684, 0.0192, 0.0369, 0.0674],
    "EXPA adv cold": [0.0036, 0.0057, 0.0155, 0.0150, 0.0392, 0.0904, 0.0646, 0.1284, 0.2163],
    "Test with c-SEMA": [0.0187, 0.0461, 0.0807, 0.0198, 0.0384, 0.0685, 0.0194, 0.0371,
                         0.0677],
    "c-SEMA adv cold": [0.0017, 0.0071, 0.0269, 0.0027, 0.0088, 0.0274, 0.0181, 0.0572, 0.1314],
}, [f"{r} HR@{n}" for r in ("AlexRank", "VBPR", "DVBPR") for n in (5, 10, 20)])
_AIP6 = _ref({
    "INSA adv cold vs. cooperative cold": [0.8109, 0.2661, 0.7201],
    "EXPA adv cold vs. cooperative cold": [0.0025, 0.0133, 0.0636],
    "c-SEMA adv cold vs. cooperative cold": [0.0006, 0.0010, 0.0171],
    "INSA test vs. original test": [-0.0047, -0.0001, -0.0025],
    "EXPA test vs. original test": [0.0001, 0.0007, -0.0003],
    "c-SEMA test vs. original test": [0.0, 0.0007, -0.0001],
}, ["AlexRank", "VBPR", "DVBPR"])
_AIP7 = _ref({
    "AlexRank / INSA": ["", "", "", "", "", "", "", "", "", "", ""],
    "AlexRank / EXPA": ["", "", "", "", "", "", "", "", "", "▲", ""],
    "VBPR / INSA": ["", "", "", "", "", "", "", "", "", "", ""],
    "VBPR / EXPA": ["▲★", "", "", "", "", "", "", "", "", "▲★", ""],
    "DVBPR / INSA": ["", "", "", "", "", "★", "", "", "", "", ""],
    "DVBPR / EXPA": ["", "", "", "", "▲", "", "", "", "", "", "▲★"],
}, [f"jpeg={q}" for q in (90, 70, 50, 30, 10)] + [f"bit-depth={b}" for b in (7, 6, 5, 4, 3, 2)])
_TAAMR1 = _ref({
    "VBPR / No-Attack": [0.6352, 0.3028, 0.3702],
    "VBPR / FGSM eps 4": [0.5665, 0.6029, 0.5688],
    "VBPR / FGSM eps 8": [0.6052, 0.5879, 0.5596],
    "VBPR / PGD eps 4": [1.0936, 0.6211, 0.5778],
    "VBPR / PGD eps 8": [1.5736, 0.6247, 0.6141],
    "VBPR / C&W": [0.5972, 0.6652, 0.6444],
    "AMR / No-Attack": [0.3876, 0.4924, 0.1070],
    "AMR / FGSM eps 4": [0.3295, 0.4332, 0.4103],
    "AMR / FGSM eps 8": [0.3053, 0.4318, 0.4007],
    "AMR / PGD eps 4": [0.8064, 0.4435, 0.4173],
    "AMR / PGD eps 8": [2.1264, 0.4323, 0.3942],
    "AMR / C&W": [0.3610, 0.4293, 0.4378],
}, ["T", "AT", "FAT"])
_TAAMR2 = _ref({
    "FGSM eps 4": [65.45, 0.0140948, 0.1861, 18.32, 0.0000330, 0.1407, 15.18, 0.0000278, 0.1074],
    "FGSM eps 8": [86.91, 0.0363190, 1.7124, 23.56, 0.0002658, 2.2903, 20.42, 0.0002320, 1.2293],
    "PGD eps 4": [96.86, 0.0368843, 0.1669, 18.32, 0.0000334, 0.1257, 15.18, 0.0000283, 0.0892],
    "PGD eps 8": [100.0, 0.1349854, 0.6916, 24.08, 0.0002801, 0.7997, 20.94, 0.0002371, 0.6468],
    "C&W": [89.01, 0.0205172, 0.2279, 48.17, 0.0028022, 0.2688, 42.41, 0.0019080, 0.1490],
}, [f"{x} {m}" for x in ("T", "AT", "FAT") for m in ("SR %", "FL", "LPIPS x100")])
_YIN2 = _ref({
    "VBPR-Clean": [0.5074, 0.7127, 0.9806, 0.3495, 0.4155, 0.4830],
    "AMR-Clean": [0.5113, 0.7123, 0.9799, 0.3519, 0.4166, 0.4840],
    "OURS-Clean": [0.5069, 0.7129, 0.9806, 0.3488, 0.4146, 0.4825],
    "VBPR-FGSM": [0.0159, 0.0465, 0.3804, 0.0087, 0.0183, 0.0978],
    "AMR-FGSM": [0.0150, 0.0426, 0.3576, 0.0082, 0.0170, 0.0918],
    "OURS-FGSM": [0.4580, 0.6669, 0.9730, 0.3119, 0.3791, 0.4555],
    "VBPR-PGD": [0.0, 0.0, 0.0030, 0.0, 0.0, 0.0007],
    "AMR-PGD": [0.0, 0.0, 0.0031, 0.0, 0.0, 0.0008],
    "OURS-PGD": [0.0512, 0.1449, 0.6590, 0.0268, 0.0562, 0.1806],
    "(rand)OURS-PGD": [0.2406, 0.4420, 0.9098, 0.1402, 0.2043, 0.3206],
}, ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"])
_YIN3 = _ref({"Amazon Fashion": [0.9523, 0.9665, 0.9636, 0.9608],
              "Amazon Men": [0.8826, 0.9461, 0.9660, 0.9406]},
             ["eps 8", "eps 16", "eps 32", "eps 64"])
_THESIS = _ref({
    "FGSM / rank_min 1": [0.12, 0.07, 0.06, 0.02, 0.01],
    "FGSM / rank_min 3": [0.27, 0.16, 0.14, 0.09, 0.07],
    "FGSM / rank_min 10": [0.64, 0.44, 0.32, 0.18, 0.13],
    "FGSM / rank_min 100": [2.87, 2.45, 1.83, 1.36, 0.99],
    "PGD-64 / rank_min 1": [36.44, 77.81, 86.81, 89.65, 91.02],
    "PGD-64 / rank_min 3": [44.33, 86.40, 94.06, 96.13, 97.09],
    "PGD-64 / rank_min 10": [50.21, 89.61, 95.90, 97.56, 98.22],
    "PGD-64 / rank_min 100": [62.55, 94.13, 97.95, 98.74, 99.13],
    "CW-1000 / rank_min 1": [74.60, 94.10, 96.40, 97.60, 97.80],
    "CW-1000 / rank_min 3": [83.10, 98.10, 99.40, 99.70, 99.70],
    "CW-1000 / rank_min 10": [86.60, 98.40, 99.50, 99.90, 99.90],
    "CW-1000 / rank_min 100": [91.30, 99.40, 99.90, 100.0, 100.0],
}, [f"eps {e:.2f}" for e in (0.01, 0.02, 0.03, 0.04, 0.05)])
_THESIS_DEF = _ref({"Unsecured": [0.07, 98.32, 99.70], "AT": [0.03, 0.07, 0.30],
                    "CAT": [0.00, 14.89, 32.80]}, ["FGSM", "PGD-128", "CW-1000"])

AMAZON = "the paper's numbers on Amazon Men (a different data set: compare trends, not values)"

TABLES: list[PaperTable] = [
    PaperTable("quality", "varsec", "Clean recommendation quality, full and sampled protocols "
               "side by side", clean_quality, note="Mean over evaluated users (and seeds)."),
    PaperTable("extractors", "varsec", "Extractor test accuracy, clean and under PGD",
               extractor_accuracy),
    PaperTable("aip-table4", "000", "AIP Table 4: mean prediction shift of adversarial cold "
               "items (Δ_cold)", aip_table4, _AIP4, AMAZON),
    PaperTable("aip-table5", "000", "AIP Table 5: HR@N of test items and cooperative / "
               "adversarial cold items in the two-stage pipeline", aip_table5, _AIP5, AMAZON),
    PaperTable("aip-table6", "000", "AIP Table 6: change in HR@5 (cold items up is success, "
               "test items down is the cost to others)", aip_table6, _AIP6, AMAZON),
    PaperTable("aip-table7", "000", "AIP Table 7: defended adversarial HR_cold@5 per defense "
               "level (▲: back at or below the cooperative item's HR@5)", aip_table7, _AIP7,
               "the paper's map (▲ Amazon Men, ★ Tradesy): the level at which the defense "
               "succeeded"),
    PaperTable("taamr-table1", "001", "TAaMR Table 1: CHR@K of the source category before and "
               "after the attacks, per extractor", taamr_table1, _TAAMR1, AMAZON),
    PaperTable("taamr-categories", "001", "TAaMR's premise: popularity rank (1 = most "
               "training interactions) of each category attack's source and target",
               taamr_categories,
               note="001 pushes a low-popularity category towards a very popular one; the "
               "premise holds here when the source ranks in the less popular half and the "
               "target in the top fifth of the catalog's categories. The attack label names "
               "the threat model: +poisoning (the recommender is retrained on the attacked "
               "catalog, as in 001) or +evasion (attacked features swapped into the "
               "clean-trained model)."),
    PaperTable("taamr-table2", "001", "TAaMR Table 2: success rate, feature loss and LPIPS per "
               "attack and extractor", taamr_table2, _TAAMR2, AMAZON),
    PaperTable("yin-table2", "002", "Yin et al. Table 2: HR@N and NDCG@N, clean, attacked and "
               "reconstructed", yin_table2, _YIN2, AMAZON + "; eps 16"),
    PaperTable("yin-table3", "002", "Yin et al. Table 3: detection accuracy per eps (with "
               "ROC-AUC and the calibrated threshold)",
               yin_table3, _YIN3, "the paper's numbers (Amazon data sets)"),
    PaperTable("robustness", "varsec", "Defenses against the non-adaptive and the adaptive "
               "attacker", defense_robustness,
               note="'stopped at' is the value at which the attack counts as stopped (ranking: "
               "80% of clean HR@10; promotion: the cooperative image's HR@5; category: clean "
               "CHR@K; item-to-item: the clean image's success). A defense is robust only when "
               "it stops the adaptive attacker (BPDA / EOT / detector-aware), which knows it."),
    PaperTable("ladder", "varsec", "The threat ladder: what each merchant knows, spends and "
               "achieves", ladder_table, note=LADDER_NOTE, transfer=True),
    PaperTable("queries", "varsec", "Query-only merchants: effect against queries",
               query_curve, note=QUERY_NOTE, transfer=True),
    PaperTable("transfer", "varsec", "Transfer: promotion attacks crafted on a surrogate, "
               "evaluated on the platform's model", transfer_table, note=TRANSFER_NOTE,
               transfer=True),
    PaperTable("transfer-category", "varsec", "Transfer: category attacks crafted on a "
               "surrogate extractor, judged by the platform's classifier and recommenders",
               category_table, note=CATEGORY_NOTE, transfer=True),
    PaperTable("transfer-item2item", "varsec", "Transfer: item-to-item attacks crafted on a "
               "surrogate extractor, measured in the platform's visual kNN", item2item_table,
               note=ITEM2ITEM_NOTE, transfer=True),
    PaperTable("transfer-verdicts", "varsec", "Transfer: does the merchant without the "
               "platform's model still succeed?", verdict_table, note=VERDICT_NOTE,
               transfer=True),
    PaperTable("thesis-success", "004", "Thesis: success rate (%) at rank_min per eps "
               "(undefended extractor)", thesis_success, _THESIS,
               "the thesis' numbers on DeepFashion (10,000 tuples; 1,000 for C&W)"),
    PaperTable("thesis-defenses", "004", "Thesis: success rate (%) at rank_min 3 and the "
               "largest eps, per extractor", thesis_defenses, _THESIS_DEF,
               "the thesis' numbers on DeepFashion, eps 0.05"),
]

__all__ = ["TABLES", "PaperTable"]
