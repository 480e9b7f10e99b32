"""The validation split: carved from the training images (seeded, stratified), never the test split; the
test split is scored once per final model (fit does not touch it, experiments score it)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from steelkd.config import Config, DataConfig
from steelkd.data import build_datasets
from steelkd.data.build import carve_validation
from steelkd.data.folder import FolderDataset
from steelkd.data.synth import generate
from steelkd.engine import fit
from steelkd.engine.datamodule import SegDataModule


def _folder(root: Path, n: int) -> Path:
    """A split-layout folder: ``n`` training images (a third each with class 1, 2, none) and 6 test images."""
    from PIL import Image

    for split, count in (("training", n), ("test", 6)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((16, 16, 3), (7 * i) % 256, np.uint8)).save(
                root / "images" / split / f"{i:03d}.png"
            )
            mask = np.zeros((16, 16), np.uint8)
            mask[2:6, 2:6] = i % 3
            Image.fromarray(mask).save(root / "annotations" / split / f"{i:03d}.png")
    return root


def test_carve_is_seeded_stratified_disjoint_and_unaugmented(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", 30)
    cfg = DataConfig(
        kind="folder", root=str(root), class_names=["bg", "a", "b"], crop=[8, 8], val_fraction=0.2
    )
    train, val, test = build_datasets(cfg)
    assert len(val) == 6 and len(train) == 24 and len(test) == 6
    assert not set(train.ids) & set(val.ids)
    assert sorted(train.ids + val.ids) == [f"{i:03d}" for i in range(30)]
    # stratified: 2 of each class set (class 1, class 2, none) in validation
    assert Counter(val.classes_present(i) for i in range(len(val))) == {(1,): 2, (2,): 2, (): 2}
    assert train.transform is not None and val.transform is None
    assert val[0][0].shape == (3, 16, 16)  # full size
    # per-item lists follow the ids (the image of a validation id is that id's file)
    assert all(Path(val.image_path(i)).stem == val.ids[i] for i in range(len(val)))
    assert all(Path(train.mask_paths[i]).stem == train.ids[i] for i in range(len(train)))
    again = build_datasets(cfg)
    assert again.val.ids == val.ids  # deterministic
    cfg.seed = 1
    assert build_datasets(cfg).val.ids != val.ids  # and seeded
    cfg.val_fraction = 0
    no_val = build_datasets(cfg)
    assert no_val.val is no_val.test and len(no_val.train) == 30


def test_carve_needs_two_images_and_holds_out_at_least_one(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", 3)
    ds = FolderDataset(root, "training", ["bg", "a", "b"])
    train, val = carve_validation(ds, 0.1, seed=0)
    assert len(val) == 1 and len(train) == 2
    with pytest.raises(ValueError, match=r"1 training image\(s\) are too few .* data.val_fraction=0"):
        carve_validation(ds.subset([0], None), 0.1, seed=0)


def test_severstal_carve_uses_the_tables_classes(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", n=40, seed=0, height=32, width=64)
    train, val, test = build_datasets(DataConfig(kind="severstal", root=str(root), crop=[16, 16]))
    split = json.loads((root / "steelkd_split.json").read_text())
    assert sorted(train.ids + val.ids) == sorted(split["train"]) and test.ids == split["test"]
    for i in range(len(val)):  # the table's classes are the label map's
        assert val.classes_present(i) == tuple(int(v) for v in np.unique(val.read_mask(i)) if v)


def test_fit_selects_on_validation_and_records_the_three_splits(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", n=24, seed=0, height=32, width=64)
    cfg = Config()
    cfg.data = DataConfig(kind="severstal", root=str(root), crop=[32, 32], batch_size=4, num_workers=0,
                          val_fraction=0.25)  # fmt: skip
    cfg.model.name = "resunet_convnext_atto"
    cfg.train.epochs, cfg.train.accelerator, cfg.train.out_dir = 1, "cpu", str(tmp_path / "run")
    result = fit(cfg, progress=False)
    split = json.loads((result.out_dir / "data_split.json").read_text())
    assert len(split["val"]) == round(0.25 * len(split["train"] + split["val"]))
    assert not set(split["val"]) & set(split["test"]) and not set(split["train"]) & set(split["val"])
    data = SegDataModule(cfg)  # what the Trainer validated on: the validation split, not the test split
    assert data.val_ds.ids == split["val"] and data.test_ds.ids == split["test"]
    assert sum(len(b[0]) for b in data.val_dataloader()) == len(split["val"])
