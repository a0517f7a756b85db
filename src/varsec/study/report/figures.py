"""The report's figures (matplotlib, Agg backend), each drawn only when the study has its data.

Every function takes the :class:`StudyResults` and a directory, writes PNGs there and returns
``[(path, caption), ...]`` (empty when there is nothing to draw).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from varsec.study.files import ADVERSARIAL, DISTANCES, ITEMS
from varsec.study.report.data import StudyResults
from varsec.study.results import CLEAN

Figure = tuple[Path, str]
DPI = 110
TSNE_POINTS = 300  # random catalog items behind the t-SNE figure
TSNE_ITERATIONS = 300


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def _error(rows) -> np.ndarray | None:
    if rows["ci_low"].isna().all():
        return None
    low = (rows["value"] - rows["ci_low"]).clip(lower=0).fillna(0).to_numpy()
    high = (rows["ci_high"] - rows["value"]).clip(lower=0).fillna(0).to_numpy()
    return np.vstack([low, high])


def quality_bars(results: StudyResults, out: Path) -> list[Figure]:
    """HR@k per recommender, one panel per protocol, with bootstrap CIs."""
    rows = results.rows(attack=CLEAN, defense=CLEAN, metric="HR",
                        protocol=lambda p: p == "full" or str(p).startswith("sampled"))
    if not len(rows):
        return []
    plt = _plt()
    protocols = list(dict.fromkeys(rows["protocol"]))
    ks = sorted(set(rows["k"].dropna().astype(int)))
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.2 * len(protocols), 3.4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        part = rows[rows["protocol"] == protocol]
        recs = list(dict.fromkeys(part["recommender"]))
        width = 0.8 / max(len(ks), 1)
        for j, k in enumerate(ks):
            sub = part[part["k"] == k].groupby("recommender", sort=False).mean(numeric_only=True)
            sub = sub.reindex(recs)
            ax.bar(np.arange(len(recs)) + j * width, sub["value"], width, yerr=_error(sub),
                   label=f"HR@{k}", capsize=2)
        ax.set_xticks(np.arange(len(recs)) + width * (len(ks) - 1) / 2, recs, rotation=20)
        ax.set_title(f"{protocol} ranking")
        ax.set_ylim(0, 1.05 * max(1e-3, float(part["value"].max())) if protocol == "full" else 1)
        ax.legend(fontsize=7)
    return [(_save(fig, out / "quality_hr.png"),
             "HR@N of every recommender on clean images, full and sampled protocols (95% CI).")]


def promotion_bars(results: StudyResults, out: Path) -> list[Figure]:
    """HR_cold@N of cooperative vs adversarial cold items per attack (000 Table 5)."""
    rows = results.rows(metric=["HR_cold", "HR_coop"], defense=CLEAN,
                        protocol=lambda p: str(p).startswith("two-stage"))
    attacked = rows[rows["attack"] != CLEAN]
    if not len(attacked):
        return []
    plt = _plt()
    figures = []
    for rec, part in attacked.groupby("recommender", sort=False):
        ks = sorted(set(part["k"].dropna().astype(int)))
        labels = ["cooperative"] + [f"{a} eps {e:g}" if e == e else a for a, e in
                                    dict.fromkeys(zip(part["attack"], part["eps"],
                                                      strict=True))]
        fig, ax = plt.subplots(figsize=(6, 3.4))
        width = 0.8 / len(labels)
        coop = part[part["metric"] == "HR_coop"].groupby("k").mean(numeric_only=True)
        ax.bar(np.arange(len(ks)), coop.reindex(ks)["value"], width, label=labels[0])
        adv = part[part["metric"] == "HR_cold"]
        for j, ((attack, eps), group) in enumerate(adv.groupby(["attack", "eps"], sort=False,
                                                               dropna=False), start=1):
            series = group.groupby("k").mean(numeric_only=True).reindex(ks)
            ax.bar(np.arange(len(ks)) + j * width, series["value"], width,
                   label=f"{attack}" + (f" eps {eps:g}" if eps == eps else ""))
        ax.set_xticks(np.arange(len(ks)) + 0.4 - width / 2, [f"HR@{k}" for k in ks])
        ax.set_title(f"{rec}: cold items, cooperative vs adversarial")
        ax.legend(fontsize=7)
        figures.append((_save(fig, out / f"promotion_{rec}.png"),
                        f"{rec}: HR@N of cold items with their cooperative and adversarial "
                        "images (000 Table 5)."))
    return figures


_SWEEPS = (
    ("HR_cold", 5, lambda p: str(p).startswith("two-stage"), "adversarial cold HR@5"),
    ("CHR", None, "full", "CHR@K of the source category"),
    ("success_rate", None, "attack", "classifier success rate"),
    ("success_rate", 3, "item2item", "item-to-item success at rank 3"),
)


def eps_sweeps(results: StudyResults, out: Path) -> list[Figure]:
    """Each attacked metric as a function of eps, one line per attack and model."""
    plt = _plt()
    figures = []
    for i, (metric, k, protocol, title) in enumerate(_SWEEPS):
        filters = {"metric": metric, "protocol": protocol, "defense": CLEAN,
                   "eps": lambda e: e == e}
        if k is not None:
            filters["k"] = k
        rows = results.rows(**filters)
        groups = rows.groupby(["attack", "recommender", "extractor"], dropna=False, sort=False)
        if not len(rows) or all(g["eps"].nunique() < 2 for _, g in groups):
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for (attack, rec, ext), group in groups:
            series = group.groupby("eps").mean(numeric_only=True)
            who = rec if isinstance(rec, str) else ext
            ax.plot(series.index, series["value"], marker="o", label=f"{attack} / {who}")
        ax.set_xlabel("eps (8-bit levels)")
        ax.set_ylabel(metric)
        ax.set_title(f"eps sweep: {title}")
        ax.legend(fontsize=7)
        figures.append((_save(fig, out / f"sweep_{i}.png"), f"eps sweep: {title}."))
    return figures


def adversarial_grids(results: StudyResults, out: Path) -> list[Figure]:
    """Original / adversarial / amplified perturbation per attack and eps (000 Fig. 3)."""
    from varsec.study.builtin.common import load_dataset

    count = results.config.report.images_per_attack
    stages = results.stages("attack")
    if not stages or count == 0:
        return []
    plt = _plt()
    figures = []
    for stage in stages:
        path = results.cache.path(stage)
        if not (path / ADVERSARIAL).is_file():
            continue
        dataset = load_dataset(results.cache.output(stage, results.plan.by_key).inputs["data"])
        items = np.load(path / ITEMS)[:count]
        adv = np.load(path / ADVERSARIAL)[:count].astype(np.float32)
        clean = np.asarray(dataset.catalog.images[items]).astype(np.float32)
        fig, axes = plt.subplots(3, len(items), figsize=(1.4 * len(items), 4.4), squeeze=False)
        for j in range(len(items)):
            diff = np.abs(adv[j] - clean[j])
            amplified = diff / max(float(diff.max()), 1.0)
            for i, image in enumerate((clean[j] / 255, adv[j] / 255, amplified)):
                ax = axes[i][j]
                ax.imshow(_hwc(image), cmap="gray", vmin=0, vmax=1)
                ax.axis("off")
        for i, label in enumerate(("original", "adversarial", "|perturbation| (amplified)")):
            axes[i][0].set_title(label, fontsize=7, loc="left")
        eps = stage.labels.get("eps")
        name = f"{stage.labels['attack']}" + (f" eps {eps:g}" if eps is not None else "")
        fig.suptitle(name, fontsize=9)
        figures.append((_save(fig, out / f"adversarial_{stage.short_key}.png"),
                        f"{name}: original, adversarial and amplified perturbation "
                        "(quantised to 8 bits; 000 Fig. 3)."))
    return figures


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))


def rank_shift_histograms(results: StudyResults, out: Path) -> list[Figure]:
    """Per-item prediction shift of each promotion attack."""
    stages = results.stages("evaluation", "promotion", defense=CLEAN)
    shifts = [(s, results.units(s).get("cold|prediction_shift")) for s in stages]
    shifts = [(s, v) for s, v in shifts if v is not None and len(v)]
    if not shifts:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for stage, values in shifts:
        eps = stage.labels.get("eps")
        ax.hist(values, bins=30, alpha=0.5, label=f"{stage.labels['recommender']} / "
                f"{stage.labels['attack']}" + (f" eps {eps:g}" if eps is not None else ""))
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("prediction shift Δ_i (mean score change over users)")
    ax.set_ylabel("cold items")
    ax.legend(fontsize=7)
    return [(_save(fig, out / "prediction_shift.png"),
             "Distribution of the per-item prediction shift Δ_i (000 eq 4).")]


def embedding_tsne(results: StudyResults, out: Path) -> list[Figure]:
    """t-SNE of item features with one item's cooperative and attacked versions (000 Fig. 4)."""
    from varsec.study.builtin.common import extractor_features, features_of

    stages = [s for s in results.stages("attack") if s.labels.get("recommender")
              and (results.cache.path(s) / ADVERSARIAL).is_file()]
    if not stages:
        return []
    output = results.cache.output(stages[0], results.plan.by_key)
    extractor = output.find("extractor")
    if extractor is None:
        return []
    features = extractor_features(extractor)
    item = int(np.load(results.cache.path(stages[0]) / ITEMS)[0])
    versions = [("cooperative", features[item])]
    for stage in stages:
        items = np.load(results.cache.path(stage) / ITEMS)
        hit = np.flatnonzero(items == item)
        if len(hit):
            adv = np.load(results.cache.path(stage) / ADVERSARIAL)[hit[:1]]
            versions.append((str(stage.labels["attack"]), features_of(extractor, adv)[0]))
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(0)
    sample = rng.choice(len(features), min(TSNE_POINTS, len(features)), replace=False)
    points = np.vstack([features[sample], np.stack([v for _, v in versions])])
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=min(30, *points.shape), random_state=0).fit_transform(points)
    from threadpoolctl import threadpool_limits

    # Barnes-Hut t-SNE's OpenMP threads spin-wait: on a busy machine one thread is much faster
    with threadpool_limits(limits=1, user_api="openmp"):
        embedded = TSNE(n_components=2, init="pca", random_state=0, max_iter=TSNE_ITERATIONS,
                        perplexity=min(30, len(points) - 1)).fit_transform(reduced)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(embedded[:len(sample), 0], embedded[:len(sample), 1], s=4, c="lightgray")
    for (label, _), point in zip(versions, embedded[len(sample):], strict=True):
        ax.scatter(point[0], point[1], s=60, marker="*", label=label)
    ax.legend(fontsize=7)
    ax.set_title(f"t-SNE of item features: item {item} and its attacked versions")
    caption = (f"t-SNE of extractor features: {len(sample)} random items, one cold item and "
               "its adversarial versions (000 Fig. 4).")
    return [(_save(fig, out / "tsne.png"), caption)]


