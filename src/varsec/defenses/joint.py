"""Training the reconstruction network and the detector (Yin et al. 002 sec 3.5 and 4.3).

The recommender (VBPR in 002) is trained first and stays frozen. The defense learns from
(clean, adversarial) pairs of item images, the adversarial ones crafted with the untargeted BPR
attack (002 eq 3-4, :class:`~varsec.attacks.bpr_untargeted.BPRUntargeted`) through that
recommender. The schedule follows 002 sec 4.3:

1. ``recon_epochs`` on (clean, FGSM) inputs, then ``mix_epochs`` on (clean, FGSM, PGD) inputs,
   one input type per iteration drawn uniformly by a seeded generator ("We use the random number
   generator to determine which types of input should be used in one iteration"): the
   reconstruction loss ``L_pix + α L_perc + γ L_rs``;
2. ``detector_epochs`` of the detector on (clean, FGSM at ``detector_eps``) with T frozen:
   ``β L_contr`` (eq 9-10); with several budgets in ``detector_eps`` (beyond 002, which trains
   at one), each iteration draws one;
3. ``joint_epochs`` of end-to-end fine-tuning with the whole eq 12,
   ``L = L_pix + α L_perc + β L_contr + γ L_rs`` (α = 1, β = 100, γ = 0.1 in 002), T and the
   detector updated together, adversarial inputs FGSM or PGD per iteration.

``L_rs`` is the BPR loss (eq 11) of training triplets ``(u, i, j)`` whose item images pass
through T: ``s_ui = s_ui(catalog) - v_u(x_i) + v_u(T(x_i^in))`` where ``v_u`` is the recommender's
image score (``score_images``), so the recommender's learned item terms are kept, and only T
receives gradients. An *epoch* shows every training item's image about once (minibatches of
``batch_size`` triplets, two images each).

Items are split once, seeded: ``holdout_fraction`` of them never enter training; half of those
calibrate the detector's threshold, the other half are kept for testing (002 Table 3 detects on
items "that have never been sampled to train the reconstruction network"). The random
resize + pad layer is not used in training ("it does not help the training"); it is an
inference option (:mod:`varsec.defenses.evaluation`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from varsec.attacks.engine import FGSMStep, PGDStep, frozen
from varsec.attacks.insa import recommender_modules, require_visual
from varsec.data.catalog import Dataset
from varsec.defenses.detector import METHODS, Calibration, ContrastiveDetector, contrastive_loss
from varsec.defenses.reconstruction import (
    PAPER_STAGES,
    PerceptualLoss,
    ReconstructionNet,
    pixel_loss,
)
from varsec.devices import check_device, seeded
from varsec.errors import ConfigError, DataError
from varsec.io import progress
from varsec.params import check_choice, check_int, check_number, plain_fields
from varsec.vision.base import Backbone
from varsec.vision.perturbation import uint8_to_float
from varsec.vision.registry import backbone_parameters, create_backbone

PHASES = ("reconstruction", "mix", "detector", "joint")
INPUTS = {"reconstruction": ("clean", "fgsm"), "mix": ("clean", "fgsm", "pgd"),
          "joint": ("fgsm", "pgd")}


@dataclass(frozen=True)
class DefenseConfig:
    """How to train Yin et al.'s defense (002 sec 3.5, 4.3); every field is validated.

    Budgets ``eps`` / ``detector_eps`` are in 8-bit levels (002 trains at 16); ``detector_eps``
    may list several budgets (the detector then trains on all of them).
    ``threshold``: ``"accuracy"`` or ``"fpr"`` (calibrated on held-out validation items), or a
    number (fixed, e.g. 002's 0.2).
    """

    eps: float = 16.0
    pgd_steps: int = 10
    pgd_alpha: float | None = None
    detector_eps: float | tuple[float, ...] = 16.0
    recon_epochs: int = 10
    mix_epochs: int = 3
    detector_epochs: int = 2
    joint_epochs: int = 0
    alpha: float = 1.0
    beta: float = 100.0
    gamma: float = 0.1
    perceptual_stages: tuple[int, ...] = PAPER_STAGES
    width: int = 64
    blocks: int = 9
    heads: int = 4
    max_tokens: int = 1024
    detector_backbone: str = "fmnist-cnn"
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    detector_init: str = "extractor"
    embed_dim: int = 128
    temperature: float = 0.1
    lr: float = 1e-3
    detector_lr: float = 1e-3
    batch_size: int = 32
    holdout_fraction: float = 0.2
    max_items: int | None = None
    threshold: str | float = "accuracy"
    target_fpr: float = 0.05
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        from varsec.attacks.quantize import check_eps

        check_eps(self.eps, name="eps")
        if not self.detector_budgets:
            raise ConfigError("detector_eps needs at least one budget.")
        for value in self.detector_budgets:
            check_eps(value, name="detector_eps")
        if self.pgd_alpha is not None:
            check_eps(self.pgd_alpha, name="pgd_alpha", step=True)
        for name in ("pgd_steps", "batch_size", "width", "blocks", "heads", "max_tokens",
                     "embed_dim"):
            check_int(getattr(self, name), name, low=1)
        for name in ("recon_epochs", "mix_epochs", "detector_epochs", "joint_epochs", "seed"):
            check_int(getattr(self, name), name, low=0)
        if self.max_items is not None:
            check_int(self.max_items, "max_items", low=2)
        for name in ("alpha", "beta", "gamma"):
            check_number(getattr(self, name), name, low=0)
        for name in ("lr", "detector_lr", "temperature"):
            check_number(getattr(self, name), name, low=0, low_open=True)
        self._check_choices()
        plain_fields(self)

    def _check_choices(self) -> None:
        for name in ("holdout_fraction", "target_fpr"):
            check_number(getattr(self, name), name, low=0, high=1, low_open=True,
                         high_open=True)
        if isinstance(self.threshold, str) and self.threshold not in METHODS:
            raise ConfigError(f"threshold must be one of {', '.join(METHODS)} or a number, "
                              f"got {self.threshold!r}.")
        if not isinstance(self.threshold, str):
            check_number(self.threshold, "threshold", low=0)
        check_choice(self.detector_init, "detector_init", ("extractor", "random"))
        check_device(self.device)
        if self.recon_epochs + self.mix_epochs + self.joint_epochs == 0:
            raise ConfigError("the reconstruction network needs at least one epoch "
                              "(recon_epochs, mix_epochs or joint_epochs).")

    @property
    def detector_budgets(self) -> tuple[float, ...]:
        """The detector's training budgets, the first one the primary (``detector`` set)."""
        if isinstance(self.detector_eps, tuple | list):
            return tuple(self.detector_eps)
        return (self.detector_eps,)

    @property
    def detector_kinds(self) -> tuple[str, ...]:
        """Names of the detector's adversarial sets: ``detector``, ``detector@32``, ..."""
        return ("detector", *(f"detector@{e:g}" for e in self.detector_budgets[1:]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        values = dataclasses.asdict(self)
        values["perceptual_stages"] = list(self.perceptual_stages)
        if isinstance(self.detector_eps, tuple | list):
            values["detector_eps"] = list(self.detector_eps)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DefenseConfig:
        """Build from a dict; an unknown key is a ConfigError naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown defense config field {unknown[0]!r} "
                              f"(known: {', '.join(sorted(known))}).")
        values = dict(values)
        for key in ("perceptual_stages", "detector_eps"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> DefenseConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# Items and adversarial images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemSplit:
    """Catalog indices: ``train`` (the defense learns on them), ``calibration`` (threshold)
    and ``test`` (never seen by the defense)."""

    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray

    def to_dict(self) -> dict[str, list[int]]:
        """The split as JSON-able lists."""
        return {k: [int(i) for i in getattr(self, k)] for k in ("train", "calibration", "test")}


def split_items(dataset: Dataset, config: DefenseConfig) -> ItemSplit:
    """Seeded split of the warm items (those that enter training triplets)."""
    warm = np.asarray(dataset.warm_items(), dtype=np.int64)
    if len(warm) < 4:
        raise DataError(f"the defense needs at least 4 warm items, the dataset has {len(warm)}.")
    order = np.random.default_rng(config.seed).permutation(warm)
    held = max(2, round(config.holdout_fraction * len(order)))
    half = held // 2
    train = order[held:]
    if config.max_items is not None:
        train = train[: config.max_items]
    return ItemSplit(np.sort(train), np.sort(order[:half]), np.sort(order[half:held]))


def craft_bpr_attack(recommender: Any, dataset: Dataset, items: np.ndarray, rule: Any,
                     seed: int, batch_size: int = 128) -> Tensor:
    """uint8 adversarial images of ``items``: the untargeted BPR attack (002 eq 3-4)."""
    from varsec.attacks.bpr_untargeted import poison_catalog

    _, result = poison_catalog(recommender, dataset, rule, items, seed=seed,
                               batch_size=batch_size)
    return result.images


def adversarial_sets(recommender: Any, dataset: Dataset, split: ItemSplit,
                     config: DefenseConfig) -> dict[str, Tensor]:
    """The adversarial images the schedule needs, for ``train + calibration + test`` items in
    that order: ``fgsm`` (eps), ``pgd`` (eps, train items only, when a phase uses PGD) and
    ``detector`` (FGSM at the first ``detector_eps``; the ``fgsm`` set when the budgets agree)
    and ``detector@<eps>`` for further detector budgets."""
    every = np.concatenate([split.train, split.calibration, split.test])
    sets = {"fgsm": craft_bpr_attack(recommender, dataset, every, FGSMStep(config.eps),
                                     config.seed)}
    if config.mix_epochs or config.joint_epochs:
        rule = PGDStep(config.eps, config.pgd_alpha, config.pgd_steps)
        sets["pgd"] = craft_bpr_attack(recommender, dataset, split.train, rule, config.seed)
    for kind, budget in zip(config.detector_kinds, config.detector_budgets, strict=True):
        if budget == config.eps:
            sets[kind] = sets["fgsm"]
        else:
            sets[kind] = craft_bpr_attack(recommender, dataset, every, FGSMStep(budget),
                                          config.seed)
    return sets


# --------------------------------------------------------------------------------------------
# The recommender term L_rs and minibatches of triplets
# --------------------------------------------------------------------------------------------


class RecommenderLoss:
    """``L_rs`` (002 eq 11) for triplets whose item images go through T; the recommender is
    frozen, only the images carry gradients (see module docstring)."""

    def __init__(self, recommender: Any, dataset: Dataset, items: np.ndarray, seed: int) -> None:
        from varsec.recsys.training import NegativeSampler

        require_visual(recommender, "the defense's recommender loss")
        self.recommender = recommender
        train = dataset.part("train")
        keep = np.isin(train.item, items)
        if not keep.any():
            raise DataError("no training interaction involves the defense's training items.")
        self.users = torch.as_tensor(train.user[keep])
        self.positives = torch.as_tensor(train.item[keep])
        self.sampler = NegativeSampler(torch.as_tensor(train.user), torch.as_tensor(train.item),
                                       dataset.n_items, pool=torch.as_tensor(items))
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` seeded triplets (users, positive items, negative items) as CPU tensors."""
        pick = torch.randint(len(self.users), (count,), generator=self.generator)
        users = self.users[pick]
        return users, self.positives[pick], self.sampler.sample(users, self.generator)

    def visual_scores(self, users: Tensor, images: Tensor) -> Tensor:
        """``v_u(x)`` for each (users[k], images[k]) pair."""
        unique, inverse = torch.unique(users, return_inverse=True)
        scores = self.recommender.score_images(unique, images)
        return scores[inverse.to(scores.device), torch.arange(len(users), device=scores.device)]

    @torch.no_grad()
    def offsets(self, users: Tensor, items: Tensor, clean: Tensor) -> Tensor:
        """``s_ui(catalog) - v_u(x_i)`` of clean images (constants of the loss)."""
        catalog = self.recommender.score(users).to(clean.device)
        own = catalog.gather(1, items.to(clean.device)[:, None]).squeeze(1)
        return own - self.visual_scores(users, clean)

    def __call__(self, users: Tensor, seen: Tensor, offsets: Tensor) -> Tensor:
        """BPR loss of B triplets from the 2B images ``seen`` (positives first) and offsets."""
        both = torch.cat([users, users])
        scores = self.visual_scores(both, seen) + offsets
        half = len(users)
        return -F.logsigmoid(scores[:half] - scores[half:]).mean()


@dataclass
class TrainingData:
    """Pixels the schedule draws from: uint8 tensors indexed by catalog item."""

    clean: dict[int, int]  # catalog item -> row of ``pixels``
    pixels: Tensor  # uint8 clean images of every split item
    adversarial: dict[str, Tensor]  # kind -> uint8 images in ``pixels`` row order

    def images(self, kind: str, items: Tensor, device: torch.device) -> Tensor:
        """Float images of ``items`` of one kind (``clean``, ``fgsm``, ``pgd``, ``detector``)."""
        rows = torch.as_tensor([self.clean[int(i)] for i in items])
        source = self.pixels if kind == "clean" else self.adversarial[kind]
        return uint8_to_float(source[rows], device)


def _training_data(dataset: Dataset, split: ItemSplit, sets: dict[str, Tensor]) -> TrainingData:
    every = np.concatenate([split.train, split.calibration, split.test])
    assert dataset.catalog.images is not None
    pixels = torch.from_numpy(np.ascontiguousarray(dataset.catalog.images[every]))
    adversarial = {}
    for kind, images in sets.items():
        if len(images) == len(every):
            adversarial[kind] = images
        else:  # train items only: pad the held-out rows with their clean images
            padded = pixels.clone()
            padded[: len(images)] = images
            adversarial[kind] = padded
    return TrainingData({int(i): k for k, i in enumerate(every)}, pixels, adversarial)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


@dataclass
class DefenseResult:
    """The trained networks, the split, the adversarial images used, history and timings."""

    reconstruction: ReconstructionNet
    detector: ContrastiveDetector | None
    config: DefenseConfig
    split: ItemSplit
    adversarial: dict[str, Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    calibration: Calibration | None = None
    seconds: float = 0.0

    def adversarial_images(self, kind: str, items: Any) -> Tensor:
        """uint8 adversarial images of catalog ``items`` from the training sets."""
        every = np.concatenate([self.split.train, self.split.calibration, self.split.test])
        position = {int(i): k for k, i in enumerate(every)}
        rows = [position[int(i)] for i in np.asarray(items).reshape(-1)]
        return self.adversarial[kind][rows]


def perceptual_extractor(recommender: Any, extractor: Any | None) -> Any:
    """The backbone whose stages the perceptual loss compares (default: the recommender's)."""
    candidate = extractor if extractor is not None else getattr(recommender, "extractor", None)
    owner = getattr(candidate, "__self__", candidate)  # a bound ``features`` method
    for source in (owner, getattr(owner, "backbone", None)):
        if callable(getattr(source, "stages", None)):
            return source
    raise ConfigError(
        "the perceptual loss needs a varsec backbone with stages(x): pass extractor= or attach "
        "one to the recommender."
    )


class DefenseTrainer:
    """Runs the schedule of the module docstring; :func:`train_defense` is the entry point."""

    def __init__(self, recommender: Any, dataset: Dataset, config: DefenseConfig,
                 extractor: Any | None = None,
                 adversarial: dict[str, Tensor] | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        require_visual(recommender, "training the reconstruction defense")
        if dataset.catalog.images is None:
            raise DataError(f"the reconstruction defense works on pixels, but catalog "
                            f"{dataset.catalog.name!r} is features-only.")
        self.config, self.dataset, self.recommender = config, dataset, recommender
        self.device = check_device(config.device)
        self.backbone = perceptual_extractor(recommender, extractor)
        self.perceptual = PerceptualLoss(self.backbone, config.perceptual_stages)
        self.split = split_items(dataset, config)
        self.on_epoch = on_epoch
        self.history: list[dict[str, Any]] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        with seeded(config.seed):
            self.network = self._build_network().to(self.device)
            self.detector = self._build_detector()
        if self.detector is not None:
            self.detector.to(self.device)
        self.sets = adversarial or adversarial_sets(recommender, dataset, self.split, config)
        self.data = _training_data(dataset, self.split, self.sets)
        self.rs_loss = RecommenderLoss(recommender, dataset, self.split.train, config.seed)

    def _build_network(self) -> ReconstructionNet:
        shape = self.dataset.catalog.image_shape
        assert shape is not None
        cfg = self.config
        return ReconstructionNet(shape[0], cfg.width, cfg.blocks, cfg.heads, cfg.max_tokens)

    def _build_detector(self) -> ContrastiveDetector | None:
        cfg = self.config
        if cfg.detector_epochs + cfg.joint_epochs == 0:
            return None
        same = (isinstance(self.backbone, Backbone) and self.backbone.name == cfg.detector_backbone
                and not cfg.detector_kwargs)
        if cfg.detector_init == "extractor" and same:
            encoder = copy.deepcopy(self.backbone)
        else:
            kwargs = dict(cfg.detector_kwargs)
            shape = self.dataset.catalog.image_shape
            if "in_channels" in backbone_parameters(cfg.detector_backbone) and shape is not None:
                kwargs.setdefault("in_channels", shape[0])
            encoder = create_backbone(cfg.detector_backbone, **kwargs)
        for parameter in encoder.parameters():
            parameter.requires_grad_(True)
        return ContrastiveDetector(encoder, embed_dim=cfg.embed_dim,
                                   temperature=cfg.temperature)

    # -- the phases ---------------------------------------------------------------------------
    def fit(self) -> DefenseResult:
        """Train every phase, calibrate the threshold; returns the result (eval mode)."""
        started = time.perf_counter()
        cfg = self.config
        frozen_modules = [*recommender_modules(self.recommender), self.backbone]
        with frozen(frozen_modules):
            self._run("reconstruction", cfg.recon_epochs, self._recon_step, self._recon_opt())
            self._run("mix", cfg.mix_epochs, self._recon_step, self._recon_opt())
            if self.detector is not None:
                self._run("detector", cfg.detector_epochs, self._detector_step,
                          self._detector_opt())
                self._run("joint", cfg.joint_epochs, self._joint_step, self._joint_opt())
        self.network.eval()
        calibration = self._calibrate() if self.detector is not None else None
        return DefenseResult(self.network, self.detector, cfg, self.split, self.sets,
                             self.history, calibration, time.perf_counter() - started)

    def _recon_opt(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.network.parameters(), lr=self.config.lr)

    def _detector_opt(self) -> torch.optim.Optimizer:
        assert self.detector is not None
        return torch.optim.Adam(self.detector.parameters(), lr=self.config.detector_lr)

    def _joint_opt(self) -> torch.optim.Optimizer:
        assert self.detector is not None
        return torch.optim.Adam([
            {"params": self.network.parameters(), "lr": self.config.lr},
            {"params": self.detector.parameters(), "lr": self.config.detector_lr},
        ])

    def _iterations(self, phase: str) -> int:
        per_batch = self.config.batch_size * (1 if phase == "detector" else 2)
        return max(1, math.ceil(len(self.split.train) / per_batch))

    def _run(self, phase: str, epochs: int, step: Callable[[str], dict[str, float]],
             optimizer: torch.optim.Optimizer) -> None:
        for epoch in range(1, epochs + 1):
            tick = time.perf_counter()
            self.network.train(phase != "detector")
            if self.detector is not None:
                self.detector.train(phase in ("detector", "joint"))
            totals: dict[str, float] = {}
            count = self._iterations(phase)
            for _ in progress(range(count), total=count, desc=f"defense {phase} {epoch}"):
                parts = step(phase)
                optimizer.zero_grad(set_to_none=True)
                parts.pop("_loss").backward()
                optimizer.step()
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value / count
            record = {"phase": phase, "epoch": epoch, **totals,
                      "seconds": round(time.perf_counter() - tick, 2)}
            self.history.append(record)
            if self.on_epoch is not None:
                self.on_epoch(record)

    def _kind(self, phase: str) -> str:
        kinds = INPUTS[phase]
        return kinds[int(torch.randint(len(kinds), (1,), generator=self.generator))]

    def _triplet_batch(self, kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        users, pos, neg = self.rs_loss.sample(self.config.batch_size)
        items = torch.cat([pos, neg])
        clean = self.data.images("clean", items, self.device)
        seen = clean if kind == "clean" else self.data.images(kind, items, self.device)
        return users, items, clean, seen

    def _reconstruction_terms(self, users: Tensor, items: Tensor, clean: Tensor,
                              seen: Tensor) -> tuple[Tensor, dict[str, float], Tensor]:
        out = self.network(seen)
        pix = pixel_loss(out, clean)
        perc = self.perceptual(out, clean) if self.config.alpha > 0 else out.sum() * 0.0
        offsets = self.rs_loss.offsets(users.repeat(2), items, clean)
        rs = self.rs_loss(users, out, offsets) if self.config.gamma > 0 else out.sum() * 0.0
        cfg = self.config
        total = pix + cfg.alpha * perc + cfg.gamma * rs
        values = {"pix": float(pix.detach()), "perc": float(perc.detach()),
                  "rs": float(rs.detach())}
        return total, values, out

    def _recon_step(self, phase: str) -> dict[str, Any]:
        kind = self._kind(phase)
        total, parts, _ = self._reconstruction_terms(*self._triplet_batch(kind))
        return {"_loss": total, "loss": float(total.detach()), **parts}

    def _views(self, clean: Tensor, adv: Tensor, train_network: bool) -> dict[str, Tensor]:
        assert self.detector is not None
        if train_network:
            clean_recon, adv_recon = self.network(clean), self.network(adv)
        else:
            with torch.no_grad():
                clean_recon, adv_recon = self.network(clean), self.network(adv)
        z = self.detector.embed(torch.cat([clean, adv, clean_recon, adv_recon]))
        return dict(zip(("clean", "adv", "clean_recon", "adv_recon"), z.chunk(4), strict=True))

    def _detector_step(self, phase: str) -> dict[str, Any]:
        pick = torch.randint(len(self.split.train), (self.config.batch_size,),
                             generator=self.generator)
        items = torch.as_tensor(self.split.train)[pick]
        clean = self.data.images("clean", items, self.device)
        kinds = self.config.detector_kinds
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=self.generator))]
        adv = self.data.images(kind, items, self.device)
        contr = contrastive_loss(self._views(clean, adv, False), self.config.temperature)
        total = self.config.beta * contr
        return {"_loss": total, "loss": float(total.detach()), "contr": float(contr.detach())}

    def _joint_step(self, phase: str) -> dict[str, Any]:
        assert self.detector is not None
        kind = self._kind(phase)
        users, items, clean, adv = self._triplet_batch(kind)
        recon_adv, parts, out = self._reconstruction_terms(users, items, clean, adv)
        out_clean = self.network(clean)
        recon_clean = pixel_loss(out_clean, clean)
        z = self.detector.embed(torch.cat([clean, adv, out_clean, out]))
        views = dict(zip(("clean", "adv", "clean_recon", "adv_recon"), z.chunk(4), strict=True))
        contr = contrastive_loss(views, self.config.temperature)
        total = recon_adv + recon_clean + self.config.beta * contr
        return {"_loss": total, "loss": float(total.detach()), **parts,
                "contr": float(contr.detach())}

    # -- the threshold ------------------------------------------------------------------------
    def _calibrate(self) -> Calibration:
        assert self.detector is not None
        cfg = self.config
        if not isinstance(cfg.threshold, str):
            return self.detector.set_threshold(float(cfg.threshold), source="fixed in config")
        clean, adv = calibration_halves(self.split.calibration, cfg.seed)
        clean_scores = self.detector.scores(self._pixels("clean", clean), self.network)
        kinds = cfg.detector_kinds
        adv_scores = np.concatenate([
            self.detector.scores(self._pixels(kind, adv[k::len(kinds)]), self.network)
            for k, kind in enumerate(kinds)])
        return self.detector.calibrate(clean_scores, adv_scores, cfg.threshold, cfg.target_fpr)

    def _pixels(self, kind: str, items: np.ndarray) -> Tensor:
        rows = torch.as_tensor([self.data.clean[int(i)] for i in items], dtype=torch.long)
        source = self.data.pixels if kind == "clean" else self.data.adversarial[kind]
        return source[rows]


def calibration_halves(items: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded halves of held-out items: the first shown clean, the second adversarial (each
    item is shown in one version only, as in 002's evaluation)."""
    order = np.random.default_rng(seed + 1).permutation(np.asarray(items))
    half = len(order) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def train_defense(
    recommender: Any,
    dataset: Dataset,
    config: DefenseConfig | None = None,
    *,
    extractor: Any | None = None,
    adversarial: dict[str, Tensor] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> DefenseResult:
    """Train the reconstruction network and the detector against ``recommender`` (frozen).

    ``extractor`` is the backbone of the perceptual loss (default: the one attached to the
    recommender); ``adversarial`` passes precomputed images (see :func:`adversarial_sets`);
    ``overrides`` replace fields of ``config``.
    """
    config = config or DefenseConfig()
    if overrides:
        config = config.replace(**overrides)
    trainer = DefenseTrainer(recommender, dataset, config, extractor, adversarial, on_epoch)
    return trainer.fit()


__all__ = [
    "INPUTS",
    "PHASES",
    "DefenseConfig",
    "DefenseResult",
    "DefenseTrainer",
    "ItemSplit",
    "RecommenderLoss",
    "adversarial_sets",
    "calibration_halves",
    "craft_bpr_attack",
    "perceptual_extractor",
    "split_items",
    "train_defense",
]
