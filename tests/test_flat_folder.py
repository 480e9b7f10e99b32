"""Flat folder data sets (images/ + masks/ + classes.yaml, as steelkd data import writes them): the seeded
split file, class names from classes.yaml, the validation check at set-up, and training on mixed sizes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelkd.cli import app
from steelkd.config import Config, DataConfig
from steelkd.data import build_datasets
from steelkd.data.importers import ImportOptions, import_annotations
from steelkd.engine import SegDataModule, fit

SIZES = [(64, 96), (80, 64), (48, 112)]


def _imported(tmp_path: Path, n: int = 15) -> Path:
    """A mixed-size data set in mask-suffix form, imported into the flat layout (classes scratch, dent)."""
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = SIZES[i % 3]
        lab = np.zeros((h, w), np.uint8)
        if i % 5:  # every fifth image is defect-free
            lab[h // 4 : h // 2, w // 4 : w // 2] = 1 + i % 2
        img = (rng.integers(90, 110, (h, w, 3)) + 80 * (lab[..., None] > 0)).astype(np.uint8)
        Image.fromarray(img).save(src / f"{i:03d}.jpg", quality=95)
        Image.fromarray(lab).save(src / f"{i:03d}_label.png")
    out = tmp_path / "data"
    import_annotations("mask-suffix", src, out, ImportOptions(suffix="_label", classes=["scratch", "dent"]))
    return out


def _cfg(root: Path, tmp_path: Path) -> Config:
    cfg = Config(name="flat")
    cfg.data.kind, cfg.data.root = "folder", str(root)
    cfg.data.crop, cfg.data.batch_size, cfg.data.num_workers = [48, 64], 4, 0
    cfg.data.test_fraction = 0.4
    cfg.data.val_fraction = 0.5  # 4 of the 9 training images
    cfg.model.name = "resunet_convnext_atto"
    cfg.train.epochs, cfg.train.precision, cfg.train.accelerator = 1, "32", "cpu"
    cfg.train.out_dir = str(tmp_path / "run")
    return cfg


def test_flat_folder_split_is_seeded_stratified_written_once_and_reused(tmp_path: Path) -> None:
    root = _imported(tmp_path)
    data = DataConfig(kind="folder", root=str(root), test_fraction=0.4, seed=3, val_fraction=0)
    train, _, test = build_datasets(data)
    assert train.class_names == ["background", "scratch", "dent"]  # filled from classes.yaml
    split = json.loads((root / "steelkd_split.json").read_text())
    assert sorted(split["train"] + split["test"]) == [f"{i:03d}.jpg" for i in range(15)]
    # class sets: 6 scratch, 6 dent, 3 none; 6 test images by largest remainder (2.4, 2.4, 1.2; tie: "1")
    groups = {"1": {"train": 3, "test": 3}, "2": {"train": 4, "test": 2}, "none": {"train": 2, "test": 1}}
    assert split["groups"] == groups
    assert [f"{s}.jpg" for s in test.ids] == split["test"] and len(train) == 9
    data.seed, data.test_fraction = 4, 0.2  # an existing split file wins
    assert [f"{s}.jpg" for s in build_datasets(data).test.ids] == split["test"]

    res = CliRunner().invoke(app, ["data", "split", "--data", str(root), "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert f"wrote {root / 'steelkd_split.json'}: train 12 images, test 3 images" in res.output
    assert json.loads((root / "steelkd_split.json").read_text())["seed"] == 4
    assert len(build_datasets(data).test) == 3
    res = CliRunner().invoke(app, ["data", "stats", "--data", str(root), "--kind", "folder"])
    assert res.exit_code == 0 and "15 images, 12 with defects" in res.output and "(flat)" in res.output
    assert "scratch" in res.output and "dent" in res.output  # names from classes.yaml


def test_class_names_must_agree_with_classes_yaml(tmp_path: Path) -> None:
    root = _imported(tmp_path)
    data = DataConfig(kind="folder", root=str(root), class_names=["background", "scratch", "dent"])
    assert build_datasets(data)[0].class_names == ["background", "scratch", "dent"]
    data.class_names = ["background", "dent", "scratch"]
    with pytest.raises(ValueError, match=r"data.class_names \['background', 'dent', 'scratch'\] differ from"):
        build_datasets(data)


def test_a_bad_validation_file_stops_the_run_at_set_up_naming_it(tmp_path: Path) -> None:
    root = _imported(tmp_path)
    cfg = _cfg(root, tmp_path)
    val = build_datasets(cfg.data).val
    bad_image, bad_mask = val.image_paths[0], val.mask_paths[1]
    good = bad_image.read_bytes()
    bad_image.write_bytes(good[: len(good) // 2])  # truncated: the header still reads
    with pytest.raises(ValueError, match=rf"{bad_image}: cannot read image \(image file is truncated"):
        SegDataModule(cfg)
    bad_image.write_bytes(good)
    same_classes = np.resize(np.unique(np.asarray(Image.open(bad_mask))), (10, 10)).astype(np.uint8)
    Image.fromarray(same_classes).save(bad_mask)  # the classes (which choose the validation split) unchanged
    with pytest.raises(ValueError, match=rf"{bad_mask}: mask is 10x10 but image"):
        SegDataModule(cfg)


def test_training_validates_an_imported_flat_folder_of_mixed_sizes(tmp_path: Path) -> None:
    root = _imported(tmp_path)
    cfg = _cfg(root, tmp_path)
    cfg.data.val_fraction = 0  # validate on the 6 test images, which hold every size
    dm = SegDataModule(copy.deepcopy(cfg))
    shapes = [tuple(x.shape[-2:]) for x, _ in dm.val_dataloader()]
    assert sorted(set(shapes)) == sorted(set(SIZES)) and len(shapes) >= 3
    result = fit(cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    assert log["val/mdice"].notna().sum() == 1 and "val/dice_dent" in log.columns
    card = json.loads((result.model_dir / "model.json").read_text())
    assert card["class_names"] == ["background", "scratch", "dent"]
    assert cfg.data.class_names[1] == "pitting"  # the caller's config is not modified
