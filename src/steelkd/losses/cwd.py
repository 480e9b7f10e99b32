"""Channel-wise knowledge distillation (CWD, Shu et al., ICCV 2021) for dense prediction.

Each channel of a N x C x H x W map is turned into a probability distribution over its H·W spatial
positions (a softmax with temperature τ); the student is trained to match the teacher's distribution
channel by channel with the asymmetric KL(teacher || student). The loss is numerically identical to
mmrazor's ``ChannelWiseDivergence`` (the original authors' code)::

    p_T = softmax(T.reshape(N*C, H*W) / tau, dim=1)
    loss = sum(p_T * log_softmax(T / tau) - p_T * log_softmax(S / tau)) * tau**2
    loss = loss_weight * loss / (N * C)

``variant="paper_eq5"`` first applies the class softmax (over the channel dimension, no temperature)
to both maps, as eq. (5) of Xue et al. (2025) writes it, then the same per-channel spatial softmax.
See ``docs/losses_and_metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VARIANTS: tuple[str, ...] = ("standard", "paper_eq5")


def _check_tau_variant(tau: float, variant: str) -> None:
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau > 0:
        raise ValueError(f"CWD temperature tau must be a positive number, got {tau!r}")
    if variant not in VARIANTS:
        raise ValueError(f"CWD variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def _shape(t: Tensor) -> str:
    return " x ".join(str(s) for s in t.shape)


def channel_wise_divergence(
    student: Tensor, teacher: Tensor, tau: float = 1.0, variant: str = "standard"
) -> Tensor:
    """Channel-wise divergence KL(φ(teacher) || φ(student)) · τ² summed and divided by N·C.

    Computed in float32 whatever the input dtype or autocast state. The teacher is detached: no gradient
    ever flows into it.

    Args:
        student: student map, N x C x H x W (logits or features).
        teacher: teacher map of exactly the same shape.
        tau: softmax temperature τ > 0.
        variant: ``"standard"`` (raw maps, Shu et al. / mmrazor) or ``"paper_eq5"`` (class softmax over
            the channel dimension first, as in eq. (5) of the paper).

    Returns:
        A scalar float32 tensor (not multiplied by any loss weight).

    Raises:
        ValueError: if the maps are not 4-D, or their batch, channel or spatial sizes differ (the caller
            aligns them: resize, or use :class:`CWDFeatureAdapter` for differing channels).

    Example:
        >>> s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
        >>> loss = channel_wise_divergence(s, t, tau=1.0)
        >>> bool(loss > 0)
        True
    """
    _check_tau_variant(tau, variant)
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(
            f"CWD expects N x C x H x W maps, got student {_shape(student)} and teacher {_shape(teacher)}"
        )
    if student.shape[-2:] != teacher.shape[-2:]:
        raise ValueError(
            f"CWD spatial sizes differ: student {_shape(student)} vs teacher {_shape(teacher)}; "
            "resize one of them first"
        )
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"CWD batch/channel sizes differ: student {_shape(student)} vs teacher {_shape(teacher)}; "
            "align channels with a 1x1 conv (CWDFeatureAdapter)"
        )
    n, c, h, w = student.shape
    with torch.autocast(device_type=student.device.type, enabled=False):
        s = student.float()
        t = teacher.detach().float()
        if variant == "paper_eq5":
            s = F.softmax(s, dim=1)
            t = F.softmax(t, dim=1)
        s = s.reshape(n * c, h * w) / tau
        t = t.reshape(n * c, h * w) / tau
        p_t = F.softmax(t, dim=1)
        loss = torch.sum(p_t * F.log_softmax(t, dim=1) - p_t * F.log_softmax(s, dim=1)) * (tau**2)
        return loss / (n * c)


class ChannelWiseDivergence(nn.Module):
    """Channel-wise distillation loss between student and teacher maps (Shu et al., ICCV 2021).

    For every sample n and channel c, φ(y_{n,c}) = softmax over the H·W positions of y_{n,c} / τ; the loss
    is ``loss_weight · τ² / (N·C) · Σ_n Σ_c KL(φ(y^T_{n,c}) || φ(y^S_{n,c}))``, the same value as mmrazor's
    ``ChannelWiseDivergence``. It is computed in float32 (inputs are cast, autocast is disabled inside)
    and the teacher map is detached.

    Args:
        tau: temperature τ (the paper: 1.0). Larger τ: softer distributions, wider spatial attention.
        loss_weight: multiplier λ of the loss.
        variant: ``"standard"`` (raw maps, default) or ``"paper_eq5"`` (a class softmax over the channel
            dimension first; only meaningful for class-logit maps).

    Example:
        >>> import torch
        >>> from steelkd.losses import ChannelWiseDivergence
        >>> cwd = ChannelWiseDivergence(tau=1.0, loss_weight=1.0)
        >>> student = torch.randn(2, 5, 64, 64, requires_grad=True)
        >>> teacher = torch.randn(2, 5, 64, 64)
        >>> loss = cwd(student, teacher)
        >>> loss.backward()
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0, variant: str = "standard") -> None:
        super().__init__()
        _check_tau_variant(tau, variant)
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.variant = variant

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Return the weighted CWD loss (scalar float32) of student vs teacher, both N x C x H x W."""
        return self.loss_weight * channel_wise_divergence(
            student_logits, teacher_logits, tau=self.tau, variant=self.variant
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, loss_weight={self.loss_weight}, variant={self.variant!r}"


class CWDFeatureAdapter(nn.Module):
    """CWD on lists of intermediate feature maps, with 1x1 conv adapters on the student side.

    Level k uses a trainable ``Conv2d(student_channels[k], teacher_channels[k], 1)`` when the channel counts
    differ (or always, with ``always_adapt=True``) and the identity otherwise. The adapted student map is
    resized bilinearly to the teacher's spatial size when they differ. The loss is
    ``loss_weight · Σ_k CWD(adapter_k(s_k), t_k)`` (a sum over levels, each term normalised by N·C_k).
    The adapters are parameters of this module: give them to the student's optimizer.

    Args:
        student_channels: channels of each student feature level.
        teacher_channels: channels of the matching teacher levels (same length).
        tau: temperature τ.
        loss_weight: weight of each level's term.
        always_adapt: also put a 1x1 conv on levels whose channel counts already match.

    Example:
        >>> import torch
        >>> from steelkd.losses import CWDFeatureAdapter
        >>> adapter = CWDFeatureAdapter([32, 64], [64, 128], tau=1.0)
        >>> s = [torch.randn(2, 32, 16, 16), torch.randn(2, 64, 8, 8)]
        >>> t = [torch.randn(2, 64, 16, 16), torch.randn(2, 128, 8, 8)]
        >>> loss = adapter(s, t)
    """

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        tau: float = 1.0,
        loss_weight: float = 1.0,
        always_adapt: bool = False,
    ) -> None:
        super().__init__()
        _check_tau_variant(tau, "standard")
        student_channels, teacher_channels = list(student_channels), list(teacher_channels)
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(
                f"CWDFeatureAdapter needs one teacher level per student level, got student channels "
                f"{student_channels} and teacher channels {teacher_channels}"
            )
        for s_ch, t_ch in zip(student_channels, teacher_channels, strict=True):
            if int(s_ch) < 1 or int(t_ch) < 1:
                raise ValueError(f"CWDFeatureAdapter: channel counts must be positive, got {s_ch} -> {t_ch}")
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.adapters = nn.ModuleList(
            nn.Conv2d(s_ch, t_ch, kernel_size=1) if (s_ch != t_ch or always_adapt) else nn.Identity()
            for s_ch, t_ch in zip(student_channels, teacher_channels, strict=True)
        )

    def forward(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        """Return ``loss_weight · Σ_k CWD(adapter_k(student_feats[k]), teacher_feats[k])``."""
        if len(student_feats) != len(self.adapters) or len(teacher_feats) != len(self.adapters):
            raise ValueError(
                f"CWDFeatureAdapter was built for {len(self.adapters)} levels, got {len(student_feats)} "
                f"student and {len(teacher_feats)} teacher feature maps"
            )
        total: Tensor | None = None
        for k, (adapter, s, t) in enumerate(zip(self.adapters, student_feats, teacher_feats, strict=True)):
            if s.dim() != 4 or s.shape[1] != self.student_channels[k]:
                raise ValueError(
                    f"CWDFeatureAdapter level {k}: expected student N x {self.student_channels[k]} x H x W, "
                    f"got {_shape(s)}"
                )
            if t.dim() != 4 or t.shape[1] != self.teacher_channels[k]:
                raise ValueError(
                    f"CWDFeatureAdapter level {k}: expected teacher N x {self.teacher_channels[k]} x H x W, "
                    f"got {_shape(t)}"
                )
            s = adapter(s)
            if s.shape[-2:] != t.shape[-2:]:
                s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
            term = channel_wise_divergence(s, t, tau=self.tau)
            total = term if total is None else total + term
        assert total is not None  # at least one level, checked in __init__
        return self.loss_weight * total

    def extra_repr(self) -> str:
        return (
            f"student_channels={self.student_channels}, teacher_channels={self.teacher_channels}, "
            f"tau={self.tau}, loss_weight={self.loss_weight}"
        )
