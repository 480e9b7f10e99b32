"""Image normalisation and the training augmentations (albumentations).

Images are ``uint8`` RGB ``H x W x 3``; models get ``float32`` ``3 x H x W`` tensors normalised with the
ImageNet mean and standard deviation (after dividing by 255). Prediction and evaluation code reuses
:func:`normalize_image` so training and inference see identical inputs.

Example:
    >>> import numpy as np
    >>> from steelkd.data.transforms import normalize_image
    >>> normalize_image(np.zeros((4, 6, 3), dtype=np.uint8)).shape
    torch.Size([3, 4, 6])
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

__all__ = ["MEAN", "STD", "build_train_transform", "denormalize_image", "normalize_image"]

#: ImageNet channel means (RGB, 0..1 scale).
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, 0..1 scale).
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_SCALE = (1.0 / (255.0 * np.asarray(STD, dtype=np.float32))).reshape(3, 1, 1)
_SHIFT = (np.asarray(MEAN, dtype=np.float32) / np.asarray(STD, dtype=np.float32)).reshape(3, 1, 1)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """Turn an RGB ``uint8`` ``H x W x 3`` image into a normalised ``float32`` ``3 x H x W`` tensor.

    ``(image / 255 - MEAN) / STD`` per channel. A ``H x W`` grayscale image is replicated to 3 channels.

    Args:
        image: ``uint8`` array ``H x W x 3`` (or ``H x W``).

    Returns:
        ``torch.float32`` tensor ``3 x H x W``.

    Example:
        >>> import numpy as np
        >>> x = normalize_image(np.full((2, 2, 3), 255, dtype=np.uint8))
        >>> round(float(x[0, 0, 0]), 4)
        2.2489
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"normalize_image expects an H x W x 3 image, got shape {img.shape}")
    chw = img.transpose(2, 0, 1).astype(np.float32)
    chw *= _SCALE
    chw -= _SHIFT
    return torch.from_numpy(np.ascontiguousarray(chw))


def denormalize_image(x: torch.Tensor) -> np.ndarray:
    """Invert :func:`normalize_image`: ``3 x H x W`` float tensor to ``uint8`` ``H x W x 3`` (for figures).

    Example:
        >>> import numpy as np
        >>> img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        >>> bool((denormalize_image(normalize_image(img)) == img).all())
        True
    """
    arr = x.detach().cpu().float().numpy()
    arr = (arr + _SHIFT) / _SCALE
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


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
