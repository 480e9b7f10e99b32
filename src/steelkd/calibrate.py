"""Calibration: per-class probability thresholds and minimum defect areas chosen on validation images.

For every defect class and every candidate pair (threshold ``t`` in :data:`THRESHOLDS`, minimum area
``a`` in :data:`MIN_AREAS`, pixels of a 256 x 1600 image scaled by the image area as in ``steelkd
predict``), the validation images are scored as the post-processing would label them, and one pair is
chosen per class by the target:

- ``dice`` (default): the highest dataset-level Dice of the class (pixel counts summed over the images:
  the per-class Dice of ``steelkd evaluate`` and of the mDice);
- ``kaggle-dice``: the highest mean per-image Dice (an image where class and prediction are both empty
  scores 1: Kaggle Severstal's metric, the one minimum areas act on most);
- ``recall`` with ``value`` r: the lowest per-image false-alarm rate among the pairs whose per-image
  recall (share of the images containing the class in which it is predicted) is at least r;
- ``false-alarm`` with ``value`` f: the highest per-image recall among the pairs whose false-alarm rate
  (share of the images without the class in which it is predicted) is at most f.

Ties go to the higher Dice, then to the earlier pair of the grid. A class without validation examples
(or, for ``false-alarm``, without clean images; or that the model never finds) gets a warning and keeps
its default (the card's previous value, else :class:`~steelkd.postprocess.PostProcess`'s) rather than a
degenerate threshold; an unreachable target takes the nearest pair and says so.

How a candidate is scored: class ``c`` labels a pixel when ``p_c >= t`` and ``c`` is the most probable
defect class there, then the minimum-area rule (``total`` or ``component``, 8-connected) removes small
defects. For thresholds >= 0.5 this is exactly :func:`steelkd.postprocess.labels_from_probs` (at most one
class can reach 0.5); below 0.5 it ignores the rare pixel where a more probable class misses its own
threshold, so classes can be chosen independently. ``steelkd evaluate --postprocess`` then scores the
chosen values exactly. The statistics are accumulated image by image (memory does not grow with the data
set); images of different sizes are batched separately (:mod:`steelkd.data.batching`), and large frames
can be tiled (:mod:`steelkd.tiling`).

Example:
    >>> from steelkd.calibrate import calibrate_model  # doctest: +SKIP
    >>> cal = calibrate_model(model, val_ds, target="recall", value=0.95)  # doctest: +SKIP
    >>> cal.postprocess_section()["threshold"]  # doctest: +SKIP
    [0.45, 0.6, 0.5]
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from steelkd.card import CARD_NAME, ModelCard
from steelkd.evaluate import dataset_logits
from steelkd.io import atomic_write_text
from steelkd.models.saved import model_files
from steelkd.postprocess import MIN_AREA_MODES, REFERENCE_AREA, PostProcess, softmax
from steelkd.tiling import Tiling

__all__ = [
    "MIN_AREAS",
    "TARGETS",
    "THRESHOLDS",
    "Calibration",
    "CalibrationStats",
    "ClassCalibration",
    "calibrate_model",
    "card_path",
    "choose",
    "write_calibration",
    "write_table",
]

#: Calibration targets (see the module docstring).
TARGETS: tuple[str, ...] = ("dice", "kaggle-dice", "recall", "false-alarm")
#: Candidate probability thresholds: 0.25 .. 0.95 in steps of 0.05, then 0.97 and 0.99 (never 0 or 1: a
#: model trained with class weights over-states its defect probabilities, so the useful ones can be high).
THRESHOLDS: tuple[float, ...] = (*(round(0.25 + 0.05 * i, 2) for i in range(15)), 0.97, 0.99)
#: Candidate minimum areas in pixels of a 256 x 1600 image (scaled by the image area).
MIN_AREAS: tuple[int, ...] = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: Per-class curves :meth:`CalibrationStats.curves` returns (each ``len(THRESHOLDS) x len(MIN_AREAS)``).
CURVES: tuple[str, ...] = ("dice", "kaggle_dice", "precision", "recall", "image_recall", "false_alarm",
                           "image_precision")  # fmt: skip


def _ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(den) > 0, num / np.maximum(den, 1e-12), np.nan)


class CalibrationStats:
    """Per-class sums over validation images for every (threshold, minimum area) candidate.

    Args:
        num_classes: label values incl. background.
        thresholds / min_areas: the candidate grid.
        min_area_mode: ``"total"`` or ``"component"`` (as :class:`~steelkd.postprocess.PostProcess`).
        scale_min_area: scale the minimum areas by the image area (``steelkd predict`` does).

    Example:
        >>> stats = CalibrationStats(3)
        >>> probs = np.zeros((3, 4, 4), np.float32); probs[0] = 1; mask = np.zeros((4, 4), np.int64)
        >>> stats.add(probs, mask); float(stats.curves(1)["false_alarm"][0, 0])
        0.0
    """

    def __init__(
        self,
        num_classes: int,
        thresholds: Sequence[float] = THRESHOLDS,
        min_areas: Sequence[float] = MIN_AREAS,
        min_area_mode: str = "total",
        scale_min_area: bool = True,
    ) -> None:
        if min_area_mode not in MIN_AREA_MODES:
            raise ValueError(f"min_area_mode: expected 'total' or 'component', got {min_area_mode!r}")
        if not thresholds or any(not 0 < t < 1 for t in thresholds):
            raise ValueError(f"calibration thresholds must lie strictly in (0, 1), got {list(thresholds)}")
        if not min_areas or any(a < 0 for a in min_areas):
            raise ValueError(f"calibration minimum areas must be >= 0, got {list(min_areas)}")
        self.num_classes = num_classes
        self.thresholds = np.asarray(thresholds, np.float32)
        self.min_areas = np.asarray(min_areas, np.float64)
        self.mode = min_area_mode
        self.scale = scale_min_area
        k, shape = num_classes - 1, (len(thresholds), len(min_areas))
        self.tp = np.zeros((k, *shape), np.int64)  # pixels, summed over images
        self.pred = np.zeros((k, *shape), np.int64)
        self.truth = np.zeros(k, np.int64)
        self.image_dice = np.zeros((k, *shape), np.float64)  # per-image Dice, summed
        self.hits = np.zeros((k, *shape), np.int64)  # images with the class in which it is predicted
        self.alarms = np.zeros((k, *shape), np.int64)  # images without the class in which it is predicted
        self.positives = np.zeros(k, np.int64)  # images containing the class
        self.num_images = 0

    def _pixel_minima(self, shape: tuple[int, int]) -> np.ndarray:
        """The candidate minimum areas in pixels of an image of ``shape`` (the rule of PostProcess)."""
        if not self.scale:
            return np.ceil(self.min_areas - 1e-9).astype(np.int64)
        return np.ceil(self.min_areas * (shape[0] * shape[1]) / REFERENCE_AREA - 1e-9).astype(np.int64)

    def _kept(self, mask: np.ndarray, truth: np.ndarray, minima: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted pixels, true-positive pixels) of ``mask`` after each minimum area."""
        if self.mode == "total":
            area, tp = int(mask.sum()), int(np.count_nonzero(mask & truth))
            keep = (area >= minima) & (area > 0)
            return np.where(keep, area, 0), np.where(keep, tp, 0)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
        tps = np.bincount(comp[truth], minlength=n)[1:].astype(np.int64)
        keep = areas[None, :] >= minima[:, None]
        return (keep * areas).sum(1), (keep * tps).sum(1)

    def add(self, probs: np.ndarray, mask: np.ndarray) -> None:
        """Add one image: ``probs`` C x H x W (softmax), ``mask`` H x W true label map."""
        if probs.shape[0] != self.num_classes or probs.shape[1:] != mask.shape:
            raise ValueError(f"calibration: probabilities {probs.shape} do not fit the mask {mask.shape} and "
                             f"{self.num_classes} classes")
        best = probs[1:].argmax(0) + 1
        minima = self._pixel_minima(mask.shape)
        for k in range(self.num_classes - 1):
            c = k + 1
            truth = mask == c
            g = int(truth.sum())
            self.truth[k] += g
            self.positives[k] += g > 0
            winner = best == c
            for i, t in enumerate(self.thresholds):
                pred, tp = self._kept((probs[c] >= t) & winner, truth, minima)
                self.pred[k, i] += pred
                self.tp[k, i] += tp
                self.image_dice[k, i] += np.where(pred + g > 0, 2.0 * tp / np.maximum(pred + g, 1), 1.0)
                self.hits[k, i] += (pred > 0) & (g > 0)
                self.alarms[k, i] += (pred > 0) & (g == 0)
        self.num_images += 1

    def curves(self, c: int) -> dict[str, np.ndarray]:
        """The :data:`CURVES` of defect class ``c`` (1..C-1): thresholds x minimum areas (NaN: undefined)."""
        k = c - 1
        tp, pred, g = self.tp[k], self.pred[k], self.truth[k]
        negatives = self.num_images - self.positives[k]
        return {
            "dice": _ratio(2.0 * tp, pred + g),
            "kaggle_dice": _ratio(self.image_dice[k], float(self.num_images)),
            "precision": _ratio(tp.astype(np.float64), pred),
            "recall": _ratio(tp.astype(np.float64), float(g)),
            "image_recall": _ratio(self.hits[k].astype(np.float64), float(self.positives[k])),
            "false_alarm": _ratio(self.alarms[k].astype(np.float64), float(negatives)),
            "image_precision": _ratio(self.hits[k].astype(np.float64), self.hits[k] + self.alarms[k]),
        }


