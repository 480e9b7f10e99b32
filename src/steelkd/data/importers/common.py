"""What every importer shares: the class list, painting regions into a label map, the report, the writer.

An importer turns one annotation format into :class:`Sample` items (an image file and its ``uint8`` label
map) plus the class list; :func:`write_dataset` writes them as the flat folder layout that training reads::

    DIR/images/<name>.<ext>     the image files, copied byte for byte
    DIR/masks/<name>.png        uint8 label maps: 0 background, 1..K the classes
    DIR/classes.yaml            id, name, colour of every class (background id 0)
    DIR/import_report.json      the report of the import (counts and names of every problem)

**Overlap rule: the lower class id wins.** Where regions of different classes cover a pixel, it gets the
lowest class id among them, whatever the order of the annotations (the rule of the Severstal layout,
``steelkd.data.severstal.label_map``: the same target for the same annotations, and a small defect
annotated inside a large one is not swallowed by it). :class:`LabelPainter` counts the pixels it decides.

Example:
    >>> import numpy as np
    >>> p = LabelPainter((2, 3))
    >>> p.paint(np.ones((2, 3), bool), 2)
    >>> p.paint(np.array([[1, 0, 0], [0, 0, 0]], bool), 1)
    >>> p.label.tolist(), p.overlap_pixels
    ([[1, 2, 2], [2, 2, 2]], 1)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from PIL import Image

from steelkd.data.image import IMAGE_EXTENSIONS, image_size
from steelkd.io import atomic_write_text, safe_name
from steelkd.postprocess import palette

__all__ = [
    "CLASSES_FILENAME",
    "CLASSES_FORMAT",
    "OVERLAP_RULE",
    "REPORT_FILENAME",
    "ClassInfo",
    "ImportOptions",
    "ImportReport",
    "LabelPainter",
    "Loaded",
    "Sample",
    "check_size",
    "count_regions",
    "image_files",
    "make_classes",
    "parse_class_list",
    "read_classes_yaml",
    "write_classes_yaml",
    "write_dataset",
]

CLASSES_FILENAME = "classes.yaml"
REPORT_FILENAME = "import_report.json"
CLASSES_FORMAT = "steelkd-classes/1"
OVERLAP_RULE = "the lower class id wins"
BACKGROUND = "background"


@dataclass(frozen=True)
class ClassInfo:
    """One label value: ``id`` (0 = background), ``name`` and display ``color`` (RGB)."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass
class ImportOptions:
    """The options of ``steelkd data import`` that more than one format reads.

    Args:
        classes: class names in id order (1..K); ``None``: the labels found, in the format's order.
        images: folder of the image files; ``None``: the format's usual place.
        keep_unannotated: also import image files that no annotation mentions, as defect-free.
        suffix: ``mask-suffix`` only: what follows the image stem in a mask's name (``NNN_GT.png``).
        masks: ``mask-suffix`` only: folder of the masks (default: the images' folder).
        mask_values: ``mask-suffix`` only: ``auto``, ``binary`` (non-zero = class 1) or ``index``.
    """

    classes: list[str] | None = None
    images: Path | None = None
    keep_unannotated: bool = False
    suffix: str = "_GT"
    masks: Path | None = None
    mask_values: str = "auto"


@dataclass
class Sample:
    """One imported item: the output ``name`` (file stem), the source image file and its label map."""

    name: str
    image: Path
    mask: np.ndarray


@dataclass
class ImportReport:
    """What an import did and every problem it met (names sorted; the CLI prints the first few).

    ``unknown_labels`` maps a label that is not in the class list to how often it was met, in
    ``unknown_unit`` (``regions`` for polygon formats, ``pixels`` for mask formats); those regions are left
    as background.
    """

    format: str
    src: str
    classes: list[str] = field(default_factory=list)
    images: int = 0
    images_with_regions: int = 0
    regions: int = 0
    overlap_rule: str = OVERLAP_RULE
    overlap_pixels: int = 0
    overlap_images: list[str] = field(default_factory=list)
    unknown_unit: str = "regions"
    unknown_labels: dict[str, int] = field(default_factory=dict)
    unknown_label_images: list[str] = field(default_factory=list)
    skipped_shapes: dict[str, int] = field(default_factory=dict)
    images_without_annotations: list[str] = field(default_factory=list)
    unannotated_kept: bool = False
    annotations_without_images: list[str] = field(default_factory=list)

    def unknown(self, label: str, image: str, n: int = 1) -> None:
        """Count ``n`` units of an unknown ``label`` met in ``image``."""
        self.unknown_labels[label] = self.unknown_labels.get(label, 0) + int(n)
        if image not in self.unknown_label_images:
            self.unknown_label_images.append(image)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("overlap_images", "unknown_label_images", "images_without_annotations",
                    "annotations_without_images"):
            d[key] = sorted(d[key])
        d["unknown_labels"] = dict(sorted(d["unknown_labels"].items()))
        d["skipped_shapes"] = dict(sorted(d["skipped_shapes"].items()))
        return d

    def lines(self, show: int = 5) -> list[str]:
        """The report as short lines for people: counts, then each problem with its first names."""

        def first(names: Sequence[str]) -> str:
            names = sorted(names)
            return ", ".join(names[:show]) + (", ..." if len(names) > show else "")

        out = [
            f"{self.images} images ({self.images_with_regions} with regions, {self.regions} regions), "
            f"classes: {', '.join(self.classes)}"
        ]
        if self.overlap_pixels:
            out.append(
                f"overlap: {self.overlap_pixels} pixels covered by regions of different classes in "
                f"{len(self.overlap_images)} images ({first(self.overlap_images)}); rule: {self.overlap_rule}"
            )
        if self.unknown_labels:
            unit = self.unknown_unit
            labels = ", ".join(f"{k!r} ({v} {unit})" for k, v in sorted(self.unknown_labels.items()))
            out.append(
                f"unknown labels, left as background: {labels} in {len(self.unknown_label_images)} images "
                f"({first(self.unknown_label_images)})"
            )
        if self.skipped_shapes:
            kinds = ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped_shapes.items()))
            out.append(f"shapes without an area, skipped: {kinds}")
        if self.images_without_annotations:
            what = (
                "imported as defect-free"
                if self.unannotated_kept
                else "skipped (--keep-unannotated keeps them)"
            )
            out.append(
                f"{len(self.images_without_annotations)} images without annotations, {what}: "
                f"{first(self.images_without_annotations)}"
            )
        if self.annotations_without_images:
            out.append(
                f"{len(self.annotations_without_images)} annotations without an image file, skipped: "
                f"{first(self.annotations_without_images)}"
            )
        return out


