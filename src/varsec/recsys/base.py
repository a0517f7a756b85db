"""The base class of every recommender (DESIGN.md section 5), in the spirit of Cornac's.

A recommender declares its hyperparameters in ``params`` (name -> :class:`Param`), is built with
keyword arguments that are validated by :meth:`Recommender._check_params`, learns from a
:class:`~varsec.data.catalog.Dataset` with :meth:`Recommender.fit` and answers

- ``score(users, items=None) -> [U, I]`` for catalog items (all items when ``items`` is None),
- ``score_features(users, features) -> [U, B]`` and ``score_images(users, images) -> [U, B]``
  for items given by content only (visual models). Such items are scored like cold items: by
  their features or pixels, with no learned item factor and no item bias. ``score_images`` is
  differentiable in the images (float32 NCHW in [0, 1]) so attacks can backpropagate to pixels.

Checkpoints (:meth:`Recommender.save` / :meth:`Recommender.load`) carry the class name, the
hyperparameters, the content hash of the training dataset, the shapes needed to rebuild the
model, its state dict and its training log; they are written atomically.

The recommender registry: each model's own file registers its class under a config name with
:func:`register_recommender` (as :func:`varsec.vision.registry.register_backbone` does for
backbones); :func:`known_recommenders`, :func:`recommender_class` and
:func:`create_recommender` read it, and so do the study schema and stages.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from varsec.checkpoints import cpu_state, read_checkpoint, write_checkpoint
from varsec.data.catalog import SPLIT_CODES, Dataset
from varsec.devices import DEVICES, check_device, module_device
from varsec.devices import seeded as seeded_rng
from varsec.errors import ConfigError, DataError, ModelError
from varsec.params import Param

CHECKPOINT_FORMAT = "varsec-recommender"
CHECKPOINT_VERSION = 1
# Catalog images are turned into float tensors this many items at a time.
IMAGE_BATCH = 512

# Every Recommender subclass by class name (checkpoints name their class; see Recommender.load).
_REGISTRY: dict[str, type[Recommender]] = {}
# Registered config names and aliases -> class (register_recommender).
_NAMES: dict[str, type[Recommender]] = {}
# Names a model cannot take: the two-stage pipeline (two_stage.py) is built from two models,
# and an external model is built by the factory a study names (varsec.registry).
RESERVED_NAMES = ("two-stage", "external")


class Recommender(nn.Module):
    """Base class: declared parameters, index checks, scoring API, checkpoints, seeds.

    Subclasses set ``params``, implement ``_fit`` (build parameters and learn) and ``_score``;
    visual models also implement ``_score_features`` and set ``visual = True``. The class
    attributes below are the facts the study schema and planner read instead of lists of names.
    """

    params: ClassVar[dict[str, Param]] = {
        "seed": Param(0, int, low=0, doc="seed of initialisation and sampling"),
        "device": Param("cpu", str, doc=f"torch device: {DEVICES}"),
    }
    # The config name and aliases given to register_recommender (None: not registered).
    name: ClassVar[str | None] = None
    aliases: ClassVar[tuple[str, ...]] = ()
    # Scores items by content (score_features / score_images): it can rank cold items and be a
    # two-stage ranker, and attacks can backpropagate through it to pixels.
    visual: ClassVar[bool] = False
    # Trains and scores on feature vectors of a frozen extractor (or the catalog's features), so
    # a study gives it an extractor, and a poisoning attack retrains it on attacked features.
    needs_features: ClassVar[bool] = False
    # Trained on the BPR pairwise loss (PairwiseRecommender): the BPR objective attacks it and a
    # reconstruction defense can be trained against it; others have no training epochs.
    pairwise: ClassVar[bool] = False
    # Answers item-to-item queries (the most similar items of a query item): item-to-item
    # attacks are evaluated on it.
    item_to_item: ClassVar[bool] = False
    # score_images is differentiable in the pixels, so white-box attacks (INSA, EXPA, PGD on
    # the BPR loss, ...) can backpropagate through it. False: a query-only model (it scores
    # images, e.g. behind an HTTP endpoint, but gives no gradient), audited by the attacks that
    # need no gradient (Square on its scores or on probe ranks, c-SEMA) and evaluated as usual.
    differentiable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        cls.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=spec.default)
                for name, spec in cls.params.items()
            ]
        )

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__()
        unknown = sorted(set(hyperparameters) - set(self.params))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no parameter {unknown[0]!r} "
                f"(known: {', '.join(self.params)})."
            )
        values = {name: hyperparameters.get(name, p.default) for name, p in self.params.items()}
        self.hp = SimpleNamespace(**values)
        self._check_params()
        for name, spec in self.params.items():
            setattr(self.hp, name, spec.plain(getattr(self.hp, name)))
        self.n_users = 0
        self.n_items = 0
        self.dataset_hash: str | None = None
        self.training_log: list[dict[str, Any]] = []
        self._fitted = False

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Validate every declared parameter; subclasses extend with cross-parameter checks."""
        for name, spec in self.params.items():
            value = getattr(self.hp, name)
            if not spec.accepts(value):
                raise ConfigError(
                    f"{type(self).__name__} parameter {name} must be {spec.expectation()}, "
                    f"got {value!r}."
                )
        check_device(self.hp.device, f"{type(self).__name__} parameter device")

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as a plain dict (what checkpoints record)."""
        return dict(vars(self.hp))

    @property
    def device(self) -> torch.device:
        return torch.device(self.hp.device)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())

    # -- fitting ------------------------------------------------------------------------------
    def fit(
        self, dataset: Dataset, features: Any | None = None, *, extractor: Any | None = None
    ) -> Self:
        """Learn from the train part of ``dataset`` and return ``self``.

        ``features`` (N x D) overrides the catalog's features for feature-based models;
        ``extractor`` (a module with ``features(x)`` or a callable on float NCHW images) maps
        images to features, both for catalogs without features and for :meth:`score_images`.
        Everything random is drawn from ``seed``: the same seed gives the same model.
        """
        if not isinstance(dataset, Dataset):
            raise DataError(f"fit expects a varsec Dataset, got {type(dataset).__name__}.")
        if part_size(dataset, "train") == 0:
            raise DataError("the dataset's train part is empty: there is nothing to learn from.")
        self._fitted = False  # until this fit succeeds
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.dataset_hash = dataset.content_hash()
        self.training_log = []
        with self.seeded():
            self._fit(dataset, features, extractor)
        self._fitted = True
        self.eval()
        self.refresh()
        return self

    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        raise NotImplementedError

    @contextmanager
    def seeded(self, offset: int = 0) -> Iterator[None]:
        """Run a block with torch's global RNG seeded from ``seed`` (restored afterwards)."""
        with seeded_rng(self.hp.seed + offset, self.device):
            yield

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU torch.Generator seeded from ``seed`` and ``offset``."""
        return torch.Generator().manual_seed(self.hp.seed * 1_000_003 + offset)

    def refresh(self) -> None:
        """Recompute cached per-item tables from the current parameters (after training steps)."""

    # -- scoring ------------------------------------------------------------------------------
    def score(self, users: Any, items: Any | None = None) -> Tensor:
        """Scores of ``users`` for catalog ``items`` (all items when None): a [U, I] tensor.

        Cold items are scored from their content only. Scoring is inference: no gradients.
        """
        self._require_fitted()
        user_index = self.user_index(users)
        item_index = None if items is None else self.item_index(items)
        with torch.no_grad():
            return self._score(user_index, item_index)

    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        raise NotImplementedError

    def score_features(self, users: Any, features: Tensor) -> Tensor:
        """Scores [U, B] of ``users`` for B items given only by their visual features."""
        self._require_visual("score features")
        user_index = self.user_index(users)
        return self._score_features(user_index, self._check_features_input(features))

    def _score_features(self, users: Tensor, features: Tensor) -> Tensor:
        raise NotImplementedError

    def score_images(self, users: Any, images: Tensor) -> Tensor:
        """Scores [U, B] of ``users`` for B items given only by their images (float NCHW [0, 1]).

        Differentiable in ``images``: the image-to-feature map runs inside, so an attack can
        backpropagate a function of the scores to the pixels.
        """
        self._require_visual("score images")
        user_index = self.user_index(users)
        return self._score_images(user_index, self._check_images_input(images))

    def _score_images(self, users: Tensor, images: Tensor) -> Tensor:
        return self._score_features(users, self.image_features(images))

    def attach_extractor(self, extractor: Any | None) -> None:
        """Set the frozen image -> feature map behind :meth:`score_images` (None detaches).

        The extractor is not part of the model's parameters or checkpoint: after
        :meth:`load`, attach it again. It is put in eval mode (batch norm uses running stats).
        """
        if extractor is not None:
            as_feature_map(extractor)
            if isinstance(extractor, nn.Module):
                extractor.eval()
        object.__setattr__(self, "_extractor", extractor)

    @property
    def extractor(self) -> Any | None:
        """The attached image -> feature map (None when there is none; DVBPR's is its own CNN)."""
        return getattr(self, "_extractor", None)

    def image_features(self, images: Tensor) -> Tensor:
        """The features the model sees for float NCHW images (differentiable in the images)."""
        extractor = self.extractor
        if extractor is None:
            raise ModelError(
                f"{type(self).__name__} has no image extractor: pass extractor= to fit() or "
                "call attach_extractor() before scoring images."
            )
        features = as_feature_map(extractor)(images).reshape(len(images), -1)
        if self.feature_dim is not None and features.shape[1] != self.feature_dim:
            raise ModelError(
                f"the extractor gives {features.shape[1]}-d features, but "
                f"{type(self).__name__} was trained on {self.feature_dim}-d features."
            )
        return features.to(self.device)

    @property
    def feature_dim(self) -> int | None:
        """Width of the feature vectors ``score_features`` takes, when the model has one."""
        return getattr(self, "_feature_dim", None)

    # -- input checks -------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelError(f"{type(self).__name__} is not fitted: call fit(dataset) first.")

    def _require_visual(self, action: str) -> None:
        if not self.visual:
            raise ModelError(f"{type(self).__name__} is not a visual model: it cannot {action}.")
        self._require_fitted()

    def user_index(self, users: Any) -> Tensor:
        """Users as a LongTensor on the model's device; out-of-range indices raise DataError."""
        self._require_fitted()
        return _check_index(users, self.n_users, "user", self.device)

    def item_index(self, items: Any) -> Tensor:
        """Items as a LongTensor on the model's device; out-of-range indices raise DataError."""
        self._require_fitted()
        return _check_index(items, self.n_items, "item", self.device)

    def _check_features_input(self, features: Any) -> Tensor:
        tensor = torch.as_tensor(features, dtype=torch.float32, device=self.device)
        dim = self.feature_dim
        if tensor.ndim != 2 or (dim is not None and tensor.shape[1] != dim):
            raise DataError(
                f"{type(self).__name__} scores feature vectors of shape (B, {dim}), "
                f"got {tuple(tensor.shape)}."
            )
        return tensor

    def _check_images_input(self, images: Any) -> Tensor:
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise DataError(
                "images must be a float tensor of shape (B, C, H, W) with values in [0, 1]."
            )
        return images.to(self.device)

    # -- checkpoints --------------------------------------------------------------------------
    def _shapes(self) -> dict[str, Any]:
        """Whatever beyond the hyperparameters is needed to rebuild the parameter shapes."""
        return {}

    def _build(self, shapes: dict[str, Any]) -> None:
        """Create parameters and buffers of the right shapes (values come from a state dict)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint to ``path`` atomically and return the path."""
        self._require_fitted()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "class": type(self).__name__,
            "hyperparameters": self.hyperparameters,
            "dataset_hash": self.dataset_hash,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "shapes": self._shapes(),
            "training_log": self.training_log,
            "state_dict": cpu_state(self),
        }
        path = Path(path)
        write_checkpoint(path, payload)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> Recommender:
        """Rebuild a model saved by :meth:`save` (of this class or a subclass)."""
        payload = read_checkpoint(path, "varsec recommender checkpoint", kind=CHECKPOINT_FORMAT,
                                  version=CHECKPOINT_VERSION)
        klass = _saved_class(payload, path, cls)
        hyperparameters = dict(payload["hyperparameters"])
        if device is not None:
            hyperparameters["device"] = device
        model = klass(**hyperparameters)
        model.n_users, model.n_items = payload["n_users"], payload["n_items"]
        model.dataset_hash = payload["dataset_hash"]
        model.training_log = list(payload["training_log"])
        model._build(payload["shapes"])
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise ModelError(f"{path}: the state dict does not fit {klass.__name__}.") from exc
        model.to(model.device)
        model._fitted = True
        model.eval()
        return model