@dataclass
class ClassCalibration:
    """The choice for one defect class.

    Attributes:
        name: the class name.
        threshold / min_area: the values written to the card (the chosen pair, or the default kept).
        calibrated: whether the pair was chosen from the data (False: default kept, see ``warning``).
        index: ``(threshold index, min-area index)`` of the chosen pair in the grid (``None`` if kept).
        warning: why the default was kept or the target missed (``None``: all well).
        curves: :meth:`CalibrationStats.curves` of the class.
        positives: validation images containing the class.
    """

    name: str
    threshold: float
    min_area: float
    calibrated: bool
    index: tuple[int, int] | None
    warning: str | None
    curves: dict[str, np.ndarray]
    positives: int

    def at_choice(self) -> dict[str, float]:
        """The curves' values at the chosen pair (NaN when the default was kept)."""
        if self.index is None:
            return {k: math.nan for k in CURVES}
        return {k: float(v[self.index]) for k, v in self.curves.items()}


def choose(
    curves: dict[str, np.ndarray], target: str, value: float | None
) -> tuple[tuple[int, int], str | None]:
    """The grid index of the chosen pair for ``target`` and a warning when the target is not reachable.

    Example:
        >>> curves = {"dice": np.array([[0.5, 0.6]]), "kaggle_dice": np.array([[0.7, 0.6]])}
        >>> choose(curves, "dice", None), choose(curves, "kaggle-dice", None)
        (((0, 1), None), ((0, 0), None))
    """
    dice = np.nan_to_num(curves["dice"], nan=-1.0)
    if target in ("dice", "kaggle-dice"):
        score = np.nan_to_num(curves["dice" if target == "dice" else "kaggle_dice"], nan=-1.0)
        return _argbest(score, dice), None
    assert value is not None
    rec = np.nan_to_num(curves["image_recall"], nan=-1.0)
    fa = np.nan_to_num(curves["false_alarm"], nan=2.0)
    if target == "recall":
        ok = rec >= value - 1e-12
        if ok.any():
            return _argbest(np.where(ok, -fa, -np.inf), dice), None
        idx = _argbest(rec, -fa)
        return idx, f"no threshold reaches image recall {value:g}: the best is {rec[idx]:.3f}"
    ok = fa <= value + 1e-12
    if ok.any():
        return _argbest(np.where(ok, rec, -np.inf), dice), None
    idx = _argbest(-fa, rec)
    return idx, f"no threshold keeps the false-alarm rate at {value:g}: the lowest is {fa[idx]:.3f}"


