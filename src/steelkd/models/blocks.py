"""Small building blocks of the ResUnet decoder: residual unit, global context (GC), feature fusion (FF).

All blocks are plain ``nn.Module`` s with typed constructors; they work on any spatial size, trace to ONNX
with dynamic height and width, and run under ``torch.autocast`` (CPU bf16 or CUDA fp16/bf16).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``Conv2d (no bias) -> BatchNorm2d -> ReLU``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (padding keeps the spatial size).

    Example:
        >>> block = ConvBNReLU(16, 8, kernel_size=1)
        >>> block(torch.zeros(2, 16, 5, 7)).shape
        torch.Size([2, 8, 5, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ResidualUnit(nn.Module):
    """The ResUnet residual unit (Zhang et al., 2018): pre-activation ``BN-ReLU-Conv3x3`` twice plus a
    ``Conv1x1-BN`` shortcut.

    Args:
        in_channels: input channels (upsampled decoder tensor concatenated with the skip feature).
        out_channels: output channels.

    Example:
        >>> unit = ResidualUnit(24, 8)
        >>> unit(torch.zeros(1, 24, 9, 13)).shape
        torch.Size([1, 8, 9, 13])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class GlobalContextBlock(nn.Module):
    """GCNet global-context block (Cao et al., 2019) with attention pooling and fusion by ADDITION.

    ``context = softmax_{HW}(Conv1x1_{C->1}(x)) · x`` (a C-vector per image), then
    ``Conv1x1_{C->C·r} -> LayerNorm -> ReLU -> Conv1x1_{C·r->C}`` and ``out = x + transform(context)``
    (broadcast over H x W). The last convolution is zero-initialised, so a fresh block is the identity.
    This is GCNet's ``channel_add`` fusion, not timm's ``GlobalContext`` (which gates by a sigmoid product
    by default).

    Args:
        channels: input and output channels.
        ratio: bottleneck ratio of the transform (GCNet uses 1/16 or 1/4).

    Example:
        >>> gc = GlobalContextBlock(32, ratio=1 / 4)
        >>> x = torch.randn(2, 32, 6, 10)
        >>> torch.equal(gc(x), x)  # zero-initialised: identity at start
        True
    """

    def __init__(self, channels: int, ratio: float = 1 / 4) -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"GC ratio must be in (0, 1], got {ratio}")
        hidden = max(1, round(channels * ratio))
        self.channels = channels
        self.hidden = hidden
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.reset_last()

    def reset_last(self) -> None:
        """Zero the last convolution (weights and bias): the block becomes the identity."""
        last = self.transform[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """Attention pooling: ``N x C x H x W -> N x C x 1 x 1``."""
        logits = self.conv_mask(x).flatten(2)  # N x 1 x HW
        attn = torch.softmax(logits, dim=-1)  # N x 1 x HW
        context = torch.matmul(x.flatten(2), attn.transpose(1, 2))  # N x C x 1
        return context.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        term = self.transform(self.spatial_pool(x))
        return x + term.to(x.dtype)


class FeatureFusion(nn.Module):
    """Multi-level feature fusion (FF): a 1x1 ``Conv-BN-ReLU`` brings every decoder level to
    ``channels``, all are resized to the finest level's size, concatenated and fused by a 1x1
    ``Conv-BN-ReLU``.

    Args:
        in_channels: channels of the levels, coarse to fine (the last one sets the output size).
        channels: common channels of every level and of the fused output.

    Example:
        >>> ff = FeatureFusion((32, 16, 8), channels=8)
        >>> feats = [torch.zeros(1, 32, 4, 4), torch.zeros(1, 16, 8, 8), torch.zeros(1, 8, 16, 16)]
        >>> ff(feats).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.channels = int(channels)
        self.lateral = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in self.in_channels)
        self.fuse = ConvBNReLU(channels * len(self.in_channels), channels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.lateral):
            raise ValueError(f"FeatureFusion expects {len(self.lateral)} levels, got {len(features)}")
        size = features[-1].shape[-2:]
        last = len(features) - 1
        outs = []
        for i, (conv, feat) in enumerate(zip(self.lateral, features, strict=True)):
            y = conv(feat)
            if i != last:  # index-based, not shape-based: no data-dependent branch when traced
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        return self.fuse(torch.cat(outs, dim=1))
