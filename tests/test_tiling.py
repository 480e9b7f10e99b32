"""Tiled inference: the grid, the blending window, agreement with whole-frame prediction, evaluate --tile."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deploy_helpers import CLASS_NAMES, LEVELS, tiny_model_dir
from steelkd.cli import app
from steelkd.evaluate import evaluate_model
from steelkd.postprocess import PostProcess
from steelkd.predict import Predictor
from steelkd.tiling import Tiling, blend_window, tile_starts, tiled_logits
from test_evaluate import EncodedDataset, ReadLabel

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


# ------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(1000, 256, 64), (4096, 512, 64), (257, 256, 0), (300, 128, 127), (513, 256, 32)],
)
def test_tiles_cover_the_frame_with_at_least_the_overlap_and_never_leave_it(
    length: int, tile: int, overlap: int
) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length  # the last tile is shifted inward, not padded
    assert all(0 <= s <= length - tile for s in starts)
    assert all(0 < b - a <= tile - overlap for a, b in itertools.pairwise(starts))  # overlap kept
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_a_frame_no_larger_than_the_tile_is_one_tile_and_bad_overlaps_are_refused() -> None:
    assert tile_starts(200, 256, 64) == [0] and tile_starts(256, 256, 255) == [0]
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(1000, 256, 256)
    with pytest.raises(ValueError, match="overlap"):
        Tiling((64, 64), overlap=64)
    with pytest.raises(ValueError, match="tile"):
        Tiling((0, 64))
    assert Tiling((256, 512)).overlap == 64


def test_facing_cosine_ramps_sum_to_one_and_border_edges_keep_full_weight() -> None:
    size, overlap = 96, 32
    a = blend_window(size, overlap, ramp_start=False, ramp_end=True)
    b = blend_window(size, overlap, ramp_start=True, ramp_end=False)
    assert a[0] == 1.0 and b[-1] == 1.0  # frame borders: weight 1
    np.testing.assert_allclose(a[size - overlap :] + b[:overlap], 1.0, atol=1e-6)  # partition of unity
    assert np.all(np.diff(b[:overlap]) > 0) and b[:overlap].min() > 0  # smooth, never exactly 0


# ---------------------------------------------------------------------------------------- blending
def _pixelwise(batch: np.ndarray) -> np.ndarray:
    """A 'network' whose logits depend on each pixel only: tiling must not change them."""
    x = batch[:, :1]
    return np.concatenate([x, -x, x * x], axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [
        ((70, 1000), (64, 256), 48),
        ((200, 333), (64, 96), 16),
        ((64, 4096), (64, 512), 64),
    ],
)
def test_tiled_logits_of_a_pixelwise_model_equal_the_whole_frame(
    shape: tuple[int, int], tile: tuple[int, int], overlap: int
) -> None:
    frame = np.random.default_rng(0).standard_normal((2, 3, *shape)).astype(np.float32)
    seen: list[tuple[int, ...]] = []

    def fn(b: np.ndarray) -> np.ndarray:
        seen.append(b.shape)
        return _pixelwise(b)

    out = tiled_logits(fn, frame, tile, overlap, tile_batch=3)
    np.testing.assert_allclose(out, _pixelwise(frame), rtol=1e-5, atol=1e-5)
    assert all(s[0] <= 3 and s[2:] == (min(tile[0], shape[0]), min(tile[1], shape[1])) for s in seen)
    assert len(seen) > 1


def test_one_tile_is_exactly_the_whole_frame() -> None:
    frame = np.random.default_rng(1).standard_normal((1, 3, 60, 90)).astype(np.float32)
    assert np.array_equal(tiled_logits(_pixelwise, frame, (64, 128), 16), _pixelwise(frame))


def test_blending_weighs_each_tile_by_the_window() -> None:
    """A model that outputs a per-call constant: the blend is a weighted mean of tile values."""
    calls = iter(range(100))

    def const(b: np.ndarray) -> np.ndarray:
        return np.stack([np.full(b.shape[2:], float(next(calls)), np.float32) for _ in b])[:, None]

    frame = np.zeros((1, 3, 32, 160), np.float32)
    out = tiled_logits(const, frame, (32, 64), 32, tile_batch=1)[0, 0]
    starts = tile_starts(160, 64, 32)  # [0, 32, 64, 96]: tile k outputs the value k
    assert starts == [0, 32, 64, 96]
    assert out[0, 0] == 0.0 and out[0, -1] == 3.0  # borders: one tile only
    assert np.all(np.diff(out[0]) >= -1e-6)  # smooth, monotone transition between tiles
    assert out[0, 48] == pytest.approx(0.5 * (0.0 + 1.0) + 0.5 * 2.0 - 0.5, abs=0.51)


# ------------------------------------------------------------------------- a trained model, wide frames
def _wide_frame(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A wide grey strip with defects, some of them straddling the tile seams."""
    rng = np.random.default_rng(seed)
    img = rng.normal(LEVELS[0], 6, (h, w))
    label = np.zeros((h, w), np.uint8)
    for k, x0 in enumerate(range(150, w - 150, 230)):
        c = 1 + k % 4
        dh, dw = int(rng.integers(h // 4, h // 2)), int(rng.integers(60, 140))
        y0 = int(rng.integers(0, h - dh))
        img[y0 : y0 + dh, x0 : x0 + dw] = rng.normal(LEVELS[c], 6, (dh, dw))
        label[y0 : y0 + dh, x0 : x0 + dw] = c
    return np.clip(img, 0, 255).astype(np.uint8), label


def test_tiled_and_whole_frame_prediction_agree_on_a_wide_frame(model_dir: Path) -> None:
    import cv2

    img, truth = _wide_frame(64, 2048, seed=3)
    post = PostProcess(threshold=None, min_area=0)
    whole = Predictor.from_path(model_dir, post=post).predict_image(img)
    tiled_pred = Predictor.from_path(model_dir, post=post, tile=(64, 256), tile_overlap=64)
    tiled = tiled_pred.predict_image(img)
    assert tiled.shape == whole.shape == (64, 2048)
    assert (tiled == whole).mean() >= 0.995
    assert (whole == truth).mean() > (truth == 0).mean()  # the model finds defects: the check means something
    # defects crossing tile borders come out whole: each true defect is one connected region when tiled
    seams = {s for s in tile_starts(2048, 256, 64)[1:]} | {s + 256 for s in tile_starts(2048, 256, 64)[:-1]}
    crossing = 0
    n, comp = cv2.connectedComponents((truth > 0).astype(np.uint8), connectivity=8)
    for k in range(1, n):
        xs = np.flatnonzero((comp == k).any(axis=0))
        if not any(xs[0] < s < xs[-1] for s in seams):
            continue
        c = int(np.bincount(truth[comp == k]).argmax())
        near = cv2.dilate((comp == k).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        t_part, w_part = (tiled == c) & near, (whole == c) & near
        if w_part.sum() < 0.5 * (comp == k).sum():
            continue  # the tiny model misses this defect on the whole frame too: nothing to compare
        crossing += 1
        pieces = [
            cv2.connectedComponents(p.astype(np.uint8), connectivity=8)[0] - 1 for p in (t_part, w_part)
        ]
        assert pieces[0] <= max(1, pieces[1]), f"defect {k}: {pieces[0]} pieces tiled, {pieces[1]} whole"
        assert (t_part & w_part).sum() >= 0.95 * (t_part | w_part).sum()  # the same region as whole-frame
    assert crossing >= 2  # found defects that straddle a seam were checked


def test_tiling_in_two_dimensions_with_tta(model_dir: Path) -> None:
    img, _ = _wide_frame(160, 700, seed=5)
    post = PostProcess(threshold=None, min_area=0)
    whole = Predictor.from_path(model_dir, post=post, tta=True).predict_image(img)
    tiled = Predictor.from_path(
        model_dir, post=post, tta=True, tile=(96, 256), tile_overlap=48, batch_size=2
    ).predict_image(img)
    assert (tiled == whole).mean() >= 0.99


def test_predict_cli_tile_option_matches_the_library(model_dir: Path, tmp_path: Path) -> None:
    img, _ = _wide_frame(64, 900, seed=7)
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "strip.png")
    common = ["predict", "-m", str(model_dir), "-i", str(tmp_path / "in"), "--no-overlays", "--no-progress"]
    res = runner.invoke(app, [*common, "-o", str(tmp_path / "o"), "--tile", "64x256", "--tile-overlap", "32"])
    assert res.exit_code == 0, res.output
    lib = Predictor.from_path(model_dir, tile=(64, 256), tile_overlap=32).predict_image(img)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "masks" / "strip.png")), lib)
    res = runner.invoke(app, [*common, "-o", str(tmp_path / "b"), "--tile-overlap", "32"])
    assert res.exit_code == 1 and "--tile" in res.stderr


