"""DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022) for segmentation.

DIST matches *relations* instead of exact probabilities: a Pearson correlation between the student's and
the teacher's class probabilities, so a student whose probabilities are a positive affine function of the
teacher's (e.g. a softer copy, ``a·p_T + (1−a)/C``) already scores 0. Every pixel is a sample::

    p = softmax(logits / tau, dim=1), reshaped to (N·H·W) x C                     (student and teacher)
    inter = tau**2 * mean over pixels  of (1 − pearson(p_S[i, :], p_T[i, :]))    (class relations)
    intra = tau**2 * mean over classes of (1 − pearson(p_S[:, c], p_T[:, c]))    (across all pixels)
    loss  = loss_weight * (inter_weight * inter + intra_weight * intra)

``pearson(x, y) = Σ x̃ỹ / (‖x̃‖·‖ỹ‖ + eps)`` with x̃ = x − mean(x), eps = 1e-8 added to the product of the
norms, as in the authors' code. This follows the official segmentation loss, ``segmentation/losses/
dist_kd.py`` of github.com/hunto/DIST_KD (commit 2418f18: N x C x H x W -> (N·H·W) x C, softmax over
classes, ``1 − pearson(...).mean()`` for both terms, β = γ = 1). That file has no temperature (τ = 1):
τ and the τ² factor follow the paper's L_inter and L_intra, which carry τ², written as in the DIST of
huawei-noah/Efficient-Computing (``Distillation/VanillaKD/losses/dist.py``). Computed in float32;
the teacher is detached. The loss is symmetric in student and teacher, and unchanged by adding a
constant to a pixel's logits (the softmax); it does change when the logits are scaled.

Example:
    >>> import torch
    >>> dist = DISTLoss(tau=1.0, inter_weight=1.0, intra_weight=1.0)
    >>> s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    >>> bool(dist(s, t) > 0), float(dist(t, t)) < 1e-5
    (True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from steelkd.losses.kd import check_logit_pair, check_tau

__all__ = ["EPS", "DISTLoss", "dist_terms", "pearson"]

#: Added to the product of the two norms in the Pearson correlation (the authors' value).
EPS: float = 1e-8


def pearson(x: Tensor, y: Tensor, eps: float = EPS) -> Tensor:
    """Row-wise Pearson correlation of two M x K matrices (one value per row), eps in the denominator."""
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    return (x * y).sum(dim=1) / (x.norm(dim=1) * y.norm(dim=1) + eps)


def dist_terms(student: Tensor, teacher: Tensor, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """DIST's two terms, unweighted: ``(inter, intra)``, each already multiplied by τ².

    Args:
        student: student logits N x C x H x W (any float dtype).
        teacher: teacher logits of the same shape (detached here).
        tau: temperature τ > 0.

    Returns:
        Two scalar float32 tensors: the inter-class (per pixel) and intra-class (per class) relation losses.

    Raises:
        ValueError: a bad τ, or maps that are not 4-D or differ in shape.
    """
    check_tau(tau, "DIST")
    check_logit_pair(student, teacher, "DIST")
    c = student.shape[1]
    with torch.autocast(device_type=student.device.type, enabled=False):
        p_s = F.softmax(student.float() / tau, dim=1).permute(0, 2, 3, 1).reshape(-1, c)
        p_t = F.softmax(teacher.detach().float() / tau, dim=1).permute(0, 2, 3, 1).reshape(-1, c)
        inter = (1 - pearson(p_s, p_t)).mean() * tau**2
        intra = (1 - pearson(p_s.t(), p_t.t())).mean() * tau**2
        return inter, intra


class DISTLoss(nn.Module):
    """DIST per pixel: ``loss_weight · (inter_weight · inter + intra_weight · intra)`` (see the module).

    Args:
        tau: temperature τ of the class softmax.
        inter_weight: β, weight of the inter-class (per-pixel) relation term.
        intra_weight: γ, weight of the intra-class (per-class, across pixels) relation term.
        loss_weight: multiplier λ of the whole loss.

    Example:
        >>> import torch
        >>> s = torch.randn(2, 5, 8, 8, requires_grad=True)
        >>> DISTLoss(tau=2.0, inter_weight=1.0, intra_weight=2.0)(s, torch.randn(2, 5, 8, 8)).backward()
    """

    def __init__(
        self, tau: float = 1.0, inter_weight: float = 1.0, intra_weight: float = 1.0, loss_weight: float = 1.0
    ) -> None:
        super().__init__()
        check_tau(tau, "DIST")
        self.tau = float(tau)
        self.inter_weight = float(inter_weight)
        self.intra_weight = float(intra_weight)
        self.loss_weight = float(loss_weight)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Return the weighted DIST loss (scalar float32) of student vs teacher, both N x C x H x W."""
        inter, intra = dist_terms(student_logits, teacher_logits, tau=self.tau)
        return self.loss_weight * (self.inter_weight * inter + self.intra_weight * intra)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, inter_weight={self.inter_weight}, intra_weight={self.intra_weight}, "
            f"loss_weight={self.loss_weight}"
        )
