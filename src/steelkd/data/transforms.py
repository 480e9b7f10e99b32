"""The training augmentations (albumentations): random crop, flips, brightness/contrast.

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
) -> A.Compose | None:
    """The training augmentation: random crop (padding first if the image is smaller), flips and
    brightness/contrast jitter. Geometric steps move the image and the label map together; the pad value
    is 0 for both (black image, background label).

    Args:
        crop: ``[height, width]`` of the random crop; empty or ``None``: keep the full image.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        brightness_contrast: probability of a random brightness/contrast change (limits ±0.2).

    Returns:
        An ``albumentations.Compose`` called as ``t(image=img, mask=mask)``, or ``None`` when every
        augmentation is off.

    Example:
        >>> import numpy as np
        >>> t = build_train_transform(crop=[32, 48])
        >>> out = t(image=np.zeros((20, 100, 3), np.uint8), mask=np.zeros((20, 100), np.uint8))
        >>> out["image"].shape, out["mask"].shape
        ((32, 48, 3), (32, 48))
    """
    steps: list[A.BasicTransform] = []
    if crop:
        if len(crop) != 2 or min(int(c) for c in crop) < 1:
            raise ValueError(f"crop must be [height, width] with positive sizes, got {list(crop)}")
        ch, cw = int(crop[0]), int(crop[1])
        steps.append(
            A.PadIfNeeded(
                min_height=ch, min_width=cw, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=1.0
            )
        )
        steps.append(A.RandomCrop(height=ch, width=cw, p=1.0))
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
