"""Distillation losses on whole model outputs: one object per place the student learns from the teacher.

Each takes the student's and the teacher's ``model(x, return_features=True)`` dicts and returns the
weighted distillation term ``λ·L_KD``; the distiller calls it without knowing which one it holds.
:func:`build_distill_loss` turns a :class:`~steelkd.config.DistillConfig` into one. Trainable parts (the
1x1 feature adapters) are parameters of the loss object, so they go to the optimizer with it.

Example:
    >>> import torch
    >>> from steelkd.config import DistillConfig
    >>> loss = build_distill_loss(DistillConfig(where="logits"), (32, 16), (64, 32))
    >>> out = {"logits": torch.randn(2, 5, 8, 8)}
    >>> float(loss(out, out))
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from steelkd.config import DistillConfig
from steelkd.losses.cwd import ChannelWiseDivergence, CWDFeatureAdapter

__all__ = ["FeatureCWD", "LogitCWD", "LowResLogitCWD", "build_distill_loss"]

Outputs = dict[str, Any]


class LogitCWD(nn.Module):
    """CWD on the final full-resolution class logits (the paper)."""

    def __init__(self, cwd: ChannelWiseDivergence) -> None:
        super().__init__()
        self.cwd = cwd

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        return self.cwd(student["logits"], teacher["logits"])


class LowResLogitCWD(nn.Module):
    """CWD on the head's 1/4-resolution logits; the student's map is resized to the teacher's if needed."""

    def __init__(self, cwd: ChannelWiseDivergence) -> None:
        super().__init__()
        self.cwd = cwd

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        s_low, t_low = student["logits_low"], teacher["logits_low"]
        if s_low.shape[-2:] != t_low.shape[-2:]:
            s_low = F.interpolate(s_low, size=t_low.shape[-2:], mode="bilinear", align_corners=False)
        return self.cwd(s_low, t_low)


class FeatureCWD(nn.Module):
    """CWD on the final logits plus CWD on every decoder level through 1x1 student-side adapters."""

    def __init__(self, cwd: ChannelWiseDivergence, adapter: CWDFeatureAdapter) -> None:
        super().__init__()
        self.cwd = cwd
        self.adapter = adapter

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        loss = self.cwd(student["logits"], teacher["logits"])
        return loss + self.adapter(student["features"], teacher["features"])


def build_distill_loss(
    cfg: DistillConfig, student_channels: Sequence[int], teacher_channels: Sequence[int]
) -> nn.Module:
    """The distillation loss ``cfg`` names (``cfg.where``: logits, logits_low or features).

    Args:
        cfg: the ``distill`` section (tau, loss_weight, variant, where, feature_weight).
        student_channels / teacher_channels: ``model.decoder_channels`` of each (used by ``features``).

    Raises:
        ValueError: an unknown ``where``.
    """
    cwd = ChannelWiseDivergence(tau=cfg.tau, loss_weight=cfg.loss_weight, variant=cfg.variant)
    if cfg.where == "logits":
        return LogitCWD(cwd)
    if cfg.where == "logits_low":
        return LowResLogitCWD(cwd)
    if cfg.where == "features":
        adapter = CWDFeatureAdapter(
            list(student_channels),
            list(teacher_channels),
            tau=cfg.tau,
            loss_weight=cfg.feature_weight * cfg.loss_weight,
        )
        return FeatureCWD(cwd, adapter)
    raise ValueError(f"distill.where: expected logits, logits_low or features, got {cfg.where!r}")