def detector_histograms(results: StudyResults, out: Path) -> list[Figure]:
    """Detector distances of clean vs adversarial images, one panel per eps (002 Fig. 9)."""
    figures = []
    plt = _plt()
    for stage in results.stages("defense"):
        path = results.cache.path(stage) / DISTANCES
        if not path.is_file():
            continue
        with np.load(path) as data:
            clean = data["clean"]
            panels = list(zip(data["eps"], data["by_eps"], strict=True)) if "by_eps" in data \
                else [(None, data["adversarial"])]
            threshold = float(data["threshold"]) if "threshold" in data else None
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2),
                                 squeeze=False)
        for ax, (eps, adversarial) in zip(axes[0], panels, strict=True):
            bins = np.histogram_bin_edges(np.concatenate([clean, adversarial]), bins=30)
            ax.hist(clean, bins=bins, alpha=0.6, label="clean")
            ax.hist(adversarial, bins=bins, alpha=0.6, label="adversarial")
            if threshold is not None:
                ax.axvline(threshold, color="black", lw=0.8, label="threshold")
            ax.set_title(f"FGSM eps {eps:g}" if eps is not None else "", fontsize=8)
            ax.set_xlabel("detector distance")
            ax.locator_params(axis="x", nbins=4)
            ax.legend(fontsize=7)
        figures.append((_save(fig, out / f"detector_{stage.short_key}.png"),
                        f"Detector distances of held-out clean and adversarial images, "
                        f"{stage.name} (002 Fig. 9)."))
    return figures


def defense_map(results: StudyResults, out: Path) -> list[Figure]:
    """Defended adversarial HR_cold@5 by defense level (000 Table 7 as a heat map)."""
    rows = results.rows(metric="HR_cold", k=5, defense=lambda d: d != CLEAN,
                        protocol=lambda p: str(p).startswith("two-stage"))
    if not len(rows):
        return []
    table = rows.assign(row=rows["recommender"] + " / " + rows["attack"]).pivot_table(
        index="row", columns="defense", values="value", aggfunc="mean", sort=False)
    plt = _plt()
    labels = max(len(str(r)) for r in table.index)  # room for the row labels (7 pt)
    fig, ax = plt.subplots(figsize=(2.0 + 0.07 * labels + 0.7 * table.shape[1],
                                    1.0 + 0.45 * table.shape[0]))
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    fig.colorbar(image, ax=ax, label="HR_cold@5")
    return [(_save(fig, out / "defense_map.png"),
             "Adversarial cold-item HR@5 behind each defense level (000 Table 7).")]


def convergence_curves(results: StudyResults, out: Path) -> list[Figure]:
    """Objective per step of every iterative attack, one figure per attack kind
    (:func:`varsec.study.report.convergence.convergence_figures`)."""
    from varsec.study.report.convergence import convergence_figures

    return convergence_figures(results, out)


def _ladder(results: StudyResults, out: Path) -> list[Figure]:
    from varsec.study.report.ladder import (  # they draw with this module's helpers
        ladder_figure,
        query_figure,
    )

    return ladder_figure(results, out) + query_figure(results, out)


FIGURES: list[Callable[[StudyResults, Path], list[Figure]]] = [
    quality_bars, promotion_bars, eps_sweeps, adversarial_grids, rank_shift_histograms,
    embedding_tsne, detector_histograms, defense_map, convergence_curves, _ladder,
]


TRANSFER_FIGURES = (_ladder,)  # drawn from every measurement; the others: white-box only


def draw_figures(results: StudyResults, out: Path) -> list[Figure]:
    """Draw every figure the study has data for into ``out`` (the papers' figures from the
    white-box results: no attack measured on a model it was not crafted on)."""
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    white_box = results.white_box()
    for draw in FIGURES:
        figures.extend(draw(results if draw in TRANSFER_FIGURES else white_box, out))
    return figures


__all__ = ["FIGURES", "draw_figures"]