def _argbest(score: np.ndarray, tie: np.ndarray) -> tuple[int, int]:
    """Index of the highest ``score``, ties broken by the highest ``tie``, then grid order."""
    top = score >= score.max() - 1e-12
    pick = np.where(top, tie, -np.inf)
    i, j = np.unravel_index(int(np.argmax(pick)), score.shape)
    return int(i), int(j)


@dataclass
class Calibration:
    """The result of :func:`calibrate_model`: one :class:`ClassCalibration` per defect class."""

    class_names: list[str]
    target: str
    value: float | None
    min_area_mode: str
    thresholds: list[float]
    min_areas: list[float]
    num_images: int
    classes: list[ClassCalibration]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """One line per class that kept its default or missed the target."""
        return [f"{c.name}: {c.warning}" for c in self.classes if c.warning]

    def postprocess(self) -> PostProcess:
        """The chosen rule as a :class:`~steelkd.postprocess.PostProcess`."""
        return PostProcess(threshold=[c.threshold for c in self.classes],
                           min_area=[c.min_area for c in self.classes], min_area_mode=self.min_area_mode)

    def postprocess_section(self) -> dict[str, Any]:
        """The model card's ``postprocess`` section (see :class:`steelkd.card.ModelCard`)."""
        return {
            "threshold": [c.threshold for c in self.classes],
            "min_area": [c.min_area for c in self.classes],
            "min_area_mode": self.min_area_mode,
            "calibration": {
                "target": self.target,
                "value": self.value,
                "num_images": self.num_images,
                "classes": {c.name: {"calibrated": c.calibrated, "positives": c.positives,
                                     **{k: _plain(v) for k, v in c.at_choice().items()}}
                            for c in self.classes},
                **self.extra,
            },
        }

    def table(self) -> list[dict[str, Any]]:
        """Every class x candidate pair with its curves (the trade-off table, CSV rows)."""
        rows = []
        for c in self.classes:
            for i, t in enumerate(self.thresholds):
                for j, a in enumerate(self.min_areas):
                    rows.append({"class": c.name, "threshold": t, "min_area": a,
                                 "chosen": c.index == (i, j),
                                 **{k: _plain(float(v[i, j])) for k, v in c.curves.items()}})
        return rows


