"""Helpers shared by the built-in stage implementations: loading upstream outputs, test sets,
replacing item images, and turning per-unit values into result rows."""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from varsec.data.catalog import SPLIT_CODES, Dataset, ItemCatalog
from varsec.errors import DataError
from varsec.registry import EXTERNAL
from varsec.study.files import EXTRACTOR, FEATURES, MODEL
from varsec.study.results import row, summary_ci
from varsec.study.stages import StageOutput, StageUnavailableError

_SOURCES: OrderedDict[str, Dataset | ItemCatalog] = OrderedDict()
_MEMO_SIZE = 2


def load_source(output: StageOutput) -> Dataset | ItemCatalog:
    """What a data stage saved: a dataset, or the bare catalog of a source used as it is
    (``dataset.as_is``); memoised per process (stages share it), every file verified."""
    path = str(output.file("dataset"))
    if path not in _SOURCES:
        from varsec.data.sources import open_source

        _SOURCES[path] = open_source(path)
        while len(_SOURCES) > _MEMO_SIZE:
            _SOURCES.popitem(last=False)
    return _SOURCES[path]


def load_dataset(output: StageOutput) -> Dataset:
    """The dataset a data stage saved (a DataError when it is a catalog without interactions)."""
    return require_dataset(load_source(output), "this stage")


def require_dataset(source: Dataset | ItemCatalog, what: str) -> Dataset:
    """``source`` when it is a dataset; a DataError saying ``what`` needs interactions when it
    is a bare catalog (a source used as it is)."""
    if not isinstance(source, Dataset):
        raise DataError(f"{what} needs interactions; catalog {source.name!r} is used as it is "
                        "(dataset.as_is) and has none.")
    return source


def load_backbone(output: StageOutput, device: str = "cpu") -> Any:
    """The backbone an extractor stage saved (eval mode; an external one is built by its
    factory again, then given the saved weights)."""
    from varsec.study.external import build_backbone
    from varsec.vision.checkpoint import load_checkpoint

    into = build_backbone(output.config["factory"], output.config["backbone_options"]) \
        if output.config.get("backbone") == EXTERNAL else None
    return load_checkpoint(output.file(EXTRACTOR), device=device, verify=False,
                           into=into).backbone


def extractor_features(output: StageOutput) -> np.ndarray:
    """The float32 N x D catalog features an extractor stage saved."""
    return np.load(output.file(FEATURES))


def feature_layer(output: StageOutput) -> str | None:
    """The layer the extractor stage extracted (None: the backbone's default)."""
    return output.info.get("layer")


def load_model(output: StageOutput, device: str = "cpu") -> Any:
    """The recommender a recommender stage saved, with its extractor attached when it has one."""
    from varsec.recsys.base import Recommender
    from varsec.study.external import import_factory

    import_factory(output.config)  # an external model's class, for its checkpoint
    model = Recommender.load(output.file(MODEL), device=device)
    extractor = output.inputs.get("extractor")
    if extractor is not None:
        backbone = load_backbone(extractor, device)
        layer = feature_layer(extractor)
        model.attach_extractor(_FeatureMap(backbone, layer))
    return model


