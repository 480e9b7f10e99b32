"""Batches of equal-sized images: the one grouping rule for validation, evaluation and prediction.

Networks run at each image's native size, so only images of one size share a batch. Images are grouped by
size (groups in the order their size first appears, input order inside a group) and each group is cut into
batches of at most ``batch_size``. For a data set of one size this is plain sequential batching.

Example:
    >>> equal_size_batches([(4, 4), (2, 2), (4, 4), (4, 4)], batch_size=2)
    [[0, 2], [3], [1]]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from torch.utils.data import Sampler

__all__ = ["EqualSizeBatchSampler", "SizeBatcher", "dataset_sizes", "equal_size_batches"]

T = TypeVar("T")


class SizeBatcher(Generic[T]):
    """Streaming form of the grouping rule: items arrive one by one with their size.

    Args:
        batch_size: the most items per batch (>= 1).

    Example:
        >>> b = SizeBatcher(2)
        >>> b.add((4, 4), "a"), b.add((2, 2), "b"), b.add((4, 4), "c")
        (None, None, ['a', 'c'])
        >>> list(b.drain())
        [['b']]
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._pending: dict[Hashable, list[T]] = {}

    def add(self, key: Hashable, item: T) -> list[T] | None:
        """Add ``item`` of size ``key``; returns its group as a batch when that batch is full."""
        group = self._pending.setdefault(key, [])
        group.append(item)
        if len(group) >= self.batch_size:
            del self._pending[key]
            return group
        return None

    def drain(self) -> Iterator[list[T]]:
        """The partly filled batches left, in the order their size first appeared; empties the batcher."""
        while self._pending:
            key = next(iter(self._pending))
            yield self._pending.pop(key)


def equal_size_batches(sizes: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices ``0..len(sizes)-1`` in batches of equal size (see the module docstring for the order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    groups: dict[Hashable, list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    return [g[j : j + batch_size] for g in groups.values() for j in range(0, len(g), batch_size)]


class EqualSizeBatchSampler(Sampler[list[int]]):
    """A DataLoader ``batch_sampler`` that never puts images of different sizes in one batch.

    Args:
        sizes: the size of every item of the dataset (e.g. ``dataset.image_size(i)``).
        batch_size: the most items per batch.
        indices: called at each iteration with ``len(sizes)``; returns the dataset indices to batch (e.g.
            this process's shard under DDP). Default: all of them.

    Example:
        >>> list(EqualSizeBatchSampler([(2, 2), (3, 3), (2, 2)], 4))
        [[0, 2], [1]]
    """

    def __init__(
        self,
        sizes: Sequence[Hashable],
        batch_size: int,
        indices: Callable[[int], Sequence[int]] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.sizes = list(sizes)
        self.batch_size = batch_size
        self.indices = indices

    def _batches(self) -> list[list[int]]:
        n = len(self.sizes)
        idx = list(self.indices(n)) if self.indices is not None else list(range(n))
        local = equal_size_batches([self.sizes[i] for i in idx], self.batch_size)
        return [[idx[k] for k in batch] for batch in local]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def dataset_sizes(dataset: Any) -> list[tuple[int, int]]:
    """``(height, width)`` of every item of a :class:`~steelkd.data.dataset.SegDataset` (file headers)."""
    return [dataset.image_size(i) for i in range(len(dataset))]
