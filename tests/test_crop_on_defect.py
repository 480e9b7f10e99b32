"""data.crop_on_defect: the share of training crops over a defect pixel, and crops that stay aligned."""

from __future__ import annotations

import numpy as np
import pytest

from steelkd.config import ConfigError, load_config
from steelkd.data import build_datasets
from steelkd.data.transforms import build_train_transform

H, W, CROP = 120, 160, 24


def _sample() -> tuple[np.ndarray, np.ndarray]:
    """An image whose R/G channels code the row/column, and one 3 x 3 defect far in a corner."""
    rr, cc = np.mgrid[0:H, 0:W]
    image = np.stack([rr, cc, np.zeros_like(rr)], axis=-1).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[5:8, 150:153] = 2
    return image, mask


def _share_with_defect(on_defect: float, n: int = 1000) -> float:
    image, mask = _sample()
    t = build_train_transform([CROP, CROP], hflip=0, vflip=0, brightness_contrast=0, crop_on_defect=on_defect)
    return float(np.mean([t(image=image, mask=mask)["mask"].any() for _ in range(n)]))


def test_share_of_crops_over_a_defect_follows_the_setting() -> None:
    # a uniform 24 x 24 crop of 120 x 160 meets the 3 x 3 defect ~1% of the time
    assert _share_with_defect(0.0) < 0.05
    assert _share_with_defect(1.0) == 1.0
    assert 0.43 < _share_with_defect(0.5) < 0.57  # 0.5 + 0.5 x ~0.01, binomial sd 0.016


def test_crop_over_a_defect_keeps_image_mask_and_extra_targets_aligned() -> None:
    image, mask = _sample()
    t = build_train_transform([CROP, CROP], hflip=0.5, vflip=0.5, brightness_contrast=0, crop_on_defect=1.0)
    t.add_targets({"teacher": "mask"})
    teacher = np.stack([mask, 2 * mask], axis=-1).astype(np.float32)
    for _ in range(50):
        out = t(image=image, mask=mask, teacher=teacher)
        rows, cols = out["image"][..., 0].astype(int), out["image"][..., 1].astype(int)
        np.testing.assert_array_equal(out["mask"], mask[rows, cols])  # the labels of the pixels shown
        np.testing.assert_array_equal(out["teacher"][..., 1], 2.0 * out["mask"])


def test_empty_mask_falls_back_to_a_uniform_crop_and_bad_values_are_refused() -> None:
    image, _ = _sample()
    t = build_train_transform([CROP, CROP], hflip=0, vflip=0, brightness_contrast=0, crop_on_defect=1.0)
    assert t(image=image, mask=np.zeros((H, W), np.uint8))["image"].shape == (CROP, CROP, 3)
    with pytest.raises(ValueError, match="crop_on_defect"):
        build_train_transform([CROP, CROP], crop_on_defect=1.5)
    with pytest.raises(ConfigError, match=r"data\.crop_on_defect"):
        load_config(None, ["data.crop_on_defect=2"])


def test_config_reaches_the_training_transform(tmp_path) -> None:
    overrides = ["data.kind=synth", f"data.root={tmp_path}", "data.synth_n=12", "data.crop=[32,64]",
                 "data.crop_on_defect=1.0", "data.val_fraction=0.2"]  # fmt: skip
    cfg = load_config(None, overrides)
    splits = build_datasets(cfg.data)
    with_defect = [splits.train[i][1].any().item() for i in range(len(splits.train))
                   if splits.train.classes_present(i)]  # fmt: skip
    assert with_defect and all(with_defect)
