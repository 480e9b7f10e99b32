"""SegMetrics: hand-made masks with known Dice/IoU/Kaggle values, empty cases, accumulation, DDP."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.utilities.data import dim_zero_sum

from steelkd.metrics import SegMetrics


def _t(rows: list[list[list[int]]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def reference(preds: np.ndarray, target: np.ndarray, k: int) -> dict[str, object]:
    """Independent reference with explicit loops over classes and images (numpy)."""
    dice, iou_all = [], []
    for c in range(k):
        p, g = preds == c, target == c
        inter, card, union = (p & g).sum(), p.sum() + g.sum(), (p | g).sum()
        iou_all.append(inter / union if union else math.nan)
        if c > 0:
            dice.append(2 * inter / card if card else math.nan)
    pairs = []
    for n in range(preds.shape[0]):
        for c in range(1, k):
            p, g = preds[n] == c, target[n] == c
            pairs.append(1.0 if p.sum() + g.sum() == 0 else 2 * (p & g).sum() / (p.sum() + g.sum()))
    return {
        "dice": dice,
        "mdice": float(np.nanmean(dice)),
        "iou": iou_all[1:],
        "miou": float(np.nanmean(iou_all[1:])),
        "miou_bg": float(np.nanmean(iou_all)),
        "kaggle_dice": float(np.mean(pairs)),
    }


def assert_same(a: dict, b: dict, rel: float = 1e-12) -> None:
    """Two compute() results agree key by key (lists element-wise, NaN equal to NaN)."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=rel, nan_ok=True), key


def assert_matches(out: dict, ref: dict) -> None:
    for key in ("dice", "iou"):
        assert out[key] == pytest.approx(ref[key], rel=1e-12, nan_ok=True), key
    for key in ("mdice", "miou", "miou_bg", "kaggle_dice"):
        assert out[key] == pytest.approx(ref[key], rel=1e-12, nan_ok=True), key