def _plain(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 5)


def _defaults(base: PostProcess, num_classes: int) -> tuple[list[float], list[float]]:
    thr = base.thresholds(num_classes)
    thresholds = [0.5] * (num_classes - 1) if thr is None else [float(t) for t in thr]
    return thresholds, [float(a) for a in base.min_areas(num_classes, (256, 1600))]


def summarise(
    stats: CalibrationStats,
    class_names: Sequence[str],
    target: str = "dice",
    value: float | None = None,
    base: PostProcess | None = None,
) -> Calibration:
    """Choose every class's pair from accumulated ``stats`` (see the module docstring for the rules)."""
    check_target(target, value)
    n = len(class_names)
    default_thr, default_area = _defaults(base or PostProcess(), n)
    classes = []
    for c in range(1, n):
        curves = stats.curves(c)
        pos, neg = int(stats.positives[c - 1]), stats.num_images - int(stats.positives[c - 1])
        warning = None
        if pos == 0:
            warning = "no validation image contains this class: kept the default"
        elif target == "false-alarm" and neg == 0:
            warning = "every validation image contains this class (no false alarm possible): kept the default"
        elif np.nan_to_num(curves["dice"], nan=0.0).max() <= 0:
            warning = "the model finds none of this class at any candidate threshold: kept the default"
        if warning is not None:
            classes.append(ClassCalibration(class_names[c], default_thr[c - 1], default_area[c - 1], False,
                                            None, warning, curves, pos))
            continue
        idx, warning = choose(curves, target, value)
        classes.append(ClassCalibration(class_names[c], round(float(stats.thresholds[idx[0]]), 4),
                                        float(stats.min_areas[idx[1]]), True, idx, warning, curves, pos))
    return Calibration(list(class_names), target, value, stats.mode,
                       [round(float(t), 4) for t in stats.thresholds], [float(a) for a in stats.min_areas],
                       stats.num_images, classes)


def check_target(target: str, value: float | None) -> None:
    """Raise ValueError for an unknown target or a missing / out-of-range ``value``."""
    if target not in TARGETS:
        raise ValueError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if target in ("recall", "false-alarm"):
        if value is None or not 0 <= value <= 1:
            raise ValueError(f"target {target} needs a value in [0, 1] (the per-image rate), got {value}")
    elif value is not None:
        raise ValueError(f"target {target} takes no value (it maximises), got {value}")


