"""Calibration: candidate scores equal the post-processing's, targets, warnings, the card, the commands."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deploy_helpers import CLASS_NAMES, tiny_model_dir, write_images
from steelkd.calibrate import (
    MIN_AREAS,
    THRESHOLDS,
    CalibrationStats,
    calibrate_model,
    card_path,
    choose,
    summarise,
    write_calibration,
)
from steelkd.card import ModelCard
from steelkd.cli import app
from steelkd.postprocess import PostProcess, postprocess_from_card
from steelkd.predict import Predictor
from test_evaluate import EncodedDataset, ReadLabel

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def _random_case(
    rng: np.random.Generator, shape: tuple[int, int], k: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Blobby class probabilities (C x H x W softmax) and a true label map that overlaps them."""
    import cv2

    logits = rng.standard_normal((k, *shape)).astype(np.float32)
    logits = np.stack([cv2.GaussianBlur(x, (0, 0), 3) * 12 for x in logits])
    probs = np.exp(logits - logits.max(0))
    probs /= probs.sum(0)
    truth = probs.argmax(0).astype(np.int64)
    truth[rng.random(shape) < 0.1] = 0
    return probs.astype(np.float32), truth


def _dice_of_labels(labels: list[np.ndarray], truths: list[np.ndarray], c: int) -> tuple[float, float]:
    tp = sum(int(((lab == c) & (t == c)).sum()) for lab, t in zip(labels, truths, strict=True))
    p = sum(int((lab == c).sum()) for lab in labels)
    g = sum(int((t == c).sum()) for t in truths)
    per_image = [
        1.0
        if (lab == c).sum() + (t == c).sum() == 0
        else 2 * ((lab == c) & (t == c)).sum() / ((lab == c).sum() + (t == c).sum())
        for lab, t in zip(labels, truths, strict=True)
    ]
    return (2 * tp / (p + g) if p + g else float("nan")), float(np.mean(per_image))


@pytest.mark.parametrize("mode", ["total", "component"])
def test_candidate_scores_equal_postprocess_on_mixed_sizes(mode: str) -> None:
    rng = np.random.default_rng(0)
    shapes = [(40, 60), (40, 60), (64, 32), (50, 50), (40, 60)]
    cases = [_random_case(rng, s) for s in shapes]
    stats = CalibrationStats(4, min_area_mode=mode)
    for probs, truth in cases:
        stats.add(probs, truth)
    for i, t in enumerate(THRESHOLDS):
        if t < 0.5:
            continue  # below 0.5 the per-class scoring is an approximation (documented)
        for j, a in enumerate(MIN_AREAS[:6]):
            post = PostProcess(threshold=float(t), min_area=a, min_area_mode=mode)
            labels = [post(p) for p, _ in cases]
            for c in range(1, 4):
                dice, kaggle = _dice_of_labels(labels, [tr for _, tr in cases], c)
                curves = stats.curves(c)
                assert curves["dice"][i, j] == pytest.approx(dice, nan_ok=True), (t, a, c)
                assert curves["kaggle_dice"][i, j] == pytest.approx(kaggle), (t, a, c)
                detected = [bool((lab == c).any()) for lab in labels]
                positive = [bool((tr == c).any()) for _, tr in cases]
                hits = sum(d and p for d, p in zip(detected, positive, strict=True))
                assert curves["image_recall"][i, j] == pytest.approx(hits / max(1, sum(positive)))


def _curves(recall: list[float], fa: list[float], dice: list[float]) -> dict[str, np.ndarray]:
    col = lambda v: np.asarray(v, np.float64)[:, None]  # noqa: E731
    return {"image_recall": col(recall), "false_alarm": col(fa), "dice": col(dice), "kaggle_dice": col(dice)}


def test_targets_choose_the_expected_threshold_and_say_when_unreachable() -> None:
    curves = _curves(recall=[1.0, 0.97, 0.9, 0.6], fa=[0.5, 0.2, 0.05, 0.0], dice=[0.5, 0.6, 0.7, 0.4])
    assert choose(curves, "dice", None) == ((2, 0), None)
    assert choose(curves, "recall", 0.95) == ((1, 0), None)  # lowest false alarms with recall >= 0.95
    assert choose(curves, "false-alarm", 0.1) == ((2, 0), None)  # highest recall with false alarms <= 0.1
    idx, warning = choose(curves, "recall", 1.0)
    assert idx == (0, 0) and warning is None
    idx, warning = choose(_curves([0.5, 0.8], [0.1, 0.3], [0.3, 0.4]), "recall", 0.9)
    assert idx == (1, 0) and "0.800" in (warning or "")
    idx, warning = choose(_curves([0.5, 0.8], [0.1, 0.3], [0.3, 0.4]), "false-alarm", 0.05)
    assert idx == (0, 0) and "0.100" in (warning or "")


