"""``mask-suffix``: flat folders of images and binary or index masks paired by a suffix rule.

KolektorSDD2 is the example: ``10000.png`` and its mask ``10000_GT.png`` in one folder. The mask of image
``NAME.ext`` is ``NAME<suffix>.<any image ext>``, in the same folder or in ``--masks``.

Mask values (``--mask-values``):

* ``binary``: every non-zero pixel is the one class (id 1);
* ``index``: the values are the class ids (0 background, 1..K); a value above K is an unknown label
  (counted in pixels, left as background);
* ``auto`` (default): ``binary`` when every mask holds only 0 and 255 and at most one class is named,
  else ``index``.

Example:
    >>> from steelkd.data.importers import import_annotations
    >>> import_annotations("mask-suffix", "KolektorSDD2/train", "data/ksdd2")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from steelkd.data.folder import read_label_png
from steelkd.data.image import image_size
from steelkd.data.importers.common import (
    ImportOptions,
    ImportReport,
    Loaded,
    Sample,
    count_regions,
    image_files,
    make_classes,
)

__all__ = ["load"]

MASK_VALUES = ("auto", "binary", "index")


def _pairs(src: Path, opts: ImportOptions) -> tuple[dict[str, Path], dict[str, Path]]:
    image_dir, mask_dir = Path(opts.images or src), Path(opts.masks or src)
    sfx = opts.suffix
    if not sfx and image_dir.resolve() == mask_dir.resolve():
        raise ValueError("--suffix is empty and images and masks share a folder: give --suffix or --masks")
    images = {k: p for k, p in image_files(image_dir).items() if not (sfx and k.endswith(sfx))}
    masks = {k[: len(k) - len(sfx)]: p for k, p in image_files(mask_dir).items() if k.endswith(sfx)}
    return images, masks


def _mode(masks: dict[str, Path], opts: ImportOptions) -> tuple[str, int]:
    """The mask mode and the largest value met (each mask read once)."""
    if opts.mask_values not in MASK_VALUES:
        raise ValueError(f"--mask-values: expected one of {', '.join(MASK_VALUES)}, got {opts.mask_values!r}")
    seen = np.zeros(256, dtype=bool)
    for p in masks.values():
        seen[np.unique(read_label_png(p))] = True
    top = int(np.flatnonzero(seen).max(initial=0))
    mode = opts.mask_values
    if mode == "auto":
        only_255 = not seen[1:255].any()
        mode = "binary" if only_255 and (opts.classes is None or len(opts.classes) == 1) else "index"
    return mode, top


def load(src: str | Path, opts: ImportOptions, report: ImportReport) -> Loaded:
    """Classes and samples of a flat folder with suffix-named masks (see the module docstring).

    Args:
        src: folder of the images (and of the masks unless ``opts.masks``).
        opts: ``suffix``, ``masks``, ``mask_values``, ``classes``, ``images``, ``keep_unannotated``.
        report: filled in while the samples are read (unknown values in pixels).

    Raises:
        ValueError: a colour mask, binary masks with several classes named, or a bad option.
    """
    report.unknown_unit = "pixels"
    images, masks = _pairs(Path(src), opts)
    report.images_without_annotations = sorted(images.keys() - masks.keys())
    report.annotations_without_images = sorted(masks[k].name for k in masks.keys() - images.keys())
    report.unannotated_kept = opts.keep_unannotated
    mode, top = _mode({k: masks[k] for k in masks.keys() & images.keys()}, opts)
    if mode == "binary":
        if opts.classes is not None and len(opts.classes) != 1:
            raise ValueError(f"binary masks map to one class, but --classes names {len(opts.classes)}")
        names = opts.classes or ["defect"]
    else:
        names = opts.classes or [f"class{i}" for i in range(1, max(top, 1) + 1)]
    classes = make_classes(names, None)
    k = len(names)

    def samples() -> Iterator[Sample]:
        for name in sorted(images):
            if name not in masks:
                if opts.keep_unannotated:
                    yield Sample(name, images[name], np.zeros(image_size(images[name]), np.uint8))
                continue
            lab = read_label_png(masks[name])
            if mode == "binary":
                lab = (lab > 0).astype(np.uint8)
            else:
                over = lab > k
                for v, n in zip(*np.unique(lab[over], return_counts=True), strict=True):
                    report.unknown(f"value {int(v)}", name, int(n))
                lab = np.where(over, 0, lab).astype(np.uint8)
            report.regions += count_regions(lab)
            yield Sample(name, images[name], lab)

    return classes, samples()
