"""Data layer: RLE codec, Severstal and folder datasets, synthetic data, augmentations.

Example:
    >>> from steelkd.config import DataConfig
    >>> from steelkd.data import build_datasets
    >>> train_ds, val_ds = build_datasets(DataConfig(kind="synth", root="/tmp/synth"))  # doctest: +SKIP
"""

from __future__ import annotations

from steelkd.data.datamodule import build_datasets, class_pixel_counts, split_path
from steelkd.data.dataset import SegDataset, read_rgb
from steelkd.data.folder import FolderDataset
from steelkd.data.rle import rle_decode, rle_encode
from steelkd.data.severstal import SeverstalDataset, read_train_csv
from steelkd.data.transforms import MEAN, STD, normalize_image

__all__ = [
    "MEAN",
    "STD",
    "FolderDataset",
    "SegDataset",
    "SeverstalDataset",
    "build_datasets",
    "class_pixel_counts",
    "normalize_image",
    "read_rgb",
    "read_train_csv",
    "rle_decode",
    "rle_encode",
    "split_path",
]