def checkpoint_class(path: str | Path) -> type[Recommender]:
    """The recommender class a checkpoint written by :meth:`Recommender.save` holds; a
    ModelError naming ``path`` when it is not a file, not a varsec recommender checkpoint, or
    of a class this process does not know."""
    payload = read_checkpoint(path, "varsec recommender checkpoint", kind=CHECKPOINT_FORMAT,
                              version=CHECKPOINT_VERSION)
    return _saved_class(payload, path, Recommender)


def _saved_class(payload: dict[str, Any], path: str | Path,
                 base: type[Recommender]) -> type[Recommender]:
    _load_builtins()  # the saved class may live in any model file of the package
    klass = _REGISTRY.get(payload["class"])
    if klass is None or not issubclass(klass, base):
        raise ModelError(f"{path}: holds a {payload['class']} checkpoint, not a "
                         f"{base.__name__}.")
    return klass


R = TypeVar("R", bound=type[Recommender])


def register_recommender(name: str, *, aliases: Iterable[str] = ()) -> Callable[[R], R]:
    """Class decorator: register a :class:`Recommender` subclass under ``name`` and ``aliases``.

    A name or alias already taken by another class is a ConfigError, and so is ``two-stage``
    (the pipeline built from two registered models).
    """
    keys = (name, *aliases)

    def decorate(cls: R) -> R:
        if not (isinstance(cls, type) and issubclass(cls, Recommender)):
            raise TypeError(f"{cls!r} is not a Recommender subclass.")
        for key in keys:
            if key in RESERVED_NAMES:
                what = "the pipeline of two registered models" if key == RESERVED_NAMES[0] \
                    else "models a study's factory builds"
                raise ConfigError(f"recommender name {key!r} is reserved for {what}.")
            if _NAMES.get(key, cls) is not cls:
                raise ConfigError(f"recommender name {key!r} is already registered "
                                  f"(by {_NAMES[key].__name__}).")
        cls.name, cls.aliases = name, keys[1:]
        _NAMES.update(dict.fromkeys(keys, cls))
        return cls

    return decorate


