"""Equal-size batching (data/batching.py) and training on a data set whose images differ in size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from steelkd.config import Config
from steelkd.data import EqualSizeBatchSampler, SizeBatcher, equal_size_batches
from steelkd.engine import SegDataModule, fit

sizes_st = st.lists(st.sampled_from([(4, 4), (2, 2), (3, 5)]), max_size=30)


@given(sizes=sizes_st, batch_size=st.integers(1, 5))
def test_batches_are_runs_of_equal_size_covering_every_index_once_in_order(
    sizes: list[tuple[int, int]], batch_size: int
) -> None:
    batches = equal_size_batches(sizes, batch_size)
    assert [i for b in batches for i in b] == list(range(len(sizes)))  # every index once, input order
    for b in batches:
        assert 1 <= len(b) <= batch_size
        assert len({sizes[i] for i in b}) == 1
        assert b == list(range(b[0], b[0] + len(b)))  # consecutive
    # maximal runs: a batch shorter than batch_size ends where the size changes (or at the end)
    for b in batches:
        if len(b) < batch_size and b[-1] + 1 < len(sizes):
            assert sizes[b[-1] + 1] != sizes[b[-1]]


@given(sizes=sizes_st, batch_size=st.integers(1, 5))
def test_streaming_batcher_gives_the_same_batches(sizes: list[tuple[int, int]], batch_size: int) -> None:
    b: SizeBatcher[int] = SizeBatcher(batch_size)
    streamed = [out for i, s in enumerate(sizes) if (out := b.add(s, i)) is not None]
    streamed += list(b.drain())
    assert streamed == equal_size_batches(sizes, batch_size)
    assert list(b.drain()) == []


def test_one_size_is_plain_sequential_batching_and_bad_sizes_are_refused() -> None:
    assert equal_size_batches([(8, 8)] * 7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="batch_size"):
        equal_size_batches([(1, 1)], 0)


def test_sampler_batches_only_the_shard_it_is_given() -> None:
    sizes = [(2, 2)] * 5 + [(3, 3)] * 2
    sampler = EqualSizeBatchSampler(sizes, 2, indices=lambda n: range(1, n, 2))
    assert list(sampler) == [[1, 3], [5]]
    assert len(sampler) == 2
    assert list(EqualSizeBatchSampler(sizes, 4)) == [[0, 1, 2, 3], [4], [5, 6]]


def _mixed_size_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 5)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            h, w = [(64, 96), (80, 64), (64, 96), (48, 112), (80, 64), (64, 96)][i]
            lab = np.zeros((h, w), np.uint8)
            lab[h // 4 : h // 2, w // 4 : w // 2] = 1 + i % 2
            img = (rng.integers(90, 110, (h, w, 3)) + 80 * (lab[..., None] > 0)).astype(np.uint8)
            Image.fromarray(img).save(root / "images" / split / f"im{i}.png")
            Image.fromarray(lab).save(root / "annotations" / split / f"im{i}.png")


def test_training_validates_a_data_set_of_mixed_image_sizes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _mixed_size_folder(root)
    cfg = Config(name="mixed")
    cfg.data.kind, cfg.data.root = "folder", str(root)
    cfg.data.class_names = ["background", "a", "b"]
    cfg.data.train_split, cfg.data.test_split = "train", "val"
    cfg.data.val_fraction = 0  # the "val" folder (every size) validates
    cfg.data.crop, cfg.data.batch_size, cfg.data.num_workers = [48, 64], 4, 0
    cfg.model.name = "resunet_convnext_atto"
    cfg.train.epochs, cfg.train.precision, cfg.train.accelerator = 1, "32", "cpu"
    cfg.train.out_dir = str(tmp_path / "run")
    batches = list(SegDataModule(cfg).val_dataloader())
    assert [tuple(x.shape) for x, _ in batches] == [
        (1, 3, 64, 96), (1, 3, 80, 64), (1, 3, 64, 96), (1, 3, 48, 112), (1, 3, 80, 64)
    ]
    result = fit(cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    assert log["val/mdice"].notna().sum() == 1  # the epoch was validated on all five sizes
    assert cfg.train.class_weights == "median_freq"  # fit resolved its own copy, not the caller's
