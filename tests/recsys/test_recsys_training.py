"""The pairwise training loop: negative sampling, early stopping, logs, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recsys_helpers import FAST, planted_dataset

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError
from varsec.recsys import BPRMF, VBPR, NegativeSampler


@pytest.mark.parametrize("seed", range(5))
def test_negative_sampler_never_returns_a_training_positive(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 30
    density = rng.uniform(0.1, 0.9, size=n_users)  # some users have seen 90% of the items
    positive = rng.random((n_users, n_items)) < density[:, None]
    positive[:, 0] = False  # everyone has at least one negative
    users, items = (torch.as_tensor(a) for a in np.nonzero(positive))
    sampler = NegativeSampler(users, items, n_items, max_rounds=int(rng.integers(1, 8)))
    queries = torch.as_tensor(rng.integers(0, n_users, size=5000))
    negatives = sampler.sample(queries, torch.Generator().manual_seed(seed))
    assert not positive[queries.numpy(), negatives.numpy()].any()
    assert negatives.min() >= 0 and negatives.max() < n_items


def test_negative_sampler_is_uniform_over_the_pool_minus_positives():
    users = torch.zeros(2, dtype=torch.long)
    items = torch.tensor([1, 4])
    pool = torch.tensor([0, 1, 2, 3, 4, 5])
    sampler = NegativeSampler(users, items, 8, pool=pool)
    draws = sampler.sample(torch.zeros(40_000, dtype=torch.long), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=8).double() / len(draws)
    expected = torch.tensor([0.25, 0, 0.25, 0.25, 0, 0.25, 0, 0], dtype=torch.double)
    torch.testing.assert_close(counts, expected, atol=0.01, rtol=0)


def test_negative_sampler_rejects_a_user_who_has_seen_the_whole_pool():
    users = torch.tensor([0, 0, 1])
    items = torch.tensor([0, 1, 0])
    with pytest.raises(DataError, match="user 0 has interacted with all 2 items"):
        NegativeSampler(users, items, 3, pool=torch.tensor([0, 1]))


def test_training_log_and_best_epoch(planted):
    model = BPRMF(factors=8, **FAST).fit(planted)
    log = model.training_log
    assert [entry["epoch"] for entry in log] == list(range(1, len(log) + 1))
    assert set(log[0]) == {"epoch", "loss", "val_hr@10", "seconds"}
    assert log[-1]["loss"] < log[0]["loss"]
    best = max(log, key=lambda entry: entry["val_hr@10"])
    assert model.best_epoch == best["epoch"]
    assert len(log) == min(FAST["epochs"], model.best_epoch + FAST["patience"])


def test_best_epoch_parameters_are_restored(planted):
    from recsys_helpers import hit_rate_at_10

    model = BPRMF(factors=8, **FAST).fit(planted)
    best = max(entry["val_hr@10"] for entry in model.training_log)
    assert hit_rate_at_10(model, planted, part="validation") == pytest.approx(best)


def test_no_validation_items_with_early_stopping_is_a_config_error(planted):
    no_validation = Dataset(planted.catalog, planted.interactions,
                            split=np.where(planted.split == 1, 0, planted.split),
                            cold_items=planted.cold_items)
    with pytest.raises(ConfigError, match="early stopping needs validation interactions, but "
                                          "the dataset has none"):
        BPRMF(factors=4, epochs=2).fit(no_validation)
    model = BPRMF(factors=4, epochs=2, early_stopping=False).fit(no_validation)
    assert [entry["val_hr@10"] for entry in model.training_log] == [None, None]


def test_unsplit_dataset_is_a_data_error(planted):
    unsplit = Dataset(planted.catalog, planted.interactions, cold_items=planted.cold_items)
    with pytest.raises(DataError, match="this dataset has no split"):
        BPRMF().fit(unsplit)


def test_same_seed_same_model_other_seed_other_model(planted):
    def scores(seed, optimizer="adam"):
        model = BPRMF(factors=4, epochs=3, early_stopping=False, seed=seed, optimizer=optimizer)
        return model.fit(planted).score([0, 1, 2])

    torch.testing.assert_close(scores(1), scores(1), rtol=0, atol=0)
    assert not torch.equal(scores(1), scores(2))
    torch.testing.assert_close(scores(1, "sgd"), scores(1, "sgd"), rtol=0, atol=0)


def test_sgd_and_visual_weight_decay_train(planted):
    model = VBPR(factors=4, visual_factors=4, optimizer="sgd", lr=0.05, reg_visual=1e-3,
                 epochs=5, early_stopping=False).fit(planted)
    assert model.training_log[-1]["loss"] < model.training_log[0]["loss"]


def test_cold_items_keep_zero_item_parameters(planted):
    model = VBPR(factors=4, visual_factors=4, epochs=3, early_stopping=False).fit(planted)
    cold = torch.as_tensor(planted.cold_items)
    assert torch.all(model.item_gamma.weight[cold] == 0)
    assert torch.all(model.item_bias.weight[cold] == 0)
    bpr = BPRMF(factors=4, epochs=3, early_stopping=False).fit(planted)
    assert torch.all(bpr.score([0, 1], cold) == 0)


def test_validation_subsample_limits_users():
    dataset = planted_dataset(seed=2)
    model = BPRMF(factors=4, epochs=2, val_max_users=10).fit(dataset)
    assert all(entry["val_hr@10"] * 10 == pytest.approx(round(entry["val_hr@10"] * 10))
               for entry in model.training_log)


def test_refitting_rebuilds_the_model_for_the_new_dataset(planted):
    other = planted_dataset(seed=3, n_users=30, n_warm=50, n_cold=10)
    model = VBPR(factors=4, visual_factors=4, epochs=2, early_stopping=False).fit(planted)
    model.fit(other)
    assert model.score([0]).shape == (1, 60)
    assert model.dataset_hash == other.content_hash()


# -- the optimizer and VBPR's closed-form step ---------------------------------------------------
def _twin_parameters(seed: int):
    generator = torch.Generator().manual_seed(seed)
    table = torch.nn.Embedding(12, 3, sparse=True)
    dense = torch.nn.Linear(3, 2)
    with torch.no_grad():
        table.weight.normal_(0, 1, generator=generator)
        dense.weight.normal_(0, 1, generator=generator)
        dense.bias.normal_(0, 1, generator=generator)
    return table, dense


@pytest.mark.parametrize(("kind", "decay"), [("adam", 0.0), ("adam", 0.3), ("sgd", 0.3)])
def test_pairwise_optimizer_applies_torchs_update_rules(kind, decay):
    from varsec.recsys.training import PairwiseOptimizer

    ours_table, ours_dense = _twin_parameters(0)
    ref_table, ref_dense = _twin_parameters(0)
    ours = PairwiseOptimizer([ours_table.weight], list(ours_dense.parameters()), kind, 0.05, decay)
    if kind == "adam":
        reference = [torch.optim.SparseAdam([ref_table.weight], lr=0.05),
                     torch.optim.Adam(ref_dense.parameters(), lr=0.05, weight_decay=decay)]
    else:
        reference = [torch.optim.SGD([ref_table.weight], lr=0.05),
                     torch.optim.SGD(ref_dense.parameters(), lr=0.05, weight_decay=decay)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(6):
        rows = torch.randint(0, 12, (9,), generator=generator)  # repeated rows are summed
        target = torch.randn(9, 2, generator=generator)
        for table, dense, step in ((ours_table, ours_dense, [ours]),
                                   (ref_table, ref_dense, reference)):
            loss = (dense(table(rows)) - target).pow(3).mean()
            for optimizer in step:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in step:
                optimizer.step()
    torch.testing.assert_close(ours_table.weight, ref_table.weight, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(ours_dense.parameters(), ref_dense.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [{}, {"shared_factors": True}, {"optimizer": "sgd", "reg_visual": 0.01, "lr": 0.05},
     {"reg_visual": 0.01}],
)
def test_vbpr_closed_form_step_equals_the_autograd_step(planted, options):
    import copy

    from varsec.recsys import PairwiseRecommender
    from varsec.recsys.training import PairwiseOptimizer

    settings = {"factors": 4, "visual_factors": 3, "epochs": 2, "early_stopping": False,
                "reg": 0.01} | options
    trained = VBPR(**settings).fit(planted)  # a trained state, not the initialisation
    closed, auto = copy.deepcopy(trained), copy.deepcopy(trained)
    closed_optimizer = PairwiseOptimizer.for_model(closed)
    auto_optimizer = PairwiseOptimizer.for_model(auto)
    train = planted.part("train")
    generator = torch.Generator().manual_seed(0)
    warm = torch.as_tensor(planted.warm_items())
    for _ in range(3):
        pick = torch.randint(0, len(train), (50,), generator=generator)  # with repeated rows
        users, pos = torch.as_tensor(train.user)[pick], torch.as_tensor(train.item)[pick]
        neg = warm[torch.randint(0, len(warm), (50,), generator=generator)]
        loss_closed = closed.train_step(users, pos, neg, closed_optimizer)
        loss_auto = PairwiseRecommender.train_step(auto, users, pos, neg, auto_optimizer)
        assert float(loss_closed) == pytest.approx(float(loss_auto), rel=1e-5)
    for name, value in auto.state_dict().items():
        torch.testing.assert_close(closed.state_dict()[name], value, rtol=1e-4, atol=1e-6,
                                   msg=name)
    moved = [name for name, value in auto.state_dict().items()
             if not torch.equal(value, trained.state_dict()[name])]
    assert {"user_gamma.weight", "item_gamma.weight", "embedding.weight"} <= set(moved)


def test_amr_trains_by_autograd_on_its_own_objective(planted):
    from varsec.recsys import AMR
    from varsec.recsys.training import PairwiseOptimizer

    model = AMR(factors=4, visual_factors=4, epochs=1, early_stopping=False).fit(planted)
    train = planted.part("train")
    users, pos = torch.as_tensor(train.user[:20]), torch.as_tensor(train.item[:20])
    neg = torch.as_tensor(planted.warm_items()[:20])
    expected = float(model.triplet_loss(users, pos, neg).detach())  # with the adversarial term
    plain = float((model.bpr_loss(users, pos, neg) + model.penalty(users, pos, neg)).detach())
    loss = model.train_step(users, pos, neg, PairwiseOptimizer.for_model(model))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert expected > plain
