"""Evaluate a trained segmenter on a full-resolution split.

Metrics come from :class:`steelkd.metrics.SegMetrics` (dataset-level Dice/IoU per class, see
``docs/evaluation.md``). Images are never resized or cropped: the network sees each image at its native
size (or, with ``tile=``, tile by tile with blended logits: :mod:`steelkd.tiling`); images of equal size
are batched together. The label maps scored are the argmax of the logits by default (the training-time
validation metric); ``post=`` scores the post-processed label maps ``steelkd predict`` writes
(thresholds, minimum areas: :class:`steelkd.postprocess.PostProcess`) instead.

Example:
    >>> from steelkd.models import load_model  # doctest: +SKIP
    >>> from steelkd.data import build_datasets  # doctest: +SKIP
    >>> model, card = load_model("runs/student/model")  # doctest: +SKIP
    >>> _, val = build_datasets(cfg.data)  # doctest: +SKIP
    >>> evaluate_model(model, val, device="auto")["mdice"]  # doctest: +SKIP
    0.7503
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from steelkd.data.batching import EqualSizeBatchSampler, dataset_sizes
from steelkd.io import atomic_write_text
from steelkd.metrics import SegMetrics
from steelkd.postprocess import PostProcess, softmax
from steelkd.runtime import autocast_context, resolve_device
from steelkd.tiling import Tiling

__all__ = ["dataset_logits", "describe_postprocess", "evaluate_model", "predict_logits", "save_metrics_json"]

def _batches(dataset: Any, batch_size: int, num_workers: int) -> DataLoader:
    """(images N x 3 x H x W, masks N x H x W) batches of equal-sized images, in dataset order per size."""
    sampler = EqualSizeBatchSampler(dataset_sizes(dataset), batch_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, *, device: str | torch.device = "cpu", precision: str = "32"
) -> torch.Tensor:
    """Run ``model`` on a normalised batch (N x 3 x H x W) and return float32 logits on the CPU."""
    dev = resolve_device(device)
    with autocast_context(dev, precision):
        out = model(images.to(dev, non_blocking=True))
    if isinstance(out, Mapping):
        out = out["logits"]
    return out.float().cpu()


def dataset_logits(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "32",
    num_workers: int = 0,
    tile: Tiling | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(logits N x C x H x W float32 CPU, masks N x H x W)`` for every equal-size batch of ``dataset``.

    The model is moved to ``device`` and put in eval mode. Without ``tile`` each batch runs whole; with it,
    tile by tile (:func:`steelkd.tiling.tiled_logits`, at most ``batch_size`` tiles per forward pass),
    so frames larger than memory allows are scored at full resolution.

    Example:
        >>> for logits, masks in dataset_logits(model, val_ds, tile=Tiling((256, 512))):  # doctest: +SKIP
        ...     pass
    """
    dev = resolve_device(device)
    autocast_context(dev, precision)  # validate early
    model = model.to(dev).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        return predict_logits(model, torch.from_numpy(batch), device=dev, precision=precision).numpy()

    tiling = None if tile is None else Tiling(tile.tile, tile.overlap, tile_batch=batch_size)
    for images, masks in _batches(dataset, batch_size, num_workers):
        if tiling is None:
            logits = predict_logits(model, images, device=dev, precision=precision)
        else:
            logits = torch.from_numpy(tiling(run, images.numpy()))
        if logits.shape[-2:] != masks.shape[-2:]:
            raise ValueError(
                f"model output {tuple(logits.shape[-2:])} differs from mask size {tuple(masks.shape[-2:])}"
            )
        yield logits, masks


