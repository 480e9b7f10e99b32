"""A small timm-style model registry: ``register``, ``create_model``, ``list_models``.

The registry imports no model module: architectures register themselves when ``steelkd.models`` imports
them (``steelkd/models/__init__.py``), as timm's do.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from steelkd.models.base import SegmentationModel, count_params

Factory = Callable[..., SegmentationModel]
F = TypeVar("F", bound=Factory)

_REGISTRY: dict[str, Factory] = {}


def register(name: str | None = None) -> Callable[[F], F]:
    """Decorator that registers a model factory under ``name`` (default: the function's name).

    The factory is called as ``factory(num_classes=..., pretrained=..., **kw)``.

    Example:
        >>> @register("my_resunet")  # doctest: +SKIP
        ... def my_resunet(num_classes: int = 5, pretrained: bool = False, **kw) -> SegmentationModel:
        ...     return ResUnet("convnext_atto", num_classes, pretrained=pretrained, name="my_resunet", **kw)
    """

    def deco(fn: F) -> F:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = fn
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell wildcard such as ``"*_gc_ff"``.

    Example:
        >>> "resunet_convnext_tiny" in list_models()
        True
    """
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(
    name: str,
    num_classes: int = 5,
    pretrained: bool = False,
    encoder_weights: str | Path | None = None,
    **kw: Any,
) -> SegmentationModel:
    """Build a registered segmentation model.

    Args:
        name: registered name (see :func:`list_models`), e.g. ``"resunet_convnext_tiny"``.
        num_classes: output classes, background included.
        pretrained: ImageNet encoder weights through timm (needs a network; raises ``OSError`` otherwise).
        encoder_weights: local safetensors / state-dict file loaded into the encoder (no network needed).
        **kw: architecture overrides passed to the constructor (e.g. ``gc_ratio``, ``ff_channels``,
            ``decoder_channels``).

    Returns:
        The model (a :class:`SegmentationModel`), in training mode, on the current default device.

    Example:
        >>> model = create_model("resunet_convnext_atto", num_classes=5)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5, 64, 64])
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `steelkd models list`"
        raise ValueError(f"unknown model {name!r}{hint}")
    model = _REGISTRY[name](num_classes=num_classes, pretrained=pretrained, **kw)
    model.model_kwargs = dict(kw)
    if encoder_weights:
        model.load_encoder_weights(encoder_weights)
    return model


def count_parameters(name: str, num_classes: int = 5, **kw: Any) -> int:
    """Parameters of a registered model, counted on the meta device (no memory, no weights).

    Example:
        >>> round(count_parameters("resunet_convnext_tiny") / 1e6, 2)
        33.83
    """
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **kw)
    return count_params(model)
