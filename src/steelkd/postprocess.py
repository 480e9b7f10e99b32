"""Post-processing shared by every inference backend: probabilities to label maps, and overlays.

Everything here is numpy (plus OpenCV for connected components and Pillow for the legend), so the
PyTorch and the ONNX Runtime backends run exactly the same code after ``logits = f(batch)``.

The rule that turns class probabilities into a label map (the approach of the best Kaggle Severstal
solutions, adapted to a softmax model):

1. ``probs = softmax(logits)`` over the class axis (background is channel 0).
2. Per-class probability threshold: a pixel gets the defect class with the highest probability among the
   defect classes whose probability reaches their threshold, and background when none does. With every
   threshold >= 0.5 at most one class can qualify, so this equals "argmax, unless the winning class is
   below its threshold". ``threshold=None`` is the plain argmax (what validation metrics use).
3. Minimum defect area per class: with ``min_area_mode="total"`` (default) a class is erased from an image
   when its total area there is below the class's minimum (the Kaggle metric scores every image x class
   pair, so a small false positive on a clean image costs a whole pair); with ``"component"`` each
   8-connected component smaller than the minimum is erased instead. The minima are given for a
   256 x 1600 Severstal image and scaled by the image area.

Example:
    >>> import numpy as np
    >>> from steelkd.postprocess import PostProcess, softmax
    >>> logits = np.zeros((5, 64, 256), np.float32); logits[3, :, :100] = 5.0
    >>> label = PostProcess(min_area=[0, 0, 0, 0])(softmax(logits, axis=0))
    >>> int((label == 3).sum())
    6400
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Image area the Severstal default minimum areas refer to (256 x 1600 pixels).
REFERENCE_AREA: int = 256 * 1600

#: Default minimum total defect area per Severstal class (pitting, crazing, scratches, patches) on a
#: 256 x 1600 image: about the 1st percentile of the true per-image class areas in the real
#: ``train.csv`` rows (501 / 560 / 839 / 2085 pixels), so fewer than ~1-2% of real defects are smaller.
SEVERSTAL_MIN_AREA: tuple[int, ...] = (500, 500, 800, 2000)

#: Default minimum area for data sets whose class count is not Severstal's: the smallest Severstal
#: minimum, i.e. ~0.12% of the image area (scaled like the others).
GENERIC_MIN_AREA: int = min(SEVERSTAL_MIN_AREA)

#: Fixed class colours (RGB), index = label value; 0 (background) is never painted. Distinct, saturated
#: colours that stand out on grey steel. Longer class lists cycle through entries 1..19.
PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),
        (230, 25, 75),  # 1 red
        (60, 180, 75),  # 2 green
        (255, 225, 25),  # 3 yellow
        (0, 130, 200),  # 4 blue
        (245, 130, 48),  # 5 orange
        (145, 30, 180),  # 6 purple
        (70, 240, 240),  # 7 cyan
        (240, 50, 230),  # 8 magenta
        (210, 245, 60),  # 9 lime
        (250, 190, 212),  # 10 pink
        (0, 128, 128),  # 11 teal
        (220, 190, 255),  # 12 lavender
        (170, 110, 40),  # 13 brown
        (255, 250, 200),  # 14 beige
        (128, 0, 0),  # 15 maroon
        (170, 255, 195),  # 16 mint
        (128, 128, 0),  # 17 olive
        (255, 215, 180),  # 18 apricot
        (0, 0, 128),  # 19 navy
    ],
    dtype=np.uint8,
)

MIN_AREA_MODES = ("total", "component")

#: The fields of a model card's ``postprocess`` section (written by ``steelkd calibrate``) that
#: :func:`postprocess_from_card` reads; the section may also hold a free-form ``calibration`` record.
CARD_FIELDS: tuple[str, ...] = ("threshold", "min_area", "min_area_mode")


def palette(num_classes: int) -> np.ndarray:
    """Return ``(num_classes, 3)`` uint8 RGB colours: :data:`PALETTE`, cycled past its length.

    Example:
        >>> palette(5)[1].tolist()
        [230, 25, 75]
    """
    if num_classes <= len(PALETTE):
        return PALETTE[:num_classes].copy()
    idx = np.concatenate([[0], 1 + (np.arange(num_classes - 1) % (len(PALETTE) - 1))])
    return PALETTE[idx]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax in float32.

    Args:
        logits: any-shaped array of class scores.
        axis: the class axis (1 for ``N x C x H x W``, 0 for ``C x H x W``).
    """
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _per_class(value: float | int | Sequence[float] | Sequence[int], n: int, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f"{what}: expected 1 or {n} values (one per defect class), got {arr.tolist()}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: values must be finite and >= 0, got {arr.tolist()}")
    return arr


