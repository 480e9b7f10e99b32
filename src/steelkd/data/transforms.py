"""The training augmentations (albumentations): random rescale, random crop (optionally over a defect),
flips, brightness/contrast.

They act on ``uint8`` RGB ``H x W x 3`` images and their label maps together, before
:func:`steelkd.data.image.normalize`.

Example:
    >>> from steelkd.data.transforms import build_train_transform
    >>> build_train_transform(crop=None, hflip=0, vflip=0, brightness_contrast=0) is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2

__all__ = ["build_train_transform"]


def build_train_transform(
    crop: Sequence[int] | None = (256, 512),
    hflip: float = 0.5,
    vflip: float = 0.5,
    brightness_contrast: float = 0.5,
    *,
    scale_jitter: Sequence[float] | None = None,
    crop_on_defect: float = 0.0,
) -> A.Compose | None:
    """The training augmentation: optional random rescale, random crop (padding first if the image is
    smaller), flips and brightness/contrast jitter. Geometric steps move the image and the label map
    together; the pad value is 0 for both (black image, background label).

    With ``scale_jitter = [low, high]`` each image is first resized by one factor drawn uniformly in
    ``[low, high]`` (both sides, aspect kept; new size ``int(side * factor)``): the image bilinearly, the
    label map and every other mask target (e.g. the teacher-logit cache's ``"teacher"``) by
    centre-aligned nearest neighbour (``cv2.INTER_NEAREST_EXACT``), so labels stay labels and sit on the
    same pixels as the image. The crop then pads a rescaled image smaller than it.

    Args:
        crop: ``[height, width]`` of the random crop; empty or ``None``: keep the full image.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        brightness_contrast: probability of a random brightness/contrast change (limits ±0.2).
        scale_jitter: ``[low, high]`` range of the random rescale factor, ``0 < low <= high``; empty or
            ``None``: no rescale. Without a crop the output size then varies from image to image.
        crop_on_defect: probability that the crop is placed over a defect: it then contains a pixel drawn
            uniformly among the label map's non-zero (non-background) pixels
            (``albumentations.CropNonEmptyMaskIfExists``; uniform when the map has none). The other crops
            are uniform (``RandomCrop``). Needs ``crop``.

    Returns:
        An ``albumentations.Compose`` called as ``t(image=img, mask=mask)``, or ``None`` when every
        augmentation is off.

    Example:
        >>> import numpy as np
        >>> t = build_train_transform(crop=[32, 48])
        >>> out = t(image=np.zeros((20, 100, 3), np.uint8), mask=np.zeros((20, 100), np.uint8))
        >>> out["image"].shape, out["mask"].shape
        ((32, 48, 3), (32, 48))
        >>> t = build_train_transform(crop=[32, 48], scale_jitter=[0.5, 2.0])
        >>> out = t(image=np.zeros((40, 60, 3), np.uint8), mask=np.zeros((40, 60), np.uint8))
        >>> out["image"].shape, out["mask"].shape
        ((32, 48, 3), (32, 48))
    """
    steps: list[A.BasicTransform] = []
    if scale_jitter:
        low, high = _scale_range(scale_jitter)
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            )
        )
    if crop:
        if len(crop) != 2 or min(int(c) for c in crop) < 1:
            raise ValueError(f"crop must be [height, width] with positive sizes, got {list(crop)}")
        ch, cw = int(crop[0]), int(crop[1])
        steps.append(
            A.PadIfNeeded(
                min_height=ch, min_width=cw, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=1.0
            )
        )
        steps.append(_crop(ch, cw, crop_on_defect))
    if hflip > 0:
        steps.append(A.HorizontalFlip(p=hflip))
    if vflip > 0:
        steps.append(A.VerticalFlip(p=vflip))
    if brightness_contrast > 0:
        steps.append(
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=brightness_contrast)
        )
    if not steps:
        return None
    return A.Compose(steps)


def _crop(height: int, width: int, on_defect: float) -> A.BasicTransform:
    """A ``height x width`` crop, over a defect pixel with probability ``on_defect``, uniform otherwise."""
    if not 0 <= on_defect <= 1:
        raise ValueError(f"crop_on_defect must be in 0..1, got {on_defect}")
    if on_defect == 0:
        return A.RandomCrop(height=height, width=width, p=1.0)
    on = A.CropNonEmptyMaskIfExists(height=height, width=width, ignore_values=[0], p=on_defect)
    if on_defect == 1:
        return on
    # OneOf draws one child with probability proportional to its p
    return A.OneOf([on, A.RandomCrop(height=height, width=width, p=1.0 - on_defect)], p=1.0)


def _scale_range(scale_jitter: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` of a ``[low, high]`` scale range; ``ValueError`` unless ``0 < low <= high``."""
    values = [float(v) for v in scale_jitter]
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ValueError(f"scale_jitter must be [low, high] with 0 < low <= high, got {list(scale_jitter)}")
    return values[0], values[1]
