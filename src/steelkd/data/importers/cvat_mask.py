"""``cvat-mask``: CVAT's "Segmentation mask 1.1" export (Pascal VOC style colour masks).

::

    src/labelmap.txt                    # label:color_rgb:parts:actions, one label a line
    src/SegmentationClass/<name>.png    RGB colour masks, one colour per label
    src/JPEGImages/<name>.jpg           the images (exported with "Save images", or --images)

Every colour is mapped to its class id explicitly through ``labelmap.txt`` (never by palette index): the
label named ``background`` (or the colour 0,0,0) is id 0, the others follow the label map's order, or
``--classes`` when given. A label not in ``--classes`` and a colour that is not in the label map are
unknown labels (counted in pixels, left as background). A colour mask holds one label per pixel, so
there are no overlaps.

Example:
    >>> from steelkd.data.importers import import_annotations
    >>> import_annotations("cvat-mask", "export_cvat", "data/mine")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from steelkd.data.image import image_size
from steelkd.data.importers.common import (
    BACKGROUND,
    ClassInfo,
    ImportOptions,
    ImportReport,
    Loaded,
    Sample,
    count_regions,
    image_files,
    make_classes,
)

__all__ = ["load", "read_labelmap"]

Color = tuple[int, int, int]


def read_labelmap(path: str | Path) -> dict[str, Color]:
    """``{label: (r, g, b)}`` of a CVAT/VOC ``labelmap.txt``, in file order.

    Raises:
        FileNotFoundError: if it is missing.
        ValueError: a line that is not ``label:r,g,b:parts:actions``, or a colour given twice (naming the
            line).

    Example:
        >>> read_labelmap("export/labelmap.txt")  # doctest: +SKIP
        {'background': (0, 0, 0), 'scratch': (250, 50, 83)}
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found (is this a CVAT 'Segmentation mask 1.1' export?)")
    out: dict[str, Color] = {}
    for n, raw in enumerate(p.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(":", 3)
        try:
            rgb = tuple(int(v) for v in parts[1].split(","))
        except (IndexError, ValueError):
            rgb = ()
        if len(parts) != 4 or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb) or not parts[0]:
            raise ValueError(f"{p}, line {n}: expected 'label:r,g,b:parts:actions', got {raw!r}")
        if rgb in out.values():
            raise ValueError(f"{p}, line {n}: colour {rgb} is already used by another label")
        out[parts[0]] = rgb  # type: ignore[assignment]
    if not out:
        raise ValueError(f"{p}: no labels")
    return out


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read mask ({exc})") from None


def _lookup(labelmap: dict[str, Color], classes: list[ClassInfo]) -> dict[int, int | str]:
    """Packed colour -> class id, or the unknown label's name."""
    ids = {c.name: c.id for c in classes}
    out: dict[int, int | str] = {}
    for name, (r, g, b) in labelmap.items():
        key = (r << 16) | (g << 8) | b
        out[key] = 0 if name == BACKGROUND or key == 0 else ids.get(name, name)
    out.setdefault(0, 0)
    return out


def load(src: str | Path, opts: ImportOptions, report: ImportReport) -> Loaded:
    """Classes and samples of a CVAT "Segmentation mask 1.1" export (see the module docstring).

    Args:
        src: the unzipped export folder.
        opts: ``classes``, ``images`` (default ``src/JPEGImages``), ``keep_unannotated``.
        report: filled in while the samples are read (unknown labels and colours in pixels).
    """
    src = Path(src)
    labelmap = read_labelmap(src / "labelmap.txt")
    found = [n for n, c in labelmap.items() if n != BACKGROUND and c != (0, 0, 0)]
    classes = make_classes(found, opts.classes, colors=labelmap)
    lookup = _lookup(labelmap, classes)
    report.unknown_unit = "pixels"
    images = image_files(Path(opts.images or src / "JPEGImages"), recursive=True)
    masks = {k: p for k, p in image_files(src / "SegmentationClass", recursive=True).items()}
    report.images_without_annotations = sorted(images.keys() - masks.keys())
    report.annotations_without_images = sorted(masks.keys() - images.keys())
    report.unannotated_kept = opts.keep_unannotated

    def samples() -> Iterator[Sample]:
        for name in sorted(images):
            if name not in masks:
                if opts.keep_unannotated:
                    yield Sample(name, images[name], np.zeros(image_size(images[name]), np.uint8))
                continue
            rgb = _read_rgb(masks[name]).astype(np.int32)
            packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            colours, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
            ids = np.zeros(len(colours), dtype=np.uint8)
            for j, (key, n) in enumerate(zip(colours.tolist(), counts.tolist(), strict=True)):
                target = lookup.get(key, f"colour {key >> 16},{(key >> 8) & 255},{key & 255}")
                if isinstance(target, str):
                    report.unknown(target, name, n)
                else:
                    ids[j] = target
            lab = ids[inverse.reshape(packed.shape)]
            report.regions += count_regions(lab)
            yield Sample(name, images[name], lab)

    return classes, samples()
