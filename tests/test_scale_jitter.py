"""data.scale_jitter: the random rescale before the crop keeps labels, alignment and the crop size."""

from __future__ import annotations

import numpy as np
import pytest

from steelkd.data.transforms import build_train_transform

H, W = 40, 60
LABELS = (0, 3, 7)  # not consecutive: an interpolated label would show


def _coded() -> tuple[np.ndarray, np.ndarray]:
    """An image whose R/G channels are 4x the row/column (a ramp) and a block label map."""
    rr, cc = np.mgrid[0:H, 0:W]
    mask = np.asarray(LABELS, np.uint8)[((rr // 5) + (cc // 7)) % 3]
    image = np.stack([rr * 4, cc * 4, np.full_like(rr, 200)], axis=-1).astype(np.uint8)
    return image, mask


def _transform(crop: list[int] | None, jitter: list[float]) -> object:
    return build_train_transform(crop=crop, hflip=0, vflip=0, brightness_contrast=0, scale_jitter=jitter)


def test_rescale_keeps_labels_aligned_and_the_crop_size() -> None:
    image, mask = _coded()
    t = _transform([32, 48], [0.5, 2.0])
    t.add_targets({"teacher": "mask"})  # as the teacher-logit cache does
    teacher = np.stack([mask.astype(np.float32), np.full(mask.shape, 1.5, np.float32)], axis=-1)
    checked = 0
    for _ in range(20):
        out = t(image=image, mask=mask, teacher=teacher)
        img, lab, tea = out["image"], out["mask"], out["teacher"]
        assert img.shape == (32, 48, 3) and lab.shape == (32, 48) and tea.shape == (32, 48, 2)
        assert set(np.unique(lab)) <= set(LABELS)  # still a label map
        np.testing.assert_array_equal(tea[..., 0], lab)  # extra mask targets move with the mask
        image_px = img[..., 2] > 0  # padding is black and background
        assert (lab[~image_px] == 0).all() and (tea[~image_px] == 0).all()
        # Each pixel's source position, read back from the bilinear ramps; the label must be the one at the
        # nearest source pixel wherever that is unambiguous (not within 0.2 px of a half pixel).
        r, c = img[..., 0] / 4.0, img[..., 1] / 4.0
        clear = image_px & (np.abs(r % 1 - 0.5) > 0.2) & (np.abs(c % 1 - 0.5) > 0.2)
        clear &= (img[..., 0] < 4 * (H - 1)) & (img[..., 1] < 4 * (W - 1))  # not clamped at the edge
        src = mask[np.rint(r).astype(int).clip(0, H - 1), np.rint(c).astype(int).clip(0, W - 1)]
        np.testing.assert_array_equal(lab[clear], src[clear])
        checked += int(clear.sum())
    assert checked > 20 * 32 * 48 // 4


def test_the_factor_varies_within_the_range() -> None:
    image, mask = _coded()
    low, high = 0.5, 1.5
    t = _transform(None, [low, high])
    heights = set()
    for _ in range(30):
        out = t(image=image, mask=mask)
        h, w = out["mask"].shape
        assert out["image"].shape[:2] == (h, w)
        assert int(H * low) <= h <= int(H * high) and int(W * low) <= w <= int(W * high)
        assert abs(w / h - W / H) < 0.1  # one factor for both sides
        heights.add(h)
    assert len(heights) >= 5, heights
    # Small factors with a crop: padded up to the crop size.
    out = _transform([48, 64], [0.5, 0.5])(image=image, mask=mask)
    assert out["image"].shape == (48, 64, 3) and out["mask"].shape == (48, 64)
    shown = out["image"][..., 2] > 0  # 40 x 60 at 0.5: 20 x 30 pixels of image, the rest padding
    assert shown.sum() == 20 * 30 and shown.any(axis=1).sum() == 20 and shown.any(axis=0).sum() == 30


def test_scale_jitter_off_and_bad_ranges() -> None:
    assert _transform(None, []) is None
    assert build_train_transform(crop=None, hflip=0, vflip=0, brightness_contrast=0) is None
    for bad in ([1.0], [0.0, 1.0], [1.5, 1.0], [0.5, 1.0, 2.0]):
        with pytest.raises(ValueError, match="scale_jitter"):
            _transform([32, 48], bad)
