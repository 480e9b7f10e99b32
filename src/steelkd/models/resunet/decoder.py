"""The ResUnet decoder: three upsample-concatenate-residual-unit stages (1/32 -> 1/16 -> 1/8 -> 1/4),
optional global-context (GC) blocks and optional multi-level feature fusion (FF)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from steelkd.models.blocks import ConvBNReLU, FeatureFusion, GlobalContextBlock, ResidualUnit


class DecoderStage(nn.Module):
    """One decoder stage.

    ``x -> Conv1x1-BN-ReLU (to the skip's channels) -> bilinear resize to the skip's size ->
    concat(skip) -> [GC] -> ResidualUnit``. Resizing to ``skip.shape[-2:]`` (not a fixed x2) makes every
    input height and width work, odd ones included.

    Args:
        in_channels: channels of the coarser decoder tensor.
        skip_channels: channels of the encoder skip feature.
        out_channels: output channels of the residual unit.
        gc_ratio: bottleneck ratio of a :class:`GlobalContextBlock` on the concatenation; ``None``: no GC.

    Example:
        >>> stage = DecoderStage(32, 16, 16, gc_ratio=0.25)
        >>> stage(torch.zeros(1, 32, 4, 5), torch.zeros(1, 16, 7, 9)).shape
        torch.Size([1, 16, 7, 9])
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, gc_ratio: float | None
    ) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_channels, skip_channels, 1)
        cat_channels = 2 * skip_channels
        self.gc: nn.Module = GlobalContextBlock(cat_channels, gc_ratio) if gc_ratio else nn.Identity()
        self.unit = ResidualUnit(cat_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, skip.to(x.dtype)], dim=1)
        return self.unit(self.gc(x))


class ResUnetDecoder(nn.Module):
    """Decoder over the four encoder features (strides 4, 8, 16, 32).

    Args:
        encoder_channels: channels of the encoder features, fine to coarse (stride 4 first).
        decoder_channels: output channels of the three stages, coarse to fine (1/16, 1/8, 1/4).
        gc_ratio: GC bottleneck ratio in every stage; ``None``: no GC.
        ff_channels: common channels of the feature fusion over the four decoder levels (the 1/32 input
            and the three stage outputs); ``None``: no FF, the head reads the last stage.

    Example:
        >>> dec = ResUnetDecoder((8, 16, 32, 64), (32, 16, 8), gc_ratio=0.25, ff_channels=16)
        >>> feats = [torch.zeros(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((8, 16, 32, 64))]
        >>> out, stages = dec(feats)
        >>> out.shape, [s.shape[1] for s in stages]
        (torch.Size([1, 16, 32, 32]), [32, 16, 8])
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        gc_ratio: float | None = None,
        ff_channels: int | None = None,
    ) -> None:
        super().__init__()
        enc = tuple(int(c) for c in encoder_channels)
        dec = tuple(int(c) for c in decoder_channels)
        if len(enc) != 4 or len(dec) != 3:
            raise ValueError(f"need 4 encoder and 3 decoder channel counts, got {enc} and {dec}")
        self.encoder_channels = enc
        self.decoder_channels = dec
        skips = (enc[2], enc[1], enc[0])
        ins = (enc[3], *dec[:2])
        self.stages = nn.ModuleList(
            DecoderStage(i, s, o, gc_ratio) for i, s, o in zip(ins, skips, dec, strict=True)
        )
        self.fusion: FeatureFusion | None = (
            FeatureFusion((enc[3], *dec), ff_channels) if ff_channels else None
        )
        self.out_channels = int(ff_channels) if ff_channels else dec[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the tensor for the head (1/4 resolution) and the three stage outputs, coarse to fine."""
        f1, f2, f3, f4 = features
        x = f4
        outs: list[torch.Tensor] = []
        for stage, skip in zip(self.stages, (f3, f2, f1), strict=True):
            x = stage(x, skip)
            outs.append(x)
        if self.fusion is not None:
            x = self.fusion([f4.to(x.dtype), *outs])
        return x, outs
