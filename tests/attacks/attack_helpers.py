"""Stand-in models for the attack tests: a logistic-regression classifier, a fixed random
feature map, a VBPR-like visual ranker and a non-visual first stage. Both recommenders are real
:class:`varsec.recsys.Recommender` subclasses, so attacks go through the real ``score_images``
API and the real two-stage pipeline.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from varsec.data.catalog import Dataset
from varsec.recsys.base import Param, Recommender, resolve_features, warm_item_mask


def logistic_classifier(catalog: Any, n_items: int | None, epochs: int) -> nn.Module:
    """Logistic regression on the categories of the first ``n_items`` images of ``catalog``
    (all of them for None), ``epochs`` full-batch Adam steps at lr 0.05, seeded; eval mode."""
    torch.manual_seed(0)
    x = torch.from_numpy(catalog.images[:n_items]).float().div(255)
    y = torch.from_numpy(catalog.categories[:n_items]).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


class RandomFeatures(nn.Module):
    """A fixed random map from 1 x 28 x 28 images to D features (tanh of a projection)."""

    def __init__(self, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(dim, 784, generator=generator) / 28.0 * 4)
        self.register_buffer("bias", torch.randn(dim, generator=generator) * 0.1)

    def features(self, images: Tensor) -> Tensor:
        return torch.tanh((images.flatten(1) - 0.3) @ self.weight.T + self.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)


class TinyRanker(Recommender):
    """VBPR-like: ``s_ui = b_i (warm only) + θ_u · E f_i + β'·f_i`` with fixed random weights;
    the user vectors share a common component, as trained tastes do."""

    visual: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "factors": Param(8, int, low=1),
    }

    def _fit(self, dataset: Dataset, features: Any, extractor: Any) -> None:
        matrix = resolve_features(dataset, features, extractor, "TinyRanker")
        self.attach_extractor(extractor)
        self._build({"feature_dim": int(matrix.shape[1])})
        warm = warm_item_mask(dataset)
        with torch.no_grad():
            shared = torch.randn(1, self.hp.factors)  # users share part of their taste
            self.theta.normal_(0, 1).add_(shared)
            self.embed.normal_(0, 1 / matrix.shape[1] ** 0.5)
            self.visual_bias.normal_(0, 0.1)
            self.item_bias.normal_(0, 0.1).mul_(warm.float())
            self.item_features.copy_(matrix)

    def _build(self, shapes: dict[str, Any]) -> None:
        self._feature_dim = int(shapes["feature_dim"])
        k, d = self.hp.factors, self._feature_dim
        self.register_buffer("theta", torch.zeros(self.n_users, k))
        self.register_buffer("embed", torch.zeros(k, d))
        self.register_buffer("visual_bias", torch.zeros(d))
        self.register_buffer("item_bias", torch.zeros(self.n_items))
        self.register_buffer("item_features", torch.zeros(self.n_items, d))

    def _shapes(self) -> dict[str, Any]:
        return {"feature_dim": self._feature_dim}

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        select = slice(None) if items is None else items
        base = self._score_features(users, self.item_features[select])
        return base + self.item_bias[select]

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        return self.theta[users] @ (features @ self.embed.T).T + features @ self.visual_bias


class TinyBPR(Recommender):
    """A non-visual first stage: fixed random user and item factors."""

    params: ClassVar[dict[str, Param]] = {**Recommender.params}

    def _fit(self, dataset: Dataset, features: Any, extractor: Any) -> None:
        self._build({})
        with torch.no_grad():
            self.users_f.normal_()
            self.items_f.normal_()

    def _build(self, shapes: dict[str, Any]) -> None:
        self.register_buffer("users_f", torch.zeros(self.n_users, 4))
        self.register_buffer("items_f", torch.zeros(self.n_items, 4))

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        table = self.items_f if items is None else self.items_f[items]
        return self.users_f[users] @ table.T


def install_stand_in_lpips(monkeypatch: Any, root: Any, distances: list[float]) -> None:
    """Make LPIPS "available": a stand-in ``lpips`` module (its linear layers on disk) and the
    AlexNet file in a temporary ``$TORCH_HOME``; it returns ``distances`` in order, one per
    image pair."""
    import sys
    import types

    from varsec.metrics.image import lpips_backbone_path

    package = root / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True, exist_ok=True)
    (package / "weights" / "v0.1" / "alex.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("TORCH_HOME", str(root / "torch-home"))
    backbone = lpips_backbone_path("alex")
    backbone.parent.mkdir(parents=True, exist_ok=True)
    backbone.write_bytes(b"stand-in")

    class StandIn:
        def __init__(self, net: str = "alex", verbose: bool = True) -> None:
            pass

        def eval(self) -> StandIn:
            return self

        def __call__(self, x: Tensor, y: Tensor) -> Tensor:
            return torch.tensor([distances.pop(0) for _ in range(len(x))]).view(-1, 1, 1, 1)

    module = types.ModuleType("lpips")
    module.__file__ = str(package / "__init__.py")
    module.LPIPS = StandIn
    monkeypatch.setitem(sys.modules, "lpips", module)


def run_attack_cli(tmp_path: Any, simulated: Any, backbone: Any, attack: str, items: int,
                   *extra: str) -> tuple[Any, Any]:
    """``varsec attack --attack <attack> --objective classifier`` on ``items`` cold items of the
    saved ``simulated`` dataset with ``backbone`` as the checkpoint; (CLI result, out dir)."""
    import typer
    from typer.testing import CliRunner

    from varsec.study.attack_command import register
    from varsec.vision.checkpoint import save_checkpoint

    simulated.save(tmp_path / "data")
    save_checkpoint(tmp_path / "cnn.pt", backbone)
    root = typer.Typer()
    root.callback()(lambda: None)
    register(root)
    ids = ",".join(simulated.catalog.item_ids[simulated.cold_items[:items]])
    out = tmp_path / "out"
    result = CliRunner().invoke(root, [
        "attack", "--dataset", str(tmp_path / "data"), "--out", str(out), "--attack", attack,
        "--objective", "classifier", "--checkpoint", str(tmp_path / "cnn.pt"), "--items", ids,
        *extra])
    return result, out


def category_attack_study(kind: str, steps: int, params: str) -> str:
    """A study whose one attack ``a`` of ``kind`` pushes Sandals towards Sneakers on a one-epoch
    ``cnn`` at eps 8 with ``steps`` and ``params`` (a YAML flow mapping)."""
    return f"""
study: {kind}
extractors:
  cnn: {{epochs: 1}}
attacks:
  a: {{kind: {kind}, extractor: cnn, source_category: Sandal, target_category: Sneaker,
      eps: [8], steps: {steps}, params: {params}}}
"""
