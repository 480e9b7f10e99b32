"""What the file pipeline produces: per-image results, failures, the report, and the file writers.

The writers are pure functions of a label map: :func:`summarize` (class areas and Kaggle RLEs),
:func:`find_defects` (one :class:`DefectRegion` per 8-connected region of a class, with its bounding box
and probabilities), :func:`write_submission` (the Kaggle CSV), :func:`write_defects` (``defects.csv`` and
``defects.jsonl``), :func:`encode_png` / :func:`encode_jpg` (the bytes of a mask or an overlay file).

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
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from steelkd.data.rle import rle_encode
from steelkd.io import atomic_write_text

__all__ = [
    "DEFECT_FIELDS",
    "DefectRegion",
    "Failure",
    "ImageResult",
    "PredictionReport",
    "encode_jpg",
    "encode_png",
    "find_defects",
    "summarize",
    "write_defects",
    "write_submission",
]

#: Columns of ``defects.csv`` (and keys of each ``defects.jsonl`` line), in order.
DEFECT_FIELDS: tuple[str, ...] = (
    "image", "class_id", "class", "area", "x", "y", "w", "h", "mean_prob", "max_prob",
)  # fmt: skip


@dataclass
class DefectRegion:
    """One connected defect region of one class in one image (a row of ``defects.csv``).

    Attributes:
        image: the input's file name (``ImageId``).
        class_id / class_name: the label value and its name.
        area: pixels in the region.
        x, y, w, h: bounding box in pixels (left, top, width, height) of the input image.
        mean_prob / max_prob: the mean and the maximum predicted probability of the class over the region.
        rle: the region's own pixels as a Kaggle RLE of the whole image (``find_defects(..., rle=True)``;
            ``""`` otherwise); not a column of ``defects.csv``.
    """

    image: str
    class_id: int
    class_name: str
    area: int
    x: int
    y: int
    w: int
    h: int
    mean_prob: float
    max_prob: float
    rle: str = ""

    def record(self) -> dict[str, str | int | float]:
        """The row as a dict keyed by :data:`DEFECT_FIELDS` (probabilities rounded to 4 decimals)."""
        d = asdict(self)
        d["class"] = d.pop("class_name")
        d["mean_prob"], d["max_prob"] = round(self.mean_prob, 4), round(self.max_prob, 4)
        return {k: d[k] for k in DEFECT_FIELDS}


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
        defects: one :class:`DefectRegion` per connected region (class order, then top-to-bottom).
    """

    path: Path
    image_id: str
    shape: tuple[int, int]
    rles: list[str]
    class_areas: dict[str, int]
    label_map: np.ndarray | None = None
    mask_path: Path | None = None
    overlay_path: Path | None = None
    defects: list[DefectRegion] = field(default_factory=list)


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
    defects_paths: tuple[Path, Path] | None = None

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


def find_defects(
    image_id: str,
    label: np.ndarray,
    confidence: np.ndarray | None,
    class_names: Sequence[str],
    *,
    rle: bool = False,
) -> list[DefectRegion]:
    """One :class:`DefectRegion` per 8-connected region of each defect class of a label map.

    Args:
        image_id: the image's name (the ``image`` column).
        label: ``uint8`` H x W label map (0 = background).
        confidence: float H x W: at each pixel the probability of the class the label map gives it (see
            :meth:`steelkd.predict.Predictor.label_batch`); ``None`` leaves the probabilities NaN.
        class_names: label names, background first.
        rle: also encode each region's pixels (``DefectRegion.rle``, Kaggle RLE of the whole image; the
            work is over the region's columns only).

    Example:
        >>> lab = np.zeros((4, 6), np.uint8); lab[0:2, 0:2] = 1; lab[3, 4:6] = 1
        >>> [(r.area, r.x, r.y, r.w, r.h) for r in find_defects("a.png", lab, None, ["bg", "x"])]
        [(4, 0, 0, 2, 2), (2, 4, 3, 2, 1)]
        >>> [r.rle for r in find_defects("a.png", lab, None, ["bg", "x"], rle=True)]
        ['1 2 5 2', '20 1 24 1']
    """
    regions: list[DefectRegion] = []
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=len(class_names)))
    for c in (int(v) for v in present if v > 0):
        mask = (label == c).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if confidence is not None:
            flat = comp.ravel()
            conf = confidence.ravel().astype(np.float64)
            sums = np.bincount(flat, weights=conf, minlength=n)
            maxima = np.full(n, -np.inf)
            np.maximum.at(maxima, flat, conf)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k, :5])
            mean = float(sums[k] / area) if confidence is not None else float("nan")
            peak = float(maxima[k]) if confidence is not None else float("nan")
            name = class_names[c] if c < len(class_names) else f"class{c}"
            code = _region_rle(comp, k, x, w) if rle else ""
            regions.append(DefectRegion(image_id, c, name, area, x, y, w, h, mean, peak, code))
    return regions


def _region_rle(components: np.ndarray, k: int, x: int, w: int) -> str:
    """Kaggle RLE (whole image) of component ``k``, encoded over its columns ``x .. x + w`` only.

    Column-major order makes a full-height strip of columns one contiguous stretch of the image's pixel
    numbers, so the strip's runs shifted by ``x * H`` are the image's runs.
    """
    strip = rle_encode((components[:, x : x + w] == k).astype(np.uint8))
    values = np.array(strip.split(), dtype=np.int64)
    values[0::2] += x * components.shape[0]
    return " ".join(map(str, values.tolist()))


def write_defects(results: Iterable[ImageResult], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``defects.csv`` and ``defects.jsonl`` (atomically): one row per region, images in order.

    Columns / keys: :data:`DEFECT_FIELDS`. An image without defects contributes no row.

    Example:
        >>> write_defects(report.results, "pred")  # doctest: +SKIP
        (PosixPath('pred/defects.csv'), PosixPath('pred/defects.jsonl'))
    """
    out = Path(out_dir)
    rows = [d.record() for r in results for d in r.defects]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(DEFECT_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "defects.csv", buf.getvalue())
    atomic_write_text(out / "defects.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return out / "defects.csv", out / "defects.jsonl"


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
