"""The recommender stage: fit a model on the train part (features from its extractor stage)."""

from __future__ import annotations

from typing import Any

import numpy as np

from varsec.study.builtin.common import extractor_features, load_dataset
from varsec.study.schema import RECSYS_NAMES
from varsec.study.stages import StageContext, StageOutput, register_stage

_PROFILE_SECONDS = {"quick": 1.0, "default": 8.0, "paper": 80.0}


def _estimate(config: dict[str, Any], study: Any) -> float:
    if config["kind"] in ("two-stage", "alexrank", "knn"):
        return 2.0
    epochs = config.get("params", {}).get("epochs", 30)
    per_epoch = _PROFILE_SECONDS.get(study.dataset.profile, 8.0)
    if config["kind"] == "dvbpr":
        per_epoch *= 20
    return 2.0 + epochs * per_epoch


@register_stage("recommender", version="1", estimate=_estimate)
def recommender_stage(ctx: StageContext, config: dict[str, Any],
                      inputs: dict[str, StageOutput]) -> list[dict[str, Any]]:
    """``model.pt`` (two-stage: nothing to train; its parts are its inputs); no rows."""
    from varsec.recsys import create_recommender

    if config["kind"] == "two-stage":
        ctx.info.update(kind="two-stage", k=config["k"])
        return []
    dataset = load_dataset(inputs["data"])
    features = None
    if "extractor" in inputs:
        features = extractor_features(inputs["extractor"])
    model = create_recommender(RECSYS_NAMES[config["kind"]], **config["params"],
                               seed=config["seed"], device=ctx.device)
    model.fit(dataset, features=None if features is None else np.asarray(features))
    model.save(ctx.workdir / "model.pt")
    log = model.training_log or []
    ctx.info.update(kind=config["kind"], hyperparameters=model.hyperparameters,
                    epochs_run=len(log), last_epoch=log[-1] if log else None)
    return []
