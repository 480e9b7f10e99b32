"""Distillation losses on whole model outputs: one object per place the student learns from the teacher.

Each takes the student's and the teacher's ``model(x, return_features=True)`` dicts and returns the
weighted distillation term ``λ·L_KD``; the distiller calls it without knowing which one it holds.
:func:`build_distill_loss` turns a :class:`~steelkd.config.DistillConfig` into one: ``where`` picks the
object (which outputs are compared), ``method`` the loss on the logits (:data:`LOGIT_METHODS`: CWD, pixel
KD or DIST). The decoder-feature terms of ``where="features"`` are always CWD through 1x1 adapters.
Trainable parts (the adapters) are parameters of the loss object, so they go to the optimizer with it.

Example:
    >>> import torch
    >>> from steelkd.config import DistillConfig
    >>> loss = build_distill_loss(DistillConfig(method="kd", where="logits"), (32, 16), (64, 32))
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
from steelkd.losses.dist import DISTLoss
from steelkd.losses.kd import PixelKD

__all__ = [
    "LOGIT_METHODS",
    "FeatureDistill",
    "LogitDistill",
    "LowResLogitDistill",
    "build_distill_loss",
    "logit_loss",
]

Outputs = dict[str, Any]

#: ``distill.method`` -> the logit loss class and the ``DistillConfig`` fields it is built from.
LOGIT_METHODS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "cwd": (ChannelWiseDivergence, ("tau", "loss_weight", "variant")),
    "kd": (PixelKD, ("tau", "loss_weight")),
    "dist": (DISTLoss, ("tau", "inter_weight", "intra_weight", "loss_weight")),
}


class LogitDistill(nn.Module):
    """The logit loss ``term(student, teacher)`` on the final full-resolution class logits (the paper)."""

    def __init__(self, term: nn.Module) -> None:
        super().__init__()
        self.term = term

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        return self.term(student["logits"], teacher["logits"])


class LowResLogitDistill(nn.Module):
    """The logit loss on the head's 1/4-resolution logits; the student's map is resized to the teacher's."""

    def __init__(self, term: nn.Module) -> None:
        super().__init__()
        self.term = term

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        s_low, t_low = student["logits_low"], teacher["logits_low"]
        if s_low.shape[-2:] != t_low.shape[-2:]:
            s_low = F.interpolate(s_low, size=t_low.shape[-2:], mode="bilinear", align_corners=False)
        return self.term(s_low, t_low)


class FeatureDistill(nn.Module):
    """The logit loss on the final logits plus CWD on every decoder level through 1x1 student adapters."""

    def __init__(self, term: nn.Module, adapter: CWDFeatureAdapter) -> None:
        super().__init__()
        self.term = term
        self.adapter = adapter

    def forward(self, student: Outputs, teacher: Outputs) -> Tensor:
        loss = self.term(student["logits"], teacher["logits"])
        return loss + self.adapter(student["features"], teacher["features"])


def logit_loss(cfg: DistillConfig) -> nn.Module:
    """The loss on the logits that ``cfg.method`` names, built from its fields of ``cfg``.

    Raises:
        ValueError: an unknown ``method``, or a ``variant`` other than standard with a method other than cwd.
    """
    if cfg.method not in LOGIT_METHODS:
        raise ValueError(f"distill.method: expected {', '.join(LOGIT_METHODS)}, got {cfg.method!r}")
    cls, fields = LOGIT_METHODS[cfg.method]
    if "variant" not in fields and cfg.variant != "standard":
        raise ValueError(f"distill.variant {cfg.variant!r} applies to method cwd only, not {cfg.method!r}")
    return cls(**{name: getattr(cfg, name) for name in fields})


def build_distill_loss(
    cfg: DistillConfig, student_channels: Sequence[int], teacher_channels: Sequence[int]
) -> nn.Module:
    """The distillation loss ``cfg`` names: ``cfg.where`` (logits, logits_low, features), ``cfg.method``.

    Args:
        cfg: the ``distill`` section (method, tau, loss_weight, inter/intra_weight, variant, where,
            feature_weight).
        student_channels / teacher_channels: ``model.decoder_channels`` of each (used by ``features``).

    Raises:
        ValueError: an unknown ``where`` or ``method``; a non-standard ``variant`` outside cwd.
    """
    term = logit_loss(cfg)
    if cfg.where == "logits":
        return LogitDistill(term)
    if cfg.where == "logits_low":
        return LowResLogitDistill(term)
    if cfg.where == "features":
        adapter = CWDFeatureAdapter(
            list(student_channels),
            list(teacher_channels),
            tau=cfg.tau,
            loss_weight=cfg.feature_weight * cfg.loss_weight,
        )
        return FeatureDistill(term, adapter)
    raise ValueError(f"distill.where: expected logits, logits_low or features, got {cfg.where!r}")
