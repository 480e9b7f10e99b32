"""Soft Dice loss on softmax probabilities (optional, added to the CE with ``train.dice_weight``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss, batch-level: sums run over the whole batch and all pixels.

    For each class c (from 1 when ``ignore_background``), with p the softmax probabilities and g the one-hot
    target: ``dice_c = (2 Σ p_c g_c + smooth) / (Σ p_c + Σ g_c + smooth)``; the loss is ``1 - mean_c dice_c``.
    A class absent from both the prediction and the target scores 1 (thanks to ``smooth``); a class predicted
    where the target has none is penalised. Computed in float32.

    Args:
        num_classes: number of classes C of the logits (background included).
        ignore_background: leave class 0 out of the mean.
        smooth: additive smoothing (> 0 keeps empty classes finite).
        ignore_index: target value whose pixels are left out (``None``: none).

    Example:
        >>> import torch
        >>> from steelkd.losses import DiceLoss
        >>> dice = DiceLoss(num_classes=5)
        >>> loss = dice(torch.randn(2, 5, 32, 32), torch.randint(0, 5, (2, 32, 32)))
    """

    def __init__(
        self,
        num_classes: int,
        ignore_background: bool = True,
        smooth: float = 1.0,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1 or (ignore_background and int(num_classes) < 2):
            raise ValueError(f"DiceLoss: num_classes must be >= 2 with ignore_background, got {num_classes}")
        if not smooth >= 0:
            raise ValueError(f"DiceLoss: smooth must be >= 0, got {smooth}")
        self.num_classes = int(num_classes)
        self.ignore_background = bool(ignore_background)
        self.smooth = float(smooth)
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return ``1 - mean Dice`` of ``softmax(logits)`` (N x C x H x W) against ``target`` (N x H x W)."""
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"DiceLoss: expected logits N x {self.num_classes} x H x W, got {tuple(logits.shape)}"
            )
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"DiceLoss: target {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
            )
        target = target.long()
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs = F.softmax(logits.float(), dim=1)
            if self.ignore_index is not None:
                valid = (target != self.ignore_index).unsqueeze(1).to(probs.dtype)
                target = torch.where(target == self.ignore_index, torch.zeros_like(target), target)
            else:
                valid = None
            onehot = F.one_hot(target.clamp(0, self.num_classes - 1), self.num_classes)
            onehot = onehot.permute(0, 3, 1, 2).to(probs.dtype)
            if valid is not None:
                probs = probs * valid
                onehot = onehot * valid
            dims = (0, 2, 3)
            inter = (probs * onehot).sum(dims)
            card = probs.sum(dims) + onehot.sum(dims)
            dice = (2 * inter + self.smooth) / (card + self.smooth).clamp_min(torch.finfo(torch.float32).tiny)
            if self.ignore_background:
                dice = dice[1:]
            return 1.0 - dice.mean()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, ignore_background={self.ignore_background}, "
            f"smooth={self.smooth}"
        )