def _load_builtins() -> None:
    """Import every module of ``varsec.recsys``: a model's file registers it, so a new model is
    one new file in the package."""
    from varsec.registry import import_submodules, load_plugins

    import_submodules("varsec.recsys")
    load_plugins("varsec.recommenders", "Recommender", lambda cls: issubclass(cls, Recommender),
                 _NAMES, register_recommender)


def missing_methods(cls: type[Recommender]) -> list[str]:
    """The methods a Recommender subclass must implement and does not: ``_fit``, ``_score``,
    ``_build`` (a study reloads every model from its checkpoint in later stages) and, for a
    visual model, ``_score_features`` or ``_score_images``."""
    missing = [name for name in ("_fit", "_score", "_build")
               if getattr(cls, name) is getattr(Recommender, name)]
    if cls.visual and cls._score_features is Recommender._score_features and \
            cls._score_images is Recommender._score_images:
        missing.append("_score_images")
    return missing


def known_recommenders() -> list[str]:
    """The registered recommender names (not their aliases), sorted."""
    _load_builtins()
    return sorted({cls.name for cls in _NAMES.values() if cls.name is not None})


def registered_names() -> Mapping[str, type[Recommender]]:
    """A live read-only view: every registered name and alias -> its class."""
    _load_builtins()
    return MappingProxyType(_NAMES)


