"""The teacher-logit cache: the teacher's logits of every training image, computed once, reused each step.

A live distillation step runs the teacher's forward pass on every batch. With ``distill.logit_cache`` set,
:func:`open_or_build` runs the teacher once over the *un-augmented, full-size* training images and keeps
its head output at 1/4 resolution (``logits_low``, the map the network upsamples into its logits) in
fp16 in one flat file. Each training item then upsamples its cached map to the image size exactly as the
network does (bilinear, ``align_corners=False``) and :meth:`SegDataset.sample` crops, pads and flips it
with the very same random draw as the image and the label map, so the student learns from the teacher's
logits of the pixels it sees. What differs from a live teacher (measured in ``results/neu_seg_cache``):
the teacher saw the whole image rather than the crop (no crop-border effects) and never the brightness /
contrast jitter, and its logits went through fp16.

Layout of a cache folder: ``logits_low.f16`` (every map, C x h x w each, back to back, float16),
``index.json`` (its key, and each item's offset and shape). A folder whose key differs from the run's
(another teacher, other training images) is rebuilt; a new cache is written next to the folder and
renamed into place, so a killed build never leaves a half-written cache behind.

Example:
    >>> cache = open_or_build(teacher, train_ds, "runs/kd/teacher_logits")  # doctest: +SKIP
    >>> train_ds = CachedTeacherDataset(train_ds, cache)  # doctest: +SKIP
    >>> image, mask, teacher_logits = train_ds[0]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from steelkd.data import SegDataset, equal_size_batches
from steelkd.data.image import normalize
from steelkd.runtime import autocast_context

__all__ = [
    "CACHE_VERSION",
    "CachedTeacher",
    "CachedTeacherDataset",
    "LogitCache",
    "cache_key",
    "open_or_build",
]

log = logging.getLogger("steelkd.engine")

#: Format version of a cache folder; part of its key.
CACHE_VERSION = 1
LOGITS_FILE = "logits_low.f16"
INDEX_FILE = "index.json"
#: The albumentations target name of the cached logits (a mask target: moved, never interpolated).
TARGET = "teacher"


class LogitCache:
    """A cache folder opened for reading: item ``i``'s 1/4-resolution teacher logits.

    Args:
        root: the cache folder.
        index: its ``index.json`` (``key``, and ``items``: ``[offset, [C, h, w]]`` per training item).
    """

    def __init__(self, root: Path, index: dict[str, Any]) -> None:
        self.root, self.key = root, index["key"]
        self.items: list[tuple[int, tuple[int, int, int]]] = [(int(o), tuple(s)) for o, s in index["items"]]
        self._data: np.ndarray | None = None  # opened lazily: a memmap per loader process

    def __len__(self) -> int:
        return len(self.items)

    def low(self, i: int) -> np.ndarray:
        """The cached ``C x h x w`` float16 map of item ``i``."""
        if self._data is None:
            self._data = np.memmap(self.root / LOGITS_FILE, dtype=np.float16, mode="r")
        offset, shape = self.items[i]
        return np.asarray(self._data[offset : offset + int(np.prod(shape))]).reshape(shape)

    def full(self, i: int, size: tuple[int, int]) -> np.ndarray:
        """Item ``i``'s logits at ``size``, ``H x W x C`` float32, upsampled as the network does."""
        low = torch.from_numpy(self.low(i).astype(np.float32))[None]
        up = F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0]
        return np.ascontiguousarray(up.permute(1, 2, 0).numpy())

    def __getstate__(self) -> dict[str, Any]:  # a memmap is not sent to loader workers; each opens its own
        return {**self.__dict__, "_data": None}


def cache_key(teacher: nn.Module, dataset: SegDataset) -> dict[str, Any]:
    """What a cache was computed from: format, teacher weights, training images (ids and sizes)."""
    weights = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    images = hashlib.sha256(
        json.dumps([[str(i), list(dataset.image_size(k))] for k, i in enumerate(dataset.ids)]).encode()
    )
    return {
        "version": CACHE_VERSION,
        "teacher_sha256": weights.hexdigest(),
        "images_sha256": images.hexdigest(),
        "images": len(dataset),
        "classes": len(dataset.class_names),
    }