def _labels(logits: torch.Tensor, post: PostProcess | None) -> torch.Tensor:
    """Argmax label maps, or the post-processed ones (numpy, per image) with ``post``."""
    if post is None:
        return logits.argmax(1)
    probs = softmax(logits.numpy(), axis=1)
    return torch.from_numpy(np.stack([post(p) for p in probs]).astype(np.int64))


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "32",
    num_workers: int = 0,
    tile: Tiling | None = None,
    post: PostProcess | None = None,
) -> dict[str, Any]:
    """Segment every image of ``dataset`` at full size and compute the dataset-level metrics.

    Args:
        model: a segmenter returning logits N x C x H x W at the input size (put in eval mode here).
        dataset: a SegDataset (``(image 3 x H x W float, mask H x W int64)`` items, ``class_names``),
            e.g. the val split of :func:`steelkd.data.build_datasets`; never cropped or resized.
        batch_size: images per forward pass; only images of equal size are batched together.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast for the forward pass).
        num_workers: DataLoader worker processes reading the images (0: read in this process).
        tile: run each image tile by tile with blended logits (:class:`steelkd.tiling.Tiling`); ``None``
            (default): whole images.
        post: score post-processed label maps (softmax, thresholds, minimum areas, as ``steelkd
            predict``); ``None`` (default): the argmax of the logits.

    Returns:
        ``{"num_images", "class_names" (all, background first), "dice" {class: value} (defect classes),
        "mdice", "iou" {class: value}, "miou" (defect classes), "miou_bg" (incl. background),
        "kaggle_dice", "kaggle_dice_per_class" {class: value}, "pixel_counts" and "pred_counts" {class:
        truth / predicted pixels} (all classes), "device", "precision", "seconds",
        "labels" ("argmax" or the post-processing used), "tiling" (``None`` or its description)}``.
        Dice/IoU per class are dataset-level (pixel counts summed over all images); ``kaggle_dice`` is
        the mean over image x class pairs.

    Raises:
        ValueError: empty dataset, bad batch size, or the model's class count does not match the data.

    Example:
        >>> res = evaluate_model(model, val_ds, batch_size=4, device="auto")  # doctest: +SKIP
        >>> res["mdice"], res["dice"]["scratches"]  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("evaluate_model: the dataset has no images")
    class_names = list(getattr(dataset, "class_names", []))
    num_classes = int(getattr(model, "num_classes", 0) or len(class_names))
    if class_names and len(class_names) != num_classes:
        raise ValueError(
            f"model predicts {num_classes} classes but the data set has {len(class_names)} "
            f"({', '.join(class_names)})"
        )
    if not class_names:
        class_names = ["background", *[f"class{k}" for k in range(1, num_classes)]]
    dev = resolve_device(device)
    if post is not None:
        post.thresholds(num_classes)  # validate against the class count before the first image
        post.min_areas(num_classes, (256, 1600))
    metric = SegMetrics(num_classes)
    t0 = time.perf_counter()
    n = 0
    batches = dataset_logits(model, dataset, batch_size=batch_size, device=dev, precision=precision,
                             num_workers=num_workers, tile=tile)
    for logits, masks in batches:
        metric.update(_labels(logits, post), masks.long())
        n += masks.shape[0]
    seconds = time.perf_counter() - t0
    return {
        "num_images": n,
        "class_names": class_names,
        **_named(metric.compute(), class_names),
        "device": str(dev),
        "precision": str(precision),
        "seconds": seconds,
        "labels": "argmax" if post is None else describe_postprocess(post, num_classes),
        "tiling": None if tile is None else tile.describe(),
    }


def describe_postprocess(post: PostProcess, num_classes: int) -> dict[str, Any]:
    """The post-processing as plain values (for JSON results): thresholds, minimum areas, mode."""
    thr = post.thresholds(num_classes)
    return {
        "threshold": None if thr is None else [float(t) for t in thr],
        "min_area": post.min_areas(num_classes, (256, 1600)).tolist(),
        "min_area_mode": post.min_area_mode,
        "scale_min_area": post.scale_min_area,
    }


def _named(res: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """SegMetrics.compute() with per-class values keyed by defect-class name, plain floats."""
    defect = class_names[1:]
    return {
        "dice": {c: _f(v) for c, v in zip(defect, _seq(res["dice"]), strict=True)},
        "mdice": _f(res["mdice"]),
        "iou": {c: _f(v) for c, v in zip(defect, _seq(res["iou"]), strict=True)},
        "miou": _f(res["miou"]),
        "miou_bg": _f(res["miou_bg"]),
        "kaggle_dice": _f(res["kaggle_dice"]),
        "kaggle_dice_per_class": {
            c: _f(v) for c, v in zip(defect, _seq(res.get("kaggle_dice_per_class", [])), strict=False)
        },
        "pixel_counts": dict(zip(class_names, res["pixel_counts"], strict=True)),
        "pred_counts": dict(zip(class_names, res["pred_counts"], strict=True)),
    }


def _f(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _seq(v: Any) -> list[Any]:
    return v.tolist() if isinstance(v, torch.Tensor) else list(v)


def save_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write an evaluation result as pretty JSON (atomically)."""
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    return Path(path)