def recommender_class(name: str) -> type[Recommender]:
    """The class registered under ``name`` (a name or an alias); a ConfigError listing the
    known names otherwise."""
    _load_builtins()
    if name not in _NAMES:
        raise ConfigError(f"unknown recommender {name!r} (known: "
                          f"{', '.join(known_recommenders())}).")
    return _NAMES[name]


def create_recommender(name: str, **hyperparameters: Any) -> Recommender:
    """Build the recommender registered as ``name`` with validated ``hyperparameters``."""
    return recommender_class(name)(**hyperparameters)


def _check_index(values: Any, size: int, what: str, device: torch.device) -> Tensor:
    if isinstance(values, Tensor):
        if values.is_floating_point() or values.dtype == torch.bool:
            raise DataError(f"{what} indices must be integers, got a {values.dtype} tensor.")
        index = values.reshape(-1).to(device=device, dtype=torch.long)
    else:
        array = np.atleast_1d(np.asarray(values))
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{what} indices must be integers, got dtype {array.dtype}.")
        index = torch.as_tensor(array.reshape(-1).astype(np.int64), device=device)
    if index.numel():
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise DataError(
                f"{what} index {bad} is unknown to the model: it knows {size} {what}s "
                f"(indices 0 to {size - 1})."
            )
    return index


