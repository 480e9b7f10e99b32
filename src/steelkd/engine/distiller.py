"""LightningModule that distils a frozen teacher into a student: ``L = L_wCE + λ·L_KD``; the live teacher."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from steelkd.engine.segmenter import SegmenterModule


class LiveTeacher(nn.Module):
    """The teacher network run on each batch's images, frozen, in eval mode, without autograd.

    Under ``torch.no_grad`` its outputs are ordinary tensors the loss can use directly (no copies); under a
    bf16 run it runs in bf16 like the student (Lightning's autocast covers the training step).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)
        self.eval()

    def forward(self, batch: Any) -> dict[str, Any]:
        with torch.no_grad():
            return self.net(batch[0], return_features=True)


class DistillerModule(SegmenterModule):
    """Train a student against a frozen teacher with one distillation loss object.

    The teacher is handed in as a *source* of teacher outputs for a batch: :class:`LiveTeacher` (the
    network run on the batch's images) or :class:`steelkd.engine.logit_cache.CachedTeacher` (the logits the
    batch brings from the teacher-logit cache); loading it is the caller's job (see
    :func:`steelkd.engine.fit`). ``distill_loss`` maps the student's and the teacher's
    ``return_features=True`` outputs to ``λ·L_KD`` (see :mod:`steelkd.losses.distill`); its parameters
    (1x1 adapters, if any) are trained with the student's. Only the student and the loss's parameters reach
    the optimizer and the checkpoint.

    Args:
        cfg: the run's config as a plain dict, with a ``distill`` section.
        teacher: the source of teacher outputs, called as ``teacher(batch)``.
        distill_loss: e.g. ``steelkd.losses.build_distill_loss(cfg.distill, ...)``.
        steps_per_epoch: optimizer steps per epoch, for the cosine schedule.
        model: the student network (default: built from ``cfg["model"]``).

    Example:
        >>> kd = build_distill_loss(cfg.distill, s.decoder_channels, t.decoder_channels)  # doctest: +SKIP
        >>> module = DistillerModule(cfg.to_dict(), LiveTeacher(t), kd, model=s)  # doctest: +SKIP
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
        self.teacher = teacher
        self.distill_loss = distill_loss

    def train(self, mode: bool = True) -> DistillerModule:
        super().train(mode)
        # Lightning calls .train() on the whole module each epoch: keep the teacher frozen.
        self.teacher.eval()
        return self

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        t_out = self.teacher(batch)
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
