"""``fit``: one training or distillation run on Lightning, and the export of its best model.

The run's data module owns the loaders (:mod:`steelkd.engine.datamodule`); this module builds the networks
(the student, and for distillation the teacher loaded from its saved model and the distillation loss), the
Trainer with its checkpoint callbacks and loggers, and writes the model folder at the end.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import Logger

from steelkd.card import BEST_METRICS_KEY
from steelkd.config import Config, save_config
from steelkd.data import class_pixel_counts
from steelkd.engine.callbacks import reliability_callbacks
from steelkd.engine.csvlog import ResumableCSVLogger
from steelkd.engine.datamodule import SegDataModule
from steelkd.engine.distiller import DistillerModule, LiveTeacher
from steelkd.engine.logit_cache import CachedTeacher, open_or_build
from steelkd.engine.recipe import ClockReading, ElapsedTime, recipe_callbacks
from steelkd.engine.segmenter import SegmenterModule, build_model
from steelkd.io import atomic_write_text
from steelkd.losses import build_distill_loss, class_weights
from steelkd.models import load_model, make_card, save_model
from steelkd.models.weights import load_weights_only
from steelkd.runtime import autocast_dtype, cpu_has_bf16, resolve_device

log = logging.getLogger("steelkd.engine")


@dataclass
class TrainResult:
    """What a finished training or distillation run left behind."""

    out_dir: Path
    model_dir: Path
    best_ckpt: Path
    last_ckpt: Path
    metrics_csv: Path
    best_metrics: dict[str, Any] = field(default_factory=dict)
    #: Wall and CPU seconds of the whole run, every part of a resumed one included (``ElapsedTime``); CPU
    #: seconds None when a checkpoint from before they were counted was resumed.
    seconds: float = 0.0
    cpu_seconds: float | None = None


def resolve_class_weights(cfg: Config, train_ds: Any) -> list[float]:
    """Turn ``train.class_weights`` (a method name or a list) into one weight per class."""
    spec = cfg.train.class_weights
    if isinstance(spec, str) and spec != "none":
        counts = class_pixel_counts(train_ds)
        return [float(w) for w in class_weights(counts, method=spec)]
    return [float(w) for w in class_weights(np.ones(cfg.data.num_classes), method=spec)]


def _steps_per_epoch(cfg: Config, batches: int) -> int:
    """Optimizer steps per epoch and process (for the cosine schedule)."""
    limit = cfg.train.limit_train_batches
    if isinstance(limit, float) and limit <= 1.0:
        steps = max(1, math.ceil(batches * limit))
    else:
        steps = min(batches, int(limit))
    if isinstance(cfg.train.devices, int) and cfg.train.devices > 1:
        steps = max(1, steps // (cfg.train.devices * cfg.train.num_nodes))
    return steps


def resolve_epochs(cfg: Config, steps_per_epoch: int) -> int:
    """``train.epochs``, raised to ``ceil(train.min_steps / steps_per_epoch)`` when that is more.

    Example:
        >>> from steelkd.config import Config, TrainConfig
        >>> resolve_epochs(Config(train=TrainConfig(epochs=20, min_steps=5000)), 35)  # 275 images, batch 8
        143
        >>> resolve_epochs(Config(train=TrainConfig(epochs=20, min_steps=5000)), 300)
        20
    """
    t = cfg.train
    return max(t.epochs, math.ceil(t.min_steps / max(1, steps_per_epoch))) if t.min_steps else t.epochs


def resolve_precision(cfg: Config, model: torch.nn.Module, repeats: int = 3) -> str:
    """``train.precision`` as Lightning takes it; ``"auto"`` is chosen by measurement.

    ``auto`` on a GPU: ``bf16-mixed`` where the GPU supports it, else ``16-mixed``. On a CPU: ``32`` unless
    the CPU computes bf16 natively (AVX-512 BF16 / AMX) *and* a training step of this model on a batch of
    the training crop is measured faster under bf16 autocast (median of ``repeats`` each, on a copy of the
    model, with the random state restored: the run itself is not changed by the measurement). On an Intel
    Xeon without AMX bf16 autocast was measured 1.5x slower than fp32, on an AMD EPYC with AVX-512 BF16 2.6x
    faster: nothing is assumed.
    """
    if str(cfg.train.precision) != "auto":
        return str(cfg.train.precision)
    if train_device(cfg).type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if not cpu_has_bf16():
        return "32"
    h, w = (cfg.data.crop or [128, 128])[:2]
    with torch.random.fork_rng(devices=[]):
        net = copy.deepcopy(model).train()
        x = torch.randn(min(cfg.data.batch_size, 4), 3, int(h), int(w))
        times = {p: _step_seconds(net, x, p, repeats) for p in ("32", "bf16-mixed")}
    choice = "bf16-mixed" if times["bf16-mixed"] < times["32"] else "32"
    log.info("precision auto: %s (step fp32 %.3f s, bf16 %.3f s)", choice, times["32"], times["bf16-mixed"])
    return choice


def _step_seconds(net: torch.nn.Module, x: torch.Tensor, precision: str, repeats: int) -> float:
    """Median seconds of forward + backward of ``net`` on ``x`` under ``precision`` (one untimed first)."""
    dtype = autocast_dtype(precision)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = net(x).float().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_teacher(path: str | Path, class_names: list[str]) -> torch.nn.Module:
    """The trained teacher at ``path`` (a saved model), checked against the data's classes.

    Raises:
        ValueError: the teacher was trained on other classes.
    """
    teacher, card = load_model(path)
    if list(card["class_names"]) != list(class_names):
        raise ValueError(
            f"{path}: teacher classes {card['class_names']} differ from the data's {class_names}"
        )
    return teacher


def build_module(
    cfg: Config, steps_per_epoch: int, data: SegDataModule | None = None, model: torch.nn.Module | None = None
) -> SegmenterModule:
    """The LightningModule of ``cfg``: a segmenter, or a distiller when ``cfg.distill`` is set.

    The student (``model``, default built from ``cfg``) is built first and the teacher loaded after it, so
    the student's random initialisation depends only on the seed. With ``distill.logit_cache`` the teacher
    runs once over ``data``'s training images (:func:`steelkd.engine.logit_cache.open_or_build`), ``data``'s
    training set is wrapped to bring the cached logits with each batch, and the teacher network is dropped.

    Raises:
        ValueError: distillation without ``distill.teacher``, or a teacher of other classes; a logit cache
            without ``data``.
    """
    model = model if model is not None else build_model(cfg)
    if cfg.distill is None:
        return SegmenterModule(cfg.to_dict(), steps_per_epoch, model=model)
    if not cfg.distill.teacher:
        raise ValueError("distillation needs distill.teacher: the path of a trained teacher model")
    net = load_teacher(cfg.distill.teacher, cfg.data.class_names)
    loss = build_distill_loss(cfg.distill, model.decoder_channels, net.decoder_channels)
    if not cfg.distill.logit_cache:
        return DistillerModule(cfg.to_dict(), LiveTeacher(net), loss, steps_per_epoch, model=model)
    if data is None:
        raise ValueError("distill.logit_cache: build_module needs the run's data module")
    cache = open_or_build(
        net, data.train_ds, logit_cache_dir(cfg), device=train_device(cfg), precision=cfg.train.precision
    )
    data.use_teacher_cache(cache)
    return DistillerModule(cfg.to_dict(), CachedTeacher(), loss, steps_per_epoch, model=model)


def logit_cache_dir(cfg: Config) -> Path:
    """A run's teacher-logit cache folder: ``distill.logit_cache``; ``auto``: ``<out_dir>/teacher_logits``."""
    assert cfg.distill is not None
    where = cfg.distill.logit_cache
    return Path(cfg.train.out_dir) / "teacher_logits" if where == "auto" else Path(where)


