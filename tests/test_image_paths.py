"""A real JPEG reaches the network as the identical tensor through evaluation and prediction.

The evaluation path is a validation dataset item (``ds[i][0]``: ``read_image`` + ``normalize`` with the
default mean/std); the prediction path is ``Predictor.predict_files`` on the same file, with the
normalisation read from a model card written by ``make_card``. A recording fake backend captures the
exact array the predictor hands to the network; the two must be bit-identical (``np.array_equal``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_shared
from steelkd.card import ModelCard
from steelkd.config import NEU_SEG_CLASSES, SEVERSTAL_CLASSES, DataConfig
from steelkd.data import build_datasets
from steelkd.data.dataset import SegDataset
from steelkd.data.severstal import SeverstalDataset
from steelkd.models import make_card
from steelkd.predict import Predictor

pytestmark = pytest.mark.realdata


class _RecordingBackend:
    """Fake backend: remembers every batch it is given and answers all-background logits."""

    name = "recording"

    def __init__(self, class_names: list[str]) -> None:
        net = torch.nn.Conv2d(3, len(class_names), 1)
        net.name = "recording"  # type: ignore[assignment]
        net.num_classes = len(class_names)  # type: ignore[assignment]
        self.card = ModelCard.from_dict(make_card(net, class_names), "recording card")
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        logits = np.zeros((batch.shape[0], self.card.num_classes, *batch.shape[2:]), np.float32)
        logits[:, 0] = 10.0
        return logits


def _assert_same_network_input(ds: SegDataset, indices: list[int]) -> None:
    backend = _RecordingBackend(ds.class_names)
    predictor = Predictor(backend, batch_size=1)
    paths = [Path(ds.image_path(i)) for i in indices]
    report = predictor.predict_files(paths, None)
    assert not report.failures and len(backend.batches) == len(indices)
    for i, path, batch in zip(indices, paths, backend.batches, strict=True):
        expected = ds[i][0].numpy()
        assert batch.shape == (1, *expected.shape), path
        assert batch.dtype == expected.dtype == np.float32, path
        assert np.array_equal(batch[0], expected), f"{path}: network input differs between the paths"


def test_neu_seg_jpeg_reaches_the_network_identically() -> None:
    root = require_shared("neu_seg")
    cfg = DataConfig(kind="folder", root=str(root), class_names=list(NEU_SEG_CLASSES),
                     train_split="training", test_split="test")
    val = build_datasets(cfg).test
    assert Path(val.image_path(0)).suffix.lower() == ".jpg"
    _assert_same_network_input(val, [0, 1, len(val) // 2, len(val) - 1])


def test_severstal_jpeg_reaches_the_network_identically() -> None:
    images = require_shared("severstal", "train_images")
    ids = sorted(p.name for p in images.glob("*.jpg"))[:3]
    ds = SeverstalDataset(images, ids, {}, list(SEVERSTAL_CLASSES))
    _assert_same_network_input(ds, [0, 1, 2])