def test_a_class_without_examples_keeps_its_default_with_a_warning() -> None:
    rng = np.random.default_rng(1)
    stats = CalibrationStats(4)
    for _ in range(3):
        probs, truth = _random_case(rng, (32, 32))
        truth[truth == 3] = 0  # no validation example of class 3
        stats.add(probs, truth)
    base = postprocess_from_card({"threshold": [0.6, 0.7, 0.8], "min_area": [10, 20, 30]})
    cal = summarise(stats, ["background", "a", "b", "c"], "dice", None, base)
    c = cal.classes[2]
    assert (
        not c.calibrated and (c.threshold, c.min_area) == (0.8, 30.0) and "no validation image" in c.warning
    )
    assert [w.split(":")[0] for w in cal.warnings] == ["c"]
    assert all(x.calibrated and 0 < x.threshold < 1 for x in cal.classes[:2])
    section = cal.postprocess_section()
    assert section["threshold"][2] == 0.8 and section["calibration"]["classes"]["c"]["calibrated"] is False
    with pytest.raises(ValueError, match="value"):
        summarise(stats, ["background", "a", "b", "c"], "recall", None)


def test_calibrate_model_on_mixed_sizes_and_the_card_round_trip(tmp_path: Path) -> None:
    ds = EncodedDataset()  # 3 classes, images of two sizes
    cal = calibrate_model(ReadLabel(), ds, target="kaggle-dice", batch_size=4)
    assert cal.num_images == 6 and [c.name for c in cal.classes] == ["a", "b"]
    assert all(c.calibrated for c in cal.classes)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(
        json.dumps({"class_names": ds.class_names, "architecture": "x"})
    )
    written = write_calibration(tmp_path / "m", cal)
    card = ModelCard.from_dict(json.loads(written.read_text()), str(written))
    assert card.architecture == "x" and card.postprocess is not None
    assert card.postprocess["threshold"] == [c.threshold for c in cal.classes]
    assert card.postprocess["calibration"]["target"] == "kaggle-dice"
    with pytest.raises(ValueError, match=r"\.onnx"):
        card_path(tmp_path / "m.onnx")


def test_bad_postprocess_sections_are_refused_naming_the_card() -> None:
    names = ["background", "a", "b"]
    for bad in (
        {"threshold": [0.5, 0.5, 0.5]},
        {"threshold": [0.5, 1.5]},
        {"min_area": [-1, 0]},
        {"min_area_mode": "blob"},
        {"colour": 1},
        [0.5],
    ):
        with pytest.raises(ValueError, match=r"m\.json: model card postprocess"):
            ModelCard.from_dict({"class_names": names, "postprocess": bad}, "m.json")
    assert ModelCard.from_dict({"class_names": names}, "m.json").postprocess is None


# ----------------------------------------------------------------------------------------- commands
def _folder_data(root: Path, n: int, seed: int, split: str) -> None:
    pairs = write_images(root / "images" / split, n, seed=seed)
    write_images(root / "images" / split, 2, seed=seed + 1, h=48, w=200, prefix="small")  # another size
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    labels = [lab for _, lab in pairs]
    rng = np.random.default_rng(seed + 1)
    from deploy_helpers import synth_sample

    labels += [synth_sample(rng, 48, 200)[1] for _ in range(2)]
    names = [p.stem for p, _ in pairs] + ["small000", "small001"]
    for name, lab in zip(names, labels, strict=True):
        Image.fromarray(lab).save(root / "annotations" / split / f"{name}.png")


