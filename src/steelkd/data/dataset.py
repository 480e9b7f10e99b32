"""The dataset base class shared by the Severstal and folder layouts."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from steelkd.data.image import check_image, image_size, normalize, read_image

__all__ = ["SegDataset", "check_items"]


class SegDataset(Dataset):
    """A segmentation dataset: images plus label maps (``0`` background, ``1..K-1`` classes).

    Subclasses implement :meth:`image_path` and :meth:`read_mask`. ``__getitem__`` returns the
    normalised ``float32`` image tensor ``3 x H x W`` and the ``int64`` label map ``H x W``, after the
    optional albumentations ``transform`` (applied to image and mask together).

    Args:
        ids: image ids (file names or stems), one per item.
        class_names: label names, background first.
        transform: albumentations transform called as ``transform(image=..., mask=...)``, or ``None``.

    Example:
        >>> from steelkd.config import DataConfig
        >>> from steelkd.data import build_datasets
        >>> train_ds, val_ds = build_datasets(DataConfig(kind="synth", root="/tmp/s"))  # doctest: +SKIP
        >>> image, mask = train_ds[0]  # doctest: +SKIP
    """

    def __init__(self, ids: list[str], class_names: list[str], transform: A.Compose | None = None) -> None:
        self.ids = list(ids)
        self.class_names = list(class_names)
        self.transform = transform
        self._sizes: dict[int, tuple[int, int]] = {}
        self._cache: dict[int, np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        """Number of label values, background included."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, i: int) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_image(self, i: int) -> np.ndarray:
        """Raw image ``i``: RGB ``uint8`` ``H x W x 3``, full size, no augmentation.

        With ``cache_images()`` on, each image is decoded once and a copy of the cached array is returned.
        """
        if self._cache is not None and i in self._cache:
            return self._cache[i].copy()
        img = read_image(self.image_path(i))
        self._sizes[i] = (int(img.shape[0]), int(img.shape[1]))
        if self._cache is not None:
            self._cache[i] = img
            return img.copy()
        return img

    def cache_images(self, on: bool = True) -> None:
        """Keep decoded images in memory from now on (``data.cache_images``), or drop the cache."""
        self._cache = {} if on else None

    def image_size(self, i: int) -> tuple[int, int]:
        """``(height, width)`` of image ``i`` (from the file header; cached)."""
        if i not in self._sizes:
            self._sizes[i] = image_size(self.image_path(i))
        return self._sizes[i]

    def read_mask(self, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:  # pragma: no cover
        """Raw label map ``i``: ``uint8`` ``H x W``, full size, no augmentation."""
        raise NotImplementedError

    def classes_present(self, i: int) -> tuple[int, ...]:
        """The non-background label values in label map ``i`` (for stratified splits)."""
        return tuple(int(v) for v in np.unique(self.read_mask(i)) if v)

    def subset(self, indices: Sequence[int], transform: A.Compose | None) -> SegDataset:
        """A dataset of the same kind holding items ``indices`` (in that order) with ``transform``.

        Subclasses that keep per-item lists besides ``ids`` select them in :meth:`_select`.
        """
        out = copy.copy(self)
        out.ids = [self.ids[i] for i in indices]
        out.transform = transform
        out._sizes = {}
        out._cache = {} if self._cache is not None else None
        out._select(list(indices))
        return out

    def _select(self, indices: list[int]) -> None:
        """Keep the per-item lists of ``indices`` (``ids`` is already selected)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask, _ = self.sample(i)
        return image, mask

    def sample(
        self, i: int, extra: dict[str, np.ndarray] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Item ``i`` with extra per-pixel arrays moved by the same augmentation as its mask.

        Args:
            i: the item.
            extra: name -> ``H x W (x C)`` array of the image's size (e.g. a teacher's logits), each
                cropped, padded (with 0) and flipped exactly as the label map; the transform must know
                the names as mask targets (``transform.add_targets({name: "mask"})``).

        Returns:
            ``(image 3 x H x W float32, label map H x W int64, {name: transformed array as a tensor})``.
        """
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i = i % len(self)
        image = self.read_image(i)
        mask = self.read_mask(i, shape=(image.shape[0], image.shape[1]))
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{self.ids[i]}: mask is {mask.shape[0]}x{mask.shape[1]} but the image is "
                f"{image.shape[0]}x{image.shape[1]}"
            )
        extra = dict(extra or {})
        if self.transform is not None:
            out: dict[str, Any] = self.transform(image=image, mask=np.ascontiguousarray(mask), **extra)
            image, mask = out["image"], out["mask"]
            extra = {k: out[k] for k in extra}
        arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in extra.items()}
        return torch.from_numpy(normalize(image)), torch.from_numpy(np.asarray(mask).astype(np.int64)), arrays


def check_items(dataset: SegDataset) -> list[tuple[int, int]]:
    """Prove every item of ``dataset`` readable, cheaply; return the ``(height, width)`` of each.

    Each image is decoded by :func:`steelkd.data.image.check_image` (JPEGs at 1/8 scale) and each mask
    read in full by ``read_mask(i, shape)``, which checks its size against the image and its values
    against the classes. For a validation set this costs a fraction of one validation epoch and turns a
    bad file into an error before training starts, not after the first epoch.

    Raises:
        FileNotFoundError / ValueError: one line naming the first bad file.

    Example:
        >>> sizes = check_items(val_ds)  # doctest: +SKIP
    """
    sizes: list[tuple[int, int]] = []
    for i in range(len(dataset)):
        size = check_image(dataset.image_path(i))
        mask = dataset.read_mask(i, shape=size)
        if mask.shape != size:
            raise ValueError(
                f"{dataset.ids[i]}: mask is {mask.shape[0]}x{mask.shape[1]} "
                f"but the image is {size[0]}x{size[1]}"
            )
        dataset._sizes[i] = size
        sizes.append(size)
    return sizes
