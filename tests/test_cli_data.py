"""``steelkd data synth|stats|split`` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from conftest import require_shared
from steelkd.cli import app

runner = CliRunner()


def test_synth_stats_split_round(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    r = runner.invoke(
        app,
        ["data", "synth", "--out", str(out), "--n", "12", "--seed", "2", "--height", "32", "--width", "128"],
    )
    assert r.exit_code == 0, r.output
    assert "wrote 12 images (32x128)" in r.output
    assert len(list((out / "train_images").glob("*.jpg"))) == 12
    assert (out / "train.csv").read_text().startswith("ImageId,ClassId,EncodedPixels\n")

    r = runner.invoke(app, ["data", "stats", "--data", str(out)])
    assert r.exit_code == 0, r.output
    n_defect = len({line.split(",")[0] for line in (out / "train.csv").read_text().splitlines()[1:]})
    assert f"12 images, {n_defect} with defects" in r.output
    for name in ("pitting", "crazing", "scratches", "patches", "pixel share"):
        assert name in r.output
    assert "overlap: 0 pixels" in r.output

    split = tmp_path / "split.json"
    r = runner.invoke(
        app,
        ["data", "split", "--data", str(out), "--out", str(split), "--seed", "1", "--test-fraction", "0.25"],
    )
    assert r.exit_code == 0, r.output
    data = json.loads(split.read_text())
    assert f"train {len(data['train'])} images, test {len(data['test'])} images" in r.output
    assert len(data["test"]) == round(0.25 * n_defect) and data["seed"] == 1

    r = runner.invoke(
        app, ["data", "split", "--data", str(out), "--out", str(split), "--include-defect-free"]
    )
    assert (
        r.exit_code == 0
        and len(json.loads(split.read_text())["train"]) + len(json.loads(split.read_text())["test"]) == 12
    )


def test_stats_folder_kind(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    for split in ("training", "test"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "annotations" / split).mkdir(parents=True)
        lab = np.zeros((10, 10), np.uint8)
        lab[:5, :2] = 2
        Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "images" / split / "a.jpg")
        Image.fromarray(lab).save(tmp_path / "annotations" / split / "a.png")
    r = runner.invoke(
        app, ["data", "stats", "--data", str(tmp_path), "--kind", "folder", "--class-names", "bg,dent,rust"]
    )
    assert r.exit_code == 0, r.output
    assert "2 images, 2 with defects" in r.output
    assert "rust" in r.output and "10.000%" in r.output  # 20 of 200 pixels


def test_stats_on_real_neu_seg() -> None:
    root = require_shared("neu_seg")
    r = runner.invoke(app, ["data", "stats", "--data", str(root), "--kind", "folder", "--split", "test"])
    assert r.exit_code == 0, r.output
    assert "840 images" in r.output


def test_errors_are_one_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["data", "stats", "--data", str(tmp_path / "missing")])
    assert r.exit_code == 1
    assert "error:" in r.output and "train.csv not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "stats", "--data", str(tmp_path), "--kind", "zip"])
    assert r.exit_code == 1 and "--kind: expected severstal or folder" in r.output
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--n", "0"])
    assert r.exit_code == 1 and "n must be at least 1" in r.output
