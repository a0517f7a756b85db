"""DVBPR: Deep-style Visual BPR (Kang, Fang, Wang & McAuley, ICDM 2017).

``s_ui = θ_u · Φ_e(x_i)`` (AIP 000 sec 3.2.3 eq 3): ``Φ_e`` is a CNN from the vision registry
(default ``fmnist-cnn``) whose feature layer is mapped to K dimensions by a linear head, trained
end to end on the item images with the BPR pairwise loss together with the user vectors θ_u.
There is no item factor and no item bias, so warm and cold items alike are scored from pixels.

The CNN's weights get L2 weight decay ``reg_cnn`` through the optimizer; θ_u rows get ``reg``.
``backbone_init`` may name a varsec backbone checkpoint (e.g. a category classifier) to start
from instead of a random initialisation. After every epoch (and at the end of training) the
embeddings of all catalog items are recomputed in eval mode and cached in ``item_embeddings``,
which :meth:`DVBPR.score` reads; :meth:`DVBPR.score_images` runs the CNN on the given pixels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError
from varsec.recsys.base import (
    IMAGE_BATCH,
    Param,
    catalog_images_tensor,
    register_recommender,
    to_float_images,
)
from varsec.recsys.bpr_mf import INIT_STD, sparse_embedding
from varsec.recsys.training import PairwiseRecommender


@register_recommender("dvbpr")
class DVBPR(PairwiseRecommender):
    """DVBPR (Kang et al. 2017; 000 eq 3): ``θ_u · head(CNN(x_i))`` trained end to end."""

    visual: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **PairwiseRecommender.params,
        "factors": Param(32, int, low=1, doc="dimension K of θ_u and of the item embedding"),
        "backbone": Param("fmnist-cnn", str, doc="registered backbone name"),
        "backbone_options": Param({}, dict, doc="keyword arguments of the backbone"),
        "backbone_init": Param("", str, doc="backbone checkpoint to start from ('' = random)"),
        "reg_cnn": Param(1e-4, float, low=0, doc="weight decay of the CNN and head"),
        "batch_size": Param(128, int, low=1, doc="triplets per minibatch"),
        "lr": Param(1e-3, float, low=0, low_open=True, doc="learning rate"),
    }

    def _check_params(self) -> None:
        """Also: ``backbone`` is a registered backbone that takes every ``backbone_options`` key
        (so a study refuses a bad one before anything is trained)."""
        super()._check_params()
        from varsec.vision.registry import backbone_parameters, known_backbones

        if self.hp.backbone not in known_backbones():
            raise ConfigError(f"DVBPR parameter backbone must be a registered backbone "
                              f"({', '.join(known_backbones())}), got {self.hp.backbone!r}.")
        accepted = backbone_parameters(self.hp.backbone)
        unknown = sorted(set(self.hp.backbone_options) - accepted)
        if unknown:
            raise ConfigError(f"DVBPR parameter backbone_options: backbone "
                              f"{self.hp.backbone!r} has no argument {unknown[0]!r} "
                              f"(accepted: {', '.join(sorted(accepted)) or 'none'}).")

    # -- building -----------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        images = catalog_images_tensor(dataset, type(self).__name__)
        self.train_images = images
        self._build({"image_shape": list(images.shape[1:]), "backbone_kwargs": None})

    def _backbone_kwargs(self, channels: int) -> dict[str, Any]:
        from varsec.vision.registry import backbone_parameters

        kwargs = dict(self.hp.backbone_options)
        accepted = backbone_parameters(self.hp.backbone)
        if "in_channels" in accepted and "in_channels" not in kwargs:
            kwargs["in_channels"] = channels
        if "weights" in accepted and "weights" not in kwargs:
            kwargs["weights"] = None
        return kwargs

    def _make_backbone(self, kwargs: dict[str, Any] | None, channels: int) -> nn.Module:
        from varsec.vision.checkpoint import load_checkpoint
        from varsec.vision.registry import create_backbone

        if kwargs is None and self.hp.backbone_init:
            checkpoint = load_checkpoint(self.hp.backbone_init, self.hp.backbone)
            self._backbone_kwargs_used = checkpoint.backbone_kwargs
            return checkpoint.backbone
        kwargs = self._backbone_kwargs(channels) if kwargs is None else kwargs
        self._backbone_kwargs_used = kwargs
        return create_backbone(self.hp.backbone, **kwargs)

    def _build(self, shapes: dict[str, Any]) -> None:
        self._image_shape = tuple(shapes["image_shape"])
        self.backbone = self._make_backbone(shapes.get("backbone_kwargs"), self._image_shape[0])
        self._feature_dim = int(self.backbone.feature_dim)
        self.head = nn.Linear(self._feature_dim, self.hp.factors)
        self.user_theta = sparse_embedding(self.n_users, self.hp.factors, INIT_STD)
        self.register_buffer("item_embeddings", torch.zeros(self.n_items, self.hp.factors))
        if not hasattr(self, "train_images"):
            self.train_images = None

    def _shapes(self) -> dict[str, Any]:
        return {"image_shape": list(self._image_shape),
                "backbone_kwargs": dict(self._backbone_kwargs_used)}

    def dense_weight_decay(self) -> float:
        return self.hp.reg_cnn

    # -- the score function -------------------------------------------------------------------
    def embed(self, images: Tensor) -> Tensor:
        """Item embeddings ``head(CNN(x))`` [B, K] of float NCHW images (differentiable)."""
        return self.head(self.backbone.features(images))

    def _embed_items(self, items: Tensor) -> Tensor:
        assert self.train_images is not None, "training needs the catalog images"
        return self.embed(to_float_images(self.train_images[items.cpu()], self.device))

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.user_theta(users) * self._embed_items(items)).sum(1)

    def bpr_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """BPR loss with each distinct item of the batch run through the CNN once."""
        unique, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        embeddings = self._embed_items(unique)[inverse]
        theta = self.user_theta(users)
        difference = (theta * (embeddings[: len(pos)] - embeddings[len(pos):])).sum(1)
        return -F.logsigmoid(difference).mean()

    def regularised_rows(self, users: Tensor, pos: Tensor, neg: Tensor) -> list[Tensor]:
        return [self.user_theta(users)]

    def refresh(self) -> None:
        """Recompute every catalog item's embedding with the current CNN (in eval mode)."""
        if self.train_images is None:
            return
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for start in range(0, self.n_items, IMAGE_BATCH):
                stop = min(start + IMAGE_BATCH, self.n_items)
                batch = to_float_images(self.train_images[start:stop], self.device)
                self.item_embeddings[start:stop] = self.embed(batch)
        self.train(was_training)

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        table = self.item_embeddings if items is None else self.item_embeddings[items]
        return self.user_theta.weight[users] @ table.T

    def image_features(self, images: Tensor) -> Tensor:
        """The CNN's feature layer for float NCHW images (before the head)."""
        return self.backbone.features(images)

    def _check_images_input(self, images: Any) -> Tensor:
        tensor = super()._check_images_input(images)
        if tuple(tensor.shape[1:]) != tuple(self._image_shape):
            raise DataError(
                f"DVBPR was trained on images of shape {tuple(self._image_shape)}, "
                f"got {tuple(tensor.shape[1:])}."
            )
        return tensor

    def _score_images(self, users: Tensor, images: Tensor) -> Tensor:
        return self.user_theta.weight[users] @ self.embed(images).T

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        return self.user_theta.weight[users] @ self.head(features).T


__all__ = ["DVBPR"]
