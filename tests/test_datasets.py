"""Datasets and build_datasets: augmentation alignment, full-size evaluation, splits, folder layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import require_shared
from steelkd.config import NEU_SEG_CLASSES, DataConfig
from steelkd.data import (
    MEAN,
    STD,
    FolderDataset,
    SeverstalDataset,
    build_datasets,
    class_pixel_counts,
    normalize,
)
from steelkd.data.folder import pair_files
from steelkd.data.image import denormalize
from steelkd.data.synth import generate
from steelkd.data.transforms import build_train_transform

H, W = 64, 256


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("ds") / "synth", n=20, seed=1, height=H, width=W)


def _coded_folder(root: Path, split: str, n: int = 2, h: int = 40, w: int = 60) -> None:
    """Lossless images whose pixels encode their position and label: R=row, G=col, B=40*label."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = rng.integers(0, 4, (h, w)).astype(np.uint8)
        rr, cc = np.mgrid[0:h, 0:w]
        img = np.stack([rr * 3, cc * 4, lab.astype(int) * 40], axis=-1).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / split / f"im{i}.png")
        Image.fromarray(lab).save(root / "annotations" / split / f"im{i}.png")


def test_normalize_image_matches_imagenet_stats() -> None:
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    x = torch.from_numpy(normalize(img))
    assert x.dtype == torch.float32 and x.shape == (3, 5, 7)
    ref = (img.astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), ref, atol=1e-5)
    np.testing.assert_array_equal(denormalize(x), img)
    assert normalize(img[..., 0]).shape == (3, 5, 7)
    with pytest.raises(ValueError, match="H x W x 3"):
        normalize(np.zeros((2, 2, 4), np.uint8))


@pytest.mark.parametrize(("hflip", "vflip"), [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)])
def test_crop_and_flips_move_image_and_mask_together(tmp_path: Path, hflip: float, vflip: float) -> None:
    _coded_folder(tmp_path, "training")
    t = build_train_transform(crop=[24, 32], hflip=hflip, vflip=vflip, brightness_contrast=0.0)
    ds = FolderDataset(tmp_path, "training", ["bg", "a", "b", "c"], transform=t)
    for i in range(len(ds)):
        for _ in range(3):
            x, y = ds[i]
            assert x.shape == (3, 24, 32) and y.shape == (24, 32) and y.dtype == torch.int64
            img = denormalize(x).astype(int)
            np.testing.assert_array_equal(img[..., 2], y.numpy() * 40)  # label channel still matches
            rows, cols = img[..., 0] // 3, img[..., 1] // 4
            # the crop is a window of the original, flipped as asked
            assert (np.diff(rows, axis=0) == (-1 if vflip else 1)).all()
            assert (np.diff(cols, axis=1) == (-1 if hflip else 1)).all()
            full = ds.read_mask(i)
            r0, c0 = rows.min(), cols.min()
            window = full[r0 : r0 + 24, c0 : c0 + 32]
            window = window[::-1] if vflip else window
            window = window[:, ::-1] if hflip else window
            np.testing.assert_array_equal(y.numpy(), window)


def test_crop_pads_small_images_with_background(tmp_path: Path) -> None:
    _coded_folder(tmp_path, "training", n=1, h=20, w=30)
    t = build_train_transform(crop=[32, 48], hflip=0, vflip=0, brightness_contrast=0)
    x, y = FolderDataset(tmp_path, "training", ["bg", "a", "b", "c"], transform=t)[0]
    assert x.shape == (3, 32, 48) and y.shape == (32, 48)
    img = denormalize(x)
    np.testing.assert_array_equal(img[..., 2].astype(int), y.numpy() * 40)
    full = FolderDataset(tmp_path, "training", ["bg", "a", "b", "c"]).read_mask(0)
    assert (
        np.bincount(y.numpy().ravel(), minlength=4)[1:].tolist()
        == np.bincount(full.ravel(), minlength=4)[1:].tolist()
    )
    padded = img.reshape(-1, 3).max(axis=1) == 0
    assert padded.sum() >= 32 * 48 - 20 * 30  # the padding is black ...
    assert (y.numpy().ravel()[padded] == 0).all()  # ... and background


