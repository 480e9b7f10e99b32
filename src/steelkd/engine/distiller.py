"""LightningModule that distils a frozen teacher into a student: ``L = L_wCE + λ·L_KD``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from steelkd.engine.segmenter import SegmenterModule


class DistillerModule(SegmenterModule):
    """Train a student against a frozen teacher with one distillation loss object.

    The teacher is handed in (loading it is the caller's job, see :func:`steelkd.engine.fit`), frozen
    (``requires_grad=False``), kept in eval mode even while the module trains (its BatchNorm statistics
    never move) and run under ``torch.inference_mode``. ``distill_loss`` maps the student's and the
    teacher's ``return_features=True`` outputs to ``λ·L_KD`` (see :mod:`steelkd.losses.distill`); its
    parameters (1x1 adapters, if any) are trained with the student's. Only the student and the loss's
    parameters reach the optimizer and the checkpoint.

    Args:
        cfg: the run's config as a plain dict, with a ``distill`` section.
        teacher: the trained teacher network.
        distill_loss: e.g. ``steelkd.losses.build_distill_loss(cfg.distill, ...)``.
        steps_per_epoch: optimizer steps per epoch, for the cosine schedule.
        model: the student network (default: built from ``cfg["model"]``).

    Example:
        >>> kd = build_distill_loss(cfg.distill, s.decoder_channels, t.decoder_channels)  # doctest: +SKIP
        >>> module = DistillerModule(cfg.to_dict(), t, kd, model=s)  # doctest: +SKIP
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        teacher: nn.Module,
        distill_loss: nn.Module,
        steps_per_epoch: int = 1,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(cfg, steps_per_epoch, model=model)
        self.teacher = teacher.eval().requires_grad_(False)
        self.distill_loss = distill_loss

    def train(self, mode: bool = True) -> DistillerModule:
        super().train(mode)
        # Lightning calls .train() on the whole module each epoch: keep the teacher frozen.
        self.teacher.eval()
        return self

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        with torch.inference_mode():
            t_out = self.teacher(x, return_features=True)
        # Inference tensors cannot be saved for backward: clone them into ordinary (constant) tensors.
        t_out = {k: ([f.clone() for f in v] if isinstance(v, list) else v.clone()) for k, v in t_out.items()}
        s_out = self.model(x, return_features=True)
        loss_ce = self.supervised_loss(s_out["logits"], y)
        loss_kd = self.distill_loss(s_out, t_out)
        loss = loss_ce + loss_kd
        self.log_losses(loss, loss_ce=loss_ce, loss_kd=loss_kd, batch_size=x.shape[0])
        return loss

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return super().trainable_parameters() + list(self.distill_loss.parameters())

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The student (and the loss's adapters) only: the teacher is never re-saved."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        return type(state)((k, v) for k, v in state.items() if not k.startswith(prefix + "teacher."))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        teacher = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        return super().load_state_dict({**state_dict, **teacher}, strict=strict, assign=assign)
