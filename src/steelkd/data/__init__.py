"""Data layer: images, RLE codec, Severstal and folder datasets, batching, synthetic data, augmentations.

Example:
    >>> from steelkd.config import DataConfig
    >>> from steelkd.data import build_datasets
    >>> train_ds, val_ds = build_datasets(DataConfig(kind="synth", root="/tmp/synth"))  # doctest: +SKIP
"""

from __future__ import annotations

from steelkd.data.batching import EqualSizeBatchSampler, SizeBatcher, equal_size_batches
from steelkd.data.build import build_datasets, class_pixel_counts, split_path
from steelkd.data.dataset import SegDataset, check_items
from steelkd.data.folder import FolderDataset
from steelkd.data.image import IMAGE_EXTENSIONS, MEAN, STD, denormalize, image_size, normalize, read_image
from steelkd.data.rle import rle_decode, rle_encode
from steelkd.data.severstal import SeverstalDataset, read_train_csv

__all__ = [
    "IMAGE_EXTENSIONS",
    "MEAN",
    "STD",
    "EqualSizeBatchSampler",
    "FolderDataset",
    "SegDataset",
    "SeverstalDataset",
    "SizeBatcher",
    "build_datasets",
    "check_items",
    "class_pixel_counts",
    "denormalize",
    "equal_size_batches",
    "image_size",
    "normalize",
    "read_image",
    "read_train_csv",
    "rle_decode",
    "rle_encode",
    "split_path",
]
