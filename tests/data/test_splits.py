"""k-core filtering and leave-one-out splits on hand-built logs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from varsec.data.catalog import SPLIT_CODES, Dataset, Interactions, ItemCatalog
from varsec.data.splits import k_core, leave_one_out
from varsec.errors import ConfigError, DataError

TRAIN, VALIDATION, TEST = (SPLIT_CODES[p] for p in ("train", "validation", "test"))


def tiny_catalog(n_items: int) -> ItemCatalog:
    return ItemCatalog(
        item_ids=[f"i{i}" for i in range(n_items)],
        images=np.zeros((n_items, 1, 2, 2), dtype=np.uint8),
        categories=np.arange(n_items) % 2,
    )


def log(users, items, stamps=None) -> Interactions:
    users = np.asarray(users)
    stamps = np.arange(len(users)) if stamps is None else stamps
    return Interactions(users, items, stamps, [f"u{u}" for u in range(users.max() + 1)])


@pytest.fixture
def timed_dataset() -> Dataset:
    """u0: 4 rows, two tied at t=30; u1: 2 rows; u2: 3 rows; item 9 is cold."""
    interactions = log(
        users=[0, 1, 0, 2, 0, 1, 2, 0, 2],
        items=[1, 2, 2, 3, 3, 4, 5, 4, 6],
        stamps=[10, 5, 30, 7, 20, 6, 9, 30, 8],
    )
    oracle = np.array([[0.0], [10.0], [20.0]], dtype=np.float32)
    return Dataset(tiny_catalog(10), interactions, cold_items=np.array([9]), oracle=oracle,
                   meta={"simulated": True})


# -- leave-one-out, latest ----------------------------------------------------------------------
def test_latest_takes_the_last_timestamps(timed_dataset):
    split = leave_one_out(timed_dataset, mode="latest")
    # u0: t=30 twice -> the later row (index 7) is test, row 2 validation.
    # u1: only 2 rows -> all train. u2: t=9 test (row 6), t=8 validation (row 8).
    expected = [TRAIN, TRAIN, VALIDATION, TRAIN, TRAIN, TRAIN, TEST, TEST, VALIDATION]
    np.testing.assert_array_equal(split.split, expected)
    assert split.meta["split"]["counts"] == {"train": 5, "validation": 2, "test": 2}
    assert split.meta["simulated"] is True
    assert timed_dataset.split is None  # the input is not modified


def test_latest_without_validation(timed_dataset):
    split = leave_one_out(timed_dataset, mode="latest", validation=False)
    # u1's two rows now suffice: its later one (t=6, row 5) is test.
    expected = [TRAIN, TRAIN, TRAIN, TRAIN, TRAIN, TEST, TEST, TEST, TRAIN]
    np.testing.assert_array_equal(split.split, expected)


# -- leave-one-out, random ----------------------------------------------------------------------
@pytest.fixture
def wide_dataset() -> Dataset:
    """300 users with 10 interactions each, timestamps increasing, no cold items."""
    users = np.repeat(np.arange(300), 10)
    items = np.tile(np.arange(10), 300)
    return Dataset(tiny_catalog(10), log(users, items, np.arange(3000)))


def test_random_is_seeded(wide_dataset):
    first = leave_one_out(wide_dataset, mode="random", seed=5)
    again = leave_one_out(wide_dataset, mode="random", seed=5)
    other = leave_one_out(wide_dataset, mode="random", seed=6)
    np.testing.assert_array_equal(first.split, again.split)
    assert not np.array_equal(first.split, other.split)
    assert first.meta["split"]["seed"] == 5


def test_random_holds_out_one_each_anywhere_in_time(wide_dataset):
    split = leave_one_out(wide_dataset, mode="random", seed=0)
    codes = split.split.reshape(300, 10)
    assert ((codes == TEST).sum(axis=1) == 1).all()
    assert ((codes == VALIDATION).sum(axis=1) == 1).all()
    # Random picks the last row about 1 time in 10, not always as ``latest`` does.
    assert 0.03 < np.mean(codes[:, -1] == TEST) < 0.2
    latest = leave_one_out(wide_dataset, mode="latest").split.reshape(300, 10)
    assert (latest[:, -1] == TEST).all() and (latest[:, -2] == VALIDATION).all()


def test_unknown_mode(timed_dataset):
    with pytest.raises(ConfigError, match="unknown leave-one-out mode 'oldest'.*random, latest"):
        leave_one_out(timed_dataset, mode="oldest")


# -- k-core -------------------------------------------------------------------------------------
def two_sided_example() -> Interactions:
    """k=2 on users and items: round 1 drops u3 and items c, d; then u2 has only 'a' left and
    goes in round 2; u0 and u1 with items a and b remain."""
    a, b, c, d = 0, 1, 2, 3
    return log(users=[0, 0, 1, 1, 2, 2, 3], items=[a, b, a, b, a, c, d])


def test_k_core_iterates_on_both_sides():
    filtered, summary = k_core(two_sided_example(), 2, on=("user", "item"))
    np.testing.assert_array_equal(filtered.user, [0, 0, 1, 1])
    np.testing.assert_array_equal(filtered.item, [0, 1, 0, 1])
    assert list(filtered.user_ids) == ["u0", "u1"]
    assert summary.rounds == 2
    assert (summary.users_before, summary.users_after) == (4, 2)
    assert (summary.items_before, summary.items_after) == (4, 2)
    assert (summary.dropped_users, summary.dropped_items, summary.dropped_interactions) == (2, 2, 3)
    assert "dropped 2 users, 2 items and 3 interactions" in str(summary)


def test_k_core_on_users_only():
    filtered, summary = k_core(two_sided_example(), 2)
    assert list(filtered.user_ids) == ["u0", "u1", "u2"]
    assert summary.rounds == 1
    assert (summary.dropped_users, summary.dropped_interactions) == (1, 1)
    assert summary.dropped_items == 1  # item d had only u3
    np.testing.assert_array_equal(summary.kept_users, [0, 1, 2])


def test_k_core_reindexes_users():
    interactions = log(users=[0, 1, 1, 2, 2, 2], items=[0, 0, 1, 0, 1, 2])
    filtered, summary = k_core(interactions, 2)
    np.testing.assert_array_equal(filtered.user, [0, 0, 1, 1, 1])
    assert list(filtered.user_ids) == ["u1", "u2"]
    np.testing.assert_array_equal(summary.kept_users, [1, 2])


def test_k_one_keeps_everything():
    filtered, summary = k_core(two_sided_example(), 1, on=("user", "item"))
    assert len(filtered) == 7 and summary.rounds == 0 and summary.dropped_users == 0


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_core_rejects_bad_k(k):
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        k_core(two_sided_example(), k)


def test_k_core_rejects_unknown_side():
    with pytest.raises(ConfigError, match="'user' and/or 'item'"):
        k_core(two_sided_example(), 2, on=("users",))


def test_k_core_that_drops_everyone():
    with pytest.raises(DataError, match="removes every user.*most active user has 2"):
        k_core(two_sided_example(), 3)


# -- leave-one-out with k-core ------------------------------------------------------------------
def test_leave_one_out_with_k_core_reindexes_oracle(timed_dataset):
    split = leave_one_out(timed_dataset, mode="latest", k_core=3)
    assert list(split.interactions.user_ids) == ["u0", "u2"]
    np.testing.assert_array_equal(split.oracle, [[0.0], [20.0]])
    # Kept rows: u0 t10, u0 t30, u2 t7, u0 t20, u2 t9, u0 t30 (latest), u2 t8.
    expected = [TRAIN, VALIDATION, TRAIN, TRAIN, TEST, TEST, VALIDATION]
    np.testing.assert_array_equal(split.split, expected)
    recorded = split.meta["split"]["k_core"]
    assert recorded["k"] == 3
    assert (recorded["dropped_users"], recorded["dropped_interactions"]) == (1, 2)
    np.testing.assert_array_equal(split.cold_items, [9])
    assert not np.isin(split.interactions.item, split.cold_items).any()
