"""The base class of every steelkd segmentation network, and the parameter count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["SegmentationModel", "count_params"]


class SegmentationModel(nn.Module):
    """Base class of every steelkd segmentation network (the forward contract in docs/architecture.md).

    ``model(x)`` returns logits ``N x C x H x W`` at the input size; ``model(x, return_features=True)``
    returns ``{"logits", "logits_low", "features"}``. Attributes: ``name``, ``num_classes``,
    ``decoder_channels`` (channels of ``features``), and ``model_kwargs`` (the keyword overrides given to
    :func:`create_model`, so ``create_model(model.name, model.num_classes, **model.model_kwargs)``
    rebuilds the same architecture).
    """

    name: str
    num_classes: int
    decoder_channels: tuple[int, ...]
    model_kwargs: dict[str, Any]

    def load_encoder_weights(self, path: str | Path) -> None:  # pragma: no cover - overridden
        """Load local encoder weights (implemented by subclasses)."""
        raise NotImplementedError


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``).

    Example:
        >>> count_params(nn.Conv2d(3, 8, 3))
        224
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