# -- helpers shared by the models -------------------------------------------------------------
def catalog_images_tensor(dataset: Dataset, model_name: str) -> Tensor:
    """The catalog's uint8 images as a tensor (no copy to float); features-only -> DataError."""
    catalog = dataset.catalog
    if catalog.images is None:
        raise DataError(
            f"{model_name} learns from pixels, but catalog {catalog.name!r} is features-only "
            "(it holds no images)."
        )
    return torch.from_numpy(np.ascontiguousarray(catalog.images))


def to_float_images(images_uint8: Tensor, device: torch.device) -> Tensor:
    """uint8 NCHW -> float32 NCHW in [0, 1] on ``device``."""
    from varsec.vision.perturbation import uint8_to_float

    return uint8_to_float(images_uint8, device)


def as_feature_map(extractor: Any) -> Callable[[Tensor], Tensor]:
    """The image -> feature function of an extractor (its ``features`` method, else itself)."""
    if hasattr(extractor, "features") and callable(extractor.features):
        return extractor.features
    if callable(extractor):
        return extractor
    raise ConfigError(
        "extractor must be a module with features(x) or a callable, "
        f"got {type(extractor).__name__}."
    )


def resolve_features(
    dataset: Dataset, features: Any | None, extractor: Any | None, model_name: str
) -> Tensor:
    """The N x D float32 feature matrix a feature-based model trains on.

    Order of precedence: the ``features`` argument, the catalog's features, then ``extractor``
    run over the catalog's images. Neither -> DataError naming the catalog.
    """
    n_items = dataset.n_items
    if features is not None:
        matrix = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if matrix.ndim != 2 or matrix.shape[0] != n_items:
            raise DataError(
                f"{model_name}: features have shape {tuple(matrix.shape)}, expected "
                f"({n_items}, D) for catalog {dataset.catalog.name!r}."
            )
        if not torch.isfinite(matrix).all():
            raise DataError(f"{model_name}: features hold NaN or inf values.")
        return matrix
    if dataset.catalog.features is not None:
        return torch.from_numpy(np.asarray(dataset.catalog.features, dtype=np.float32))
    if extractor is None:
        raise DataError(
            f"{model_name} needs visual features, but catalog {dataset.catalog.name!r} has none "
            "and no extractor was given to compute them from its images."
        )
    images = catalog_images_tensor(dataset, model_name)
    return extract_features(as_feature_map(extractor), images)


def extract_features(feature_map: Callable[[Tensor], Tensor], images_uint8: Tensor) -> Tensor:
    """Run ``feature_map`` over uint8 images in batches, without gradients; float32 on CPU."""
    device = module_device(feature_map)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), IMAGE_BATCH):
            batch = to_float_images(images_uint8[start : start + IMAGE_BATCH], device)
            chunks.append(feature_map(batch).float().reshape(len(batch), -1).cpu())
    return torch.cat(chunks)




def warm_item_mask(dataset: Dataset) -> Tensor:
    """Bool [N]: True for items that may carry learned item parameters (not cold)."""
    mask = torch.ones(dataset.n_items, dtype=torch.bool)
    mask[torch.as_tensor(dataset.cold_items, dtype=torch.long)] = False
    return mask


def train_lists(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """The train part's (users, items) as LongTensors."""
    train = dataset.part("train")
    return torch.as_tensor(train.user), torch.as_tensor(train.item)


def part_size(dataset: Dataset, name: str) -> int:
    """Number of interactions in one split part (``Dataset.part`` refuses empty parts)."""
    if dataset.split is None:
        raise DataError("this dataset has no split; run a splitter first.")
    return int(np.count_nonzero(dataset.split == SPLIT_CODES[name]))


__all__ = [
    "RESERVED_NAMES",
    "Param",
    "Recommender",
    "as_feature_map",
    "catalog_images_tensor",
    "checkpoint_class",
    "create_recommender",
    "extract_features",
    "known_recommenders",
    "missing_methods",
    "part_size",
    "recommender_class",
    "register_recommender",
    "registered_names",
    "resolve_features",
    "to_float_images",
    "train_lists",
    "warm_item_mask",
]
