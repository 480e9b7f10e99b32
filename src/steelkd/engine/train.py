"""Trainer set-up: data loaders, callbacks, loggers, and the export of the best model."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader, Dataset, Sampler

from steelkd.checkpoint import make_card, save_model
from steelkd.config import Config, save_config
from steelkd.data import build_datasets, class_pixel_counts
from steelkd.engine.distiller import DistillerModule
from steelkd.engine.segmenter import SegmenterModule
from steelkd.io import atomic_write_text
from steelkd.losses import class_weights


@dataclass
class TrainResult:
    """What a finished training or distillation run left behind."""

    out_dir: Path
    model_dir: Path
    best_ckpt: Path
    last_ckpt: Path
    metrics_csv: Path
    best_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


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


class ShardSampler(Sampler[int]):
    """In-order evaluation sampler: process ``rank`` takes indices ``rank, rank + world, ...`` (no padding).

    Unlike Lightning's padded ``DistributedSampler`` no image is counted twice, so a metric summed over
    processes equals the single-process value exactly.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        rank, world = _rank_world()
        return iter(range(rank, self.n, world))

    def __len__(self) -> int:
        rank, world = _rank_world()
        return len(range(rank, self.n, world))


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


def resolve_class_weights(cfg: Config, train_ds: Any) -> list[float]:
    """Turn ``train.class_weights`` (a method name or a list) into one weight per class."""
    spec = cfg.train.class_weights
    if isinstance(spec, str) and spec != "none":
        counts = class_pixel_counts(train_ds)
        return [float(w) for w in class_weights(counts, method=spec)]
    return [float(w) for w in class_weights(np.ones(cfg.data.num_classes), method=spec)]


def _loaders(cfg: Config, train_ds: Any, val_ds: Any) -> tuple[DataLoader, DataLoader]:
    d = cfg.data
    workers = d.num_workers
    common: dict[str, Any] = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": False}
    train = DataLoader(
        EpochSeededDataset(train_ds, cfg.train.seed),
        batch_size=d.batch_size,
        sampler=EpochSeededSampler(len(train_ds), cfg.train.seed),
        drop_last=len(train_ds) > d.batch_size,
        **common,
    )
    val = DataLoader(val_ds, batch_size=d.batch_size, sampler=ShardSampler(len(val_ds)), **common)
    return train, val


def _loggers(out: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(out), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tb", version=""))
    except ImportError:
        pass
    return loggers


def build_trainer(
    cfg: Config, out: Path, *, progress: bool = True, callbacks: list[Any] | None = None
) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer configured from ``cfg.train`` (precision, devices, nodes, strategy...)."""
    t = cfg.train
    ckpt = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        filename="best",
        monitor="val/mdice",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    # last.ckpt after every training epoch, validated or not, so a stop never loses more than one epoch
    last = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        filename="last",
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    callbacks = [ckpt, last, *(callbacks or [])]
    if progress:
        try:
            callbacks.append(RichProgressBar())
        except ModuleNotFoundError:
            callbacks.append(TQDMProgressBar())
    trainer = L.Trainer(
        max_epochs=t.epochs,
        max_time={"minutes": t.max_minutes} if t.max_minutes > 0 else None,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        deterministic=t.deterministic,
        check_val_every_n_epoch=t.val_every,
        log_every_n_steps=t.log_every,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers shard themselves (see EpochSeededSampler, ShardSampler)
        logger=_loggers(out),
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    return trainer, ckpt


def fit(
    cfg: Config,
    *,
    progress: bool = True,
    resume: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train a segmenter, or distil a student when ``cfg.distill`` is set.

    Args:
        cfg: the whole run (data, model, train, optional distill).
        progress: show a progress bar with ETA.
        resume: a Lightning checkpoint to resume from, or ``"last"`` for ``<out_dir>/checkpoints/last.ckpt``.
        callbacks: extra Lightning callbacks.

    Returns:
        A :class:`TrainResult`; the best model (by validation mDice) is exported to ``<out_dir>/model``.

    Example:
        >>> from steelkd.config import load_config
        >>> result = fit(load_config("configs/teacher.yaml"))  # doctest: +SKIP
        >>> result.best_metrics["mdice"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    out = Path(cfg.train.out_dir)
    train_ds, val_ds = build_datasets(cfg.data)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"{cfg.data.root}: empty data set (train {len(train_ds)}, val {len(val_ds)} images)")
    cfg.train.class_weights = resolve_class_weights(cfg, train_ds)
    train_dl, val_dl = _loaders(cfg, train_ds, val_ds)
    steps = len(train_dl)
    if isinstance(cfg.train.limit_train_batches, float) and cfg.train.limit_train_batches <= 1.0:
        steps = max(1, math.ceil(steps * cfg.train.limit_train_batches))
    else:
        steps = min(steps, int(cfg.train.limit_train_batches))
    if isinstance(cfg.train.devices, int) and cfg.train.devices > 1:
        steps = max(1, steps // (cfg.train.devices * cfg.train.num_nodes))
    module_cls = DistillerModule if cfg.distill is not None else SegmenterModule
    module = module_cls(cfg.to_dict(), steps_per_epoch=steps)
    trainer, ckpt_cb = build_trainer(cfg, out, progress=progress, callbacks=callbacks)
    if trainer.is_global_zero:
        save_config(cfg, out / "config.yaml")
    ckpt_path = str(out / "checkpoints" / "last.ckpt") if resume == "last" else resume
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint to resume from not found")
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=ckpt_path)

    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else out / "checkpoints" / "best.ckpt"
    last = out / "checkpoints" / "last.ckpt"
    model_dir = out / "model"
    best_metrics = dict(module.best_metrics)
    if trainer.is_global_zero:
        if best.is_file():
            state = torch.load(best, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
            best_metrics = dict(state.get("steelkd_best_metrics", best_metrics))
        card = make_card(
            module.model,
            cfg.data.class_names,
            config=cfg.to_dict(),
            metrics=best_metrics,
            model_kwargs=cfg.model.kwargs,
        )
        save_model(module.model, model_dir, card)
        atomic_write_text(out / "best_metrics.json", json.dumps(best_metrics, indent=2))
    return TrainResult(
        out_dir=out,
        model_dir=model_dir,
        best_ckpt=best,
        last_ckpt=last,
        metrics_csv=out / "logs" / "metrics.csv",
        best_metrics=best_metrics,
        seconds=time.perf_counter() - start,
    )
