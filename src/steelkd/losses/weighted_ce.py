"""Weighted cross-entropy with class weights computed from the training masks' pixel counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS: tuple[str, ...] = ("median_freq", "median_freq_sqrt", "inverse", "none")


def _as_counts(pixel_counts: Any) -> np.ndarray:
    if isinstance(pixel_counts, Tensor):
        pixel_counts = pixel_counts.detach().cpu().numpy()
    try:
        counts = np.asarray(pixel_counts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"class_weights: pixel_counts must be numbers, got {pixel_counts!r}") from exc
    if counts.ndim != 1 or counts.size < 1:
        raise ValueError(
            f"class_weights: pixel_counts must be a 1-D array (one count per class), got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"class_weights: pixel_counts must be finite and >= 0, got {counts.tolist()}")
    if counts.sum() <= 0:
        raise ValueError(
            "class_weights: pixel_counts are all zero (no labelled pixels in the training masks)"
        )
    return counts


def class_weights(
    pixel_counts: np.ndarray | Tensor | Sequence[int],
    method: str | Sequence[float] | None = "median_freq",
) -> Tensor:
    """Class weights for the weighted cross-entropy, from per-class pixel counts of the training masks.

    With ``freq_c = count_c / Σ_k count_k``:

    - ``"median_freq"`` (median frequency balancing, Eigen & Fergus 2015):
      ``w_c = median(freq over classes with count > 0) / freq_c``.
    - ``"median_freq_sqrt"``: the square root of the median-frequency weights, a damped form for very
      unbalanced data (Severstal: background/rarest class 1:3000 becomes 1:55).
    - ``"inverse"``: ``w_c = 1 / freq_c``, rescaled so the mean over classes with count > 0 is 1.
    - ``"none"`` (or ``None``): all ones.
    - a list of K numbers: used as given (checked: K values, finite, >= 0).

    A class with zero pixels gets weight 0 (never inf or nan): it never occurs in the training targets.

    Args:
        pixel_counts: (K,) pixel counts per class, background first (e.g. from
            ``steelkd.data.class_pixel_counts``).
        method: ``"median_freq"``, ``"median_freq_sqrt"``, ``"inverse"``, ``"none"`` or a list of K
            weights.

    Returns:
        A float32 tensor of K weights.

    Raises:
        ValueError: bad counts (not 1-D, negative, all zero), an unknown method, or a weight list of the
            wrong length.

    Example:
        >>> from steelkd.losses import class_weights
        >>> class_weights([700, 100, 0, 200], "median_freq")
        tensor([0.2857, 2.0000, 0.0000, 1.0000])
    """
    counts = _as_counts(pixel_counts)
    k = counts.size
    if method is None:
        method = "none"
    if not isinstance(method, str):
        try:
            given = np.asarray(list(method), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"class_weights: method must be {', '.join(METHODS)} or a list of {k} numbers, got {method!r}"
            ) from exc
        if given.shape != (k,):
            raise ValueError(f"class_weights: got {given.size} weights {given.tolist()} for {k} classes")
        if not np.all(np.isfinite(given)) or np.any(given < 0):
            raise ValueError(f"class_weights: weights must be finite and >= 0, got {given.tolist()}")
        return torch.as_tensor(given, dtype=torch.float32)
    if method == "none":
        return torch.ones(k, dtype=torch.float32)
    freq = counts / counts.sum()
    present = freq > 0
    weights = np.zeros(k, dtype=np.float64)
    if method in ("median_freq", "median_freq_sqrt"):
        weights[present] = float(np.median(freq[present])) / freq[present]
        if method == "median_freq_sqrt":
            weights = np.sqrt(weights)
    elif method == "inverse":
        inv = 1.0 / freq[present]
        weights[present] = inv / inv.mean()
    else:
        raise ValueError(
            f"class_weights: unknown method {method!r} (expected {', '.join(METHODS)} or a list)"
        )
    return torch.as_tensor(weights, dtype=torch.float32)


class WeightedCrossEntropy(nn.Module):
    """Pixel-wise cross-entropy with optional class weights (the paper's L_wCE).

    Equal to ``F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)`` (weighted mean over
    the non-ignored pixels), except that a batch whose pixels all have weight 0 or are all ignored gives 0
    instead of nan. Computed in float32. The weight is a non-persistent buffer: it moves with the module
    (``.to(device)``) but is not saved in the state dict (it is recomputed from the data).

    Args:
        weight: (C,) class weights (e.g. from :func:`class_weights`) or ``None`` for unweighted.
        ignore_index: target value that is skipped.

    Example:
        >>> import torch
        >>> from steelkd.losses import WeightedCrossEntropy, class_weights
        >>> ce = WeightedCrossEntropy(class_weights([900, 50, 50], "median_freq"))
        >>> logits = torch.randn(2, 3, 16, 16)
        >>> target = torch.randint(0, 3, (2, 16, 16))
        >>> loss = ce(logits, target)
    """

    weight: Tensor | None

    def __init__(self, weight: Tensor | Sequence[float] | None = None, ignore_index: int = -100) -> None:
        super().__init__()
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
            if weight.dim() != 1 or weight.numel() < 1:
                raise ValueError(
                    f"WeightedCrossEntropy: weight must be 1-D (one per class), got {weight.tolist()}"
                )
            if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
                raise ValueError(
                    f"WeightedCrossEntropy: weights must be finite and >= 0, got {weight.tolist()}"
                )
        self.register_buffer("weight", weight, persistent=False)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Weighted mean cross-entropy of ``logits`` (N x C x H x W) against ``target`` (N x H x W)."""
        if logits.dim() < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"WeightedCrossEntropy: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                "do not match (expected N x C x H x W and N x H x W)"
            )
        num_classes = logits.shape[1]
        if self.weight is not None and self.weight.numel() != num_classes:
            raise ValueError(
                f"WeightedCrossEntropy: {self.weight.numel()} class weights for logits with "
                f"{num_classes} classes"
            )
        target = target.long()
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            weight = (
                None if self.weight is None else self.weight.to(device=logits.device, dtype=torch.float32)
            )
            total = F.cross_entropy(
                logits, target, weight=weight, ignore_index=self.ignore_index, reduction="sum"
            )
            valid = target != self.ignore_index
            if weight is None:
                denom = valid.sum().to(torch.float32)
            else:
                denom = (weight[target.clamp(0, num_classes - 1)] * valid).sum()
            return total / denom.clamp_min(torch.finfo(torch.float32).tiny)

    def extra_repr(self) -> str:
        w = None if self.weight is None else [round(float(x), 4) for x in self.weight]
        return f"weight={w}, ignore_index={self.ignore_index}"
