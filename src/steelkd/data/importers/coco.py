"""``coco``: a COCO JSON file (instance or semantic segmentation), polygons and RLE.

::

    annotations.json   {"images": [{"id", "file_name", "height", "width"}],
                        "categories": [{"id", "name"}],
                        "annotations": [{"id", "image_id", "category_id", "segmentation"}]}
    images/            the image files (``--images``; else the first of ``<json folder>/images``,
                       ``<json folder>/../images`` (CVAT's COCO export) and the JSON's folder that exists)

``segmentation`` may be polygons (a list of ``[x0, y0, x1, y1, ...]``), uncompressed RLE (``counts`` a
list) or compressed RLE (``counts`` a string): all are decoded by pycocotools, the reference COCO codec.
The classes are ``--classes`` or the categories in id order (renumbered 1..K); a category not in
``--classes`` is an unknown label (counted in annotations). An image listed in the file with no annotation
is defect-free (COCO lists the images of a data set); an annotation without segmentation (a box only) is
counted as skipped. Overlapping instances of different classes follow the overlap rule of
:mod:`steelkd.data.importers.common` (the lower class id wins).

Example:
    >>> from steelkd.data.importers import import_annotations
    >>> import_annotations("coco", "export/annotations/instances_default.json", "data/mine")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from steelkd.data.image import image_size
from steelkd.data.importers.common import (
    ImportOptions,
    ImportReport,
    LabelPainter,
    Loaded,
    Sample,
    image_files,
    make_classes,
)

__all__ = ["decode_segmentation", "load"]


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """Boolean ``H x W`` mask of one COCO ``segmentation`` (polygons, uncompressed or compressed RLE).

    Raises:
        ValueError: an RLE of another size, or a segmentation of neither form.

    Example:
        >>> decode_segmentation({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3).astype(int).tolist()
        [[0, 1, 0], [1, 0, 0]]
    """
    from pycocotools import mask as cocomask  # here, so that importing steelkd.data does not need it

    if isinstance(segm, list):
        polys = [list(map(float, p)) for p in segm if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = cocomask.merge(cocomask.frPyObjects(polys, height, width))
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if [int(v) for v in segm["size"]] != [height, width]:
            raise ValueError(f"RLE size {segm['size']} differs from the image's {[height, width]}")
        counts = segm["counts"]
        if isinstance(counts, list):
            rle = cocomask.frPyObjects(segm, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError("segmentation must be a polygon list or an RLE {size, counts}")
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2: a DeprecationWarning per call
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(cocomask.decode(rle), dtype=bool).reshape(height, width)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO JSON file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{path}: not a COCO file (expected 'images' and 'categories' lists)")
    doc.setdefault("annotations", [])
    return doc


def _image_dir(path: Path, doc: dict[str, Any], opts: ImportOptions) -> Path:
    if opts.images:
        return Path(opts.images)
    names = [str(im.get("file_name", "")) for im in doc["images"]]
    for d in (path.parent / "images", path.parent.parent / "images", path.parent):
        if d.is_dir() and any((d / n).is_file() for n in names):
            return d
    raise FileNotFoundError(
        f"{path}: none of its images is in {path.parent / 'images'}, {path.parent.parent / 'images'} or "
        f"{path.parent}: give --images"
    )


def _paint(im: dict[str, Any], anns: list[dict[str, Any]], cat_to_id: dict[int, int | str],
           name: str, report: ImportReport) -> LabelPainter:
    h, w = int(im["height"]), int(im["width"])
    painter = LabelPainter((h, w))
    for a in sorted(anns, key=lambda a: a.get("id", 0)):
        target = cat_to_id.get(int(a.get("category_id", -1)), f"category {a.get('category_id')}")
        if isinstance(target, str):
            report.unknown(target, name)
            continue
        segm = a.get("segmentation")
        if not segm:
            report.skipped_shapes["box only"] = report.skipped_shapes.get("box only", 0) + 1
            continue
        try:
            region = decode_segmentation(segm, h, w)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: annotation {a.get('id')}: {exc}") from None
        painter.paint(region, target)
        report.regions += 1
    return painter


def load(src: str | Path, opts: ImportOptions, report: ImportReport) -> Loaded:
    """Classes and samples of a COCO JSON file (see the module docstring).

    Args:
        src: the COCO ``.json`` file.
        opts: ``classes``, ``images``, ``keep_unannotated``.
        report: filled in while the samples are read (unknown categories in annotations).
    """
    path = Path(src)
    doc = _read(path)
    cats = sorted(doc["categories"], key=lambda c: int(c["id"]))
    classes = make_classes([str(c["name"]) for c in cats], opts.classes)
    ids = {c.name: c.id for c in classes if c.id}
    cat_to_id: dict[int, int | str] = {int(c["id"]): ids.get(str(c["name"]), str(c["name"])) for c in cats}
    image_dir = _image_dir(path, doc, opts)
    images = {int(im["id"]): im for im in doc["images"]}
    anns: dict[int, list[dict[str, Any]]] = {}
    lost: list[str] = []
    for a in doc["annotations"]:
        if int(a.get("image_id", -1)) in images:
            anns.setdefault(int(a["image_id"]), []).append(a)
        else:
            lost.append(f"annotation {a.get('id')} (image_id {a.get('image_id')})")
    files = [str(im["file_name"]) for im in images.values()]
    missing = [n for n in files if not (image_dir / n).is_file()]
    report.annotations_without_images = sorted(lost + missing)
    listed = {(image_dir / n).resolve() for n in files}
    found = image_files(image_dir, recursive=True)
    unannotated = {k: f for k, f in found.items() if f.resolve() not in listed}
    report.images_without_annotations = sorted(unannotated)
    report.unannotated_kept = opts.keep_unannotated

    def samples() -> Iterator[Sample]:
        for im in sorted(images.values(), key=lambda im: str(im["file_name"])):
            f = image_dir / str(im["file_name"])
            if not f.is_file():
                continue
            name = Path(str(im["file_name"])).with_suffix("").as_posix()
            painter = _paint(im, anns.get(int(im["id"]), []), cat_to_id, name, report)
            if painter.overlap_pixels:
                report.overlap_pixels += painter.overlap_pixels
                report.overlap_images.append(name)
            yield Sample(name, f, painter.label)
        if opts.keep_unannotated:
            for k, f in sorted(unannotated.items()):
                yield Sample(k, f, np.zeros(image_size(f), np.uint8))

    return classes, samples()
