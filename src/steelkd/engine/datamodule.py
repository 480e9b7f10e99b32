"""The LightningDataModule of a run: it owns the training and validation loaders.

Training batches come from :class:`EpochSeededSampler` over :class:`EpochSeededDataset` (order and
augmentation depend only on ``(seed, epoch, index)``, so a resumed run sees exactly the batches of an
uninterrupted one). Validation batches come from :class:`steelkd.data.EqualSizeBatchSampler`: only images
of one size share a batch (data sets whose images differ in size validate as they evaluate), and under DDP
process ``rank`` takes images ``rank, rank + world, ...`` without padding, so a metric summed over processes
equals the single-process value exactly. At set-up every validation image is decoded cheaply and every
mask read and checked against its image's size (:func:`steelkd.data.check_items`), so a bad validation
file stops the run before the first epoch with one line naming it, not after it.

Example:
    >>> dm = SegDataModule(cfg)  # doctest: +SKIP
    >>> trainer.fit(module, datamodule=dm)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from steelkd.config import Config
from steelkd.data import EqualSizeBatchSampler, SegDataset, build_datasets
from steelkd.data.dataset import check_items
from steelkd.engine.logit_cache import CachedTeacherDataset, LogitCache

__all__ = ["EpochSeededDataset", "EpochSeededSampler", "SegDataModule"]


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSeededSampler(Sampler[int]):
    """A shuffling sampler whose order depends only on ``(seed, epoch)``, sharded across DDP processes.

    It yields ``epoch * n + i`` so that :class:`EpochSeededDataset` can seed each sample's augmentation
    from ``(seed, epoch, i)``. Lightning calls ``set_epoch`` before every epoch, so a run resumed from a
    checkpoint sees exactly the batches and augmentations the uninterrupted run would have seen (the
    global RNG is not part of a checkpoint), whatever the number of workers. Under DDP each process takes
    every ``world``-th index of the same permutation (padded so all processes run the same step count).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rank, world = _rank_world()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = (torch.randperm(self.n, generator=g) + self.epoch * self.n).tolist()
        per_rank = math.ceil(self.n / world)
        perm += perm[: per_rank * world - self.n]
        return iter(perm[rank::world])

    def __len__(self) -> int:
        return math.ceil(self.n / _rank_world()[1])


class EpochSeededDataset(Dataset):
    """Wrap a training set: item ``epoch * n + i`` is sample ``i``, augmented with RNG ``(seed, epoch, i)``.

    The wrapped dataset's albumentations pipeline (attribute ``transform``) gets fresh generators per
    item through ``set_random_state``; datasets without one are returned as they are.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> Any:
        epoch, i = divmod(int(k), self.n)
        transform = getattr(self.dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            ss = np.random.SeedSequence([self.seed, epoch, i])
            transform.set_random_state(np.random.default_rng(ss), random.Random(int(ss.generate_state(1)[0])))
        return self.dataset[i]


def _shard(n: int) -> range:
    rank, world = _rank_world()
    return range(rank, n, world)


class SegDataModule(L.LightningDataModule):
    """Datasets and loaders of one run, from ``cfg.data`` (and ``cfg.train.seed``).

    The datasets are built on construction (so the caller can derive class weights and steps per epoch)
    and the validation items checked (:func:`steelkd.data.check_items`); :meth:`train_dataloader` and
    :meth:`val_dataloader` build fresh loaders. The validation split is carved from the training images
    (``data.val_fraction``); the test split (``test_ds``) is held for the one final score.
    ``cfg.data.class_names`` is set to the datasets' names
    (a folder data set's ``classes.yaml`` fills a config that left them at the default), so the model
    built from ``cfg`` afterwards has the data's classes; :func:`steelkd.engine.fit` passes its own copy.

    Args:
        cfg: the run config.

    Raises:
        ValueError / FileNotFoundError: an empty training or validation set, naming the data root; a
            validation image or mask that cannot be read or whose sizes disagree, naming the file.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_ds: SegDataset
        self.val_ds: SegDataset
        self.test_ds: SegDataset  # not used in training: scored once by the caller on the final model
        self.train_ds, self.val_ds, self.test_ds = build_datasets(cfg.data)
        if len(self.train_ds) == 0 or len(self.val_ds) == 0:
            raise ValueError(
                f"{cfg.data.root}: empty data set (train {len(self.train_ds)}, val {len(self.val_ds)} images)"
            )
        cfg.data.class_names = list(self.train_ds.class_names)
        self.val_sizes = check_items(self.val_ds)

    def split_ids(self) -> dict[str, list[str]]:
        """The image ids of the three splits (written into each run folder as ``data_split.json``)."""
        train = getattr(self.train_ds, "dataset", self.train_ds)  # under the teacher-logit cache's wrapper
        return {"train": list(train.ids), "val": list(self.val_ds.ids), "test": list(self.test_ds.ids)}

    def use_teacher_cache(self, cache: LogitCache) -> None:
        """Bring the cached teacher logits with every training item (``distill.logit_cache``)."""
        self.train_ds = CachedTeacherDataset(self.train_ds, cache)  # type: ignore[assignment]

    def _common(self) -> dict[str, Any]:
        workers = self.cfg.data.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": False}

    def train_dataloader(self) -> DataLoader:
        d, seed, n = self.cfg.data, self.cfg.train.seed, len(self.train_ds)
        return DataLoader(
            EpochSeededDataset(self.train_ds, seed),
            batch_size=d.batch_size,
            sampler=EpochSeededSampler(n, seed),
            drop_last=n > d.batch_size,
            **self._common(),
        )

    def val_dataloader(self) -> DataLoader:
        sampler = EqualSizeBatchSampler(self.val_sizes, self.cfg.data.batch_size, indices=_shard)
        return DataLoader(self.val_ds, batch_sampler=sampler, **self._common())
