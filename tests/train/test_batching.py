"""``train.batching``: seeded epoch orders, a cursor that resumes exactly where a run
stopped, the last partial batch, and the seeded hold-out split."""

from __future__ import annotations

import pytest

from tinkerkit.train.batching import Cursor, batches_per_epoch, epoch_order, holdout, iterate

ITEMS = list(range(10))


@pytest.mark.parametrize(
    ("n_items", "batch_size", "expected"),
    [(10, 3, 4), (9, 3, 3), (1, 8, 1), (0, 4, 1), (8, 1, 8)],
)
def test_batches_per_epoch_counts_the_last_partial_batch(n_items, batch_size, expected):
    assert batches_per_epoch(n_items, batch_size) == expected


def test_the_same_seed_gives_the_same_order_and_another_seed_another():
    first = list(iterate(ITEMS, 3, 3, seed=7))
    assert first == list(iterate(ITEMS, 3, 3, seed=7))
    assert [b for _, b in first] != [b for _, b in iterate(ITEMS, 3, 3, seed=8)]


def test_each_epoch_is_a_permutation_of_its_own():
    pairs = list(iterate(ITEMS, 3, 3, seed=0))
    by_epoch = {e: [x for c, b in pairs if c.epoch == e for x in b] for e in range(3)}
    for order in by_epoch.values():
        assert sorted(order) == ITEMS  # every item exactly once per epoch
    assert len({tuple(order) for order in by_epoch.values()}) == 3  # reshuffled each epoch
    assert list(epoch_order(10, 0, 1)) == by_epoch[1]  # a pure function of (seed, epoch)


def test_cursors_count_batches_within_epochs_and_the_last_batch_is_partial():
    pairs = list(iterate(ITEMS, 4, 2, seed=0))
    assert [c for c, _ in pairs] == [Cursor(e, b) for e in range(2) for b in range(3)]
    assert [len(b) for _, b in pairs] == [4, 4, 2, 4, 4, 2]


def test_without_shuffle_items_come_in_order():
    assert [b for _, b in iterate(ITEMS, 4, 1, seed=3, shuffle=False)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


@pytest.mark.parametrize("stop", range(0, 13))
def test_a_resumed_cursor_continues_exactly_the_same_order(stop):
    """Stopped after ``stop`` batches, a run resumed from the next cursor sees exactly
    the batches the uninterrupted run saw after them (across epoch boundaries too)."""
    whole = list(iterate(ITEMS, 3, 3, seed=11))
    assert len(whole) == 12
    done = whole[:stop]
    if stop == 0:
        start = Cursor()
    else:
        last = done[-1][0]
        start = Cursor(last.epoch, last.batch + 1)
        if start.batch == batches_per_epoch(len(ITEMS), 3):
            start = Cursor(last.epoch + 1, 0)
    assert done + list(iterate(ITEMS, 3, 3, seed=11, start=start)) == whole


def test_a_cursor_at_the_end_yields_nothing():
    assert list(iterate(ITEMS, 3, 2, seed=0, start=Cursor(2, 0))) == []
    assert list(iterate(ITEMS, 3, 2, seed=0, start=Cursor(1, 4))) == []


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(iterate(ITEMS, 0, 1, seed=0))


def test_holdout_is_seeded_disjoint_and_covers_every_item():
    keep, held = holdout(20, 0.25, seed=5)
    assert (keep, held) == holdout(20, 0.25, seed=5)
    assert len(held) == 5 and held == sorted(held)
    assert sorted(keep + held) == list(range(20)) and not set(keep) & set(held)
    assert holdout(20, 0.25, seed=6)[1] != held


def test_holdout_of_nothing_keeps_everything_and_a_tiny_fraction_holds_one():
    assert holdout(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    keep, held = holdout(5, 0.01, seed=0)
    assert len(held) == 1 and len(keep) == 4
