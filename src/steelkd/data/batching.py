"""Batches of equal-sized images: the one grouping rule for validation, evaluation and prediction.

Networks run at each image's native size, so only images of one size share a batch. The rule: a batch is a
run of consecutive images of equal size, at most ``batch_size`` long. Batches keep the input order (so
results stream out in order and nothing waits for a later image of its size); for a data set of one size
this is plain sequential batching, and data sets of mixed sizes batch best when stored by size.

Example:
    >>> equal_size_batches([(4, 4), (4, 4), (4, 4), (2, 2), (4, 4)], batch_size=2)
    [[0, 1], [2], [3], [4]]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from torch.utils.data import Sampler

__all__ = ["EqualSizeBatchSampler", "SizeBatcher", "dataset_sizes", "equal_size_batches"]

T = TypeVar("T")


class SizeBatcher(Generic[T]):
    """Streaming form of the rule: items arrive one by one with their size; full batches come out.

    Args:
        batch_size: the most items per batch (>= 1).

    Example:
        >>> b = SizeBatcher(2)
        >>> b.add((4, 4), "a"), b.add((4, 4), "b"), b.add((2, 2), "c"), b.add((4, 4), "d")
        (None, ['a', 'b'], None, ['c'])
        >>> list(b.drain())
        [['d']]
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._key: Hashable = None
        self._batch: list[T] = []

    def add(self, key: Hashable, item: T) -> list[T] | None:
        """Add ``item`` of size ``key``; returns the batch it completes or the one it ends (a new size)."""
        done: list[T] | None = None
        if self._batch and (key != self._key or len(self._batch) >= self.batch_size):
            done, self._batch = self._batch, []
        self._key = key
        self._batch.append(item)
        if done is None and len(self._batch) >= self.batch_size:
            done, self._batch = self._batch, []
        return done

    def drain(self) -> Iterator[list[T]]:
        """The last, partly filled batch (if any); empties the batcher."""
        if self._batch:
            batch, self._batch = self._batch, []
            yield batch


def equal_size_batches(sizes: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices ``0..len(sizes)-1`` cut into runs of equal size of at most ``batch_size``."""
    batcher: SizeBatcher[int] = SizeBatcher(batch_size)
    batches = [b for i, size in enumerate(sizes) if (b := batcher.add(size, i)) is not None]
    return batches + list(batcher.drain())


class EqualSizeBatchSampler(Sampler[list[int]]):
    """A DataLoader ``batch_sampler`` that never puts images of different sizes in one batch.

    Args:
        sizes: the size of every item of the dataset (e.g. ``dataset.image_size(i)``).
        batch_size: the most items per batch.
        indices: called at each iteration with ``len(sizes)``; returns the dataset indices to batch (e.g.
            this process's shard under DDP). Default: all of them.

    Example:
        >>> list(EqualSizeBatchSampler([(2, 2), (2, 2), (3, 3)], 4))
        [[0, 1], [2]]
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
    """``(height, width)`` of every item: from the file headers for a :class:`~steelkd.data.SegDataset`
    (``image_size(i)``), from the items' image tensors for any other ``(image, mask)`` dataset."""
    if callable(getattr(dataset, "image_size", None)):
        return [tuple(dataset.image_size(i)) for i in range(len(dataset))]  # type: ignore[misc]
    return [tuple(dataset[i][0].shape[-2:]) for i in range(len(dataset))]