@dataclass
class PostProcess:
    """Turn ``C x H x W`` class probabilities into a ``uint8`` label map (see the module docstring).

    Args:
        threshold: probability threshold per defect class (one value for all, or one per defect class
            1..C-1); ``None`` = plain argmax without thresholds.
        min_area: minimum defect area per defect class in pixels of a 256 x 1600 image (one value or one
            per class); ``None`` = defaults (:data:`SEVERSTAL_MIN_AREA` when there are 4 defect classes,
            else :data:`GENERIC_MIN_AREA` for each); 0 disables the filter.
        min_area_mode: ``"total"`` (erase a class whose total area in the image is too small) or
            ``"component"`` (erase each too-small 8-connected component).
        scale_min_area: scale the minima by ``H * W / (256 * 1600)``; ``False`` uses them as pixels.

    Example:
        >>> import numpy as np
        >>> probs = np.zeros((5, 8, 8), np.float32); probs[0] = 1.0
        >>> probs[:, :2, :2] = [[[0.]], [[0.9]], [[0.1]], [[0.]], [[0.]]]
        >>> label = PostProcess(threshold=0.5, min_area=0)(probs)
        >>> int(label.max()), int((label == 1).sum())
        (1, 4)
    """

    threshold: float | Sequence[float] | None = 0.5
    min_area: int | Sequence[int] | None = None
    min_area_mode: str = "total"
    scale_min_area: bool = True

    def __post_init__(self) -> None:
        if self.min_area_mode not in MIN_AREA_MODES:
            raise ValueError(f"min_area_mode: expected 'total' or 'component', got {self.min_area_mode!r}")

    def thresholds(self, num_classes: int) -> np.ndarray | None:
        """Per-defect-class thresholds ``(num_classes - 1,)``, or ``None`` for plain argmax."""
        if self.threshold is None:
            return None
        thr = _per_class(self.threshold, num_classes - 1, "threshold")
        if np.any(thr > 1):
            raise ValueError(f"threshold: probabilities must be in [0, 1], got {thr.tolist()}")
        return thr

    def min_areas(self, num_classes: int, shape: tuple[int, int]) -> np.ndarray:
        """Minimum areas in pixels for an image of ``shape`` (H, W), one per defect class (int64)."""
        if self.min_area is None:
            base: float | Sequence[float] = SEVERSTAL_MIN_AREA if num_classes == 5 else GENERIC_MIN_AREA
        else:
            base = self.min_area
        areas = _per_class(base, num_classes - 1, "min_area")
        if self.scale_min_area:
            areas = areas * (shape[0] * shape[1]) / REFERENCE_AREA
        return np.ceil(areas - 1e-9).astype(np.int64)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """Label map (``uint8`` H x W, 0 = background) from probabilities ``C x H x W``."""
        if probs.ndim != 3:
            raise ValueError(f"expected probabilities C x H x W, got shape {probs.shape}")
        num_classes = probs.shape[0]
        if num_classes > 256:
            raise ValueError(f"at most 256 classes fit a uint8 label map, got {num_classes}")
        label = labels_from_probs(probs, self.thresholds(num_classes))
        return remove_small(label, self.min_areas(num_classes, probs.shape[1:]), self.min_area_mode)


