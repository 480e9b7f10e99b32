"""``labelme``: LabelMe JSON files (one per image) with polygon, rectangle and circle shapes.

::

    src/<name>.json     {"imagePath": "<name>.jpg", "imageHeight": H, "imageWidth": W,
                         "shapes": [{"label": "scratch", "points": [[x, y], ...], "shape_type": "polygon"}]}
    src/<name>.jpg      the image (``imagePath`` is relative to the JSON file; ``--images`` overrides)

Shapes are rasterised as LabelMe itself does (``labelme.utils.shape_to_mask``: PIL ``ImageDraw`` with
outline and fill), so the masks match what LabelMe shows. ``line``, ``linestrip``, ``point`` and
``points`` shapes have no area: they are counted as skipped. The classes are ``--classes`` or every label
met, sorted by name; a label ``background`` / ``_background_`` paints nothing. A JSON file with no shapes
is a defect-free image. Embedded ``imageData`` is not used: the image file must be on disk.

Example:
    >>> from steelkd.data.importers import import_annotations
    >>> import_annotations("labelme", "labelme_folder", "data/mine")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from steelkd.data.image import IMAGE_EXTENSIONS, image_size
from steelkd.data.importers.common import (
    BACKGROUND,
    ImportOptions,
    ImportReport,
    LabelPainter,
    Loaded,
    Sample,
    image_files,
    make_classes,
)

__all__ = ["load", "shape_to_mask"]

AREA_SHAPES = ("polygon", "rectangle", "circle")
BACKGROUND_LABELS = (BACKGROUND, "_background_")


def shape_to_mask(shape: tuple[int, int], points: list[list[float]], shape_type: str | None) -> np.ndarray:
    """Boolean ``H x W`` mask of one LabelMe shape (``polygon`` when ``shape_type`` is ``None``).

    Raises:
        ValueError: a shape without area or with too few points.

    Example:
        >>> shape_to_mask((4, 4), [[1, 1], [2, 2]], "rectangle").sum()
        np.int64(4)
    """
    kind = shape_type or "polygon"
    if kind not in AREA_SHAPES:
        raise ValueError(f"shape type {kind!r} has no area")
    xy = [(float(x), float(y)) for x, y in points]
    need = 3 if kind == "polygon" else 2
    if len(xy) < need:
        raise ValueError(f"a {kind} needs at least {need} points, got {len(xy)}")
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    if kind == "polygon":
        draw.polygon(xy=xy, outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy[0], xy[1]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:
        (cx, cy), (px, py) = xy[0], xy[1]
        d = float(np.hypot(cx - px, cy - py))
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    return np.asarray(img, dtype=bool)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list) or not doc.get("imagePath"):
        raise ValueError(f"{path}: not a LabelMe file (expected 'imagePath' and a 'shapes' list)")
    for key in ("imageHeight", "imageWidth"):
        if not isinstance(doc.get(key), int) or doc[key] < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {doc.get(key)!r}")
    return doc


def _image_of(json_path: Path, doc: dict[str, Any], opts: ImportOptions) -> Path:
    rel = Path(str(doc["imagePath"]).replace("\\", "/"))
    return Path(opts.images) / rel.name if opts.images else json_path.parent / rel


def _paint(doc: dict[str, Any], name: str, ids: dict[str, int], report: ImportReport) -> LabelPainter:
    painter = LabelPainter((doc["imageHeight"], doc["imageWidth"]))
    for n, shape in enumerate(doc["shapes"]):
        label, kind = str(shape.get("label", "")), shape.get("shape_type") or "polygon"
        if kind not in AREA_SHAPES:
            report.skipped_shapes[kind] = report.skipped_shapes.get(kind, 0) + 1
            continue
        if label in BACKGROUND_LABELS:
            continue
        if label not in ids:
            report.unknown(label, name)
            continue
        try:
            region = shape_to_mask(painter.label.shape, shape.get("points", []), kind)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: shape {n} ({label!r}): {exc}") from None
        painter.paint(region, ids[label])
        report.regions += 1
    return painter


def load(src: str | Path, opts: ImportOptions, report: ImportReport) -> Loaded:
    """Classes and samples of a folder of LabelMe JSON files (see the module docstring).

    Args:
        src: the folder of the ``.json`` files.
        opts: ``classes``, ``images`` (default: beside each JSON file), ``keep_unannotated``.
        report: filled in while the samples are read (unknown labels in regions).
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: LabelMe folder not found")
    docs = {p: _read_json(p) for p in sorted(src.glob("*.json"))}
    if not docs:
        raise ValueError(f"{src}: no LabelMe .json files")
    labels = sorted({str(s.get("label", "")) for d in docs.values() for s in d["shapes"]})
    labels = [x for x in labels if x not in BACKGROUND_LABELS]
    classes = make_classes(labels, opts.classes)
    ids = {c.name: c.id for c in classes if c.id}
    by_image = {_image_of(p, d, opts).resolve(): (p, d) for p, d in docs.items()}
    lost = [p.name for img, (p, _) in by_image.items() if not img.is_file()]
    report.annotations_without_images = sorted(lost)
    listed = image_files(Path(opts.images or src))
    unannotated = {k: f for k, f in listed.items() if f.resolve() not in by_image}
    report.images_without_annotations = sorted(unannotated)
    report.unannotated_kept = opts.keep_unannotated

    def samples() -> Iterator[Sample]:
        for img, (_, doc) in sorted(by_image.items()):
            if img.is_file() and img.suffix.lower() in IMAGE_EXTENSIONS:
                painter = _paint(doc, img.stem, ids, report)
                if painter.overlap_pixels:
                    report.overlap_pixels += painter.overlap_pixels
                    report.overlap_images.append(img.stem)
                yield Sample(img.stem, img, painter.label)
        if opts.keep_unannotated:
            for k, f in sorted(unannotated.items()):
                yield Sample(k, f, np.zeros(image_size(f), np.uint8))

    return classes, samples()
