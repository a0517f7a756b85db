"""Stand-in stage implementations for the study tests: tiny, fast and deterministic.

Two families:

* ``fake_*``: no torch, no data; they sleep a little and return rows computed from their seed
  and config (kill-safety and Ray tests, which care about orchestration only);
* ``tiny_*``: real objects at toy size: a synthetic 28x28 catalog with simulated shoppers, an
  untrained fmnist-cnn extractor, and an attack that writes images in the attack stage's output
  format, so the real recommender and evaluation stages run end to end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time

import numpy as np
import pytest

from varsec.study.stages import override_stage

# The models most schema tests attack (six lines): an extractor, BPR-MF, VBPR on the extractor
# and their two-stage pipeline.
PIPELINE_MODELS = """extractors:
  cnn: {epochs: 1}
recommenders:
  bpr: {kind: bpr-mf}
  vbpr: {kind: vbpr, extractor: cnn}
  pipe: {kind: two-stage, first_stage: bpr, ranker: vbpr}
"""

# Seconds each fake stage sleeps (the kill tests raise it to have time to kill mid-grid).
FAKE_DELAY = float(os.environ.get("VARSEC_FAKE_DELAY", "0.02"))


def _number(*parts) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


def fake_stage(ctx, config, inputs):
    """Sleep, write a file, return two rows derived from the config and the input keys."""
    time.sleep(FAKE_DELAY)
    keys = sorted(o.key for o in inputs.values())
    (ctx.workdir / "payload.json").write_text(json.dumps({"inputs": keys}))
    ctx.info["inputs"] = keys
    if ctx.stage.kind not in ("evaluation", "attack"):
        return []
    value = _number(ctx.stage.kind, config, keys)
    return [{"metric": "HR", "k": 10, "protocol": "full", "value": value, "n": 100},
            {"metric": "MRR", "protocol": "full", "value": value / 2, "n": 100}]


@contextlib.contextmanager
def fake_stages(kinds=("data", "extractor", "recommender", "attack", "defense", "evaluation")):
    """Every stage kind replaced by :func:`fake_stage`."""
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            stack.enter_context(override_stage(kind, fake_stage))
        yield


FAKE_STUDY = """
study: fake
extractors:
  a: {epochs: 1}
  b: {epochs: 2}
recommenders:
  r1: {kind: bpr-mf}
  r2: {kind: vbpr, extractor: a}
  r3: {kind: vbpr, extractor: b}
attacks:
  p: {kind: pgd, extractor: [a, b], source_category: Sandal, target_category: Sneaker,
      eps: [4, 8]}
