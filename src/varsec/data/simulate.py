"""A seeded interaction simulator for catalogs of product images (DESIGN.md section 3).

Fashion-MNIST has real product images but no users, so varsec simulates them. Every item gets a
*style* vector computed from its pixels by a fixed, seeded random projection (never from a learned
model, so no varsec backbone is favoured) and a Zipf popularity; every user gets a category
affinity drawn from a Dirichlet with a small concentration (users have favourite categories) and a
Gaussian style taste. The utility of item ``i`` for user ``u`` is the logit

    s_ui = affinity_weight * log a_u[category_i] + taste_u . style_i + popularity_weight * log pop_i

and each user draws ``min_interactions`` or more items *without replacement* from softmax(s_u.)
over the warm items (Gumbel-top-k, which is exactly sequential sampling without replacement; the
draw order gives increasing timestamps). Cold items never appear in interactions; the simulator
keeps every user's true utility for them as the dataset's ``oracle`` (users x cold items), which
tells a report how far above its deserved rank an attack pushed an item.

Profiles: ``quick`` (tests), ``default`` (the demo) and ``paper`` (the size of AIP's Amazon Men
data set, 000 Table 3, fitted into Fashion-MNIST's 70,000 items).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from varsec.data.catalog import Dataset, Interactions, ItemCatalog
from varsec.data.splits import leave_one_out
from varsec.errors import ConfigError, DataError

# The projection behind item styles is fixed: the same image always gets the same style vector,
# whatever seed the simulation itself uses.
STYLE_SEED = 20_170_825
# Dirichlet draws can underflow to 0; affinities are floored here before the log.
AFFINITY_FLOOR = 1e-6
# Users get interactions starting within this window after BASE_TIMESTAMP (Unix seconds).
BASE_TIMESTAMP = 1_500_000_000
START_WINDOW_SECONDS = 2 * 365 * 86_400
MEAN_GAP_SECONDS = 3 * 86_400
# Users x warm items logits held in memory at once while sampling.
SAMPLING_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class SimulationProfile:
    """The size and the model parameters of one simulation.

    ``mean_interactions`` is the expected number of interactions per user (including the
    ``min_interactions`` every user has); counts above the minimum follow a geometric law, capped
    at ``max_interactions``.
    """

    name: str
    n_users: int
    n_warm_items: int
    n_cold_items: int
    mean_interactions: float
    min_interactions: int = 5
    max_interactions: int = 200
    style_dim: int = 16
    affinity_concentration: float = 0.3
    affinity_weight: float = 1.0
    taste_scale: float = 2.0
    zipf_exponent: float = 1.0
    popularity_weight: float = 1.0
    #: 0 (the default): Zipf ranks are dealt to items at random, so popularity ignores looks;
    #: rho > 0 deals them by ``rho * z(look appeal) + sqrt(1 - rho^2) * noise`` instead.
    popularity_look_correlation: float = 0.0

    def __post_init__(self) -> None:
        positive_ints = ("n_users", "n_warm_items", "min_interactions", "style_dim")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"simulation profile {self.name!r}: {name} must be >= 1.")
        if self.n_cold_items < 0:
            raise ConfigError(f"simulation profile {self.name!r}: n_cold_items must be >= 0.")
        if self.max_interactions < self.min_interactions:
            raise ConfigError(
                f"simulation profile {self.name!r}: max_interactions ({self.max_interactions}) "
                f"must be >= min_interactions ({self.min_interactions})."
            )
        if not self.min_interactions <= self.mean_interactions <= self.max_interactions:
            raise ConfigError(
                f"simulation profile {self.name!r}: mean_interactions must lie in "
                f"[{self.min_interactions}, {self.max_interactions}], got {self.mean_interactions}."
            )
        if self.n_warm_items < self.min_interactions:
            raise ConfigError(
                f"simulation profile {self.name!r}: n_warm_items ({self.n_warm_items}) must be "
                f">= min_interactions ({self.min_interactions})."
            )
        for name in ("affinity_concentration", "taste_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"simulation profile {self.name!r}: {name} must be > 0.")
        if not 0.0 <= self.popularity_look_correlation <= 1.0:
            raise ConfigError(
                f"simulation profile {self.name!r}: popularity_look_correlation must lie in "
                f"[0, 1], got {self.popularity_look_correlation!r}."
            )

    @property
    def n_items(self) -> int:
        """Warm plus cold items: how many catalog items the simulation uses."""
        return self.n_warm_items + self.n_cold_items

    def parameters(self) -> dict[str, Any]:
        """The profile as a JSON-ready dict (recorded in ``Dataset.meta``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# AIP (000 Table 3): Amazon Men has 34,244 users, 110,636 items and 254,870 interactions; Tradesy
# 33,864 users, 326,393 items and 655,409 interactions. Neither item count fits into
# Fashion-MNIST's 70,000 items, so ``paper`` keeps Amazon Men's users and interactions per user
# (the larger user base, the item count closest to fitting) on all 70,000 items, 1,000 of them
# cold as in AIP section 5.1.2.
PROFILES: dict[str, SimulationProfile] = {
    "quick": SimulationProfile("quick", n_users=500, n_warm_items=2_000, n_cold_items=100,
                               mean_interactions=12.0),
    "default": SimulationProfile("default", n_users=5_000, n_warm_items=10_000,
                                 n_cold_items=500, mean_interactions=13.0),
    "paper": SimulationProfile("paper", n_users=34_244, n_warm_items=69_000, n_cold_items=1_000,
                               mean_interactions=254_870 / 34_244),
}


# -- item styles --------------------------------------------------------------------------------
def _pooled_pixels(images: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """2x2 average-pool N x C x H x W images (uint8 or float in [0, 1]) and flatten them."""
    images = np.asarray(images)  # a memory-mapped array stays on disk; chunks are read below
    if images.ndim != 4:
        raise DataError(f"images must be N x C x H x W, got shape {images.shape}.")
    n, c, h, w = images.shape
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    h2, w2 = h // 2, w // 2
    out = np.empty((n, c * h2 * w2), dtype=np.float32)
    for start in range(0, n, chunk):
        block = np.asarray(images[start : start + chunk, :, : 2 * h2, : 2 * w2], np.float32)
        pooled = block.reshape(len(block), c, h2, 2, w2, 2).mean(axis=(3, 5)) / scale
        out[start : start + len(block)] = pooled.reshape(len(block), -1)
    return out


def pixel_style_vectors(
    images: np.ndarray,
    dim: int = 16,
    seed: int = STYLE_SEED,
    *,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Unit-length style vectors from pixels: a fixed random projection, no learned model.

    Images (N x C x H x W, uint8 or float in [0, 1]) are 2x2 average-pooled, flattened,
    standardised per pixel with the mean and std of ``reference`` (default: ``images`` itself),
    projected to ``dim`` dimensions by a Gaussian matrix drawn from ``seed`` and normalised to unit
    length. To place new images (e.g. an attacked one) in a simulation's style space, pass the
    simulated catalog's images as ``reference``. Returns float32 N x ``dim``.
    """
    if dim < 1:
        raise ConfigError(f"style dim must be >= 1, got {dim}.")
    pooled = _pooled_pixels(images)
    stats_source = pooled if reference is None else _pooled_pixels(reference)
    if stats_source.shape[1] != pooled.shape[1]:
        raise DataError(
            f"reference images have {stats_source.shape[1]} pooled pixels, images have "
            f"{pooled.shape[1]}: they must share channels and size."
        )
    mean = stats_source.mean(axis=0)
    std = stats_source.std(axis=0)
    std[std == 0] = 1.0
    projection = np.random.default_rng(seed).standard_normal((pooled.shape[1], dim))
    projected = ((pooled - mean) / std) @ projection.astype(np.float32)
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return (projected / np.maximum(norms, 1e-12)).astype(np.float32)


# -- the simulated world ------------------------------------------------------------------------
@dataclass
class SimulatedWorld:
    """Everything the simulator draws before sampling interactions (the ground truth).

    ``catalog`` holds only the simulated items (warm and cold, in source-catalog order);
    ``source_rows`` are their rows in the catalog given to :func:`build_world`. ``warm_items`` and
    ``cold_items`` index ``catalog``. ``category_affinity`` is users x categories (Dirichlet
    probabilities), ``tastes`` users x style dim, ``styles`` items x style dim.
    """

    profile: SimulationProfile
    seed: int
    catalog: ItemCatalog
    source_rows: np.ndarray
    warm_items: np.ndarray
    cold_items: np.ndarray
    styles: np.ndarray
    log_popularity: np.ndarray
    category_affinity: np.ndarray
    tastes: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.tastes)

    @property
    def item_categories(self) -> np.ndarray:
        assert self.catalog.categories is not None
        return self.catalog.categories

    def affinity_logits(self) -> np.ndarray:
        """users x categories: ``affinity_weight * log(max(affinity, AFFINITY_FLOOR))``."""
        floored = np.maximum(self.category_affinity, AFFINITY_FLOOR)
        return (self.profile.affinity_weight * np.log(floored)).astype(np.float32)

    def user_factors(self, users: np.ndarray) -> np.ndarray:
        """Users' side of the logit as one matrix: [affinity logits | taste | 1]."""
        users = np.asarray(users, dtype=np.int64)
        ones = np.ones((len(users), 1), dtype=np.float32)
        return np.hstack([self.affinity_logits()[users], self.tastes[users], ones])

    def item_factors(self, items: np.ndarray) -> np.ndarray:
        """Items' side of the logit: [category one-hot | style | popularity term]."""
        items = np.asarray(items, dtype=np.int64)
        one_hot = np.eye(self.category_affinity.shape[1], dtype=np.float32)
        popularity = self.profile.popularity_weight * self.log_popularity[items]
        return np.hstack([one_hot[self.item_categories[items]], self.styles[items],
                          popularity[:, None].astype(np.float32)])

    def logits(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The true utility s_ui (float32, len(users) x len(items)), without sampling noise."""
        return self.user_factors(users) @ self.item_factors(items).T


def resolve_profile(profile: str | SimulationProfile) -> SimulationProfile:
    """Look a profile up by name (or pass a :class:`SimulationProfile` through)."""
    if isinstance(profile, SimulationProfile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ConfigError(
        f"unknown simulation profile {profile!r} (known: {', '.join(PROFILES)})."
    )


def _check_catalog(catalog: ItemCatalog, profile: SimulationProfile) -> np.ndarray:
    """Validate the catalog for ``profile``; return the rows that have a known category."""
    if not catalog.has_pixels:
        raise DataError(
            f"catalog {catalog.name!r} has features but no images; the simulator derives item "
            "styles from pixels and needs a catalog with images."
        )
    if catalog.categories is None:
        raise DataError(
            f"catalog {catalog.name!r} has no categories; the simulator needs a category per "
            "item for the users' category affinities."
        )
    usable = np.flatnonzero(catalog.categories >= 0)
    if len(usable) < profile.n_items:
        raise DataError(
            f"catalog {catalog.name!r} has {len(usable):,} items with a category, but profile "
            f"{profile.name!r} needs {profile.n_items:,} ({profile.n_warm_items:,} warm + "
            f"{profile.n_cold_items:,} cold)."
        )
    return usable


def _stratified_quota(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over groups in proportion to ``sizes`` (largest remainder), >= 1 per group
    when ``n`` allows it; never more than a group's size."""
    exact = n * sizes / sizes.sum()
    quota = np.floor(exact).astype(np.int64)
    remainder = n - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:remainder]] += 1
    empty = np.flatnonzero((quota == 0) & (sizes > 0))
    if len(empty) and n >= np.count_nonzero(sizes):
        for group in empty:
            quota[group] += 1
            quota[np.argmax(quota)] -= 1
    return quota


def _stratified_sample(
    categories: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Positions of ``n`` entries of ``categories`` drawn at random, stratified by category."""
    codes, sizes = np.unique(categories, return_counts=True)
    quota = _stratified_quota(sizes, n)
    chosen = [
        rng.choice(np.flatnonzero(categories == code), size=int(k), replace=False)
        for code, k in zip(codes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _zipf_log_popularity(n_items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Centred log-popularity ``-exponent * log(rank)`` with ranks dealt to items at random."""
    ranks = rng.permutation(n_items) + 1
    log_pop = -exponent * np.log(ranks)
    return (log_pop - log_pop.mean()).astype(np.float32)


def build_world(
    catalog: ItemCatalog, profile: str | SimulationProfile = "quick", seed: int = 0
) -> SimulatedWorld:
    """Draw the simulation's ground truth: items, styles, popularity, users' affinity and taste."""
    profile = resolve_profile(profile)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"simulation seed must be a non-negative integer, got {seed!r}.")
    usable = _check_catalog(catalog, profile)
    assert catalog.categories is not None and catalog.images is not None
    rng = np.random.default_rng(seed)
    picked = usable[_stratified_sample(catalog.categories[usable], profile.n_items, rng)]
    cold_mask = np.zeros(len(picked), dtype=bool)
    if profile.n_cold_items:
        cold_mask[_stratified_sample(catalog.categories[picked], profile.n_cold_items, rng)] = True
    world_catalog = catalog.subset(picked)
    n_categories = int(catalog.categories.max()) + 1
    if catalog.category_names:
        n_categories = max(n_categories, len(catalog.category_names))
    world = SimulatedWorld(
        profile=profile,
        seed=int(seed),
        catalog=world_catalog,
        source_rows=picked,
        warm_items=np.flatnonzero(~cold_mask),
        cold_items=np.flatnonzero(cold_mask),
        styles=pixel_style_vectors(world_catalog.images, profile.style_dim, STYLE_SEED),
        log_popularity=_zipf_log_popularity(len(picked), profile.zipf_exponent, rng),
        category_affinity=rng.dirichlet(
            np.full(n_categories, profile.affinity_concentration), size=profile.n_users
        ),
        tastes=(profile.taste_scale * rng.standard_normal((profile.n_users, profile.style_dim)))
        .astype(np.float32),
    )
    if profile.popularity_look_correlation > 0:
        world.log_popularity = _popularity_following_looks(world)
    return world


def look_appeal(world: SimulatedWorld) -> np.ndarray:
    """Each item's mean true utility over users without its popularity term: how much its
    category and look appeal to the simulated shoppers on average."""
    categories = world.item_categories
    affinity = world.affinity_logits().mean(axis=0)[categories]
    return (affinity + world.styles @ world.tastes.mean(axis=0)).astype(np.float32)


def _popularity_following_looks(world: SimulatedWorld) -> np.ndarray:
    """The same Zipf log-popularity values, dealt so that their ranks follow look appeal with
    correlation about ``rho`` (a Gaussian copula). Its noise has a stream of its own, so the
    rest of the world is drawn exactly as with ``rho = 0``."""
    rho = float(world.profile.popularity_look_correlation)
    appeal = look_appeal(world).astype(np.float64)
    spread = appeal.std()
    z = (appeal - appeal.mean()) / spread if spread > 0 else np.zeros_like(appeal)
    noise = np.random.default_rng([world.seed, 2]).standard_normal(len(appeal))
    key = rho * z + np.sqrt(max(0.0, 1.0 - rho * rho)) * noise
    dealt = np.empty_like(world.log_popularity)
    dealt[np.argsort(-key, kind="stable")] = np.sort(world.log_popularity)[::-1]
    return dealt


# -- sampling -----------------------------------------------------------------------------------
def _interaction_counts(profile: SimulationProfile, rng: np.random.Generator) -> np.ndarray:
    """Per-user counts: ``min_interactions`` plus a geometric extra, capped."""
    extra_mean = profile.mean_interactions - profile.min_interactions
    extra = rng.geometric(1.0 / (extra_mean + 1.0), size=profile.n_users) - 1
    cap = min(profile.max_interactions, profile.n_warm_items)
    return np.minimum(profile.min_interactions + extra, cap).astype(np.int64)


def _gumbel_top_k(logits: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, ``counts[row]`` column indices drawn without replacement from softmax(row),
    in draw order, concatenated row after row (Gumbel-top-k)."""
    # Gumbel noise is -log(E) with E ~ Exp(1); E is floored so that the noise stays finite.
    exponential = rng.standard_exponential(logits.shape, dtype=np.float32)
    np.maximum(exponential, np.finfo(np.float32).tiny, out=exponential)
    perturbed = logits - np.log(exponential, out=exponential)
    k = int(counts.max())
    top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(perturbed, top, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)
    return ranked[np.arange(k)[None, :] < counts[:, None]]


def _sample_items(
    world: SimulatedWorld, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """All users' drawn warm items (world-catalog indices), user by user in draw order."""
    warm = world.warm_items
    warm_factors = world.item_factors(warm).T
    user_factors = world.user_factors(np.arange(world.n_users))
    rows_per_chunk = max(1, SAMPLING_CHUNK_ELEMENTS // len(warm))
    drawn = []
    for start in range(0, world.n_users, rows_per_chunk):
        users = np.arange(start, min(start + rows_per_chunk, world.n_users))
        logits = user_factors[users] @ warm_factors
        drawn.append(warm[_gumbel_top_k(logits, counts[users], rng)])
    return np.concatenate(drawn)


def _timestamps(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strictly increasing integer timestamps per user (users laid out one after another)."""
    gaps = 1 + rng.exponential(MEAN_GAP_SECONDS, size=int(counts.sum())).astype(np.int64)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gaps[firsts] = BASE_TIMESTAMP + rng.integers(0, START_WINDOW_SECONDS, size=len(counts))
    running = np.cumsum(gaps)
    before_first = running[firsts] - gaps[firsts]
    return running - np.repeat(before_first, counts)


def _user_ids(n_users: int) -> np.ndarray:
    width = len(str(n_users - 1))
    return np.array([f"u{i:0{width}d}" for i in range(n_users)], dtype=object)


def _meta(world: SimulatedWorld, source: ItemCatalog, n_interactions: int) -> dict[str, Any]:
    profile = world.profile
    return {
        "simulated": True,
        "profile": profile.name,
        "seed": world.seed,
        "source": source.name,
        "source_items": len(source),
        "interactions": n_interactions,
        "model": {
            **profile.parameters(),
            "style": "2x2 average-pool, per-pixel standardise, Gaussian projection, unit norm",
            "style_seed": STYLE_SEED,
            "affinity_floor": AFFINITY_FLOOR,
            "logit": "affinity_weight*log(affinity[cat]) + taste.style "
                     "+ popularity_weight*log_popularity",
        },
    }


def sample_dataset(world: SimulatedWorld, source: ItemCatalog | None = None) -> Dataset:
    """Draw the interactions of ``world`` and return them with the cold items and the oracle."""
    rng = np.random.default_rng([world.seed, 1])
    counts = _interaction_counts(world.profile, rng)
    items = _sample_items(world, counts, rng)
    interactions = Interactions(
        user=np.repeat(np.arange(world.n_users), counts),
        item=items,
        timestamp=_timestamps(counts, rng),
        user_ids=_user_ids(world.n_users),
    )
    oracle = world.logits(np.arange(world.n_users), world.cold_items)
    return Dataset(
        catalog=world.catalog,
        interactions=interactions,
        split=None,
        cold_items=world.cold_items,
        oracle=oracle,
        meta=_meta(world, source if source is not None else world.catalog, len(interactions)),
    )


def simulate(
    catalog: ItemCatalog, profile: str | SimulationProfile = "quick", seed: int = 0
) -> Dataset:
    """Simulate users and their interactions on ``catalog`` (DESIGN.md section 3).

    Returns an unsplit :class:`Dataset` over the simulated items only (warm + cold, in catalog
    order, ids kept), with ``oracle`` = every user's true utility for every cold item and
    ``meta`` recording ``simulated``, ``profile``, ``seed``, ``source`` and the model parameters.
    The same catalog, profile and seed give identical arrays.
    """
    world = build_world(catalog, profile, seed)
    return sample_dataset(world, source=catalog)


def simulate_and_split(
    catalog: ItemCatalog,
    profile: str | SimulationProfile = "quick",
    seed: int = 0,
    *,
    mode: str = "latest",
    validation: bool = True,
    k_core: int = 5,
) -> Dataset:
    """:func:`simulate`, then a user k-core (5 by default) and a leave-one-out split."""
    return leave_one_out(
        simulate(catalog, profile, seed), mode=mode, seed=seed, validation=validation,
        k_core=k_core,
    )


__all__ = [
    "PROFILES",
    "STYLE_SEED",
    "SimulatedWorld",
    "SimulationProfile",
    "build_world",
    "look_appeal",
    "pixel_style_vectors",
    "resolve_profile",
    "sample_dataset",
    "simulate",
    "simulate_and_split",
]
