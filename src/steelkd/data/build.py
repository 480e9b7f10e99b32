"""``build_datasets(cfg)``: the train, validation and test datasets a :class:`~steelkd.config.DataConfig`
names. The validation split is carved from the training images (``data.val_fraction``, seeded, stratified
by the classes present); the test split is the data set's own (NEU-Seg's ``test`` folder, or the split
file's ``test`` side) and is never used to choose anything.

Example:
    >>> from steelkd.config import DataConfig
    >>> from steelkd.data import build_datasets, class_pixel_counts
    >>> cfg = DataConfig(kind="synth", root="/tmp/steelkd_synth", synth_n=20, crop=[128, 256])
    >>> train_ds, val_ds, test_ds = build_datasets(cfg)  # doctest: +SKIP
    >>> class_pixel_counts(train_ds).shape  # doctest: +SKIP
    (5,)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from steelkd.config import SEVERSTAL_CLASSES, DataConfig
from steelkd.data import synth
from steelkd.data.dataset import SegDataset
from steelkd.data.folder import FLAT_MASKS, FolderDataset, MaskClasses, is_flat, pair_files
from steelkd.data.importers.common import CLASSES_FILENAME, read_classes_yaml
from steelkd.data.severstal import (
    SeverstalDataset,
    image_classes,
    list_images,
    masks_by_image,
    read_train_csv,
)
from steelkd.data.split import load_or_create_split, make_split, save_split
from steelkd.data.transforms import build_train_transform

__all__ = [
    "DataSplits",
    "build_datasets",
    "carve_validation",
    "class_pixel_counts",
    "folder_class_names",
    "folder_split",
    "split_path",
]

log = logging.getLogger("steelkd.data")


class DataSplits(NamedTuple):
    """The three splits of a run: ``train`` (augmented), ``val`` (selection) and ``test`` (scored once).

    With ``data.val_fraction = 0`` there is no validation split and ``val`` *is* ``test``.
    """

    train: SegDataset
    val: SegDataset
    test: SegDataset

#: Default split file name inside a Severstal-layout or flat-folder root.
SPLIT_FILENAME = "steelkd_split.json"


def split_path(cfg: DataConfig) -> Path:
    """The split file a config uses: ``cfg.split_file`` or ``<root>/steelkd_split.json``."""
    return Path(cfg.split_file) if cfg.split_file else Path(cfg.root) / SPLIT_FILENAME


def train_transform(cfg: DataConfig) -> Any:
    """The training augmentation ``cfg`` asks for (:func:`~steelkd.data.transforms.build_train_transform`)."""
    return build_train_transform(
        cfg.crop,
        cfg.hflip,
        cfg.vflip,
        cfg.brightness_contrast,
        scale_jitter=cfg.scale_jitter,
        crop_on_defect=cfg.crop_on_defect,
    )


def _first(ds: SegDataset, n: int) -> SegDataset:
    """The first ``n`` items of ``ds`` (0: all)."""
    return ds.subset(range(min(len(ds), n)), ds.transform) if n else ds


def _severstal(cfg: DataConfig) -> tuple[SeverstalDataset, SeverstalDataset]:
    root = Path(cfg.root)
    csv_path, image_dir = root / "train.csv", root / "train_images"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{root}: no train.csv (expected the Severstal layout: train.csv + train_images/)"
        )
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{root}: no train_images/ folder (expected train.csv + train_images/)")
    num_defect = len(cfg.class_names) - 1
    if num_defect < 1:
        raise ValueError(f"data.class_names needs background plus at least one class, got {cfg.class_names}")
    table = read_train_csv(csv_path, num_classes=num_defect, image_dir=image_dir)
    extra: list[str] = [] if cfg.defect_only else list_images(image_dir)
    classes = image_classes(table, extra)
    split = load_or_create_split(split_path(cfg), classes, seed=cfg.seed, test_fraction=cfg.test_fraction)
    masks = masks_by_image(table)
    transform = train_transform(cfg)
    train = SeverstalDataset(image_dir, split["train"], masks, cfg.class_names, transform)
    test = SeverstalDataset(image_dir, split["test"], masks, cfg.class_names, None)
    return train, test


def folder_class_names(cfg: DataConfig) -> list[str]:
    """The class names of a folder data set: ``<root>/classes.yaml`` when there is one, checked.

    ``data.class_names`` left at its default (Severstal's five names) counts as unset and is filled from
    ``classes.yaml``; any other list must equal it. Without ``classes.yaml``: ``data.class_names``.

    Raises:
        ValueError: ``data.class_names`` and ``classes.yaml`` disagree (both named).

    Example:
        >>> folder_class_names(DataConfig(kind="folder", root="data/mine"))  # doctest: +SKIP
        ['background', 'scratch', 'dent']
    """
    path = Path(cfg.root) / CLASSES_FILENAME
    if not path.is_file():
        return list(cfg.class_names)
    names = [c.name for c in read_classes_yaml(path)]
    if list(cfg.class_names) not in (names, SEVERSTAL_CLASSES):
        raise ValueError(
            f"data.class_names {list(cfg.class_names)} differ from {path} {names}: "
            "set them equal or remove data.class_names from the config"
        )
    return names


def folder_split(
    root: str | Path, path: str | Path, seed: int = 0, test_fraction: float = 0.2, reuse: bool = True
) -> dict[str, Any]:
    """The train/test split of a flat folder (``images/`` + ``masks/``), stratified by classes present.

    Args:
        root: the data set root.
        path: the split file.
        seed, test_fraction: of a new split (:func:`steelkd.data.split.make_split`).
        reuse: keep an existing file (training); ``False`` writes a new one (``steelkd data split``).

    Returns:
        The split dict (``train`` and ``test``: image file names).
    """
    r = Path(root)
    classes = MaskClasses(pair_files(r / "images", r / FLAT_MASKS))
    if reuse:
        return load_or_create_split(path, classes, seed=seed, test_fraction=test_fraction)
    split = make_split(classes, seed=seed, test_fraction=test_fraction)
    save_split(split, path)
    return split


def _folder(cfg: DataConfig) -> tuple[FolderDataset, FolderDataset]:
    transform = train_transform(cfg)
    names = folder_class_names(cfg)
    if is_flat(cfg.root):
        split = folder_split(cfg.root, split_path(cfg), seed=cfg.seed, test_fraction=cfg.test_fraction)
        train = FolderDataset(
            cfg.root, None, names, transform, masks_dirname=FLAT_MASKS, names=split["train"]
        )
        test = FolderDataset(cfg.root, None, names, None, masks_dirname=FLAT_MASKS, names=split["test"])
    else:
        train = FolderDataset(cfg.root, cfg.train_split, names, transform)
        test = FolderDataset(cfg.root, cfg.test_split, names, None)
    return train, test


def carve_validation(train: SegDataset, fraction: float, seed: int) -> tuple[SegDataset, SegDataset]:
    """Hold out ``fraction`` of ``train`` as a validation set, stratified by the classes each image contains.

    Deterministic for a given seed and set of images (:func:`steelkd.data.split.make_split` on the image
    ids); at least one image is held out; the validation set has no augmentation.

    Raises:
        ValueError: fewer than two images, naming the count.

    Example:
        >>> train, val = carve_validation(train_ds, 0.1, seed=0)  # doctest: +SKIP
    """
    n = len(train)
    if n < 2:
        raise ValueError(
            f"data.val_fraction={fraction}: {n} training image(s) are too few to hold out a validation "
            "split; set data.val_fraction=0 to validate on the test split"
        )
    index = {image_id: i for i, image_id in enumerate(train.ids)}
    classes = {image_id: train.classes_present(i) for image_id, i in index.items()}
    split = make_split(classes, seed, max(fraction, 1 / n))
    return (
        train.subset([index[i] for i in split["train"]], train.transform),
        train.subset([index[i] for i in split["test"]], None),
    )


def build_datasets(cfg: DataConfig) -> DataSplits:
    """Build the training, validation and test datasets.

    * ``severstal``: ``root/train.csv`` + ``root/train_images``; the split file is ``cfg.split_file``
      or ``<root>/steelkd_split.json``, created (seeded by ``cfg.seed``) when missing, reused after.
      With ``defect_only`` only images with at least one mask take part (the paper).
    * ``folder``: ``root/images/<train_split|test_split>`` + ``root/annotations/<...>`` (PNG label maps),
      or flat ``root/images`` + ``root/masks`` with the split file as for ``severstal`` (every image takes
      part; stratified by the classes present in its mask). ``root/classes.yaml``, when present, gives
      the class names (:func:`folder_class_names`).
    * ``synth``: generates ``cfg.synth_n`` images with ``cfg.seed`` into ``root`` when ``train.csv`` is
      not there yet, then reads it as ``severstal``.

    The validation split is ``cfg.val_fraction`` of the training images (:func:`carve_validation`); with
    ``val_fraction = 0`` the test split validates (biased: quick checks only; a warning is logged).
    The training set applies the random crop, scale jitter, flips and brightness/contrast of ``cfg``; the
    validation and test sets are full size without augmentation. ``max_train_images`` keeps the first
    images of the training split (after the carve), ``max_val_images`` those of the validation and test
    splits.

    Args:
        cfg: the data section of the config.

    Returns:
        :class:`DataSplits` ``(train, val, test)``.

    Raises:
        FileNotFoundError / ValueError: naming the missing file or the bad value.

    Example:
        >>> from steelkd.config import DataConfig
        >>> cfg = DataConfig(kind="synth", root="/tmp/s", synth_n=10)
        >>> train_ds, val_ds, test_ds = build_datasets(cfg)  # doctest: +SKIP
        >>> image, mask = train_ds[0]  # doctest: +SKIP
        >>> image.shape, mask.dtype  # doctest: +SKIP
        (torch.Size([3, 256, 512]), torch.int64)
    """
    if not cfg.root:
        raise ValueError("data.root is empty: set it to the data set folder")
    if cfg.kind == "synth":
        if not (Path(cfg.root) / "train.csv").is_file():
            synth.generate(cfg.root, n=cfg.synth_n, seed=cfg.seed)
        train, test = _severstal(cfg)
    elif cfg.kind == "severstal":
        train, test = _severstal(cfg)
    elif cfg.kind == "folder":
        train, test = _folder(cfg)
    else:
        raise ValueError(f"data.kind: expected severstal, folder or synth, got {cfg.kind!r}")
    test = _first(test, cfg.max_val_images)
    if cfg.val_fraction > 0:
        train, val = carve_validation(train, cfg.val_fraction, cfg.seed)
        val = _first(val, cfg.max_val_images)
    else:
        log.warning("data.val_fraction=0: the test split validates, so checkpoint selection sees it")
        val = test
    train = _first(train, cfg.max_train_images)
    if cfg.cache_images:
        for ds in {id(d): d for d in (train, val, test)}.values():
            ds.cache_images()
    return DataSplits(train, val, test)


def class_pixel_counts(ds: SegDataset) -> np.ndarray:
    """Pixels per label value over the raw (un-augmented, full-size) masks of ``ds``, for class weights.

    Severstal datasets sum RLE run lengths (decoding only images with several masks); folder datasets
    read each PNG once; any other :class:`SegDataset` reads every mask.

    Returns:
        ``int64`` array of shape ``(num_classes,)``.

    Example:
        >>> counts = class_pixel_counts(train_ds)  # doctest: +SKIP
    """
    fast = getattr(ds, "class_pixel_counts", None)
    if callable(fast):
        return np.asarray(fast(), dtype=np.int64)
    counts = np.zeros(len(ds.class_names), dtype=np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.read_mask(i).ravel(), minlength=len(ds.class_names))[: len(ds.class_names)]
    return counts