evaluation: {bootstrap: 0}
"""


# -- tiny real stages -----------------------------------------------------------------------------
def tiny_catalog(n_items: int = 320, seed: int = 0):
    """A synthetic 1 x 28 x 28 catalog of 4 categories whose pixels carry the category."""
    from varsec.data.catalog import ItemCatalog

    rng = np.random.default_rng(seed)
    categories = np.arange(n_items) % 4
    base = rng.integers(0, 60, size=(n_items, 1, 28, 28))
    for c in range(4):
        rows = categories == c
        base[rows, :, c * 7:(c + 1) * 7, :] += 150
    base += rng.integers(0, 40, size=base.shape)
    return ItemCatalog(item_ids=[f"i{i}" for i in range(n_items)],
                       images=np.clip(base, 0, 255).astype(np.uint8), categories=categories,
                       category_names=["Top", "Sandal", "Sneaker", "Bag"], name="tiny")


def tiny_data(ctx, config, inputs):
    from varsec.data.simulate import SimulationProfile, simulate_and_split
    from varsec.study.builtin.data import dataset_info

    profile = SimulationProfile("tiny", n_users=80, n_warm_items=240, n_cold_items=40,
                                mean_interactions=9.0)
    dataset = simulate_and_split(tiny_catalog(), profile, config["seed"],
                                 mode=config["split"], validation=config["validation"])
    dataset.save(ctx.workdir / "dataset")
    ctx.info.update(dataset_info(dataset))
    return []


def tiny_extractor(ctx, config, inputs):
    """An untrained 4-class fmnist-cnn (seeded by the stage's seed), or, for an extractor with
    ``training: none``, the real stage (public weights opened offline, features of the tiny
    catalog)."""
    import torch

    if config["training"] == "none":
        from varsec.study.builtin.vision import extractor_stage

        return extractor_stage(ctx, config, inputs)

    from varsec.study.builtin.common import load_dataset
    from varsec.vision.checkpoint import save_checkpoint
    from varsec.vision.features import compute_features
    from varsec.vision.registry import create_backbone

    dataset = load_dataset(inputs["data"])
    torch.manual_seed(config["seed"])
    backbone = create_backbone("fmnist-cnn", in_channels=1, num_classes=4, widths=[4, 8],
                               blocks=[1, 1]).eval()
    save_checkpoint(ctx.workdir / "extractor.pt", backbone)
    layer = backbone.check_layer(None)
    np.save(ctx.workdir / "features.npy", compute_features(backbone, dataset.catalog,
                                                           layer=layer))
    ctx.info.update(layer=layer, backbone=backbone.name)
    return [{"metric": "accuracy", "protocol": "classifier-test", "value": 0.25, "n": 10}]


def tiny_attack(ctx, config, inputs):
    """Writes the attack output contract: promotion copies the hook (most popular) item's image
    into the cold items, category / pairs add a bounded perturbation."""
    from varsec.study.builtin.common import load_dataset, sample_cold_items

    dataset = load_dataset(inputs["data"])
    images = np.asarray(dataset.catalog.images)
    rng = np.random.default_rng(config["seed"])
    family = config["family"]
    if family == "promotion":
        items = sample_cold_items(dataset, config["n_items"], config["seed"])
        train = dataset.part("train")
        hook = int(np.bincount(train.item, minlength=dataset.n_items).argmax())
        strength = 1.0 if config["kind"] == "insa" else 0.3
        adversarial = ((1 - strength) * images[items] + strength * images[hook]).round()
    elif family == "item2item":
        items = rng.choice(dataset.n_items, 12, replace=False)
        targets = rng.choice(dataset.n_items, 12, replace=False)
        np.save(ctx.workdir / "pairs.npy", np.stack([items, targets], 1))
        adversarial = images[targets].astype(float)
    else:
        code = dataset.catalog.category_code(config["source_category"] or 1)
        items = np.flatnonzero(dataset.catalog.categories == code)
        noise = rng.integers(-int(config["eps"] or 8), int(config["eps"] or 8) + 1,
                             images[items].shape)
        adversarial = images[items].astype(float) + noise
    np.save(ctx.workdir / "items.npy", np.asarray(items, dtype=np.int64))
    adversarial = np.clip(adversarial, 0, 255).astype(np.uint8)
    np.save(ctx.workdir / "adversarial.npy", adversarial)
    from varsec.study.builtin.attacks import _save_examples

    _save_examples(ctx, items, images[items], adversarial, 2)
    return [{"metric": "success_rate", "protocol": "attack", "value": 0.5, "n": len(items)}]


@contextlib.contextmanager
def tiny_stages():
    """Data, extractor and attack stand-ins; the real recommender and evaluation stages."""
    with override_stage("data", tiny_data), override_stage("extractor", tiny_extractor), \
            override_stage("attack", tiny_attack):
        yield


def tiny_recommenders(epochs: int, suffix: str = "", observed: float | None = None) -> str:
    """The lines of a ``recommenders:`` section: a small BPR-MF, a VBPR on ``cnn`` and their
    two-stage pipeline (top 20), trained ``epochs`` epochs without early stopping, named
    ``bpr<suffix>``, ``vbpr<suffix>``, ``pipe<suffix>``; ``observed``: fitted on that share of
    the users (a transfer attacker's surrogate)."""
    seen = "" if observed is None else f", observed_users: {observed}"
    fit = f"epochs: {epochs}, early_stopping: false"
    return (f"  bpr{suffix}: {{kind: bpr-mf{seen}, params: {{factors: 8, {fit}}}}}\n"
            f"  vbpr{suffix}: {{kind: vbpr, extractor: cnn{seen},\n"
            f"    params: {{factors: 8, visual_factors: 8, {fit}}}}}\n"
            f"  pipe{suffix}: {{kind: two-stage, first_stage: bpr{suffix}, ranker: vbpr{suffix}, "
            "k: 20}\n")


# one thread, as tests/conftest.py: the tests that rerun a stage's code get the same sums
_TINY_EXTRACTOR = "threads: 1\nextractors:\n  cnn: {epochs: 1}\nrecommenders:\n"
TINY_STUDY = "\nstudy: tiny\n" + _TINY_EXTRACTOR + tiny_recommenders(3).replace(
    "  pipe:", "  knn: {kind: knn, extractor: cnn, params: {neighbours: 5}}\n  pipe:") + """\
attacks:
  insa: {kind: insa, recommender: pipe, eps: [32]}
  expa: {kind: expa, recommender: pipe, eps: [32]}
  pgd: {kind: pgd, extractor: cnn, source_category: Sandal, target_category: Sneaker, eps: [8]}
  i2i: {kind: pgd, items: pairs, extractor: cnn, eps: [8]}
evaluation:
  protocols: [{kind: full}, {kind: sampled, negatives: 20}]
  cold_items: 20
  bootstrap: 50
  rank_min: [1, 3]
"""


@contextlib.contextmanager
def tiny_data_stages():
    """Data and extractor stand-ins only: the real attack, defense, recommender and evaluation
    stages run on the tiny catalog."""
    with override_stage("data", tiny_data), override_stage("extractor", tiny_extractor):
        yield


# The tiny extractor has 3 stages (0-2): the perceptual loss compares stages 1 and 2.
TINY_RECON = ("width: 4, blocks: 1, heads: 1, max_tokens: 49, recon_epochs: 1, mix_epochs: 0, "
              "detector_epochs: 1, max_items: 64, batch_size: 16, perceptual_stages: [1, 2], "
              "detection_eps: [16, 32]")
# The models of the tiny real studies (a study's name and attacks go around them).
TINY_MODELS = _TINY_EXTRACTOR + tiny_recommenders(2)
# A transfer attacker's surrogate of TINY_MODELS' pipeline: fitted on 30% of the users.
TINY_SURROGATE = tiny_recommenders(2, "-sur", 0.3)
TINY_DEFENSE_STUDY = """
study: tiny-defense
""" + TINY_MODELS + """attacks:
  fgsm: {kind: fgsm, objective: bpr, recommender: vbpr, eps: [16]}
  insa: {kind: insa, recommender: pipe, eps: [32], steps: 2}
defenses:
  jpeg: {kind: jpeg, strengths: [50], attacks: [insa], adaptive: true}
  recon: {kind: reconstruction, attacks: [fgsm], adaptive: true, params: {<recon>}}
  recon-rand: {kind: reconstruction, attacks: [fgsm], clean: false,
               params: {<recon>, random_resize_pad: 0.8}}
evaluation:
  protocols: [{kind: full}, {kind: sampled, negatives: 20}]
  cold_items: 20
  bootstrap: 0
""".replace("<recon>", TINY_RECON)


# The evaluation of every tiny real study: sampled ranking over 8 cold items, no bootstrap.
TINY_EVALUATION = """evaluation:
  protocols: [{kind: sampled, negatives: 20}]
  cold_items: 8
  bootstrap: 0
"""


def tiny_real_study(name: str, attacks: str, *, models: str = TINY_MODELS,
                    defenses: str = "") -> str:
    """The text of a tiny real study ``name``: ``models``, the lines of its ``attacks:`` and
    ``defenses:`` sections (none by default) and :data:`TINY_EVALUATION`."""
    text = f"\nstudy: {name}\n{models}attacks:\n{attacks}"
    return text + (f"defenses:\n{defenses}" if defenses else "") + TINY_EVALUATION


def tiny_run_fixture(text: str, name: str):
    """A module-scoped fixture ``name``: the study ``text`` run once by
    :func:`run_tiny_real_study` in a fresh directory."""

    @pytest.fixture(scope="module", name=name)
    def run(tmp_path_factory):
        return run_tiny_real_study(text, tmp_path_factory.mktemp(name))

    return run


def run_tiny_real_study(text: str, out):
    """Run a study of real stages on the stand-in data and extractor, on one torch thread
    (restored afterwards); returns the run's result."""
    import torch

    from varsec.study.runner import run_study
    from varsec.study.schema import load_study_text

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tiny_data_stages():
            return run_study(load_study_text(text), out, log=None)
    finally:
        torch.set_num_threads(before)


def dry_run_error(tmp_path, capsys, text: str) -> str:
    """The one line ``varsec run --dry-run`` prints for the study ``text`` (exit status 2,
    nothing written)."""
    from varsec.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = [t for t in captured.err.splitlines() if t.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert not (tmp_path / "out").exists()
    return lines[0]
