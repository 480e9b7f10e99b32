"""Synthetic Severstal-layout data: determinism, csv/mask agreement, visible and learnable defects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from steelkd.data.rle import rle_decode
from steelkd.data.severstal import read_train_csv
from steelkd.data.synth import generate, image_id, render

H, W = 64, 256


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "a", n=24, seed=5, height=H, width=W)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_header(synth_dir: Path) -> None:
    assert (synth_dir / "train.csv").read_text().splitlines()[0] == "ImageId,ClassId,EncodedPixels"
    images = sorted(p.name for p in (synth_dir / "train_images").iterdir())
    assert images == sorted(image_id(5, i) for i in range(24))
    img = cv2.imread(str(synth_dir / "train_images" / images[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (H, W, 3)  # RGB JPEG, grayscale-looking like Severstal
    assert (img[..., 0].astype(int) - img[..., 2].astype(int)).std() < 2


def test_same_seed_same_bytes_other_seed_differs(synth_dir: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "b", n=24, seed=5, height=H, width=W)
    assert _files(again) == _files(synth_dir)
    other = generate(tmp_path / "c", n=24, seed=6, height=H, width=W)
    assert (other / "train.csv").read_bytes() != (synth_dir / "train.csv").read_bytes()
    # an image depends on (seed, index) only, not on n
    few = generate(tmp_path / "d", n=3, seed=5, height=H, width=W)
    name = image_id(5, 2)
    assert (few / "train_images" / name).read_bytes() == (synth_dir / "train_images" / name).read_bytes()


def test_csv_masks_are_exactly_the_drawn_ones(synth_dir: Path) -> None:
    table = read_train_csv(synth_dir / "train.csv", shape=(H, W), image_dir=synth_dir / "train_images")
    got = {(r.ImageId, r.ClassId): rle_decode(r.EncodedPixels, (H, W)) for r in table.itertuples()}
    n_masks = 0
    for i in range(24):
        _, masks = render(5, i, H, W)
        for cls, m in masks.items():
            np.testing.assert_array_equal(got[(image_id(5, i), cls)], m.astype(np.uint8))
            n_masks += 1
    assert n_masks == len(table)


def test_defects_are_visible_in_the_jpeg(synth_dir: Path) -> None:
    """Pitting and cracks are darker than the background around them, scratches and patches brighter."""
    table = read_train_csv(synth_dir / "train.csv")
    by_image: dict[str, list[tuple[int, np.ndarray]]] = {}
    for r in table.itertuples():
        by_image.setdefault(r.ImageId, []).append(
            (r.ClassId, rle_decode(r.EncodedPixels, (H, W)).astype(bool))
        )
    diffs: dict[int, list[float]] = {1: [], 2: [], 3: [], 4: []}
    for name, masks in by_image.items():
        gray = cv2.imread(str(synth_dir / "train_images" / name), cv2.IMREAD_GRAYSCALE).astype(float)
        union = np.logical_or.reduce([m for _, m in masks])
        for cls, m in masks:
            ring = ndimage.binary_dilation(m, iterations=4) & ~union
            diffs[cls].append(gray[m].mean() - gray[ring].mean())
    assert all(diffs[c] for c in diffs), "every class appears"
    assert max(diffs[1]) < -25 and max(diffs[2]) < -25
    assert min(diffs[3]) > 25 and min(diffs[4]) > 25


def test_class_mix_defect_free_and_multi_class(tmp_path: Path) -> None:
    stats = [render(11, i, 32, 128)[1] for i in range(120)]
    free = sum(not m for m in stats)
    multi = sum(len(m) >= 2 for m in stats)
    assert 4 <= free <= 24  # about 10%
    assert multi >= 15
    for cls in (1, 2, 3, 4):
        assert sum(cls in m for m in stats) >= 15
    assert all(not (np.sum([mm.astype(int) for mm in m.values()], axis=0) > 1).any() for m in stats if m)


def test_thin_defects_are_at_least_3px_wide() -> None:
    """Cracks and scratches survive a 3x3 erosion (a 1-2 px line would vanish)."""
    seen = set()
    for i in range(60):
        _, masks = render(2, i, 64, 256)
        for cls in (2, 3):
            if cls in masks:
                seen.add(cls)
                lab, n = ndimage.label(masks[cls], structure=np.ones((3, 3)))
                eroded = ndimage.binary_erosion(masks[cls], structure=np.ones((3, 3)))
                big = [k for k in range(1, n + 1) if (lab == k).sum() >= 30]  # ignore tiny clipped ends
                assert all(eroded[lab == k].any() for k in big), (i, cls)
    assert seen == {2, 3}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        generate(tmp_path, n=0)
    with pytest.raises(ValueError, match="at least 8x8"):
        render(0, 0, 4, 100)