#: What a format's ``load`` returns: the class list and the samples (an iterator).
Loaded = tuple[list[ClassInfo], Iterator[Sample]]


class LabelPainter:
    """A ``uint8`` label map that regions are painted into with the overlap rule (lower id wins).

    Args:
        shape: ``(height, width)``.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.label = np.zeros(shape, dtype=np.uint8)
        self._contested = np.zeros(shape, dtype=bool)

    def paint(self, region: np.ndarray, class_id: int) -> None:
        """Give the pixels of boolean ``region`` the id ``class_id`` unless a lower id holds them."""
        region = np.asarray(region, dtype=bool)
        if region.shape != self.label.shape:
            raise ValueError(f"region is {region.shape} but the label map is {self.label.shape}")
        held = self.label[region]
        self._contested[region] |= (held != 0) & (held != class_id)
        self.label[region] = np.where((held == 0) | (held > class_id), class_id, held)

    @property
    def overlap_pixels(self) -> int:
        """Pixels that regions of two or more different classes cover."""
        return int(self._contested.sum())


def parse_class_list(names: str | Sequence[str] | None) -> list[str] | None:
    """Class names in id order (1..K) from ``"a,b,c"`` or a list; a leading ``background`` is dropped.

    Raises:
        ValueError: for an empty name or a name given twice.

    Example:
        >>> parse_class_list("background, scratch,dent")
        ['scratch', 'dent']
    """
    if names is None:
        return None
    items = [s.strip() for s in (names.split(",") if isinstance(names, str) else names)]
    if items and items[0] == BACKGROUND:
        items = items[1:]
    if not items or any(not s for s in items):
        raise ValueError(f"--classes: expected comma-separated class names, got {names!r}")
    dup = sorted({s for s in items if items.count(s) > 1})
    if dup or BACKGROUND in items:
        raise ValueError(f"--classes: a name given twice, or background not first: {dup or [BACKGROUND]}")
    return items


def make_classes(
    found: Sequence[str], given: Sequence[str] | None, colors: dict[str, tuple[int, int, int]] | None = None
) -> list[ClassInfo]:
    """The class list of an import: background, then ``given`` (or ``found``) in order, with colours.

    Args:
        found: the labels the annotations define, in the format's order.
        given: ``--classes`` (ids follow its order), or ``None`` for ``found``.
        colors: known colours by name (CVAT's label map); the others come from
            :func:`steelkd.postprocess.palette`, so overlays and ``classes.yaml`` agree.
    """
    names = [BACKGROUND, *(given if given is not None else [n for n in found if n != BACKGROUND])]
    pal = palette(len(names))
    colors = colors or {}
    return [
        ClassInfo(i, n, tuple(int(c) for c in colors.get(n, pal[i])))  # type: ignore[arg-type]
        for i, n in enumerate(names)
    ]


def write_classes_yaml(path: str | Path, classes: Sequence[ClassInfo]) -> None:
    """Write ``classes.yaml``: ``format`` and ``classes`` (``id``, ``name``, ``color``), atomically."""
    doc = {
        "format": CLASSES_FORMAT,
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in classes],
    }
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


def read_classes_yaml(path: str | Path) -> list[ClassInfo]:
    """Read and check a ``classes.yaml``: ids ``0..K`` in order, id 0 first, names unique.

    Raises:
        FileNotFoundError: if it does not exist.
        ValueError: naming the file and the bad entry.

    Example:
        >>> [c.name for c in read_classes_yaml("data/mine/classes.yaml")]  # doctest: +SKIP
        ['background', 'scratch']
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: classes file not found")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    entries = doc.get("classes") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{p}: expected a 'classes' list of {{id, name, color}}")
    out: list[ClassInfo] = []
    for k, e in enumerate(entries):
        ok = isinstance(e, dict) and e.get("id") == k and isinstance(e.get("name"), str) and e["name"]
        color = e.get("color", [0, 0, 0]) if isinstance(e, dict) else None
        rgb_ok = isinstance(color, list) and len(color) == 3
        rgb_ok = rgb_ok and all(type(v) is int and 0 <= v <= 255 for v in color)
        if not ok or not rgb_ok:
            raise ValueError(f"{p}: class entry {k} must be {{id: {k}, name: ..., color: [r, g, b]}}: {e!r}")
        out.append(ClassInfo(k, e["name"], (int(color[0]), int(color[1]), int(color[2]))))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{p}: class names must be unique, got {names}")
    return out


