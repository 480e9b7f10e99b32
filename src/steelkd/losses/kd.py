"""Classic knowledge distillation (Hinton et al., 2015) applied at every pixel of a segmentation map.

At each pixel the class logits become a distribution with a temperature softmax over the class dimension;
the student matches the teacher with KL(teacher || student)::

    p_T = softmax(T / tau, dim=1),  p_S = softmax(S / tau, dim=1)      (N x C x H x W)
    loss = loss_weight * tau**2 * mean over the N·H·W pixels of sum_c p_T * (log p_T - log p_S)

τ² keeps the gradient's size about the same for any τ (Hinton et al.). Computed in float32 whatever the
input dtype or autocast state; the teacher is detached. See ``docs/losses_and_metrics.md``.

Example:
    >>> import torch
    >>> kd = PixelKD(tau=2.0)
    >>> s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    >>> bool(kd(s, t) > 0), float(kd(t, t))
    (True, 0.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PixelKD", "check_logit_pair", "check_tau", "pixel_kd"]


def check_tau(tau: float, what: str) -> None:
    """Raise ``ValueError`` unless ``tau`` is a positive number (``what`` names the loss)."""
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau > 0:
        raise ValueError(f"{what} temperature tau must be a positive number, got {tau!r}")


def check_logit_pair(student: Tensor, teacher: Tensor, what: str) -> None:
    """Raise ``ValueError`` unless both are N x C x H x W maps of one shape (``what`` names the loss)."""
    if student.dim() != 4 or student.shape != teacher.shape:
        s, t = (" x ".join(map(str, m.shape)) for m in (student, teacher))
        raise ValueError(f"{what} expects two N x C x H x W logit maps of one shape, got {s} and {t}")


def pixel_kd(student: Tensor, teacher: Tensor, tau: float = 1.0) -> Tensor:
    """τ² · mean over pixels of KL(softmax(teacher/τ) || softmax(student/τ)) over the class dimension.

    Args:
        student: student logits N x C x H x W (any float dtype).
        teacher: teacher logits of the same shape (detached here).
        tau: temperature τ > 0.

    Returns:
        A scalar float32 tensor (no loss weight).

    Raises:
        ValueError: a bad τ, or maps that are not 4-D or differ in shape.
    """
    check_tau(tau, "KD")
    check_logit_pair(student, teacher, "KD")
    with torch.autocast(device_type=student.device.type, enabled=False):
        log_p_s = F.log_softmax(student.float() / tau, dim=1)
        log_p_t = F.log_softmax(teacher.detach().float() / tau, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
        return kl.mean() * tau**2


class PixelKD(nn.Module):
    """Hinton's KD per pixel: ``loss_weight · τ² · mean_pixels KL(p_T || p_S)``, class softmax with τ.

    Args:
        tau: temperature τ (larger: softer class distributions).
        loss_weight: multiplier λ of the loss.

    Example:
        >>> import torch
        >>> s = torch.randn(2, 5, 8, 8, requires_grad=True)
        >>> PixelKD(tau=4.0)(s, torch.randn(2, 5, 8, 8)).backward()
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        check_tau(tau, "KD")
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Return the weighted KD loss (scalar float32) of student vs teacher, both N x C x H x W."""
        return self.loss_weight * pixel_kd(student_logits, teacher_logits, tau=self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, loss_weight={self.loss_weight}"