def train_device(cfg: Config) -> torch.device:
    """The device a run trains on: CUDA when ``train.accelerator`` allows it (auto, gpu, cuda) and a GPU is
    there, else the CPU. Precision ``auto`` and the teacher-logit cache's one teacher pass follow it."""
    accel = cfg.train.accelerator
    return resolve_device("auto" if accel in ("auto", "gpu", "cuda") else "cpu")


def _loggers(out: Path) -> list[Logger]:
    """``logs/metrics.csv`` (kept across a resume: :mod:`steelkd.engine.csvlog`), TensorBoard if installed."""
    loggers: list[Logger] = [ResumableCSVLogger(save_dir=str(out), name="logs", version="")]
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
    callbacks = [ckpt, last, *reliability_callbacks(), *recipe_callbacks(cfg), *(callbacks or [])]
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
        A :class:`TrainResult` (its wall and CPU seconds: this call's plus the resumed checkpoint's
        counts); the best model (by validation mDice: the validation split carved from the training
        images, ``data.val_fraction``) is exported to ``<out_dir>/model``; the image ids of the
        train/val/test splits go to ``<out_dir>/data_split.json``. The test split is not touched: score
        the final model on it once (``steelkd evaluate --split test``; experiments do it for every run).

    Example:
        >>> from steelkd.config import load_config
        >>> result = fit(load_config("configs/teacher.yaml"))  # doctest: +SKIP
        >>> result.best_metrics["mdice"]  # doctest: +SKIP
    """
    started = ClockReading.now()
    cfg = copy.deepcopy(cfg)  # class weights are resolved below: the caller's config stays as given
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    out = Path(cfg.train.out_dir)
    data = SegDataModule(cfg)
    cfg.train.class_weights = resolve_class_weights(cfg, data.train_ds)
    student = build_model(cfg)
    cfg.train.precision = resolve_precision(cfg, student)
    steps_per_epoch = _steps_per_epoch(cfg, len(data.train_dataloader()))
    cfg.train.epochs = resolve_epochs(cfg, steps_per_epoch)
    module = build_module(cfg, steps_per_epoch, data, model=student)
    trainer, ckpt_cb = build_trainer(cfg, out, progress=progress, callbacks=callbacks)
    clock = next(c for c in trainer.callbacks if isinstance(c, ElapsedTime))
    clock.start(at=started)
    if trainer.is_global_zero:
        save_config(cfg, out / "config.yaml")
        atomic_write_text(out / "data_split.json", json.dumps(data.split_ids(), indent=1))
    ckpt_path = str(out / "checkpoints" / "last.ckpt") if resume == "last" else resume
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint to resume from not found")
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)

    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else out / "checkpoints" / "best.ckpt"
    last = out / "checkpoints" / "last.ckpt"
    model_dir = out / "model"
    best_metrics = dict(module.best_metrics)
    if trainer.is_global_zero:
        if best.is_file():
            state = load_weights_only(best)
            module.load_state_dict(state["state_dict"])
            best_metrics = dict(state.get(BEST_METRICS_KEY, best_metrics))
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
        seconds=clock.elapsed_s(),
        cpu_seconds=clock.cpu_s(),
    )
