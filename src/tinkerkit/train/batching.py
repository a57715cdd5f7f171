"""Deterministic epoch shuffling and batching with a resumable cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Cursor:
    """Where a run is in its data: the next batch to train on."""

    epoch: int = 0
    batch: int = 0


def batches_per_epoch(n_items: int, batch_size: int) -> int:
    return max(1, -(-n_items // batch_size))


def epoch_order(n_items: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The item order of ``epoch``: a pure function of (seed, epoch), so resume replays it."""
    if not shuffle:
        return np.arange(n_items)
    return np.random.default_rng([seed, epoch]).permutation(n_items)


def iterate(
    items: Sequence[T],
    batch_size: int,
    epochs: int,
    seed: int,
    start: Cursor = Cursor(),
    shuffle: bool = True,
) -> Iterator[tuple[Cursor, list[T]]]:
    """``(cursor, batch)`` pairs from ``start`` to the end of the last epoch.

    Example:
        >>> [(c.epoch, c.batch, b) for c, b in iterate([1, 2, 3], 2, 1, seed=0, shuffle=False)]
        [(0, 0, [1, 2]), (0, 1, [3])]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per_epoch = batches_per_epoch(len(items), batch_size)
    for epoch in range(start.epoch, epochs):
        order = epoch_order(len(items), seed, epoch, shuffle)
        first = start.batch if epoch == start.epoch else 0
        for index in range(first, per_epoch):
            chosen = order[index * batch_size : (index + 1) * batch_size]
            yield Cursor(epoch, index), [items[i] for i in chosen]


def holdout(n_items: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices to keep and to hold out for evaluation: a fixed, seeded choice.

    Example:
        >>> holdout(10, 0.2, seed=0)[1]
        [3, 6]
    """
    if not fraction:
        return list(range(n_items)), []
    order = np.random.default_rng([seed, 10_007]).permutation(n_items)
    n_held = max(1, round(fraction * n_items))
    held = set(order[:n_held].tolist())
    return [i for i in range(n_items) if i not in held], sorted(held)
