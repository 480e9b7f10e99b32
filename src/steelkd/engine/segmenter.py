"""LightningModule that trains one segmentation network with weighted cross-entropy (teacher or baseline)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from steelkd.card import BEST_METRICS_KEY
from steelkd.config import Config, config_from_dict
from steelkd.losses import DiceLoss, WeightedCrossEntropy
from steelkd.metrics import SegMetrics
from steelkd.models import create_model


class SegmenterModule(L.LightningModule):
    """Train a segmenter: ``L = L_wCE (+ dice_weight · L_Dice)``, validation Dice every epoch.

    Args:
        cfg: the run's config as a plain dict (``Config.to_dict()``); stored as the only hyper-parameter
            so checkpoints load with ``weights_only=True``. ``cfg["train"]["class_weights"]`` must already
            be a list of numbers (``steelkd.engine.fit`` resolves ``"median_freq"`` from the data).
        steps_per_epoch: optimizer steps per epoch, for the cosine schedule.
        model: the network to train (default: :func:`build_model` of ``cfg``).

    Example:
        >>> from steelkd.config import Config
        >>> cfg = Config(); cfg.model.name = "resunet_convnext_atto"
        >>> cfg.train.class_weights = [1.0] * 5
        >>> module = SegmenterModule(cfg.to_dict())  # doctest: +SKIP
    """

    def __init__(self, cfg: dict[str, Any], steps_per_epoch: int = 1, model: nn.Module | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": cfg, "steps_per_epoch": steps_per_epoch})
        self.cfg: Config = config_from_dict(cfg)
        num_classes = self.cfg.data.num_classes
        self.model = model if model is not None else build_model(self.cfg)
        weights = self.cfg.train.class_weights
        if not isinstance(weights, list):
            raise ValueError(f"train.class_weights must be resolved to a list first, got {weights!r}")
        self.criterion = WeightedCrossEntropy(weight=torch.tensor(weights, dtype=torch.float32))
        self.dice_loss = DiceLoss(num_classes) if self.cfg.train.dice_weight > 0 else None
        self.val_metrics = SegMetrics(num_classes)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.best_metrics: dict[str, Any] = {}

    # -- the loss of the labels, shared by the segmenter and the distiller ------------------------------
    def supervised_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = self.criterion(logits.float(), target)
        if self.dice_loss is not None:
            loss = loss + self.cfg.train.dice_weight * self.dice_loss(logits.float(), target)
        return loss

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # -- memory format (train.channels_last) and compilation (train.compile) ----------------------------
    def on_fit_start(self) -> None:
        if self.cfg.train.channels_last:
            self.to(memory_format=torch.channels_last)  # the student, and a distiller's teacher
        if self.cfg.train.compile:
            # in place: the student only; its state dict keeps its keys. Static shapes: a new input shape
            # recompiles instead of taking inductor's dynamic-shape path (which failed on CPU in CI)
            self.model.compile(dynamic=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.cfg.train.channels_last:
            x, *rest = batch  # (x, y), or (x, y, teacher logits) from the teacher-logit cache
            return (x.contiguous(memory_format=torch.channels_last), *rest)
        return batch

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.supervised_loss(self.model(x), y)
        self.log_losses(loss, loss_ce=loss, batch_size=x.shape[0])
        return loss

    def log_losses(self, loss: Tensor, *, batch_size: int, **parts: Tensor) -> None:
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(
                f"train/{name}",
                value,
                on_step=True,
                on_epoch=True,
                batch_size=batch_size,
                prog_bar=name == "loss_kd",
            )
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self.model(x).argmax(1), y)

    def on_validation_epoch_end(self) -> None:
        m = self.val_metrics.compute()
        self.val_metrics.reset()
        names = self.cfg.data.class_names[1:]
        scalars = {f"val/{k}": float(m[k]) for k in ("mdice", "kaggle_dice", "miou", "miou_bg")}
        scalars.update({f"val/dice_{n}": float(d) for n, d in zip(names, m["dice"], strict=True)})
        # Metric states are already reduced across processes by torchmetrics; no second sync here.
        mdice = scalars.pop("val/mdice")
        self.log_dict(scalars, prog_bar=False)
        self.log("val/mdice", mdice, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        best = self.best_metrics.get("mdice", -math.inf)
        if not math.isnan(mdice) and mdice > best:
            self.best_metrics = {**{k: _plain(v) for k, v in m.items()}, "epoch": int(self.current_epoch)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[BEST_METRICS_KEY] = self.best_metrics

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_metrics = dict(checkpoint.get(BEST_METRICS_KEY, {}))

    # -- optimisation ------------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        opt = torch.optim.AdamW(self.trainable_parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return opt
        total = max(1, t.epochs * self.steps_per_epoch)
        warm = min(t.warmup_steps, total - 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_model(cfg: Config) -> nn.Module:
    """The network ``cfg.model`` names, with ``cfg.data``'s classes (random init unless weights are given)."""
    return create_model(
        cfg.model.name,
        num_classes=cfg.data.num_classes,
        pretrained=cfg.model.pretrained,
        encoder_weights=cfg.model.encoder_weights or None,
        **cfg.model.kwargs,
    )


def _plain(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.tolist() if v.ndim else float(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
