"""The teacher-logit cache: what it stores, that it moves with the augmentation, reuse, and a cached run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steelkd.config import ConfigError, DistillConfig, config_from_dict
from steelkd.data import SegDataset, synth
from steelkd.data.image import normalize
from steelkd.data.transforms import build_train_transform
from steelkd.engine import fit
from steelkd.engine.datamodule import EpochSeededDataset
from steelkd.engine.logit_cache import LOGITS_FILE, CachedTeacherDataset, open_or_build
from steelkd.models import create_model, make_card, save_model

H, W = 48, 80


class RampDataset(SegDataset):
    """Images whose channels are ramps (0: left to right, 1: top to bottom, 2: both), of two sizes."""

    def __init__(self, sizes: list[tuple[int, int]], transform=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__([f"im{i}" for i in range(len(sizes))], ["background", "a"], transform)
        self.shapes = sizes

    def image_size(self, i: int) -> tuple[int, int]:
        return self.shapes[i]

    def read_image(self, i: int) -> np.ndarray:
        h, w = self.shapes[i]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([xx * 200 / w, yy * 200 / h, (xx + yy) * 100 / (h + w) + 10 * i], axis=2)
        return img.astype(np.uint8)

    def read_mask(self, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        return (self.read_image(i)[:, :, 0] > 100).astype(np.uint8)


class PoolTeacher(nn.Module):
    """A stand-in teacher whose 1/4-resolution 'logits' are its input's first two channels, averaged."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        low = F.avg_pool2d(x[:, :2], 4) * self.scale
        return {"logits_low": low, "logits": F.interpolate(low, size=x.shape[-2:], mode="bilinear")}


def test_cache_holds_the_teachers_low_res_logits_in_fp16(tmp_path: Path) -> None:
    ds = RampDataset([(H, W), (H, W), (64, 64)])
    cache = open_or_build(PoolTeacher(), ds, tmp_path / "c", batch_size=2)
    assert len(cache) == 3
    for i in range(3):
        x = torch.from_numpy(normalize(ds.read_image(i)))[None]
        with torch.no_grad():
            want = PoolTeacher()(x)
        low = cache.low(i)
        assert low.dtype == np.float16 and low.shape == tuple(want["logits_low"].shape[1:])
        np.testing.assert_allclose(low, want["logits_low"][0].numpy(), atol=2e-3)
        # Upsampled as the network upsamples: the teacher's own full-resolution logits.
        full = cache.full(i, ds.image_size(i))
        np.testing.assert_allclose(full.transpose(2, 0, 1), want["logits"][0].numpy(), atol=2e-3)


def test_cached_logits_are_cropped_and_flipped_with_the_image(tmp_path: Path) -> None:
    """On a ramp image the pooled-and-upsampled map equals the image itself away from the borders, so the
    cached target of an augmented item must equal that item's own (augmented) image channels."""
    transform = build_train_transform([32, 32], hflip=0.5, vflip=0.5, brightness_contrast=0)
    ramps = RampDataset([(H, W)] * 4, transform)
    items = EpochSeededDataset(
        CachedTeacherDataset(ramps, open_or_build(PoolTeacher(), ramps, tmp_path / "c")), 3
    )
    flips = set()
    for k in range(16):
        image, _, teacher = items[k]
        assert teacher.shape == (2, 32, 32) and teacher.dtype == torch.float32
        inner = (slice(None), slice(4, -4), slice(4, -4))
        torch.testing.assert_close(teacher[inner], image[:2][inner], atol=0.03, rtol=0)
        flips.add((bool(image[0, 0, 1] < image[0, 0, 0]), bool(image[1, 1, 0] < image[1, 0, 0])))
    assert len(flips) > 1  # the augmentation really varied


def test_cache_is_reused_for_the_same_teacher_and_rebuilt_for_another(tmp_path: Path) -> None:
    ds = RampDataset([(H, W)] * 2)
    root = tmp_path / "c"
    first = open_or_build(PoolTeacher(1.0), ds, root)
    first_map = first.low(0).copy()
    stamp = (root / LOGITS_FILE).stat().st_mtime_ns
    again = open_or_build(PoolTeacher(1.0), ds, root)
    assert (root / LOGITS_FILE).stat().st_mtime_ns == stamp and again.key == first.key
    other = open_or_build(PoolTeacher(2.0), ds, root)
    assert other.key != first.key
    np.testing.assert_allclose(other.low(0), 2 * first_map, atol=4e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folder left behind


def test_a_cached_distillation_trains_and_matches_a_live_one_at_step_zero(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    synth.generate(root, n=12, seed=0, height=64, width=128)
    torch.manual_seed(1)
    names = ["background", "pitting", "crazing", "scratches", "patches"]
    teacher = create_model("resunet_convnext_atto", num_classes=len(names))
    teacher_dir = save_model(teacher, tmp_path / "teacher", make_card(teacher, names))
    logs = {}
    for name, cache in (("live", ""), ("cached", "auto")):
        cfg = config_from_dict({
            "data": {"kind": "synth", "root": str(root), "crop": [], "batch_size": 4, "num_workers": 0,
                     "hflip": 0, "vflip": 0, "brightness_contrast": 0,
                     "split_file": str(tmp_path / "s.json")},
            "model": {"name": "resunet_convnext_atto"},
            "train": {"epochs": 1, "precision": "32", "accelerator": "cpu", "log_every": 1,
                      "out_dir": str(tmp_path / name)},
            "distill": {"teacher": str(teacher_dir), "logit_cache": cache},
        })  # fmt: skip
        result = fit(cfg, progress=False)
        logs[name] = pd.read_csv(result.metrics_csv)["train/loss_kd_step"].dropna().to_numpy()
    assert (tmp_path / "cached" / "teacher_logits" / LOGITS_FILE).is_file()
    assert not (tmp_path / "live" / "teacher_logits").exists()
    # Full images, no jitter: the first step sees the same teacher logits up to fp16 rounding.
    assert logs["cached"][0] == pytest.approx(logs["live"][0], rel=1e-2)
    assert len(logs["cached"]) == len(logs["live"]) > 1


def test_the_cache_holds_logits_only() -> None:
    with pytest.raises(ConfigError, match=r"logit_cache needs distill\.where=logits"):
        config_from_dict({"distill": {"teacher": "t", "logit_cache": "auto", "where": "features"}})
    assert config_from_dict({"distill": {"teacher": "t"}}).distill == DistillConfig(teacher="t")