def image_files(folder: Path, recursive: bool = False) -> dict[str, Path]:
    """Image files of ``folder`` by name (path relative to ``folder`` without the suffix, ``/`` kept).

    Raises:
        FileNotFoundError: if the folder is missing.
        ValueError: if two files differ only in their suffix.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found")
    found = folder.rglob("*") if recursive else folder.iterdir()
    out: dict[str, Path] = {}
    for f in sorted(found):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            key = f.relative_to(folder).with_suffix("").as_posix()
            if key in out:
                raise ValueError(f"{folder}: two images share the name {key!r}: {out[key].name}, {f.name}")
            out[key] = f
    return out


def check_size(image: Path, shape: tuple[int, int], where: str) -> tuple[int, int]:
    """The image's ``(height, width)`` from its header; a ``ValueError`` if ``shape`` differs."""
    size = image_size(image)
    if tuple(shape) != size:
        raise ValueError(
            f"{where}: annotation is {shape[0]}x{shape[1]} but image {image} is {size[0]}x{size[1]}"
        )
    return size


def count_regions(label: np.ndarray) -> int:
    """Connected regions (8-connected) of every class of a label map, summed over the classes."""
    total = 0
    for c in np.unique(label):
        if c:
            total += cv2.connectedComponents((label == c).astype(np.uint8), connectivity=8)[0] - 1
    return int(total)


def _safe_name(name: str) -> str:
    """An imported item's output name: its path relative to the source with ``/`` as ``__``, then checked
    (:func:`steelkd.io.safe_name`), so no annotation can make the import write outside its folder."""
    return safe_name(name.replace("/", "__").replace("\\", "__"), "imported image name")


def _is_replaceable(out: Path) -> bool:
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    entries = {p.name for p in out.iterdir()}
    return not entries or {CLASSES_FILENAME, REPORT_FILENAME} <= entries


def _write_samples(tmp: Path, samples: Iterable[Sample], report: ImportReport) -> None:
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    seen: dict[str, Path] = {}
    for s in samples:
        name = _safe_name(s.name)
        if name in seen:
            raise ValueError(f"two images import under the same name {name!r}: {seen[name]}, {s.image}")
        seen[name] = s.image
        mask = np.ascontiguousarray(s.mask, dtype=np.uint8)
        check_size(s.image, (mask.shape[0], mask.shape[1]), s.name)
        shutil.copyfile(s.image, tmp / "images" / f"{name}{s.image.suffix.lower()}")
        Image.fromarray(mask, mode="L").save(tmp / "masks" / f"{name}.png", format="PNG")
        report.images += 1
        report.images_with_regions += int(bool(mask.any()))
    if not seen:
        raise ValueError(f"{report.src}: nothing to import (no image with annotations was found)")


def write_dataset(
    out: str | Path, classes: Sequence[ClassInfo], samples: Iterable[Sample], report: ImportReport
) -> ImportReport:
    """Write ``samples`` as the flat folder layout into ``out``, atomically and reproducibly.

    Everything goes into a temporary folder beside ``out``, which replaces ``out`` only when all was
    written; the same input gives the same bytes. An existing ``out`` is replaced only if it is empty or
    an earlier import (it has ``classes.yaml`` and ``import_report.json``), never another folder.

    Args:
        out: destination folder.
        classes: the class list (background first).
        samples: the items, in any order (an iterator: masks are not all held at once).
        report: filled in (image counts) and written as ``import_report.json``.

    Raises:
        ValueError: ``out`` is some other folder, two images share a name, or nothing was imported.
    """
    out = Path(out)
    if not _is_replaceable(out):
        raise ValueError(
            f"{out}: exists and is not an earlier steelkd import; remove it or choose another --out"
        )
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_samples(tmp, samples, report)
        report.classes = [c.name for c in classes]
        write_classes_yaml(tmp / CLASSES_FILENAME, classes)
        atomic_write_text(tmp / REPORT_FILENAME, json.dumps(report.to_dict(), indent=1) + "\n")
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old.exists():
                old.rename(out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return report