def labels_from_probs(probs: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """Label map from ``C x H x W`` probabilities with per-defect-class ``thresholds`` (``None``: argmax).

    A pixel gets the most probable defect class among those at or above their threshold, else 0.
    """
    if thresholds is None:
        return probs.argmax(axis=0).astype(np.uint8)
    defect = probs[1:]
    qualified = np.where(defect >= thresholds.astype(np.float32)[:, None, None], defect, -1.0)
    best = qualified.argmax(axis=0)
    has = np.take_along_axis(qualified, best[None], axis=0)[0] >= 0
    return np.where(has, best + 1, 0).astype(np.uint8)


def remove_small(label: np.ndarray, min_areas: np.ndarray, mode: str = "total") -> np.ndarray:
    """Erase (set to 0) defects smaller than ``min_areas[c - 1]`` pixels for class ``c``.

    Args:
        label: ``uint8`` H x W label map (modified copy returned).
        min_areas: one minimum per defect class 1..K-1, in pixels.
        mode: ``"total"`` (class total area in the image) or ``"component"`` (8-connected components).
    """
    if mode not in MIN_AREA_MODES:
        raise ValueError(f"min_area_mode: expected 'total' or 'component', got {mode!r}")
    if not np.any(min_areas > 0):
        return label
    out = label.copy()
    counts = np.bincount(label.ravel(), minlength=len(min_areas) + 1)
    for c, minimum in enumerate(min_areas, start=1):
        if counts[c] == 0 or minimum <= 0:
            continue
        if mode == "total":
            if counts[c] < minimum:
                out[label == c] = 0
            continue
        mask = (label == c).astype(np.uint8)
        _, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < minimum)
        small = small[small > 0]
        if small.size:
            out[np.isin(comp, small)] = 0
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _draw_legend(img: Image.Image, class_names: Sequence[str], colors: np.ndarray) -> None:
    """Draw colour swatches and names of the defect classes in the top-left corner (in place)."""
    w, h = img.size
    size = int(np.clip(min(h, w) // 18, 9, 24))
    font = _font(size)
    draw = ImageDraw.Draw(img, "RGBA")
    pad, sw = max(2, size // 4), size
    entries = []
    for c, name in enumerate(class_names[1:], start=1):
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        entries.append((c, name, right - left, bottom - top, left, top))
    row_w = sum(sw + pad + tw + 2 * pad for _, _, tw, _, _, _ in entries) + pad
    one_row = row_w <= w
    line_h = max(sw, *(th for _, _, _, th, _, _ in entries)) if entries else sw
    if one_row:
        box = (0, 0, row_w, line_h + 2 * pad)
    else:
        col_w = max(sw + pad + tw for _, _, tw, _, _, _ in entries) + 2 * pad
        box = (0, 0, min(w, col_w), min(h, len(entries) * (line_h + pad) + pad))
    draw.rectangle(box, fill=(0, 0, 0, 150))
    x, y = pad, pad
    for c, name, tw, th, left, top in entries:
        color = tuple(int(v) for v in colors[c])
        draw.rectangle((x, y, x + sw - 1, y + sw - 1), fill=(*color, 255), outline=(255, 255, 255, 255))
        draw.text((x + sw + pad - left, y + (line_h - th) // 2 - top), name, fill=(255, 255, 255, 255),
                  font=font)
        if one_row:
            x += sw + pad + tw + 2 * pad
        else:
            y += line_h + pad


def overlay(
    image_rgb: np.ndarray,
    label_map: np.ndarray,
    class_names: Sequence[str],
    *,
    alpha: float = 0.45,
    legend: bool = True,
    outline: bool = True,
) -> np.ndarray:
    """Draw a label map over an image: one fixed colour per class, outlines and a legend.

    Args:
        image_rgb: ``H x W x 3`` (or ``H x W`` grayscale) ``uint8`` image.
        label_map: ``H x W`` integer label map, 0 = background (not painted).
        class_names: names of the label values, background first (the legend lists classes 1..K-1).
        alpha: opacity of the class colour inside a defect.
        legend: draw the legend (colour swatch and name per defect class) in the top-left corner.
        outline: draw each defect's boundary in the opaque class colour.

    Returns:
        ``H x W x 3`` ``uint8`` RGB image.

    Example:
        >>> import numpy as np
        >>> img = np.full((64, 256, 3), 128, np.uint8); lab = np.zeros((64, 256), np.uint8)
        >>> lab[30:40, 100:150] = 2
        >>> out = overlay(img, lab, ["background", "a", "b"])
        >>> out.shape, tuple(out[35, 125]) != (128, 128, 128)
        ((64, 256, 3), True)
    """
    img = np.asarray(image_rgb)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"overlay: expected an H x W x 3 image, got shape {img.shape}")
    if img.shape[:2] != label_map.shape:
        raise ValueError(f"overlay: image {img.shape[:2]} and label map {label_map.shape} differ in size")
    num_classes = max(len(class_names), int(label_map.max(initial=0)) + 1)
    colors = palette(num_classes)
    lab = label_map.astype(np.intp)
    out = img.astype(np.float32)
    painted = lab > 0
    if painted.any():
        col = colors[lab].astype(np.float32)
        out[painted] = (1 - alpha) * out[painted] + alpha * col[painted]
        if outline:
            lab8 = label_map.astype(np.uint8)
            kernel = np.ones((3, 3), np.uint8)
            edge = (cv2.dilate(lab8, kernel) != cv2.erode(lab8, kernel)) & painted
            out[edge] = col[edge]
    result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if legend and len(class_names) > 1:
        pil = Image.fromarray(result)
        _draw_legend(pil, class_names, colors)
        result = np.asarray(pil)
    return result


def postprocess_from_card(section: Mapping[str, Any] | None, **overrides: Any) -> PostProcess:
    """The post-processing rule of a model card's ``postprocess`` section, with some fields overridden.

    A field the section does not hold keeps the :class:`PostProcess` default (threshold 0.5, the default
    minimum areas, ``total`` mode); a field in ``overrides`` (``threshold``, ``min_area``,
    ``min_area_mode``, ``scale_min_area``) replaces the card's, so a command-line option wins over the
    calibrated value of that field only.

    Args:
        section: ``ModelCard.postprocess`` (``None``: an uncalibrated model).
        overrides: the fields given explicitly.

    Example:
        >>> post = postprocess_from_card({"threshold": [0.6, 0.7], "min_area": [100, 0]}, min_area=0)
        >>> post.threshold, post.min_area
        ([0.6, 0.7], 0)
    """
    unknown = set(overrides) - {*CARD_FIELDS, "scale_min_area"}
    if unknown:
        raise ValueError(f"postprocess: unknown field(s) {sorted(unknown)}; expected {list(CARD_FIELDS)}")
    values = {k: section[k] for k in CARD_FIELDS if section is not None and k in section}
    values.update(overrides)
    return PostProcess(**values)