class _FeatureMap(torch.nn.Module):
    """``images -> backbone.features(images, layer)`` as a module (what recommenders attach)."""

    def __init__(self, backbone: Any, layer: str | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.layer = layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(images, self.layer)


def two_stage_parts(output: StageOutput, device: str = "cpu") -> tuple[Any, Any, int]:
    """(first stage, ranker, k) of a two-stage recommender stage."""
    first = load_model(output.inputs["first_stage"], device)
    ranker = load_model(output.inputs["ranker"], device)
    return first, ranker, int(output.config["k"])


# -- users and test items -------------------------------------------------------------------------
def test_items(dataset: Dataset, max_users: int | None, seed: int) -> np.ndarray:
    """Each user's test item (-1 for none), restricted to a seeded sample of ``max_users``
    (:func:`varsec.defenses.evaluation.user_test_items`, the same draw)."""
    from varsec.defenses.evaluation import user_test_items

    return user_test_items(dataset, max_users, seed)


def exclusion(dataset: Dataset, *, cold: bool = True) -> Any:
    """Per-user excluded items: train and validation positives, plus every cold item."""
    from varsec.metrics.ranking import build_exclusion

    rows = np.isin(dataset.split, [SPLIT_CODES["train"], SPLIT_CODES["validation"]])
    users = dataset.interactions.user[rows]
    items = dataset.interactions.item[rows]
    if cold and len(dataset.cold_items):
        grid_u = np.repeat(np.arange(dataset.n_users), len(dataset.cold_items))
        grid_i = np.tile(dataset.cold_items, dataset.n_users)
        users, items = np.concatenate([users, grid_u]), np.concatenate([items, grid_i])
    return build_exclusion(users, items, dataset.n_users, dataset.n_items)


def evaluation_lists(dataset: Dataset, negatives: int, max_users: int | None,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(users, lists)`` of the sampled protocol with ``negatives`` negatives: each test user's
    test item in column 0, then its negatives, exactly as the ranking evaluation draws them."""
    from varsec.metrics.ranking import sampled_lists

    users, lists = sampled_lists(dataset.n_items, test_items(dataset, max_users, seed),
                                 exclusion(dataset), negatives, seed)
    return users.numpy(), lists.numpy()


def sample_cold_items(dataset: Dataset, n: int, seed: int) -> np.ndarray:
    """A seeded sample of ``n`` cold items (all of them when there are fewer), sorted."""
    cold = np.asarray(dataset.cold_items, dtype=np.int64)
    if len(cold) == 0:
        raise DataError("the dataset has no cold items to inject (simulate with cold items).")
    if n >= len(cold):
        return np.sort(cold)
    return np.sort(np.random.default_rng(seed).choice(cold, n, replace=False))


def category_code(dataset: Dataset | ItemCatalog, name: str) -> int:
    """A category of the dataset's catalog (or of a bare catalog), by name or code."""
    from varsec.attacks.hooks import catalog_of

    value: str | int = int(name) if str(name).isdigit() else str(name)
    return catalog_of(dataset).category_code(value)


def category_popularity(dataset: Dataset) -> list[dict[str, Any]]:
    """Every catalog category with its training interactions and popularity rank (1 = the most
    interacted with; ties broken by category code), most popular first."""
    categories = np.asarray(dataset.catalog.categories, dtype=np.int64)
    train = dataset.part("train")
    counts = np.bincount(categories[np.asarray(train.item, dtype=np.int64)] + 1,
                         minlength=int(categories.max(initial=-1)) + 2)[1:]
    codes = np.unique(categories[categories >= 0])
    order = sorted(codes.tolist(), key=lambda c: (-int(counts[c]), c))
    return [{"category": dataset.catalog.category_name(code), "code": int(code),
             "interactions": int(counts[code]), "rank": rank}
            for rank, code in enumerate(order, start=1)]


def choose_categories(dataset: Dataset, source: str | None,
                      target: str | None) -> dict[str, Any]:
    """Resolve a category attack's source / target (``auto``: 001's choice, the least popular
    category as the source, the most popular as the target, by training interactions).

    Returns the names, codes and popularity ranks of both, whether each was chosen
    automatically, and the whole popularity table (what the report prints).
    """
    from varsec.study.schema import AUTO_CATEGORY

    if dataset.catalog.categories is None:
        raise DataError(f"catalog {dataset.catalog.name!r} has no categories; a category "
                        "attack needs them.")
    table = category_popularity(dataset)
    if AUTO_CATEGORY in (source, target) and len(table) < 2:
        raise DataError(f"catalog {dataset.catalog.name!r} has {len(table)} category; choosing "
                        "a source and a target category automatically needs two or more.")
    by_code = {entry["code"]: entry for entry in table}
    named = {role: category_code(dataset, value) for role, value in
             (("source", source), ("target", target)) if value not in (None, AUTO_CATEGORY)}
    if target == AUTO_CATEGORY:
        named["target"] = next(e["code"] for e in table if e["code"] != named.get("source"))
    if source == AUTO_CATEGORY:
        named["source"] = next(e["code"] for e in reversed(table)
                               if e["code"] != named.get("target"))
    choice: dict[str, Any] = {"categories": len(table), "popularity": table}
    for role, value in (("source", source), ("target", target)):
        code = named.get(role)
        entry = by_code.get(code) if code is not None else None
        choice[role] = None if code is None else dataset.catalog.category_name(code)
        choice[f"{role}_code"] = code
        choice[f"{role}_rank"] = None if entry is None else entry["rank"]
        choice[f"{role}_interactions"] = None if entry is None else entry["interactions"]
        choice[f"{role}_chosen"] = "auto" if value == AUTO_CATEGORY else "config"
    return choice


# -- replacing item content ----------------------------------------------------------------------

def features_of(extractor: StageOutput, images_uint8: np.ndarray, device: str = "cpu",
                batch: int = 256) -> np.ndarray:
    """Features of uint8 images under an extractor stage's backbone and layer."""
    from varsec.vision.perturbation import uint8_to_float

    backbone = load_backbone(extractor, device)
    layer = feature_layer(extractor)
    parts = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), batch):
            chunk = uint8_to_float(images_uint8[start:start + batch], device)
            parts.append(backbone.features(chunk, layer).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def with_replaced_items(model: Any, dataset: Dataset, items: np.ndarray,
                        images_uint8: np.ndarray, model_output: StageOutput,
                        device: str = "cpu") -> Any:
    """A copy of ``model`` that sees ``images_uint8`` as the images of catalog ``items``.

    Learned item parameters (biases, collaborative factors) are kept; only the visual part of
    each replaced item is recomputed from its new image.
    """
    from varsec.recsys import AMR, DVBPR, VBPR, AlexRank, VisualKNN
    from varsec.vision.perturbation import uint8_to_float

    items = np.asarray(items, dtype=np.int64)
    clone = copy.deepcopy(model)
    index = torch.as_tensor(items, device=clone.device)
    with torch.no_grad():
        if isinstance(clone, DVBPR):
            embeddings = clone.embed(uint8_to_float(images_uint8, str(clone.device)))
            clone.item_embeddings[index] = embeddings
            return clone
        extractor = model_output.inputs.get("extractor")
        if extractor is None:
            raise StageUnavailableError(f"{type(model).__name__} uses the catalog's own features; "
                                    "attacked images cannot be turned into features for it.")
        new = torch.as_tensor(features_of(extractor, images_uint8, device), device=clone.device)
        if isinstance(clone, VBPR | AMR):
            projected, bias = clone.visual_terms(new)
            clone.item_visual[index] = projected
            clone.item_visual_bias[index] = bias
            return clone
        if isinstance(clone, AlexRank | VisualKNN):
            full = torch.as_tensor(extractor_features(extractor)).clone()
            full[torch.as_tensor(items)] = new.cpu()
            return type(model)(**model.hyperparameters).fit(dataset, features=full.numpy())
    raise StageUnavailableError(f"replacing item images is not supported for "
                            f"{type(model).__name__} yet.")


# -- rows ----------------------------------------------------------------------------------------
def value_rows(values: dict[str, np.ndarray], protocol: str | None, evaluation: dict[str, Any],
               seed: int, **labels: Any) -> list[dict[str, Any]]:
    """One row per ``name`` (``metric`` or ``metric@k``): mean, bootstrap CI and n."""
    rows = []
    for name, vector in values.items():
        metric, _, k = name.partition("@")
        vector = np.asarray(vector, dtype=np.float64)
        finite = vector[np.isfinite(vector)]
        ci = summary_ci(finite, bootstrap=int(evaluation.get("bootstrap", 0)),
                        confidence=float(evaluation.get("confidence", 0.95)), seed=seed)
        rows.append(row(metric, float(finite.mean()) if finite.size else float("nan"),
                        k=int(k) if k else None, protocol=protocol,
                        ci=None if ci[0] is None else ci, n=int(finite.size), **labels))
    return rows


def save_units(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Per-unit vectors (users, items, pairs) kept for paired tests: ``units.npz``."""
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})


__all__ = [
    "category_code",
    "category_popularity",
    "choose_categories",
    "evaluation_lists",
    "exclusion",
    "extractor_features",
    "features_of",
    "load_backbone",
    "load_dataset",
    "load_model",
    "load_source",
    "require_dataset",
    "sample_cold_items",
    "save_units",
    "test_items",
    "two_stage_parts",
    "value_rows",
    "with_replaced_items",
]
