"""What the file pipeline produces: per-image results, failures, the report, and the file writers.

The writers are pure functions of a label map: :func:`summarize` (class areas and Kaggle RLEs),
:func:`write_submission` (the Kaggle CSV), :func:`encode_png` / :func:`encode_jpg` (the bytes of a mask
or an overlay file).

Example:
    >>> import numpy as np
    >>> from steelkd.predict.results import summarize
    >>> label = np.zeros((4, 6), np.uint8); label[1:3, 2:4] = 2
    >>> res = summarize(Path("a.png"), label, ["background", "x", "y"], keep_label_map=False)
    >>> res.class_areas, res.rles
    ({'x': 0, 'y': 4}, ['', '10 2 14 2'])
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from steelkd.data.rle import rle_encode
from steelkd.io import atomic_write_text

__all__ = [
    "Failure",
    "ImageResult",
    "PredictionReport",
    "encode_jpg",
    "encode_png",
    "summarize",
    "write_submission",
]


@dataclass
class ImageResult:
    """The prediction for one image.

    Attributes:
        path: the input file.
        image_id: the file name (``ImageId`` in the submission).
        shape: ``(H, W)`` of the input image.
        rles: Kaggle RLE per defect class 1..K-1 (empty string: no defect).
        class_areas: predicted pixels per defect class name.
        label_map: ``uint8`` H x W label map (``None`` when not kept, see ``keep_label_maps``).
        mask_path / overlay_path: written files, if any.
    """

    path: Path
    image_id: str
    shape: tuple[int, int]
    rles: list[str]
    class_areas: dict[str, int]
    label_map: np.ndarray | None = None
    mask_path: Path | None = None
    overlay_path: Path | None = None


@dataclass
class Failure:
    """An input that could not be processed: the file and a one-line reason."""

    path: Path
    error: str


@dataclass
class PredictionReport:
    """What :meth:`Predictor.predict_files` did: results in input order, failures, the submission file."""

    results: list[ImageResult]
    failures: list[Failure]
    class_names: list[str]
    submission_path: Path | None = None
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else float("nan")


def summarize(path: Path, label: np.ndarray, class_names: Sequence[str], keep_label_map: bool) -> ImageResult:
    """The :class:`ImageResult` of one label map: class areas and one RLE per defect class.

    Args:
        path: the input file.
        label: ``uint8`` H x W label map.
        class_names: label names, background first.
        keep_label_map: keep ``label`` in the result.
    """
    counts = np.bincount(label.ravel(), minlength=len(class_names))
    rles = [rle_encode((label == c).astype(np.uint8)) if counts[c] else ""
            for c in range(1, len(class_names))]
    return ImageResult(
        path=path, image_id=path.name, shape=label.shape[:2], rles=rles,
        class_areas={n: int(counts[c]) for c, n in enumerate(class_names[1:], start=1)},
        label_map=label if keep_label_map else None,
    )


def write_submission(results: Iterable[ImageResult], path: str | Path, num_classes: int) -> Path:
    """Write a Kaggle ``ImageId,EncodedPixels,ClassId`` CSV: one row per image and defect class 1..K-1.

    EncodedPixels is empty where the class is absent (the layout of the competition's sample_submission).

    Example:
        >>> write_submission(report.results, "pred/submission.csv", num_classes=5)  # doctest: +SKIP
        PosixPath('pred/submission.csv')
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ImageId", "EncodedPixels", "ClassId"])
    for r in results:
        for c in range(1, num_classes):
            writer.writerow([r.image_id, r.rles[c - 1], c])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` label map (H x W) or RGB image (H x W x 3)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def encode_jpg(rgb: np.ndarray) -> bytes:
    """JPEG bytes (quality 90) of an RGB ``uint8`` image."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
