"""The Severstal layout: ``train.csv`` (Kaggle RLE) plus ``train_images/*.jpg``.

* :func:`read_train_csv` loads both ``train.csv`` layouts into one long table.
* the deterministic, stratified train/test split of the images is :mod:`steelkd.data.split`.
* :func:`label_map`: the softmax target. Overlap rule: where masks of two classes cover the same
  pixel, the **lower ClassId wins** (1 pitting > 2 crazing > 3 scratches > 4 patches), so small, rare
  defects are not swallowed by large patches; :func:`overlap_stats` counts the pixels concerned.
* :class:`SeverstalDataset`: the PyTorch dataset.

Example:
    >>> from steelkd.data.severstal import read_train_csv
    >>> table = read_train_csv("train.csv")  # doctest: +SKIP
    >>> list(table.columns)  # doctest: +SKIP
    ['ImageId', 'ClassId', 'EncodedPixels']
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd

from steelkd.data.dataset import SegDataset
from steelkd.data.image import IMAGE_EXTENSIONS, image_size
from steelkd.data.rle import SEVERSTAL_SHAPE, is_empty_rle, rle_decode, rle_runs

__all__ = [
    "SeverstalDataset",
    "check_images",
    "image_classes",
    "label_map",
    "list_images",
    "overlap_stats",
    "read_train_csv",
    "severstal_stats",
]

_NEW_HEADER = ["ImageId", "ClassId", "EncodedPixels"]
_OLD_HEADER = ["ImageId_ClassId", "EncodedPixels"]


def read_train_csv(
    path: str | Path,
    num_classes: int = 4,
    image_dir: str | Path | None = None,
    shape: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Read a Severstal ``train.csv`` in either layout into one long table.

    Accepted layouts: ``ImageId,ClassId,EncodedPixels`` (the current one) and the older
    ``ImageId_ClassId,EncodedPixels`` (``0002cc93b.jpg_1``, four rows per image, empty for no defect).
    Empty masks are dropped; every RLE string is checked.

    Args:
        path: the csv file.
        num_classes: number of defect classes (ClassId must be in ``1..num_classes``).
        image_dir: when given, every ImageId must exist there (see :func:`check_images`).
        shape: ``(H, W)`` of the images; when given, runs past ``H*W`` are errors too.

    Returns:
        ``DataFrame`` with columns ``ImageId`` (str), ``ClassId`` (int), ``EncodedPixels`` (str), one
        row per non-empty mask, in file order.

    Raises:
        FileNotFoundError: if the file (or, with ``image_dir``, some images) is missing.
        ValueError: for an unknown header or a malformed row (naming the line number and ImageId).

    Example:
        >>> df = read_train_csv("train.csv")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: train.csv not found")
    try:
        rows = _read_rows(p, num_classes, shape)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{p}: not a valid CSV file ({exc})") from None
    table = pd.DataFrame(rows, columns=_NEW_HEADER)
    table["ClassId"] = table["ClassId"].astype(np.int64)
    table["ImageId"] = table["ImageId"].astype(str)
    table["EncodedPixels"] = table["EncodedPixels"].astype(str)
    if image_dir is not None:
        check_images(table["ImageId"].unique(), image_dir)
    return table


def _read_rows(
    p: Path, num_classes: int, shape: tuple[int, int] | None
) -> list[tuple[str, int, str]]:
    """The checked data rows of a train.csv (empty masks dropped), in file order."""
    rows: list[tuple[str, int, str]] = []
    seen: dict[tuple[str, int], int] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        old = _read_header(reader, p)
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            parsed = _parse_row(row, f"{p}, line {line}", old, num_classes, shape)
            if parsed is None:
                continue  # an empty mask
            key = (parsed[0], parsed[1])
            if key in seen:
                raise ValueError(
                    f"{p}, line {line} (ImageId {parsed[0]}): second mask for class {parsed[1]} "
                    f"(first on line {seen[key]})"
                )
            seen[key] = line
            rows.append(parsed)
    return rows


def _read_header(reader: Iterator[list[str]], p: Path) -> bool:
    """Check the header row; ``True`` for the old ``ImageId_ClassId,EncodedPixels`` layout."""
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{p}: empty file, expected a header {','.join(_NEW_HEADER)}")
    header = [h.strip().lstrip("\ufeff") for h in header]
    if header == _NEW_HEADER:
        return False
    if header == _OLD_HEADER:
        return True
    raise ValueError(
        f"{p}: unknown header {','.join(header)!r}; expected "
        f"{','.join(_NEW_HEADER)!r} or {','.join(_OLD_HEADER)!r}"
    )


def _parse_row(
    row: list[str], at: str, old: bool, num_classes: int, shape: tuple[int, int] | None
) -> tuple[str, int, str] | None:
    """``(ImageId, ClassId, EncodedPixels)`` of one data row (``None``: empty mask); errors name ``at``."""
    image_id = row[0].strip()
    where = f"{at} (ImageId {_printable(image_id) or '?'})"
    ncol = 2 if old else 3
    if len(row) != ncol:
        raise ValueError(f"{where}: expected {ncol} fields, got {len(row)}")
    if old:
        image_id, sep, cls_txt = image_id.rpartition("_")
        where = f"{at} (ImageId {_printable(image_id or row[0].strip())})"
        if not sep or not image_id:
            raise ValueError(f"{where}: ImageId_ClassId {row[0].strip()!r} has no '_<class>' suffix")
        rle = row[1]
    else:
        cls_txt, rle = row[1], row[2]
    if not image_id:
        raise ValueError(f"{where}: empty ImageId")
    try:
        cls = int(cls_txt.strip())
    except ValueError:
        raise ValueError(f"{where}: ClassId {cls_txt.strip()!r} is not an integer") from None
    if not 1 <= cls <= num_classes:
        raise ValueError(f"{where}: ClassId {cls} is outside 1..{num_classes}")
    if is_empty_rle(rle):
        return None
    rle = rle.strip()
    try:
        rle_runs(rle, shape)
    except ValueError as exc:
        raise ValueError(f"{where}: bad EncodedPixels: {exc}") from None
    return image_id, cls, rle


def _printable(text: str) -> str:
    """``text`` as is, or its repr when it holds a line break or another unprintable character."""
    return text if text.isprintable() else repr(text)


def list_images(image_dir: str | Path) -> list[str]:
    """Sorted file names of the images in ``image_dir``."""
    d = Path(image_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: image folder not found")
    return sorted(f.name for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())


def check_images(image_ids: Iterable[str], image_dir: str | Path, show: int = 5) -> None:
    """Raise ``FileNotFoundError`` if some of ``image_ids`` are not files in ``image_dir``.

    The message gives how many are missing and the first ``show`` names.
    """
    d = Path(image_dir)
    present = set(list_images(d))
    missing = sorted(i for i in set(image_ids) if i not in present)
    if missing:
        first = ", ".join(missing[:show]) + (", ..." if len(missing) > show else "")
        raise FileNotFoundError(f"{d}: {len(missing)} image file(s) named in train.csv are missing: {first}")


def image_classes(table: pd.DataFrame, image_ids: Iterable[str] = ()) -> dict[str, tuple[int, ...]]:
    """Map every image to the sorted tuple of classes it contains (``()`` for ``image_ids`` not in table)."""
    out: dict[str, tuple[int, ...]] = {i: () for i in image_ids}
    for image_id, group in table.groupby("ImageId", sort=True)["ClassId"]:
        out[str(image_id)] = tuple(sorted(int(c) for c in group))
    return dict(sorted(out.items()))


def masks_by_image(table: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """``{ImageId: [(ClassId, EncodedPixels), ...]}`` sorted by ClassId."""
    out: dict[str, list[tuple[int, str]]] = {}
    for image_id, cls, rle in zip(table["ImageId"], table["ClassId"], table["EncodedPixels"], strict=True):
        out.setdefault(str(image_id), []).append((int(cls), str(rle)))
    for v in out.values():
        v.sort()
    return out


def label_map(masks: Sequence[tuple[int, str]], shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """Combine one image's class masks into a ``uint8`` label map (``0`` background).

    Overlap rule: a pixel in several masks gets the **lowest** ClassId among them.

    Args:
        masks: ``(ClassId, EncodedPixels)`` pairs of one image.
        shape: ``(H, W)``.

    Returns:
        C-contiguous ``uint8`` array ``H x W``.

    Example:
        >>> label_map([(3, "1 4"), (1, "3 1")], shape=(2, 2)).tolist()
        [[3, 1], [3, 3]]
    """
    h, w = int(shape[0]), int(shape[1])
    lab = np.zeros((h, w), dtype=np.uint8, order="F")
    for cls, rle in sorted(masks, reverse=True):  # highest class first, lower classes paint over it
        m = rle_decode(rle, (h, w))
        np.copyto(lab, np.uint8(cls), where=m.view(bool))
    return np.ascontiguousarray(lab)


def overlap_stats(
    table: pd.DataFrame, shape: tuple[int, int] | Mapping[str, tuple[int, int]] = SEVERSTAL_SHAPE
) -> dict[str, int]:
    """Count where class masks overlap (the pixels the overlap rule of :func:`label_map` decides).

    Args:
        table: the long table of :func:`read_train_csv`.
        shape: ``(H, W)`` of the images, or ``{ImageId: (H, W)}``.

    Returns:
        ``{"pixels": pixels in two or more masks, "images": images with such pixels,
        "multi_class_images": images with masks of two or more classes}``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"ImageId": ["a", "a"], "ClassId": [1, 3], "EncodedPixels": ["1 4", "3 5"]})
        >>> overlap_stats(t, shape=(4, 4))
        {'pixels': 2, 'images': 1, 'multi_class_images': 1}
    """
    pixels = images = multi = 0
    for image_id, masks in masks_by_image(table).items():
        if len(masks) < 2:
            continue
        multi += 1
        hw = shape[image_id] if isinstance(shape, Mapping) else shape
        count = np.zeros(int(hw[0]) * int(hw[1]), dtype=np.uint8)
        for _, rle in masks:
            count += rle_decode(rle, hw).T.reshape(-1)  # column-major order, no copy
        n = int((count >= 2).sum())
        pixels += n
        images += int(n > 0)
    return {"pixels": pixels, "images": images, "multi_class_images": multi}


def severstal_stats(data: str | Path, num_classes: int = 4) -> dict[str, Any]:
    """Summary of a Severstal-layout data set (for ``steelkd data stats``).

    Args:
        data: the root folder (``train.csv`` + ``train_images/``) or a ``train.csv`` file (its
            ``train_images/`` sibling is used when present).
        num_classes: number of defect classes.

    Returns:
        ``images`` (files in ``train_images`` plus ImageIds without a file), ``images_with_defects``,
        ``masks_per_class``, ``pixels_per_class`` (mask pixels, from run lengths), ``pixel_share``
        (of all image pixels; images without a file count as 256 x 1600), ``total_pixels`` and
        ``overlap`` (:func:`overlap_stats`).

    Example:
        >>> severstal_stats("data/severstal")["images_with_defects"]  # doctest: +SKIP
        6666
    """
    p = Path(data)
    csv_path = p if p.is_file() else p / "train.csv"
    image_dir = csv_path.parent / "train_images"
    table = read_train_csv(csv_path, num_classes=num_classes)
    files = list_images(image_dir) if image_dir.is_dir() else []
    ids = sorted(set(files) | set(table["ImageId"]))
    present = set(files)
    shapes = {i: image_size(image_dir / i) if i in present else SEVERSTAL_SHAPE for i in ids}
    total = sum(h * w for h, w in shapes.values())
    pixels = {c: 0 for c in range(1, num_classes + 1)}
    masks = {c: 0 for c in range(1, num_classes + 1)}
    for image_id, cls, rle in zip(table["ImageId"], table["ClassId"], table["EncodedPixels"], strict=True):
        masks[int(cls)] += 1
        try:
            pixels[int(cls)] += int(rle_runs(rle, shapes[image_id])[1].sum())
        except ValueError as exc:
            raise ValueError(f"{csv_path} (ImageId {image_id}, class {cls}): {exc}") from None
    return {
        "csv": str(csv_path),
        "images": len(ids),
        "image_files": len(files),
        "images_with_defects": int(table["ImageId"].nunique()),
        "masks_per_class": masks,
        "pixels_per_class": pixels,
        "pixel_share": {c: (v / total if total else 0.0) for c, v in pixels.items()},
        "total_pixels": int(total),
        "overlap": overlap_stats(table, shapes),
    }


# --------------------------------------------------------------------------------------------- split


class SeverstalDataset(SegDataset):
    """Severstal-layout images with label maps built from the RLE masks.

    Args:
        image_dir: the ``train_images`` folder.
        ids: image file names (``0002cc93b.jpg``) in this dataset.
        masks: ``{ImageId: [(ClassId, EncodedPixels), ...]}``; images without an entry are defect-free.
        class_names: label names, background first (Severstal: 5).
        transform: albumentations transform or ``None`` (evaluation: full size, no augmentation).

    Example:
        >>> from steelkd.data.severstal import SeverstalDataset, masks_by_image, read_train_csv
        >>> table = read_train_csv("data/train.csv")  # doctest: +SKIP
        >>> names = ["background", "pitting", "crazing", "scratches", "patches"]
        >>> ids = sorted(set(table.ImageId))  # doctest: +SKIP
        >>> ds = SeverstalDataset("data/train_images", ids, masks_by_image(table), names)  # doctest: +SKIP
        >>> ds.read_mask(0).shape  # doctest: +SKIP
        (256, 1600)
    """

    def __init__(
        self,
        image_dir: str | Path,
        ids: Sequence[str],
        masks: Mapping[str, Sequence[tuple[int, str]]],
        class_names: Sequence[str],
        transform: A.Compose | None = None,
    ) -> None:
        super().__init__(list(ids), list(class_names), transform)
        self.image_dir = Path(image_dir)
        self.masks: dict[str, list[tuple[int, str]]] = {i: list(masks.get(i, ())) for i in self.ids}
        top = max((c for v in self.masks.values() for c, _ in v), default=0)
        if top >= self.num_classes:
            raise ValueError(
                f"{self.image_dir}: masks use ClassId {top} but only {self.num_classes} class names are "
                f"given ({', '.join(self.class_names)})"
            )

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.ids[i]

    def classes_present(self, i: int) -> tuple[int, ...]:
        """The ClassIds with a mask on image ``i`` (from the table: no decoding)."""
        return tuple(sorted({int(c) for c, rle in self.masks[self.ids[i]] if str(rle).strip()}))

    def read_mask(self, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Label map of image ``i`` (``uint8`` ``H x W``; overlaps: lower ClassId wins)."""
        hw = shape if shape is not None else self.image_size(i)
        try:
            return label_map(self.masks[self.ids[i]], hw)
        except ValueError as exc:
            raise ValueError(f"{self.ids[i]}: {exc}") from None

    def class_pixel_counts(self) -> np.ndarray:
        """Label-map pixel counts per class over the raw masks, from run lengths (no image decoding,
        except where one image has several masks, to apply the overlap rule exactly)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        total = 0
        for i, image_id in enumerate(self.ids):
            h, w = self.image_size(i)
            total += h * w
            masks = self.masks[image_id]
            if len(masks) == 1:
                cls, rle = masks[0]
                counts[cls] += int(rle_runs(rle, (h, w))[1].sum())
            elif masks:
                per_class = np.bincount(label_map(masks, (h, w)).ravel(), minlength=self.num_classes)
                counts[1:] += per_class[1 : self.num_classes]
        counts[0] = total - int(counts[1:].sum())
        return counts
