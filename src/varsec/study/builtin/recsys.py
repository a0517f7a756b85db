"""The recommender stage: fit a model on the train part (features from its extractor stage), or
take a saved one as it is (``checkpoint``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from varsec.errors import ConfigError
from varsec.study.builtin.common import extractor_features, features_of, load_dataset
from varsec.study.files import ADVERSARIAL, CATALOG, ITEMS, MODEL
from varsec.study.schema import EXTERNAL, TWO_STAGE
from varsec.study.stages import (
    StageContext,
    StageOutput,
    StageUnavailableError,
    register_stage,
)

_PROFILE_SECONDS = {"quick": 1.0, "default": 8.0, "paper": 80.0}


def _estimate(config: dict[str, Any], study: Any) -> float:
    from varsec.recsys import recommender_class

    if config["kind"] in (TWO_STAGE, EXTERNAL) or "checkpoint" in config:
        return 2.0
    klass = recommender_class(config["kind"])
    if not klass.pairwise:  # no training epochs (AlexRank, item-kNN)
        return 2.0
    epochs = config.get("params", {}).get("epochs", klass.params["epochs"].default)
    per_epoch = _PROFILE_SECONDS.get(study.dataset.profile, 8.0)
    if klass.visual and not klass.needs_features:  # runs its CNN on the pixels (DVBPR)
        per_epoch *= 20
    return 2.0 + epochs * per_epoch


def poisoned_features(ctx: StageContext, inputs: dict[str, StageOutput]) -> np.ndarray:
    """The catalog's features with every attacked item's row extracted from its adversarial
    uint8 image (001's poisoned catalog: the recommender is trained on these)."""
    poison, extractor = inputs["poison"], inputs.get("extractor")
    if extractor is None:
        raise StageUnavailableError("a poisoned recommender needs the extractor that turns the "
                                    "attacked images into features; this one has none.")
    features = np.array(extractor_features(extractor), copy=True)
    catalog = poison.file(CATALOG)
    if catalog.is_file():
        items, images = np.arange(len(features)), np.load(catalog)
    else:
        items, images = np.load(poison.file(ITEMS)), np.load(poison.file(ADVERSARIAL))
    if len(items):
        features[items] = features_of(extractor, images, ctx.device)
    ctx.info.update(poisoned_items=len(items), poison=poison.key[:12])
    return features


def observed_view(dataset: Any, share: float, seed: int) -> Any:
    """``dataset`` as an attacker who observes a seeded ``share`` of the users sees it: the other
    users' train interactions are left out (their validation and test ones stay, so the model
    is fitted and stopped as usual; the user index space is unchanged)."""
    from varsec.data.catalog import SPLIT_CODES, Dataset

    users = dataset.n_users
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))  # not the model's stream
    observed = np.zeros(users, dtype=bool)
    observed[rng.choice(users, max(1, round(share * users)), replace=False)] = True
    keep = observed[dataset.interactions.user] | (dataset.split != SPLIT_CODES["train"])
    return Dataset(dataset.catalog, dataset.interactions.select(keep), dataset.split[keep],
                   dataset.cold_items, dataset.oracle, {**dataset.meta, "observed_users": share})


def _saved(ctx: StageContext, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A saved recommender, copied into the stage as it is (the copy must be the file whose
    sha256 keyed the stage); its extractor is attached when a consumer loads it."""
    import shutil

    from varsec.io import sha256_file
    from varsec.recsys import Recommender

    shutil.copyfile(config["checkpoint"], ctx.workdir / MODEL)
    if sha256_file(ctx.workdir / MODEL) != config["sha256"]:
        raise ConfigError(f"recommender checkpoint {config['checkpoint']!r} changed while the "
                          "run was starting; run it again.")
    model = Recommender.load(ctx.workdir / MODEL)
    ctx.info.update(kind=config["kind"], checkpoint=config["checkpoint"],
                    hyperparameters=model.hyperparameters, users=model.n_users,
                    items=model.n_items)
    return []


@register_stage("recommender", version="1", estimate=_estimate)
def recommender_stage(ctx: StageContext, config: dict[str, Any],
                      inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """``model.pt`` (two-stage: nothing to train; its parts are its inputs); no rows. With a
    ``poison`` input (an attack or defense stage) the model is trained on the attacked
    catalog's features instead of the clean ones."""
    from varsec.recsys import create_recommender
    from varsec.study.external import build_recommender

    if config["kind"] == TWO_STAGE:
        ctx.info.update(kind=TWO_STAGE, k=config["k"])
        return []
    if "checkpoint" in config:
        return _saved(ctx, config)
    dataset = load_dataset(inputs["data"])
    if config.get("observed_users", 1.0) < 1:
        dataset = observed_view(dataset, config["observed_users"], config["seed"])
        ctx.info.update(observed_users=config["observed_users"])
    features = None
    if "extractor" in inputs:
        features = extractor_features(inputs["extractor"])
    if "poison" in inputs:
        features = poisoned_features(ctx, inputs)
    if config["kind"] == EXTERNAL:
        model = build_recommender(config["factory"], config["params"], config["seed"], ctx.device)
    else:
        model = create_recommender(config["kind"], **config["params"],
                                   seed=config["seed"], device=ctx.device)
    model.fit(dataset, features=None if features is None else np.asarray(features))
    model.save(ctx.workdir / MODEL)
    log = model.training_log or []
    ctx.info.update(kind=config["kind"], hyperparameters=model.hyperparameters,
                    epochs_run=len(log), last_epoch=log[-1] if log else None)
    return []