def calibrate_model(
    model: nn.Module,
    dataset: Any,
    *,
    target: str = "dice",
    value: float | None = None,
    min_area_mode: str = "total",
    base: PostProcess | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    min_areas: Sequence[float] = MIN_AREAS,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "32",
    num_workers: int = 0,
    tile: Tiling | None = None,
) -> Calibration:
    """Choose per-class thresholds and minimum areas for ``model`` on the validation ``dataset``.

    Args:
        model: a segmenter (logits N x C x H x W).
        dataset: validation SegDataset (full-size images and masks, any mix of sizes).
        target: ``dice``, ``kaggle-dice``, ``recall`` or ``false-alarm`` (module docstring).
        value: the per-image rate for ``recall`` / ``false-alarm``.
        min_area_mode: ``total`` or ``component``: the minimum-area rule the values are chosen for.
        base: the rule whose values a class keeps when it cannot be calibrated (default: PostProcess()).
        thresholds / min_areas: the candidate grid.
        batch_size / device / precision / num_workers / tile: as :func:`steelkd.evaluate.evaluate_model`.

    Returns:
        A :class:`Calibration` (``postprocess_section()`` is what ``steelkd calibrate`` writes).

    Raises:
        ValueError: a bad target/value, an empty dataset, or a class-count mismatch.

    Example:
        >>> cal = calibrate_model(model, val_ds, target="false-alarm", value=0.05)  # doctest: +SKIP
    """
    check_target(target, value)
    if len(dataset) == 0:
        raise ValueError("calibrate: the validation data set has no images")
    class_names = list(getattr(dataset, "class_names", []))
    num_classes = int(getattr(model, "num_classes", 0) or len(class_names))
    if class_names and len(class_names) != num_classes:
        raise ValueError(f"model predicts {num_classes} classes but the data set has {len(class_names)} "
                         f"({', '.join(class_names)})")
    if not class_names:
        class_names = ["background", *[f"class{k}" for k in range(1, num_classes)]]
    stats = CalibrationStats(num_classes, thresholds, min_areas, min_area_mode)
    for logits, masks in dataset_logits(model, dataset, batch_size=batch_size, device=device,
                                        precision=precision, num_workers=num_workers, tile=tile):
        probs = softmax(logits.numpy(), axis=1)
        for p, m in zip(probs, masks.numpy(), strict=True):
            stats.add(p, m)
    return summarise(stats, class_names, target, value, base)


# ------------------------------------------------------------------------------------------ outputs
def card_path(model_path: str | Path) -> Path:
    """The ``model.json`` a saved model reads its card from (the file calibration writes into).

    Raises:
        ValueError: an ONNX file or a Lightning checkpoint (no card file: export a saved model first).
        FileNotFoundError: the card file is missing.
    """
    p = Path(model_path)
    if p.suffix in (".onnx", ".ckpt"):
        raise ValueError(f"{p}: calibration writes into a saved model's {CARD_NAME}; give the model folder "
                         "(runs/.../model), not a .onnx or .ckpt file (export to ONNX after calibrating)")
    _, card = model_files(p)
    if not card.is_file():
        raise FileNotFoundError(f"{card}: model card not found")
    return card


def write_calibration(model_path: str | Path, calibration: Calibration) -> Path:
    """Write ``calibration.postprocess_section()`` into the model's card (atomically); return the card path.

    The rest of the card is kept as it was; the new card is validated (:meth:`ModelCard.from_dict`)
    before it replaces the old one.
    """
    path = card_path(model_path)
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    ModelCard.from_dict(card, str(path))
    if list(card.get("class_names", calibration.class_names)) != calibration.class_names:
        raise ValueError(f"{path}: the card's classes {card.get('class_names')} are not the calibration's "
                         f"{calibration.class_names}")
    card["postprocess"] = calibration.postprocess_section()
    ModelCard.from_dict(card, str(path))
    atomic_write_text(path, json.dumps(card, indent=2, default=str) + "\n")
    return path


def write_table(calibration: Calibration, path: str | Path) -> Path:
    """The whole trade-off table (every class x candidate pair) as CSV, atomically."""
    rows = calibration.table()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["class"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)
