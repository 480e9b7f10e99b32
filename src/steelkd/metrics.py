"""Segmentation metrics: dataset-level Dice and IoU per class, mDice, mIoU, and the Kaggle Dice.

All states are integer or float64 tensors reduced by sum, so a DDP run gives the single-process value
(exactly for the integer confusion matrix; the float64 Kaggle sum up to summation order, ~1e-15).
Definitions and the empty-class rules are in ``docs/losses_and_metrics.md``. :mod:`steelkd.trivial` judges a
score against trivial predictors (the "not learned" check).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


class SegMetrics(Metric):
    """Dice, IoU and the Kaggle metric of predicted label maps against ground-truth label maps.

    Class 0 is background; classes 1..K-1 are defects. With P_c and G_c the sets of pixels predicted and
    labelled c over the whole data set (all pixels of all images pooled):

    - ``dice[c-1] = 2|P_c ∩ G_c| / (|P_c| + |G_c|)`` for c = 1..K-1 (dataset-level Dice),
      ``mdice`` = mean of those;
    - ``iou[c-1] = |P_c ∩ G_c| / |P_c ∪ G_c|``, ``miou`` = mean over the defect classes, ``miou_bg`` = mean
      IoU over all K classes including background (the NEU-Seg literature's mIoU);
    - ``kaggle_dice`` = mean over every (image, defect class) pair of that image's Dice for that class,
      where a pair with neither prediction nor truth scores 1 and a pair with only one of them scores 0
      (the Severstal Kaggle competition's score); ``kaggle_dice_per_class`` is the same mean per class.

    A class with neither truth nor prediction anywhere in the data set has an undefined Dice/IoU: it is
    reported as NaN and left out of ``mdice``, ``miou`` and ``miou_bg`` (which are NaN only if every
    class is). In ``kaggle_dice`` such a class scores 1 on every image, as in Kaggle.

    Args:
        num_classes: K, the number of label-map values including background (>= 2).
        ignore_index: target value whose pixels are left out of every count (``None``: none).

    Example:
        >>> import torch
        >>> from steelkd.metrics import SegMetrics
        >>> metric = SegMetrics(num_classes=3)
        >>> target = torch.tensor([[[0, 1], [2, 2]]])
        >>> preds = torch.tensor([[[0, 1], [2, 0]]])
        >>> metric.update(preds, target)
        >>> out = metric.compute()
        >>> out["dice"], round(out["mdice"], 4)
        ([1.0, 0.6666666666666666], 0.8333)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor
    kaggle_sum: Tensor
    n_images: Tensor

    def __init__(self, num_classes: int, ignore_index: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"SegMetrics: num_classes must be an integer >= 2, got {num_classes!r}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(
                f"SegMetrics: ignore_index {ignore_index} is a valid class (0..{num_classes - 1})"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        k = num_classes
        # confmat[g, p]: pixels with truth g predicted p, over the whole data set.
        self.add_state("confmat", default=torch.zeros(k, k, dtype=torch.int64), dist_reduce_fx="sum")
        # Sum over images of the per-image Dice of each class (both empty = 1).
        self.add_state("kaggle_sum", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _check(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(preds, Tensor) or not isinstance(target, Tensor):
            raise ValueError("SegMetrics.update: preds and target must be tensors (label maps)")
        if preds.dim() == 2 and target.dim() == 2:
            preds, target = preds.unsqueeze(0), target.unsqueeze(0)
        if preds.dim() == 4:
            raise ValueError(
                f"SegMetrics.update: preds must be label maps N x H x W, got {tuple(preds.shape)} "
                "(for logits N x C x H x W, pass logits.argmax(1))"
            )
        if preds.dim() != 3 or preds.shape != target.shape:
            raise ValueError(
                f"SegMetrics.update: preds {tuple(preds.shape)} and target {tuple(target.shape)} must both "
                "be N x H x W label maps of the same shape"
            )
        for name, t in (("preds", preds), ("target", target)):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"SegMetrics.update: {name} must be an integer label map, got {t.dtype}")
        preds, target = preds.long(), target.long()
        valid = target != self.ignore_index if self.ignore_index is not None else None
        k = self.num_classes
        checks = [("preds", preds, None), ("target", target, valid)]
        for name, t, mask in checks:
            vals = t if mask is None else t[mask]
            if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) >= k):
                bad = vals[(vals < 0) | (vals >= k)][0].item()
                raise ValueError(
                    f"SegMetrics.update: {name} has label {bad}, outside 0..{k - 1} (num_classes={k})"
                )
        return preds, target

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of predicted label maps ``preds`` and truth ``target`` (both N x H x W integers)."""
        preds, target = self._check(preds, target)
        n, k = preds.shape[0], self.num_classes
        idx = target * k + preds + torch.arange(n, device=preds.device).view(n, 1, 1) * (k * k)
        if self.ignore_index is not None:
            idx = idx[target != self.ignore_index]
        per_image = torch.bincount(idx.reshape(-1), minlength=n * k * k).view(n, k, k)
        self.confmat += per_image.sum(0).to(self.confmat.device)
        inter = per_image.diagonal(dim1=1, dim2=2).to(torch.float64)  # n x k
        card = (per_image.sum(1) + per_image.sum(2)).to(torch.float64)  # |P| + |G|, n x k
        dice = torch.where(card > 0, 2 * inter / card.clamp_min(1), torch.ones_like(card))
        self.kaggle_sum += dice.sum(0).to(self.kaggle_sum.device)
        self.n_images += n

    def compute(self) -> dict[str, Any]:
        """Return the metrics as plain Python values.

        Returns:
            A dict with ``dice``, ``iou`` and ``kaggle_dice_per_class`` (lists over defect classes 1..K-1),
            ``mdice``, ``miou``, ``miou_bg``, ``kaggle_dice``, ``pixel_accuracy`` (floats; NaN when
            undefined), ``iou_all`` (list over all K classes), ``pixel_counts`` and ``pred_counts``
            (truth / predicted pixels per class, lists of K ints) and ``n_images``.
        """
        cm = self.confmat.to(torch.float64).cpu()
        inter = cm.diagonal()
        gt = cm.sum(1)
        pred = cm.sum(0)
        card = gt + pred
        union = card - inter
        nan = torch.tensor(math.nan, dtype=torch.float64)
        dice_all = torch.where(card > 0, 2 * inter / card.clamp_min(1), nan).tolist()
        iou_all = torch.where(union > 0, inter / union.clamp_min(1), nan).tolist()
        n = int(self.n_images)
        kaggle = (self.kaggle_sum.cpu() / n).tolist() if n > 0 else [math.nan] * self.num_classes
        total = float(cm.sum())
        return {
            "dice": dice_all[1:],
            "mdice": _nanmean(dice_all[1:]),
            "iou": iou_all[1:],
            "miou": _nanmean(iou_all[1:]),
            "miou_bg": _nanmean(iou_all),
            "iou_all": iou_all,
            "kaggle_dice": _nanmean(kaggle[1:]),
            "kaggle_dice_per_class": kaggle[1:],
            "pixel_accuracy": float(inter.sum()) / total if total > 0 else math.nan,
            "pixel_counts": [int(v) for v in self.confmat.sum(1).tolist()],
            "pred_counts": [int(v) for v in self.confmat.sum(0).tolist()],
            "n_images": n,
        }
