"""Training speed settings: decoded-image cache and channels-last memory format (speed only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

import steelkd.data.dataset as dataset_module
from steelkd.config import Config, DataConfig
from steelkd.data import build_datasets
from steelkd.data.synth import generate
from steelkd.engine import build_module, fit
from steelkd.experiment.plan import config_hash


def test_cached_images_are_decoded_once_and_cannot_be_corrupted(tmp_path: Path, monkeypatch) -> None:
    root = generate(tmp_path / "s", n=6, seed=0, height=64, width=128)
    cfg = DataConfig(kind="severstal", root=str(root), crop=[32, 64], cache_images=True)
    train = build_datasets(cfg).train
    calls: list[Path] = []
    real = dataset_module.read_image
    monkeypatch.setattr(dataset_module, "read_image", lambda p: calls.append(p) or real(p))
    first = train.read_image(0)
    first[:] = 0  # a caller that writes into the array must not change the cache
    second = train.read_image(0)
    assert len(calls) == 1
    np.testing.assert_array_equal(second, real(train.image_path(0)))
    train[0], train[0]  # augmented items come from the cache too
    assert len(calls) == 1


def test_speed_settings_do_not_change_the_run_hash() -> None:
    a, b = Config(), Config()
    b.data.cache_images, b.train.channels_last = True, True
    assert config_hash(a) == config_hash(b)


def test_channels_last_training_runs_and_exports_a_plain_model(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", n=12, seed=1, height=64, width=128)
    cfg = Config(name="cl")
    cfg.data.kind, cfg.data.root, cfg.data.crop, cfg.data.batch_size = "severstal", str(root), [64, 64], 4
    cfg.data.num_workers, cfg.data.cache_images = 0, True
    cfg.data.split_file = str(tmp_path / "split.json")
    cfg.model.name = "resunet_convnext_atto"
    cfg.train.epochs, cfg.train.precision, cfg.train.accelerator = 1, "32", "cpu"
    cfg.train.channels_last, cfg.train.out_dir = True, str(tmp_path / "run")
    cfg.train.class_weights = [1.0] * 5
    module = build_module(cfg, 1)
    x, y = torch.zeros(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long)
    cx, cy = module.on_after_batch_transfer((x, y), 0)
    assert cx.is_contiguous(memory_format=torch.channels_last) and cy is y
    result = fit(cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    assert np.isfinite(log["train/loss_epoch"].dropna()).all() and log["val/mdice"].notna().any()
    from steelkd.models import load_model

    model, _ = load_model(result.model_dir)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 64, 64)