# ------------------------------------------------------------------------------------------- evaluate
def test_evaluate_tiled_equals_whole_on_mixed_sizes_and_runs_only_tiles() -> None:
    ds = EncodedDataset()  # sizes 16x24 and 20x20, mixed
    whole = evaluate_model(ReadLabel(), ds, batch_size=2)
    model = ReadLabel()
    tiled = evaluate_model(model, ds, batch_size=2, tile=Tiling((12, 12), overlap=4))
    for key in ("mdice", "miou", "miou_bg", "kaggle_dice"):
        assert tiled[key] == pytest.approx(whole[key]), key
    assert tiled["dice"] == pytest.approx(whole["dice"])
    assert {s[2:] for s in model.seen} == {(12, 12)} and all(s[0] <= 2 for s in model.seen)
    assert tiled["tiling"] == "12x12 tiles, overlap 4" and whole["tiling"] is None


def test_evaluate_tiled_with_a_real_network_agrees_with_whole(model_dir: Path) -> None:
    from steelkd.data.image import normalize
    from steelkd.models import load_model

    class Frames:
        def __init__(self) -> None:
            self.class_names = list(CLASS_NAMES)
            self.items = []
            for seed, (h, w) in enumerate([(64, 900), (64, 900), (80, 500)]):  # mixed sizes
                img, lab = _wide_frame(h, w, seed)
                x = torch.from_numpy(normalize(np.stack([img] * 3, axis=-1)))
                self.items.append((x, torch.from_numpy(lab.astype(np.int64))))

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self.items[i]

    net, _ = load_model(model_dir)
    whole = evaluate_model(net, Frames(), batch_size=2)
    tiled = evaluate_model(net, Frames(), batch_size=2, tile=Tiling((64, 256), 32))
    assert abs(tiled["mdice"] - whole["mdice"]) < 0.01
    assert whole["mdice"] > 0.3