def test_brightness_contrast_changes_image_not_mask(tmp_path: Path) -> None:
    _coded_folder(tmp_path, "training", n=1)
    t = build_train_transform(crop=[], hflip=0, vflip=0, brightness_contrast=1.0)
    ds = FolderDataset(tmp_path, "training", ["bg", "a", "b", "c"], transform=t)
    changed = False
    for _ in range(5):
        x, y = ds[0]
        np.testing.assert_array_equal(y.numpy(), ds.read_mask(0))
        changed |= not torch.allclose(x, torch.from_numpy(normalize(ds.read_image(0))))
    assert changed
    assert build_train_transform(crop=[], hflip=0, vflip=0, brightness_contrast=0) is None
    with pytest.raises(ValueError, match="crop must be"):
        build_train_transform(crop=[0, 5])


def test_build_datasets_severstal_layout(synth_root: Path) -> None:
    cfg = DataConfig(kind="severstal", root=str(synth_root), crop=[32, 64], val_fraction=0)
    train, val, test = build_datasets(cfg)
    assert val is test  # val_fraction 0: the test split validates
    assert isinstance(train, SeverstalDataset) and isinstance(val, SeverstalDataset)
    split_file = synth_root / "steelkd_split.json"
    split = json.loads(split_file.read_text())
    assert train.ids == split["train"] and val.ids == split["test"]
    assert not set(train.ids) & set(val.ids)
    n = len(train) + len(val)
    assert len(val) == round(0.2 * n)
    x, y = train[0]
    assert x.shape == (3, 32, 64) and y.shape == (32, 64)
    xv, yv = val[0]  # full size, no augmentation
    assert xv.shape == (3, H, W)
    assert torch.equal(xv, torch.from_numpy(normalize(val.read_image(0))))
    np.testing.assert_array_equal(yv.numpy(), val.read_mask(0))
    assert val.read_image(0).shape == (H, W, 3) and val.read_mask(0).dtype == np.uint8
    assert train.class_names == cfg.class_names
    # defect_only: every image has at least one mask
    assert all(train.masks[i] for i in train.ids)
    # the split file is reused: edit it and the datasets follow
    split["train"], split["test"] = split["train"][1:], split["test"] + split["train"][:1]
    split_file.write_text(json.dumps(split))
    train2, _, test2 = build_datasets(cfg)
    assert train2.ids == split["train"] and test2.ids == split["test"]