def test_calibrate_cli_writes_the_card_and_predict_and_evaluate_use_it(
    model_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    data = tmp_path / "data"
    _folder_data(data, 6, seed=71, split="val")
    sets = [
        "--set",
        "data.test_split=val",
        "--set",
        "data.train_split=val",
        "--set",
        "data.val_fraction=0",  # calibrate (validation) and evaluate (test) score the same 6 images
        "--set",
        f"data.class_names={json.dumps(CLASS_NAMES)}",
    ]
    res = runner.invoke(
        app,
        [
            "calibrate",
            "-m",
            str(model),
            "--data-root",
            str(data),
            "--kind",
            "folder",
            "--device",
            "cpu",
            "--batch-size",
            "2",
            *sets,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trade-off" in res.stdout and "--threshold" in res.stdout
    card = json.loads((model / "model.json").read_text())
    section = card["postprocess"]
    assert len(section["threshold"]) == 4 and len(section["min_area"]) == 4
    assert section["calibration"]["num_images"] == 8 and section["calibration"]["data"]["split"] == "val"
    with open(model / "calibration.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4 * len(THRESHOLDS) * len(MIN_AREAS)
    png = Image.open(model / "calibration.png")
    assert png.format == "PNG" and png.size[0] > 300
    # predict uses the card's values unless an option overrides them
    pred = Predictor.from_path(model)
    assert pred.post.threshold == section["threshold"] and pred.post.min_area == section["min_area"]
    images = data / "images" / "val"
    calibrated = Predictor.from_path(model, post=postprocess_from_card(section)).predict_files(images, None)
    res = runner.invoke(
        app,
        [
            "predict",
            "-m",
            str(model),
            "-i",
            str(images),
            "-o",
            str(tmp_path / "p"),
            "--no-overlays",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    for r in calibrated.results:
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "p" / "masks" / f"{r.path.stem}.png")), r.label_map
        )
    res = runner.invoke(
        app,
        [
            "predict",
            "-m",
            str(model),
            "-i",
            str(images),
            "-o",
            str(tmp_path / "q"),
            "--threshold",
            "argmax",
            "--min-area",
            "0",
            "--no-overlays",
            "--no-progress",
        ],
    )
    argmax = Predictor.from_path(model, post=PostProcess(threshold=None, min_area=0)).predict_files(
        images, None
    )
    for r in argmax.results:
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "q" / "masks" / f"{r.path.stem}.png")), r.label_map
        )
    # evaluate: argmax by default (unchanged), the card's post-processing with --postprocess
    common = [
        "evaluate",
        "-m",
        str(model),
        "--data-root",
        str(data),
        "--kind",
        "folder",
        "--device",
        "cpu",
        *sets,
    ]
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a.json").read_text())["labels"] == "argmax"
    res = runner.invoke(
        app, [*common, "--postprocess", "--out", str(tmp_path / "c.json"), "--tile", "64x128"]
    )
    assert res.exit_code == 0, res.output
    scored = json.loads((tmp_path / "c.json").read_text())
    assert scored["labels"]["threshold"] == pytest.approx(section["threshold"])
    assert scored["tiling"] == "64x128 tiles, overlap 16"


def test_calibrate_cli_errors_are_one_line(model_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "calibrate",
            "-m",
            str(model_dir),
            "--data-root",
            str(tmp_path),
            "--kind",
            "folder",
            "--target",
            "recall",
        ],
    )
    assert res.exit_code == 1 and "needs a value" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["calibrate", "-m", str(tmp_path / "x.onnx"), "--data-root", str(tmp_path)])
    assert res.exit_code == 1 and ".onnx" in res.stderr
    res = runner.invoke(
        app, ["calibrate", "-m", str(model_dir), "--data-root", str(tmp_path), "--target", "f1"]
    )
    assert res.exit_code == 1 and "target" in res.stderr


def test_an_onnx_file_exported_after_calibrating_carries_the_values(model_dir: Path, tmp_path: Path) -> None:
    from steelkd.export import to_onnx
    from steelkd.models.saved import load_model

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    card = json.loads((model / "model.json").read_text())
    card["postprocess"] = {"threshold": [0.6, 0.7, 0.8, 0.9], "min_area": [0, 10, 20, 30]}
    (model / "model.json").write_text(json.dumps(card))
    net, card = load_model(model)
    onnx_path = to_onnx(net, tmp_path / "m.onnx", card=card, sample_size=(64, 64))
    post = Predictor.from_path(onnx_path).post
    assert post.threshold == [0.6, 0.7, 0.8, 0.9] and post.min_area == [0, 10, 20, 30]
