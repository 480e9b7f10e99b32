"""ResUnet with a timm ConvNeXt encoder (the paper's network), optionally with GC and FF."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from steelkd.models.base import SegmentationModel
from steelkd.models.registry import register
from steelkd.models.resunet.decoder import ResUnetDecoder
from steelkd.models.weights import load_safetensors, load_weights_only, state_mismatch

#: The paper's FF width (fits the published parameter counts, see docs/models.md); capped by the
#: encoder's deepest width for the small ConvNeXt variants.
FF_CHANNELS = 512
#: Default GC bottleneck ratio (GCNet's 1/4).
GC_RATIO = 0.25


class ResUnet(SegmentationModel):
    """ResUnet segmentation network with a timm ConvNeXt encoder.

    Encoder: ``timm.create_model(encoder_name, features_only=True)`` (strides 4, 8, 16, 32). Decoder:
    three :class:`~steelkd.models.resunet.decoder.DecoderStage` s up to 1/4 resolution, optional GC
    blocks and FF. Head: 1x1 conv to the classes, bilinear upsampling to the input size.

    Args:
        encoder_name: timm ConvNeXt name, e.g. ``"convnext_tiny"``.
        num_classes: output channels (background included).
        decoder_channels: channels of the three decoder stages, coarse to fine; ``None``: the encoder's
            skip widths (ConvNeXt-T: 384, 192, 96).
        gc: add a global-context block to every decoder stage.
        gc_ratio: GC bottleneck ratio.
        ff: fuse the decoder levels before the head.
        ff_channels: FF width; ``None``: ``min(512, deepest encoder width)``.
        pretrained: ImageNet encoder weights through timm (needs a network).
        name: the registry name (set by :func:`steelkd.models.create_model`).

    Example:
        >>> model = ResUnet("convnext_atto", num_classes=5, gc=True, ff=True)
        >>> model(torch.zeros(1, 3, 97, 130)).shape
        torch.Size([1, 5, 97, 130])
    """

    def __init__(
        self,
        encoder_name: str = "convnext_tiny",
        num_classes: int = 5,
        decoder_channels: Sequence[int] | None = None,
        gc: bool = False,
        gc_ratio: float = GC_RATIO,
        ff: bool = False,
        ff_channels: int | None = None,
        pretrained: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder_name = encoder_name
        self.encoder = _create_encoder(encoder_name, pretrained)
        enc = tuple(int(c) for c in self.encoder.feature_info.channels())
        dec = tuple(int(c) for c in decoder_channels) if decoder_channels else (enc[2], enc[1], enc[0])
        ffc = (ff_channels or min(FF_CHANNELS, enc[3])) if ff else None
        self.decoder = ResUnetDecoder(enc, dec, gc_ratio=gc_ratio if gc else None, ff_channels=ffc)
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        self.encoder_channels = enc
        self.decoder_channels = dec
        self.num_classes = int(num_classes)
        self.name = name or f"resunet_{encoder_name}{'_gc' if gc else ''}{'_ff' if ff else ''}"
        self.gc = bool(gc)
        self.ff = bool(ff)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor | dict[str, Any]:
        """Logits ``N x C x H x W`` at the input size, or (``return_features=True``) a dict with
        ``logits``, ``logits_low`` (head output at 1/4) and ``features`` (decoder stages, coarse to fine)."""
        feats = self.encoder(x)
        out, stages = self.decoder(feats)
        low = self.head(out)
        logits = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if return_features:
            return {"logits": logits, "logits_low": low, "features": stages}
        return logits

    def load_encoder_weights(self, path: str | Path) -> None:
        """Load a local safetensors / state-dict file into the encoder (see :func:`load_encoder_state`)."""
        load_encoder_state(self.encoder, path)


def _create_encoder(encoder_name: str, pretrained: bool) -> nn.Module:
    kwargs: dict[str, Any] = {"features_only": True, "out_indices": (0, 1, 2, 3)}
    if not pretrained:
        return timm.create_model(encoder_name, pretrained=False, **kwargs)
    try:
        return timm.create_model(encoder_name, pretrained=True, **kwargs)
    except Exception as exc:  # no network, no cache, hub errors: one clear line for the user
        raise OSError(
            f"could not get ImageNet weights for {encoder_name} through timm ({type(exc).__name__}: {exc}); "
            "without a network pass encoder_weights=PATH to a local file instead"
        ) from exc


_PREFIXES = ("module.", "encoder.", "model.", "backbone.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    if path.suffix == ".safetensors":
        state: Any = load_safetensors(path)
    else:
        state = load_weights_only(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return dict(state)


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes; from a full segmentation-model state dict keep the encoder part."""
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def load_encoder_state(encoder: nn.Module, path: str | Path) -> None:
    """Load encoder weights from a local file, strictly.

    Accepts safetensors or a ``torch.save`` d state dict (read with ``weights_only=True``), possibly
    nested under ``state_dict`` / ``model`` and prefixed with ``encoder.`` / ``model.`` / ``module.``;
    keys in timm classification layout (``stem.0.weight``, ``stages.1...``) or ``features_only`` layout
    (``stem_0.weight``, ``stages_1...``). The classification head (``head.*``) is ignored.

    Args:
        encoder: the timm ``features_only`` encoder.
        path: weights file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: missing, unexpected or wrongly shaped keys (the first few are named).

    Example:
        >>> model = ResUnet("convnext_atto")  # doctest: +SKIP
        >>> load_encoder_state(model.encoder, "convnext_atto.safetensors")  # doctest: +SKIP
    """
    path = Path(path)
    state = _strip(_read_state_dict(path))
    own = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        if key in own:
            mapped[key] = value
            continue
        parts = key.split(".")
        alt = f"{parts[0]}_{parts[1]}.{'.'.join(parts[2:])}" if len(parts) > 2 else key
        if alt in own:
            mapped[alt] = value
        elif key.startswith(("head.", "norm_pre.", "fc.")) or key in ("head", "norm_pre"):
            continue  # classification head: not part of the feature extractor
        else:
            unexpected.append(key)
    problems = state_mismatch(own, mapped, unexpected)
    if problems:
        raise ValueError(
            f"{path}: encoder weights do not fit {type(encoder).__name__}: {'; '.join(problems)}"
        )
    encoder.load_state_dict(mapped, strict=True)


#: ConvNeXt encoders with registered ResUnet variants (timm names).
ENCODERS = (
    "convnext_atto",
    "convnext_femto",
    "convnext_pico",
    "convnext_nano",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
)
#: Name suffix -> (gc, ff).
VARIANTS = {"": (False, False), "_gc": (True, False), "_ff": (False, True), "_gc_ff": (True, True)}


def _make_factory(encoder: str, gc: bool, ff: bool, name: str) -> Callable[..., ResUnet]:
    def factory(num_classes: int = 5, pretrained: bool = False, **kw: Any) -> ResUnet:
        return ResUnet(encoder, num_classes=num_classes, gc=gc, ff=ff, pretrained=pretrained, name=name, **kw)

    factory.__name__ = name
    factory.__doc__ = f"ResUnet + {encoder}{' + GC' if gc else ''}{' + FF' if ff else ''}."
    return factory


for _enc in ENCODERS:
    for _suffix, (_gc, _ff) in VARIANTS.items():
        _name = f"resunet_{_enc}{_suffix}"
        register(_name)(_make_factory(_enc, _gc, _ff, _name))
