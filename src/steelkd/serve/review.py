"""Label maps from stored defects, the overlay PNG, and the export of reviewed inspections as a data set.

The **reviewed label map** of an inspection paints each defect that survived review with its final class
(confirmed: the model's class; relabelled: the operator's; an operator's box: its class; rejected:
nothing), lower class ids winning where regions overlap (the importers' rule,
:class:`steelkd.data.importers.common.LabelPainter`). An inspection is exported once it is reviewed: at
least one review action or box, and no model defect still pending (:attr:`Inspection.reviewed`), so a
half-checked frame never becomes training data.

``steelkd data export-reviewed`` writes them with the importers' writer: ``images/<id>.png``,
``masks/<id>.png``, ``classes.yaml``, ``import_report.json`` (format ``reviewed``) -- the flat folder
layout that ``steelkd train`` and ``distill`` read (``data.kind: folder``).

Example:
    >>> report = export_reviewed(Store("inspections.db", "data"), "reviewed")  # doctest: +SKIP
    >>> report.images  # doctest: +SKIP
    12
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from steelkd.data.image import read_image
from steelkd.data.importers.common import (
    ImportReport,
    LabelPainter,
    Sample,
    count_regions,
    make_classes,
    write_dataset,
)
from steelkd.data.rle import rle_decode, rle_encode
from steelkd.postprocess import overlay
from steelkd.predict.results import encode_png
from steelkd.serve.store import Inspection, Store

__all__ = ["box_rle", "export_reviewed", "label_map", "overlay_png"]


def label_map(insp: Inspection, *, reviewed: bool) -> np.ndarray:
    """``uint8`` H x W label map of an inspection's defects.

    Args:
        insp: the stored inspection.
        reviewed: ``False``: the model's regions with the model's classes (operator boxes left out);
            ``True``: the reviewed label map (see the module docstring).

    Example:
        >>> lab = label_map(store.get(inspection_id), reviewed=True)  # doctest: +SKIP
    """
    shape = (insp.height, insp.width)
    painter = LabelPainter(shape)
    for d in insp.defects:
        cls = d.final_class_id if reviewed else (d.class_id if d.source == "model" else None)
        if cls is not None:
            painter.paint(rle_decode(d.rle, shape).astype(bool), cls)
    return painter.label


def box_rle(box: list[int], shape: tuple[int, int]) -> tuple[str, int]:
    """Kaggle RLE and area of an operator's box ``[x, y, w, h]`` clipped to an image of ``shape`` (H, W).

    Example:
        >>> box_rle([1, 0, 1, 2], (2, 3))
        ('3 2', 2)
    """
    x, y, w, h = (int(v) for v in box)
    mask = np.zeros(shape, np.uint8)
    mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1
    return rle_encode(mask), int(mask.sum())


def overlay_png(store: Store, insp: Inspection, *, reviewed: bool = False) -> bytes:
    """PNG bytes of the stored image with the defects drawn (class colours, outlines, legend)."""
    image = read_image(store.image_path(insp))
    return encode_png(overlay(image, label_map(insp, reviewed=reviewed), insp.class_names))


def _samples(store: Store, class_names: list[str]) -> Iterator[Sample]:
    for insp in store.iter_all():
        if not insp.reviewed:
            continue
        if insp.class_names != class_names:
            raise ValueError(f"inspection {insp.id} has classes {insp.class_names}, another has "
                             f"{class_names}: export the inspections of one model's class list")
        yield Sample(insp.id, store.image_path(insp), label_map(insp, reviewed=True))


def export_reviewed(store: Store, out: str | Path) -> ImportReport:
    """Write every reviewed inspection as a flat folder data set (see the module docstring).

    Raises:
        ValueError: nothing is reviewed yet, the class lists differ, or ``out`` is some other folder.
    """
    first = next((i for i in store.iter_all() if i.reviewed), None)
    if first is None:
        raise ValueError(f"{store.db}: no reviewed inspection yet (review every defect of an image first)")
    report = ImportReport(format="reviewed", src=str(store.db))
    classes = make_classes(first.class_names[1:], None)
    samples = (_count(s, report) for s in _samples(store, first.class_names))
    return write_dataset(out, classes, samples, report)


def _count(sample: Sample, report: ImportReport) -> Sample:
    report.regions += count_regions(sample.mask)
    return sample
