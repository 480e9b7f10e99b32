"""Evaluate a trained segmenter on a full-resolution split, and benchmark several models side by side.

Metrics come from :class:`steelkd.metrics.SegMetrics` (dataset-level Dice/IoU per class, see
``docs/evaluation.md``). Images are never resized or cropped: the network sees each image at its native
size; images of equal size are batched together.

Example:
    >>> from steelkd.checkpoint import load_model  # doctest: +SKIP
    >>> from steelkd.data import build_datasets  # doctest: +SKIP
    >>> model, card = load_model("runs/student/model")  # doctest: +SKIP
    >>> _, val = build_datasets(cfg.data)  # doctest: +SKIP
    >>> evaluate_model(model, val, device="auto")["mdice"]  # doctest: +SKIP
    0.7503
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steelkd.io import atomic_write_text
from steelkd.metrics import SegMetrics

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`.

    Raises:
        ValueError: unknown device string, or CUDA asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r}: not a torch device (use auto, cpu, cuda, cuda:0)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a Lightning-style precision string (``"32"`` -> no autocast).

    Raises:
        ValueError: unknown precision.
    """
    p = str(precision)
    if p in ("32", "32-true", "fp32"):
        return contextlib.nullcontext()
    if p in ("bf16-mixed", "bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if p in ("16-mixed", "16"):
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def _equal_size_batches(
    dataset: Any, batch_size: int, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images N x 3 x H x W, masks N x H x W), grouping consecutive samples of equal size."""
    loader: Any
    if num_workers > 0:
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers)
    else:
        loader = (dataset[i] for i in range(len(dataset)))
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for image, mask in loader:
        image = torch.as_tensor(image)
        mask = torch.as_tensor(mask)
        if images and (image.shape != images[0].shape or len(images) >= batch_size):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        images.append(image)
        masks.append(mask)
    if images:
        yield torch.stack(images), torch.stack(masks)


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


def predict_label_map(
    model: nn.Module, image: torch.Tensor, *, device: str | torch.device = "cpu", precision: str = "32"
) -> np.ndarray:
    """Label map (H x W uint8, argmax over classes) of one normalised image (3 x H x W) at full size."""
    model.eval()
    logits = predict_logits(model, image.unsqueeze(0), device=device, precision=precision)
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "32",
    num_workers: int = 0,
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

    Returns:
        ``{"num_images", "class_names" (all, background first), "dice" {class: value} (defect classes),
        "mdice", "iou" {class: value}, "miou" (defect classes), "miou_bg" (incl. background),
        "kaggle_dice", "kaggle_dice_per_class" {class: value}, "device", "precision", "seconds"}``.
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
    autocast_context(dev, precision)  # validate early
    model = model.to(dev).eval()
    metric = SegMetrics(num_classes)
    t0 = time.perf_counter()
    n = 0
    for images, masks in _equal_size_batches(dataset, batch_size, num_workers):
        logits = predict_logits(model, images, device=dev, precision=precision)
        if logits.shape[-2:] != masks.shape[-2:]:
            raise ValueError(
                f"model output {tuple(logits.shape[-2:])} differs from mask size {tuple(masks.shape[-2:])}"
            )
        metric.update(logits.argmax(1), masks.long())
        n += images.shape[0]
    seconds = time.perf_counter() - t0
    res = metric.compute()
    defect = class_names[1:]
    out: dict[str, Any] = {
        "num_images": n,
        "class_names": class_names,
        "dice": {c: _f(v) for c, v in zip(defect, _seq(res["dice"]), strict=True)},
        "mdice": _f(res["mdice"]),
        "iou": {c: _f(v) for c, v in zip(defect, _seq(res["iou"]), strict=True)},
        "miou": _f(res["miou"]),
        "miou_bg": _f(res["miou_bg"]),
        "kaggle_dice": _f(res["kaggle_dice"]),
        "kaggle_dice_per_class": {
            c: _f(v) for c, v in zip(defect, _seq(res.get("kaggle_dice_per_class", [])), strict=False)
        },
        "device": str(dev),
        "precision": str(precision),
        "seconds": seconds,
    }
    return out


def _f(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _seq(v: Any) -> list[Any]:
    return v.tolist() if isinstance(v, torch.Tensor) else list(v)


def save_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write an evaluation result as pretty JSON (atomically)."""
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    return Path(path)


def parse_size(text: str | Sequence[int]) -> tuple[int, int]:
    """``"256x1600"`` or ``[256, 1600]`` -> (height, width).

    Raises:
        ValueError: not two positive integers.

    Example:
        >>> parse_size("256x1600")
        (256, 1600)
    """
    try:
        if isinstance(text, str):
            parts = text.lower().replace(",", "x").split("x")
            h, w = (int(p) for p in parts)
        else:
            h, w = (int(p) for p in text)
    except (ValueError, TypeError):
        raise ValueError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 256x1600") from None
    if h < 1 or w < 1:
        raise ValueError(f"size {text!r}: height and width must be positive")
    return h, w


_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def benchmark_models(
    models: Mapping[str, nn.Module],
    size: str | Sequence[int],
    *,
    repeats: int = 20,
    warmup: int = 5,
    device: str | torch.device = "auto",
    precision: str = "32",
    batch_size: int = 1,
) -> list[dict[str, Any]]:
    """Params, GMACs and throughput of several models, measured one after the other in one process.

    Every model sees the same input (``batch_size`` x 3 x H x W) on the same device, so the FPS column
    compares like with like. Uses :mod:`steelkd.bench` (median latency over ``repeats`` after ``warmup``).

    Args:
        models: label -> network (e.g. model name or path -> model).
        size: input ``"HxW"`` or ``(H, W)``, e.g. the data set's native ``256x1600``.
        repeats: timed forward passes per model (>= 20 recommended).
        warmup: untimed passes first.
        device: ``auto``, ``cpu``, ``cuda``...
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast during the timed passes).
        batch_size: images per forward pass (1 = the paper's FPS).

    Returns:
        One dict per model, in input order: ``model``, ``architecture``, ``params``, ``gmacs``,
        ``latency_ms`` (median), ``p10_ms``, ``p90_ms``, ``fps``, ``batch``, ``height``, ``width``,
        ``precision``, ``repeats``, ``warmup``, ``device``, ``device_name``.

    Example:
        >>> from steelkd.models import create_model
        >>> rows = benchmark_models({"atto": create_model("resunet_convnext_atto")}, "64x64",
        ...                         repeats=2, warmup=0, device="cpu")
        >>> rows[0]["model"], rows[0]["params"] > 0
        ('atto', True)
    """
    from steelkd.bench import count_gmacs, count_params, device_name, measure_latency

    h, w = parse_size(size)
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    dev = resolve_device(device)
    name = device_name(dev)
    rows: list[dict[str, Any]] = []
    for label, model in models.items():
        model = model.to(dev).eval()
        gmacs = count_gmacs(model, (batch_size, 3, h, w))
        x = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
        stats = measure_latency(model, x, repeats=repeats, warmup=warmup, dtype=_AUTOCAST_DTYPES[precision])
        rows.append(
            {
                "model": label,
                "architecture": str(getattr(model, "name", type(model).__name__)),
                "params": count_params(model),
                "gmacs": gmacs,
                "latency_ms": stats["median_s"] * 1e3,
                "p10_ms": stats["p10_s"] * 1e3,
                "p90_ms": stats["p90_s"] * 1e3,
                "fps": stats["fps"],
                "batch": batch_size,
                "height": h,
                "width": w,
                "precision": precision,
                "repeats": repeats,
                "warmup": warmup,
                "device": str(dev),
                "device_name": name,
            }
        )
        model.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows
