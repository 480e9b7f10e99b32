"""``steelkd predict`` and ``steelkd export`` from the command line: outputs, backends, exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from deploy_helpers import CLASS_NAMES, tiny_model_dir, write_images
from steelkd.card import ONNX_CARD_KEY
from steelkd.cli import app
from steelkd.cli.predict import EXIT_SOME_FAILED

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((folder / "masks").glob("*.png"))}


def test_export_embeds_the_card_and_check_reports_the_difference(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    res = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(out),
                              "--sample-size", "64x128", "--check"])
    assert res.exit_code == 0, res.output
    assert "max |onnxruntime - torch|" in res.stdout
    diff = float(res.stdout.split("max |onnxruntime - torch| = ")[1].split()[0])
    assert diff < 1e-3
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    card = json.loads(sess.get_modelmeta().custom_metadata_map[ONNX_CARD_KEY])
    assert card["class_names"] == CLASS_NAMES and card["architecture"] == "resunet_convnext_atto"
    dims = sess.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # dynamic N, H, W


def test_export_rejects_a_missing_model_and_a_bad_name(tmp_path: Path, model_dir: Path) -> None:
    res = runner.invoke(app, ["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 1 and "nope" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(tmp_path / "m.txt")])
    assert res.exit_code == 1 and ".onnx" in res.stderr


def test_predict_torch_and_onnxruntime_agree_and_write_everything(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 3, seed=5)
    onnx_file = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", "-m", str(model_dir), "-o", str(onnx_file),
                               "--sample-size", "64x128"]).exit_code == 0
    common = ["--input", str(tmp_path / "in" / "*.png"), "--threshold", "0.5", "--min-area", "0", "--tta"]
    res = runner.invoke(app, ["predict", "--model", str(model_dir), "--out", str(tmp_path / "pt"), *common])
    assert res.exit_code == 0, res.output
    assert "3 image(s)" in res.stdout and "(12 rows)" in res.stdout
    res = runner.invoke(app, ["predict", "--model", str(onnx_file), "--backend", "onnxruntime",
                              "--out", str(tmp_path / "ort"), "--overlay-format", "jpg", *common])
    assert res.exit_code == 0, res.output
    assert "onnxruntime" in res.stdout
    pt, ox = _masks(tmp_path / "pt"), _masks(tmp_path / "ort")
    assert sorted(pt) == sorted(ox) == ["img000", "img001", "img002"]
    agree = np.mean([(pt[k] == ox[k]).mean() for k in pt])
    assert agree >= 0.999
    assert len(list((tmp_path / "pt" / "overlays").glob("*.png"))) == 3
    assert len(list((tmp_path / "ort" / "overlays").glob("*.jpg"))) == 3
    with open(tmp_path / "ort" / "submission.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["ImageId"] == "img000.png"


def test_predict_options_change_the_result(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 2, seed=9)
    base = ["predict", "-m", str(model_dir), "-i", str(tmp_path / "in"), "--no-progress", "--no-overlays"]
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "a"), "--threshold", "argmax",
                               "--min-area", "0"]).exit_code == 0
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "b"), "--threshold", "0.99,0.99,0.99,0.99",
                               "--min-area", "0"]).exit_code == 0
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "c"), "--threshold", "argmax",
                               "--min-area", "1e9", "--min-area-mode", "component"]).exit_code == 0
    a, b, c = _masks(tmp_path / "a"), _masks(tmp_path / "b"), _masks(tmp_path / "c")
    defects_a = sum(int((m > 0).sum()) for m in a.values())
    assert defects_a > 0
    assert sum(int((m > 0).sum()) for m in b.values()) < defects_a  # stricter threshold, fewer defects
    assert all(not m.any() for m in c.values())  # every component below the huge minimum
    assert not (tmp_path / "a" / "overlays").exists()


def test_corrupt_jpeg_is_named_skipped_and_exit_code_is_2(model_dir: Path, tmp_path: Path) -> None:
    pairs = write_images(tmp_path / "in", 2, seed=3, ext=".jpg")
    data = pairs[0][0].read_bytes()
    (tmp_path / "in" / "broken.jpg").write_bytes(data[: len(data) // 3])
    res = runner.invoke(app, ["predict", "-m", str(model_dir), "-i", str(tmp_path / "in"), "-o",
                              str(tmp_path / "out")])
    assert res.exit_code == EXIT_SOME_FAILED == 2
    assert "broken.jpg" in res.stderr and "1 of 3 image(s) failed" in res.stderr
    assert sorted(_masks(tmp_path / "out")) == ["img000", "img001"]
    with open(tmp_path / "out" / "submission.csv", newline="") as fh:
        assert {r["ImageId"] for r in csv.DictReader(fh)} == {"img000.jpg", "img001.jpg"}


def test_console_script_exit_code_with_a_corrupt_file(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 1, seed=4, ext=".jpg")
    (tmp_path / "in" / "zero.jpg").write_bytes(b"")
    exe = Path(sys.executable).with_name("steelkd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from steelkd.cli import main; main()"]
    argv = ["predict", "-m", str(model_dir), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
            "--no-progress"]
    proc = subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr
    assert "zero.jpg" in proc.stderr
    assert (tmp_path / "out" / "masks" / "img000.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{tmp}/empty"], "no image files found"),
        (["--input", "{tmp}/empty/*.jpg"], "no image files found"),
        (["--input", "{tmp}/missing.png"], "missing.png: no such file"),
        (["--input", "{tmp}/in", "--threshold", "high"], "--threshold"),
        (["--input", "{tmp}/in", "--threshold", "0.5,0.5"], "threshold: expected 1 or 4 values"),
        (["--input", "{tmp}/in", "--min-area-mode", "blob"], "min_area_mode"),
        (["--input", "{tmp}/in", "--backend", "tensorrt"], "backend"),
        (["--input", "{tmp}/in", "--backend", "onnxruntime"], "ONNX"),
        (["--input", "{tmp}/in", "--bf16", "--backend", "onnxruntime"], "--bf16"),
        (["--input", "{tmp}/in", "--batch-size", "0"], "batch_size"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(model_dir: Path, tmp_path: Path, args: list[str],
                                                message: str) -> None:
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "in", 1, seed=0)
    argv = [a.format(tmp=tmp_path) for a in args]
    res = runner.invoke(app, ["predict", "-m", str(model_dir), "-o", str(tmp_path / "out"), *argv])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("error:") and message in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "submission.csv").exists()


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    write_images(tmp_path / "in", 1, seed=0)
    res = runner.invoke(app, ["predict", "-m", str(tmp_path / "nomodel"), "-i", str(tmp_path / "in"), "-o",
                              str(tmp_path / "out")])
    assert res.exit_code == 1 and "nomodel: model not found" in res.stderr