# Two 2x4 images, K = 3 (background, 1, 2).
TARGET = _t([[[0, 1, 1, 0], [0, 1, 2, 2]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
PREDS = _t([[[0, 1, 0, 0], [1, 1, 2, 0]], [[2, 2, 0, 0], [0, 0, 0, 0]]])


def test_hand_made_masks_known_values() -> None:
    m = SegMetrics(num_classes=3)
    m.update(PREDS, TARGET)
    out = m.compute()
    # class 1: |P∩G| = 2, |P| = 3, |G| = 3 -> Dice 4/6, IoU 2/4
    # class 2: |P∩G| = 1, |P| = 1 + 2, |G| = 2 -> Dice 2/5, IoU 1/4
    assert out["dice"] == pytest.approx([2 / 3, 2 / 5])
    assert out["mdice"] == pytest.approx((2 / 3 + 2 / 5) / 2)
    assert out["iou"] == pytest.approx([1 / 2, 1 / 4])
    assert out["miou"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # background: |P∩G| = 2 + 6, |G| = 3 + 8, |P| = 4 + 6 -> IoU 8 / (21 - 8)
    assert out["iou_all"][0] == pytest.approx(8 / 13)
    assert out["miou_bg"] == pytest.approx((8 / 13 + 1 / 2 + 1 / 4) / 3)
    # per image: A1 = 2·2/6, A2 = 2·1/3, B1 both empty = 1, B2 predicted only = 0
    assert out["kaggle_dice"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    assert out["kaggle_dice_per_class"] == pytest.approx([(2 / 3 + 1) / 2, (2 / 3 + 0) / 2])
    assert out["pixel_accuracy"] == pytest.approx(11 / 16)
    assert out["pixel_counts"] == [11, 3, 2]
    assert out["pred_counts"] == [10, 3, 3]
    assert out["n_images"] == 2
    assert_matches(out, reference(PREDS.numpy(), TARGET.numpy(), 3))


def test_empty_predictions() -> None:
    target = _t([[[0, 1], [1, 0]], [[0, 0], [0, 0]]])
    m = SegMetrics(3)
    m.update(torch.zeros_like(target), target)
    out = m.compute()
    assert out["dice"][0] == 0.0  # truth but no prediction
    assert math.isnan(out["dice"][1])  # class 2: neither truth nor prediction anywhere
    assert out["mdice"] == 0.0  # the NaN class is left out of the mean
    assert math.isnan(out["iou"][1]) and out["miou"] == 0.0
    # background IoU = 6 / 8; class 1 IoU = 0; class 2 NaN excluded
    assert out["miou_bg"] == pytest.approx((6 / 8 + 0.0) / 2)
    # pairs: (img0, c1) truth only = 0, (img0, c2) = 1, (img1, c1) = 1, (img1, c2) = 1
    assert out["kaggle_dice"] == pytest.approx(3 / 4)


def test_empty_truths() -> None:
    target = torch.zeros(2, 2, 3, dtype=torch.long)
    preds = _t([[[0, 1, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]])
    m = SegMetrics(3)
    m.update(preds, target)
    out = m.compute()
    assert out["dice"][0] == 0.0 and out["iou"][0] == 0.0  # predicted only
    assert math.isnan(out["dice"][1])
    # pairs: (0,c1) predicted only = 0, the other three both empty = 1
    assert out["kaggle_dice"] == pytest.approx(3 / 4)
    assert out["kaggle_dice_per_class"] == pytest.approx([1 / 2, 1.0])


def test_all_empty_everywhere() -> None:
    m = SegMetrics(5)
    z = torch.zeros(3, 4, 4, dtype=torch.long)
    m.update(z, z)
    out = m.compute()
    assert all(math.isnan(v) for v in out["dice"]) and math.isnan(out["mdice"])
    assert math.isnan(out["miou"])
    assert out["miou_bg"] == 1.0  # only background is defined, and perfect
    assert out["kaggle_dice"] == 1.0


def test_kaggle_metric_multi_image() -> None:
    # three 1x4 images, K = 3 -> six (image, class) pairs
    target = _t([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[2, 2, 2, 1]]])
    preds = _t([[[1, 0, 0, 0]], [[0, 2, 0, 0]], [[2, 2, 0, 1]]])
    m = SegMetrics(3)
    m.update(preds, target)
    out = m.compute()
    pairs = [
        2 * 1 / (1 + 2),  # img0 c1: P = 1, G = 2, both = 1
        1.0,  # img0 c2: both empty
        1.0,  # img1 c1: both empty
        0.0,  # img1 c2: predicted only
        1.0,  # img2 c1: P = G = 1 pixel, same pixel
        2 * 2 / (2 + 3),  # img2 c2: P = 2, G = 3, both = 2
    ]
    assert out["kaggle_dice"] == pytest.approx(sum(pairs) / 6)
    # dataset-level Dice differs from the Kaggle mean: c1 2·2/(2+3), c2 2·2/(3+3)
    assert out["dice"] == pytest.approx([4 / 5, 4 / 6])
    assert_matches(out, reference(preds.numpy(), target.numpy(), 3))


def test_random_against_reference_and_batch_accumulation() -> None:
    g = torch.Generator().manual_seed(0)
    k = 5
    target = torch.randint(0, k, (6, 12, 16), generator=g)
    target[1] = 0  # an image without defects
    target[target == 4] = 3  # class 4 absent from the truth ...
    preds = torch.where(
        torch.rand(6, 12, 16, generator=g) < 0.7, target, torch.randint(0, k - 1, (6, 12, 16), generator=g)
    )
    single = SegMetrics(k)
    single.update(preds, target)
    batched = SegMetrics(k)
    for sl in (slice(0, 1), slice(1, 3), slice(3, 6)):
        batched.update(preds[sl], target[sl])
    a, b = single.compute(), batched.compute()
    assert torch.equal(single.confmat, batched.confmat)
    assert a["pixel_counts"] == b["pixel_counts"] and a["n_images"] == b["n_images"] == 6
    assert_same(a, b)
    assert math.isnan(a["dice"][3])  # class 4: neither truth nor prediction
    assert_matches(a, reference(preds.numpy(), target.numpy(), k))


def test_states_are_sum_reduced_and_merge_equals_single() -> None:
    m = SegMetrics(4)
    assert set(m._defaults) == {"confmat", "kaggle_sum", "n_images"}
    assert all(fx is dim_zero_sum for fx in m._reductions.values())
    assert m.confmat.dtype == torch.int64 and m.kaggle_sum.dtype == torch.float64
    g = torch.Generator().manual_seed(1)
    target, preds = torch.randint(0, 4, (4, 8, 8), generator=g), torch.randint(0, 4, (4, 8, 8), generator=g)
    m.update(preds[:2], target[:2])
    other = SegMetrics(4)
    other.update(preds[2:], target[2:])
    m.merge_state(other)
    single = SegMetrics(4)
    single.update(preds, target)
    assert_same(m.compute(), single.compute())


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(5)
        target, preds = (
            torch.randint(0, 3, (4, 8, 8), generator=g),
            torch.randint(0, 3, (4, 8, 8), generator=g),
        )
        m = SegMetrics(3)
        m.update(preds[rank::world], target[rank::world])
        out = m.compute()  # synchronised across the two processes
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    g = torch.Generator().manual_seed(5)
    target, preds = torch.randint(0, 3, (4, 8, 8), generator=g), torch.randint(0, 3, (4, 8, 8), generator=g)
    single = SegMetrics(3)
    single.update(preds, target)
    expected = single.compute()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["pixel_counts"] == expected["pixel_counts"] and got["n_images"] == 4
        assert_same(got, expected)


def test_ignore_index_pixels_are_left_out() -> None:
    g = torch.Generator().manual_seed(3)
    target, preds = torch.randint(0, 3, (2, 4, 6), generator=g), torch.randint(0, 3, (2, 4, 6), generator=g)
    masked = target.clone()
    masked[..., 4:] = 255
    a = SegMetrics(3, ignore_index=255)
    a.update(preds, masked)
    b = SegMetrics(3)
    b.update(preds[..., :4], target[..., :4])
    assert_same(a.compute(), b.compute())


def test_single_image_2d_and_reset() -> None:
    m = SegMetrics(3)
    m.update(PREDS[0], TARGET[0])
    assert m.compute()["n_images"] == 1
    m.reset()
    assert int(m.n_images) == 0 and int(m.confmat.sum()) == 0


def test_bad_inputs() -> None:
    m = SegMetrics(3)
    with pytest.raises(ValueError, match="same shape"):
        m.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="argmax"):
        m.update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer label map"):
        m.update(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    bad = torch.zeros(1, 4, 4, dtype=torch.long)
    bad[0, 1, 1] = 7
    with pytest.raises(ValueError, match=r"target has label 7, outside 0\.\.2"):
        m.update(torch.zeros(1, 4, 4, dtype=torch.long), bad)
    with pytest.raises(ValueError, match="num_classes"):
        SegMetrics(1)
    with pytest.raises(ValueError, match="ignore_index 0 is a valid class"):
        SegMetrics(3, ignore_index=0)


def test_trivial_dice_is_the_score_of_marking_every_pixel() -> None:
    from steelkd.trivial import trivial_dice

    g = torch.Generator().manual_seed(0)
    share = torch.tensor([0.1, 0.3, 0.6, 0.1])[:, None, None]  # defect share per image
    target = (torch.rand(4, 16, 16, generator=g) < share).long()
    target[0, :2] += 1  # a third class on a few rows
    ref = SegMetrics(3)
    ref.update(target, target)
    counts = ref.compute()["pixel_counts"]
    for c in (1, 2):
        m = SegMetrics(3)
        m.update(torch.full_like(target, c), target)
        assert trivial_dice(counts)[c] == pytest.approx(m.compute()["dice"][c - 1])


def test_unlearned_classes_flags_trivial_and_empty_predictions_only() -> None:
    from steelkd.trivial import trivial_dice, unlearned_classes

    names = ["background", "defect", "rare"]
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(6, 32, 32, generator=g) < 0.1).long()  # defect on ~10% of pixels, no "rare"

    def flags(preds: torch.Tensor) -> list[str]:
        m = SegMetrics(3)
        m.update(preds, target)
        r = m.compute()
        return unlearned_classes(r["dice"], r["pixel_counts"], r["pred_counts"], names)

    everything = flags(torch.ones_like(target))
    assert len(everything) == 1 and everything[0].startswith("defect: Dice")
    assert "no better than marking every pixel defect" in everything[0]
    nothing = flags(torch.zeros_like(target))
    assert nothing == ["defect: predicted nowhere (Dice 0), as a model that never marks it"]
    # a prediction independent of the truth (random 30% of pixels) cannot beat marking every pixel
    noise = (torch.rand(6, 32, 32, generator=g) < 0.3).long()
    assert [f.split(":")[0] for f in flags(noise)] == ["defect"]
    # a model that finds the defects, with some errors, is not flagged; "rare" (absent) is never judged
    good = torch.where(torch.rand(6, 32, 32, generator=g) < 0.15, 1 - target, target)
    m = SegMetrics(3)
    m.update(good, target)
    r = m.compute()
    assert r["dice"][0] > trivial_dice(r["pixel_counts"])[1]
    assert flags(good) == []