def _read_index(root: Path) -> dict[str, Any] | None:
    try:
        index = json.loads((root / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and "key" in index and "items" in index else None


@torch.no_grad()
def _build(
    teacher: nn.Module, dataset: SegDataset, tmp: Path, key: dict[str, Any], device: torch.device,
    precision: str, batch_size: int,
) -> dict[str, Any]:  # fmt: skip
    sizes = [dataset.image_size(i) for i in range(len(dataset))]
    items: list[list[Any]] = [[0, [0, 0, 0]] for _ in sizes]
    offset = 0
    with open(tmp / LOGITS_FILE, "wb") as f:
        for batch in equal_size_batches(sizes, batch_size):
            x = torch.from_numpy(np.stack([normalize(dataset.read_image(i)) for i in batch])).to(device)
            with autocast_context(device, precision):
                low = teacher(x, return_features=True)["logits_low"]
            arr = low.float().cpu().numpy().astype(np.float16)
            for i, a in zip(batch, arr, strict=True):
                items[i] = [offset, list(a.shape)]
                offset += a.size
                f.write(np.ascontiguousarray(a).tobytes())
        f.flush()
        os.fsync(f.fileno())
    index = {"key": key, "items": items}
    (tmp / INDEX_FILE).write_text(json.dumps(index))
    return index


def open_or_build(
    teacher: nn.Module,
    dataset: SegDataset,
    root: str | Path,
    *,
    device: torch.device | str = "cpu",
    precision: str = "32",
    batch_size: int = 16,
) -> LogitCache:
    """The cache of ``teacher`` over ``dataset`` at ``root``: reused when its key matches, else (re)built.

    Args:
        teacher: the frozen teacher (``return_features=True`` gives ``logits_low``).
        dataset: the training set (its raw images are read; its augmentation is not applied).
        root: the cache folder.
        device / precision: where and how the teacher runs once (e.g. ``bf16-mixed``; stored as fp16).
        batch_size: images per teacher forward pass (images of one size only).

    Returns:
        The opened :class:`LogitCache`.
    """
    root = Path(root)
    device = torch.device(device)
    key = cache_key(teacher, dataset)
    index = _read_index(root)
    if index is not None and index["key"] == key:
        return LogitCache(root, index)
    log.info("teacher-logit cache: computing %d images into %s", len(dataset), root)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    was_training = teacher.training
    try:
        index = _build(teacher.eval(), dataset, tmp, key, device, precision, batch_size)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        teacher.train(was_training)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return LogitCache(root, index)


class CachedTeacherDataset(Dataset):
    """A training set whose items carry the cached teacher logits, augmented with the image.

    Item ``i`` is ``(image, label map, teacher logits C x h x w float32)``; the logits are cropped and
    flipped with the same random draw as the image (:meth:`SegDataset.sample`). ``transform`` is the wrapped
    set's, so :class:`~steelkd.engine.datamodule.EpochSeededDataset` seeds it as before.

    Raises:
        ValueError: the cache does not hold one map per training image.
    """

    def __init__(self, dataset: SegDataset, cache: LogitCache) -> None:
        if len(cache) != len(dataset):
            raise ValueError(f"{cache.root}: {len(cache)} cached maps for {len(dataset)} training images")
        self.dataset, self.cache = dataset, cache
        if dataset.transform is not None:
            dataset.transform.add_targets({TARGET: "mask"})

    @property
    def transform(self) -> Any:
        return self.dataset.transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        size = self.dataset.image_size(i)
        image, mask, extra = self.dataset.sample(i, {TARGET: self.cache.full(i, size)})
        return image, mask, extra[TARGET].permute(2, 0, 1).contiguous()


class CachedTeacher(nn.Module):
    """The teacher's logits as the batch brings them (third element, from :class:`CachedTeacherDataset`)."""

    def forward(self, batch: Any) -> dict[str, Any]:
        return {"logits": batch[2]}
