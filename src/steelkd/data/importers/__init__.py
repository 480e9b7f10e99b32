"""Annotation import: CVAT masks, LabelMe, COCO and suffix-named masks into the flat folder layout.

One module per format (``cvat_mask``, ``labelme``, ``coco``, ``mask_suffix``), each with
``load(src, options, report) -> (classes, samples)``; :mod:`~steelkd.data.importers.common` writes the
result (``images/``, ``masks/``, ``classes.yaml``, ``import_report.json``) atomically.

Example:
    >>> from steelkd.data.importers import import_annotations
    >>> report = import_annotations("labelme", "my_labelme", "data/mine")  # doctest: +SKIP
    >>> print("\\n".join(report.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steelkd.data.importers import coco, cvat_mask, labelme, mask_suffix
from steelkd.data.importers.common import (
    CLASSES_FILENAME,
    ClassInfo,
    ImportOptions,
    ImportReport,
    Loaded,
    read_classes_yaml,
    write_dataset,
)

__all__ = [
    "CLASSES_FILENAME",
    "FORMATS",
    "ClassInfo",
    "ImportOptions",
    "ImportReport",
    "import_annotations",
    "read_classes_yaml",
]

Loader = Callable[[Path, ImportOptions, ImportReport], Loaded]

#: The formats of ``steelkd data import --format``.
FORMATS: dict[str, Loader] = {
    "cvat-mask": cvat_mask.load,
    "labelme": labelme.load,
    "coco": coco.load,
    "mask-suffix": mask_suffix.load,
}


def import_annotations(
    fmt: str, src: str | Path, out: str | Path, options: ImportOptions | None = None
) -> ImportReport:
    """Import the annotations at ``src`` in format ``fmt`` into the flat folder layout at ``out``.

    Args:
        fmt: one of :data:`FORMATS` (``cvat-mask``, ``labelme``, ``coco``, ``mask-suffix``).
        src: the export folder (``cvat-mask``, ``labelme``, ``mask-suffix``) or JSON file (``coco``).
        out: the destination folder; replaced only after a successful import, and only if it is empty
            or an earlier import.
        options: classes, images folder, unannotated images, mask-suffix settings.

    Returns:
        The :class:`ImportReport` (also written as ``out/import_report.json``).

    Raises:
        FileNotFoundError / ValueError: naming the file and the problem; ``out`` is then untouched.

    Example:
        >>> r = import_annotations("mask-suffix", "KolektorSDD2/train", "data/ksdd2")  # doctest: +SKIP
        >>> r.images, r.classes  # doctest: +SKIP
        (2331, ['background', 'defect'])
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    src_path = Path(src)
    if not src_path.exists():
        raise FileNotFoundError(f"{src_path}: annotation source not found")
    opts = options or ImportOptions()
    report = ImportReport(format=fmt, src=str(src))
    classes, samples = FORMATS[fmt](src_path, opts, report)
    return write_dataset(out, classes, samples, report)
