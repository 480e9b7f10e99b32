"""The folder layouts: images plus PNG label maps, split into sub-folders (NEU-Seg) or flat.

::

    root/images/<split>/<name>.jpg        (any of .jpg .jpeg .png .bmp .tif .tiff)
    root/annotations/<split>/<name>.png   (single-channel label map: 0 background, 1..K-1 classes)

or flat (what ``steelkd data import`` writes; the split comes from a split file, see ``data.build``)::

    root/images/<name>.jpg
    root/masks/<name>.png
    root/classes.yaml                     (optional: the class names)

Images and masks are paired by file stem; a name on one side without its partner is an error that
names the files. Class names come from the config (``data.class_names``, background first) or from
``classes.yaml`` (``data.build``).

Example:
    >>> from steelkd.data.folder import FolderDataset
    >>> ds = FolderDataset("../shared/data/neu_seg", "training",
    ...                    ["background", "inclusion", "patches", "scratches"])  # doctest: +SKIP
    >>> len(ds)  # doctest: +SKIP
    3630
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
from PIL import Image

from steelkd.data.dataset import SegDataset
from steelkd.data.image import IMAGE_EXTENSIONS

__all__ = [
    "FLAT_MASKS",
    "FolderDataset",
    "MaskClasses",
    "folder_stats",
    "is_flat",
    "pair_files",
    "read_label_png",
]

#: The masks folder of the flat layout (the split layout's is ``annotations/<split>``).
FLAT_MASKS = "masks"


def is_flat(root: str | Path) -> bool:
    """Whether ``root`` holds the flat layout (``images/`` + ``masks/``) rather than split sub-folders."""
    return (Path(root) / FLAT_MASKS).is_dir()


def _files(d: Path, exts: Sequence[str], what: str) -> dict[str, Path]:
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: {what} folder not found")
    out: dict[str, Path] = {}
    for f in sorted(d.iterdir()):
        if f.is_file() and f.suffix.lower() in exts:
            if f.stem in out:
                raise ValueError(
                    f"{d}: two {what} files share the name {f.stem!r}: {out[f.stem].name}, {f.name}"
                )
            out[f.stem] = f
    return out


def pair_files(image_dir: str | Path, mask_dir: str | Path, show: int = 5) -> list[tuple[Path, Path]]:
    """Pair the images of ``image_dir`` with the PNG masks of ``mask_dir`` by file stem.

    Raises:
        FileNotFoundError: if a folder is missing.
        ValueError: if the names do not match (naming the first unmatched files) or there are no images.
    """
    idir, mdir = Path(image_dir), Path(mask_dir)
    images = _files(idir, IMAGE_EXTENSIONS, "image")
    masks = _files(mdir, (".png",), "mask")
    lonely_img = sorted(images[k].name for k in images.keys() - masks.keys())
    lonely_mask = sorted(masks[k].name for k in masks.keys() - images.keys())
    if lonely_img or lonely_mask:
        parts = []
        if lonely_img:
            parts.append(
                f"{len(lonely_img)} image(s) in {idir} without a mask in {mdir}: "
                + ", ".join(lonely_img[:show])
                + (", ..." if len(lonely_img) > show else "")
            )
        if lonely_mask:
            parts.append(
                f"{len(lonely_mask)} mask(s) in {mdir} without an image in {idir}: "
                + ", ".join(lonely_mask[:show])
                + (", ..." if len(lonely_mask) > show else "")
            )
        raise ValueError("image and mask names do not match: " + "; ".join(parts))
    if not images:
        raise ValueError(f"{idir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return [(images[k], masks[k]) for k in sorted(images)]


def read_label_png(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a PNG label map as ``uint8`` ``H x W``.

    A palette PNG gives its indices; an RGB(A) PNG is accepted only when its colour channels are equal.

    Raises:
        FileNotFoundError: if the file is missing or unreadable.
        ValueError: for a colour mask or a value ``>= num_classes`` (naming the file and value).
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            arr = np.array(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: mask file not found") from None
    except OSError as exc:
        raise FileNotFoundError(f"{p}: not a readable PNG ({exc})") from None
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
            arr = arr[..., 0]
        else:
            raise ValueError(
                f"{p}: expected a single-channel label map, got {arr.shape[2]} different channels"
            )
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{p}: label values must be within 0..255")
        arr = arr.astype(np.uint8)
    if num_classes is not None and arr.size:
        top = int(arr.max())
        if top >= num_classes:
            raise ValueError(
                f"{p}: label value {top} but only {num_classes} classes are configured "
                f"(values 0..{num_classes - 1})"
            )
    return np.ascontiguousarray(arr)


class FolderDataset(SegDataset):
    """Images with PNG label-map masks in ``root/images/<split>`` and ``root/annotations/<split>``.

    Args:
        root: data set root.
        split: sub-folder name, e.g. ``"training"`` or ``"test"``.
        class_names: label names, background first (NEU-Seg: background, inclusion, patches, scratches).
        transform: albumentations transform or ``None``.
        images_dirname, masks_dirname: the two top-level folder names.
        names: keep only these image file names (e.g. one side of a split file), in this order.

    With ``split=None`` the images and masks are read from ``root/images_dirname`` and
    ``root/masks_dirname`` directly (the flat layout: pass ``masks_dirname="masks"``).

    Example:
        >>> ds = FolderDataset("../shared/data/neu_seg", "test",
        ...                    ["background", "inclusion", "patches", "scratches"])  # doctest: +SKIP
        >>> ds.read_mask(0).max() <= 3  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None,
        class_names: Sequence[str],
        transform: A.Compose | None = None,
        images_dirname: str = "images",
        masks_dirname: str = "annotations",
        names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        idir, mdir = self.root / images_dirname, self.root / masks_dirname
        pairs = pair_files(idir / split, mdir / split) if split is not None else pair_files(idir, mdir)
        if names is not None:
            by_name = {img.name: (img, m) for img, m in pairs}
            unknown = [n for n in names if n not in by_name]
            if unknown:
                first = ", ".join(unknown[:3])
                raise ValueError(f"{idir}: {len(unknown)} image(s) named but not found: {first}")
            pairs = [by_name[n] for n in names]
        super().__init__([img.stem for img, _ in pairs], list(class_names), transform)
        self.image_paths = [img for img, _ in pairs]
        self.mask_paths = [m for _, m in pairs]

    def image_path(self, i: int) -> Path:
        return self.image_paths[i]

    def _select(self, indices: list[int]) -> None:
        self.image_paths = [self.image_paths[i] for i in indices]
        self.mask_paths = [self.mask_paths[i] for i in indices]

    def read_mask(self, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Label map ``i`` (``uint8`` ``H x W``), checked against the number of classes."""
        mask = read_label_png(self.mask_paths[i], self.num_classes)
        if shape is not None and mask.shape != tuple(shape):
            raise ValueError(
                f"{self.mask_paths[i]}: mask is {mask.shape[0]}x{mask.shape[1]} but image "
                f"{self.image_paths[i].name} is {shape[0]}x{shape[1]}"
            )
        return mask

    def class_pixel_counts(self) -> np.ndarray:
        """Label-map pixel counts per class (each PNG read once)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for i in range(len(self)):
            counts += np.bincount(self.read_mask(i).ravel(), minlength=self.num_classes)
        return counts


class MaskClasses(Mapping[str, tuple[int, ...]]):
    """``{image file name: classes present}`` of a flat folder, each mask read only when asked for.

    :func:`steelkd.data.split.load_or_create_split` needs only the names to check an existing split, and
    the classes only to make a new one, so a reused split reads no mask.

    Example:
        >>> classes = MaskClasses(pair_files("data/mine/images", "data/mine/masks"))  # doctest: +SKIP
        >>> classes["0001.jpg"]  # doctest: +SKIP
        (1, 3)
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], num_classes: int | None = None) -> None:
        self._masks = {img.name: m for img, m in pairs}
        self._k = num_classes

    def __getitem__(self, name: str) -> tuple[int, ...]:
        values = np.unique(read_label_png(self._masks[name], self._k))
        return tuple(int(v) for v in values if v)

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)


def _stat_pairs(r: Path, splits: Sequence[str] | None) -> tuple[list[str], list[tuple[Path, Path]]]:
    if splits is None and is_flat(r):
        return [], pair_files(r / "images", r / FLAT_MASKS)
    if splits is None:
        if not (r / "images").is_dir():
            raise FileNotFoundError(
                f"{r}: no images/ folder (expected images/ + masks/, or images/<split> + annotations/<split>)"
            )
        splits = sorted(d.name for d in (r / "images").iterdir() if d.is_dir())
        if not splits:
            raise ValueError(f"{r / 'images'}: no split sub-folders (e.g. training, test), no masks/ folder")
    pairs = [p for split in splits for p in pair_files(r / "images" / split, r / "annotations" / split)]
    return list(splits), pairs


def folder_stats(
    root: str | Path, splits: Sequence[str] | None = None, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Summary of a folder-layout data set (for ``steelkd data stats --kind folder``).

    Args:
        root: data set root (``images/`` + ``masks/``, or ``images/<split>`` + ``annotations/<split>``).
        splits: sub-folders to include; default: every folder under ``root/images`` (none if flat).
        class_names: label names, background first; default ``class0..classN`` from the largest value.

    Returns:
        ``images``, ``images_with_defects``, ``masks_per_class`` (images containing each class),
        ``pixels_per_class``, ``pixel_share``, ``total_pixels``, ``overlap`` (always 0: a label map has
        one value per pixel), ``splits`` and ``class_names``.

    Example:
        >>> folder_stats("../shared/data/neu_seg")["images"]  # doctest: +SKIP
        4470
    """
    r = Path(root)
    splits, pairs = _stat_pairs(r, splits)
    k = len(class_names) if class_names else None
    counts = np.zeros(256, dtype=np.int64)
    present = np.zeros(256, dtype=np.int64)
    n_images = n_defect = 0
    for _, mask_path in pairs:
        bc = np.bincount(read_label_png(mask_path, k).ravel(), minlength=256)
        counts += bc
        present += bc > 0
        n_images += 1
        n_defect += int(bc[1:].any())
    top = int(np.flatnonzero(counts).max(initial=0))
    names = list(class_names) if class_names else [f"class{i}" for i in range(max(top, 1) + 1)]
    total = int(counts.sum())
    per = {i: int(counts[i]) for i in range(1, len(names))}
    return {
        "root": str(r),
        "splits": list(splits),
        "class_names": names,
        "images": n_images,
        "images_with_defects": n_defect,
        "masks_per_class": {i: int(present[i]) for i in range(1, len(names))},
        "pixels_per_class": per,
        "pixel_share": {i: (v / total if total else 0.0) for i, v in per.items()},
        "total_pixels": total,
        "overlap": {"pixels": 0, "images": 0, "multi_class_images": 0},
    }