def test_build_datasets_options(synth_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(
        kind="severstal",
        root=str(synth_root),
        split_file=str(tmp_path / "my_split.json"),
        defect_only=False,
        max_train_images=3,
        max_val_images=2,
        crop=[],
        hflip=0,
        vflip=0,
        brightness_contrast=0,
        seed=7,
    )
    train, val, test = build_datasets(cfg)
    assert (tmp_path / "my_split.json").is_file()
    split = json.loads((tmp_path / "my_split.json").read_text())
    assert len(split["train"]) + len(split["test"]) == 20  # defect-free images take part too
    assert len(train) == 3 and len(val) == 2 and len(test) == 2 and train.transform is None
    assert not set(val.ids) & set(test.ids)
    assert train[0][0].shape == (3, H, W)
    with pytest.raises(ValueError, match=r"line \d+ \(ImageId \w+\.jpg\): ClassId [34] is outside 1\.\.2"):
        build_datasets(DataConfig(kind="severstal", root=str(synth_root), class_names=["bg", "a", "b"]))


def test_build_datasets_synth_generates_once(tmp_path: Path) -> None:
    root = tmp_path / "gen"
    generate(root, n=6, seed=3, height=H, width=W)  # already there: must not be regenerated
    before = (root / "train.csv").read_bytes()
    train = build_datasets(DataConfig(kind="synth", root=str(root), synth_n=50, seed=3, crop=[32, 32])).train
    assert (root / "train.csv").read_bytes() == before
    assert train.read_image(0).shape == (H, W, 3)
    fresh = tmp_path / "fresh"
    train = build_datasets(DataConfig(kind="synth", root=str(fresh), synth_n=5, seed=0, val_fraction=0)).train
    assert len(list((fresh / "train_images").iterdir())) == 5
    assert train.read_image(0).shape == (256, 1600, 3)


def test_class_pixel_counts_severstal_and_folder(synth_root: Path, tmp_path: Path) -> None:
    train = build_datasets(DataConfig(kind="severstal", root=str(synth_root))).train
    brute = sum(np.bincount(train.read_mask(i).ravel(), minlength=5) for i in range(len(train)))
    counts = class_pixel_counts(train)
    assert counts.dtype == np.int64 and counts.shape == (5,)
    np.testing.assert_array_equal(counts, brute)
    _coded_folder(tmp_path, "training", n=3)
    ds = FolderDataset(tmp_path, "training", ["bg", "a", "b", "c"])
    brute = sum(np.bincount(ds.read_mask(i).ravel(), minlength=4) for i in range(3))
    np.testing.assert_array_equal(class_pixel_counts(ds), brute)


def test_build_datasets_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.root is empty"):
        build_datasets(DataConfig(kind="severstal", root=""))
    with pytest.raises(FileNotFoundError, match=r"no train\.csv"):
        build_datasets(DataConfig(kind="severstal", root=str(tmp_path)))
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\nx.jpg,1,1 1\n")
    with pytest.raises(FileNotFoundError, match="no train_images"):
        build_datasets(DataConfig(kind="severstal", root=str(tmp_path)))
    (tmp_path / "train_images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) named in train.csv are missing: x.jpg"):
        build_datasets(DataConfig(kind="severstal", root=str(tmp_path)))
    with pytest.raises(ValueError, match=r"data\.kind"):
        build_datasets(DataConfig(kind="nope", root=str(tmp_path)))


# ---------------------------------------------------------------------------------------- folder


def test_folder_mismatched_names_are_named(tmp_path: Path) -> None:
    _coded_folder(tmp_path, "training", n=2)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "training" / "lonely.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "annotations" / "training" / "orphan.png")
    with pytest.raises(
        ValueError, match=r"1 image\(s\) in .* without a mask .*: lonely.png; 1 mask\(s\) .*: orphan.png"
    ):
        pair_files(tmp_path / "images" / "training", tmp_path / "annotations" / "training")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        FolderDataset(tmp_path, "nosplit", ["bg", "a"])


def test_folder_mask_value_and_shape_checks(tmp_path: Path) -> None:
    _coded_folder(tmp_path, "training", n=1)
    ds = FolderDataset(tmp_path, "training", ["bg", "a"])  # masks hold values up to 3
    with pytest.raises(ValueError, match=r"im0.png: label value 3 but only 2 classes"):
        ds.read_mask(0)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "annotations" / "training" / "im0.png")
    with pytest.raises(ValueError, match=r"mask is 5x5 but image im0.png is 40x60"):
        FolderDataset(tmp_path, "training", ["bg", "a"])[0]
    Image.fromarray(
        np.dstack([np.zeros((5, 5), np.uint8), np.ones((5, 5), np.uint8), np.zeros((5, 5), np.uint8)])
    ).save(tmp_path / "annotations" / "training" / "im0.png")
    with pytest.raises(ValueError, match="single-channel label map"):
        FolderDataset(tmp_path, "training", ["bg", "a"]).read_mask(0)


def test_neu_seg_loads_as_it_is() -> None:
    root = require_shared("neu_seg")
    cfg = DataConfig(kind="folder", root=str(root), class_names=list(NEU_SEG_CLASSES), crop=[128, 128])
    train, val, test = build_datasets(cfg)
    assert isinstance(train, FolderDataset) and isinstance(val, FolderDataset)
    assert len(train) == 3630 - 363 and len(val) == 363 and len(test) == 840
    val = test
    assert train.ids[0] == Path(train.image_paths[0]).stem == Path(train.mask_paths[0]).stem
    img, mask = val.read_image(0), val.read_mask(0)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    assert mask.shape == (200, 200) and mask.dtype == np.uint8
    values = set()
    for i in range(0, len(val), 40):
        values |= set(np.unique(val.read_mask(i)).tolist())
    assert values <= {0, 1, 2, 3} and len(values) >= 3
    x, y = train[5]
    assert x.shape == (3, 128, 128) and y.shape == (128, 128) and int(y.max()) <= 3
    xv, yv = val[0]
    assert xv.shape == (3, 200, 200)
    np.testing.assert_array_equal(yv.numpy(), mask)


def test_real_severstal_images_read_as_rgb() -> None:
    d = require_shared("severstal", "train_images")
    img = cv2.imread(str(d / "000a4bcdd.jpg"))
    assert img is not None
    from steelkd.data.image import read_image

    rgb = read_image(d / "000a4bcdd.jpg")
    assert rgb.shape == (256, 1600, 3) and rgb.dtype == np.uint8
