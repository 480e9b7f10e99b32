"""Inference backends (compiled torch, OpenVINO fp32/bf16/int8), their agreement with fp32 eager, the
int8 export, and ``steelkd tune`` (measure, choose, record; ``--backend auto`` uses the record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy_helpers import tiny_model_dir, write_images
from steelkd.card import TUNING_NAME, machine_key, recorded_choice
from steelkd.data.image import normalize, read_image
from steelkd.predict import Predictor, load_backend
from steelkd.runtime import cpu_has_bf16

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = write_images(tmp_path_factory.mktemp("val"), 6, seed=5, h=64, w=128)
    return [(read_image(p), label) for p, label in pairs]


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def test_openvino_and_compiled_torch_agree_with_fp32_eager(model_dir: Path, images: list) -> None:
    x = np.stack([normalize(img) for img, _ in images[:2]])
    ref = load_backend(model_dir, "torch")(x)
    ov32 = load_backend(model_dir, "openvino")
    assert ov32.name == "openvino-fp32-cpu"
    np.testing.assert_allclose(ov32(x), ref, atol=1e-3)
    compiled = load_backend(model_dir, "torch-compile")
    assert compiled.name == "torch-compile-fp32-cpu"
    np.testing.assert_allclose(compiled(x), ref, atol=1e-3)
    if cpu_has_bf16():
        assert _agreement(load_backend(model_dir, "openvino-bf16")(x), ref) > 0.98
    else:
        with pytest.raises(ValueError, match="bf16"):
            load_backend(model_dir, "openvino-bf16")


def test_int8_export_carries_the_card_and_stays_close(model_dir: Path, images: list, tmp_path: Path) -> None:
    from steelkd.export import to_openvino
    from steelkd.models import load_model

    net, card = load_model(model_dir)
    calib = [normalize(img) for img, _ in images]
    xml = to_openvino(net, tmp_path / "int8" / "model.xml", card, calibration=calib)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    backend = load_backend(xml)  # auto: .xml -> openvino
    assert backend.name.startswith("openvino-int8")
    assert backend.card.class_names == card["class_names"]
    x = np.stack(calib[:2])
    assert _agreement(backend(x), load_backend(model_dir, "torch")(x)) > 0.95
    with pytest.raises(ValueError, match=r"\.xml"):
        to_openvino(net, tmp_path / "model.onnx", card)


def test_tune_records_the_fastest_eligible_backend_and_auto_uses_it(
    model_dir: Path, images: list, tmp_path: Path
) -> None:
    from steelkd.tune import tune

    work = tmp_path / "model"
    shutil.copytree(model_dir, work)
    imgs, masks = [i for i, _ in images], [m for _, m in images]
    calib = [normalize(i) for i in imgs]
    res = tune(
        work,
        imgs,
        masks,
        size=(64, 128),
        repeats=3,
        warmup=1,
        calibration=calib,
        backends=["torch", "onnxruntime", "openvino", "openvino-int8"],
    )
    names = [r["backend"] for r in res.rows]
    assert names == ["torch", "onnxruntime", "openvino", "openvino-int8"]
    ref = res.rows[0]
    assert ref["mdice_cost"] == 0.0 and 0.0 < ref["mdice"] <= 1.0
    eligible = [r for r in res.rows if r["eligible"]]
    best = min(eligible, key=lambda r: r["latency_ms"])
    expected = {"backend": best["backend"].replace("openvino-int8", "openvino"), "file": best["file"]}
    assert res.choice == expected
    record = json.loads((work / TUNING_NAME).read_text())
    assert record["machine"] == machine_key() and record["choice"] == res.choice
    chosen = recorded_choice(work)
    assert chosen is not None and chosen[1] == res.choice["backend"]
    assert load_backend(work).name == load_backend(*chosen).name  # --backend auto follows the record
    # the folder's model.json stays the card (a calibration written after tune applies to the choice too)
    card = json.loads((work / "model.json").read_text())
    card["class_names"] = ["background", "a", "b", "c", "d"]
    (work / "model.json").write_text(json.dumps(card))
    assert load_backend(work).card.class_names == ["background", "a", "b", "c", "d"]
    # a record made on another machine is ignored
    record["machine"] = "another CPU"
    (work / TUNING_NAME).write_text(json.dumps(record))
    assert recorded_choice(work) is None and load_backend(work).name == "torch-fp32-cpu"


def test_unknown_backend_and_unreadable_ir_are_one_line_errors(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="expected auto or one of"):
        load_backend(model_dir, "tensorrt")
    onnx_like = model_dir.parent / "not_a_model.xml"
    onnx_like.write_text("<net/>")
    with pytest.raises(ValueError, match=r"not_a_model\.xml: not a steelkd OpenVINO model"):
        load_backend(onnx_like)


def test_predictor_runs_on_an_openvino_backend(model_dir: Path, images: list) -> None:
    ov = Predictor(load_backend(model_dir, "openvino"), batch_size=2)
    eager = Predictor(load_backend(model_dir, "torch"), batch_size=2)
    imgs = [i for i, _ in images]
    for a, b in zip(ov.predict_arrays(imgs), eager.predict_arrays(imgs), strict=True):
        assert (a == b).mean() > 0.999


def test_cli_bench_measures_each_backend_with_its_peak_fraction(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from steelkd.cli import app

    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--models",
        "resunet_convnext_atto",
        "--size",
        "64x96",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--backends",
        "torch,openvino",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [r["backend"] for r in rows] == ["torch", "openvino"]
    assert all(r["latency_ms"] > 0 and 0 < r["of_peak"] < 1 and r["gmacs"] > 0 for r in rows)
    assert "peak of this CPU from its flags" in res.output
    bad = CliRunner().invoke(app, [*args[:-2], "--backends", "tensorrt"])
    assert bad.exit_code == 1 and "unknown 'tensorrt'" in bad.output


def test_cli_evaluate_scores_an_inference_backend_like_torch(model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from steelkd.cli import app
    from steelkd.data.synth import generate

    root = generate(tmp_path / "synth", n=12, seed=2, height=64, width=256)
    scores = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / f"{backend}.json"
        args = ["evaluate", "--model", str(model_dir), "--data-root", str(root), "--kind", "synth",
                "--device", "cpu", "--backend", backend, "--out", str(out)]  # fmt: skip
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        scores[backend] = json.loads(out.read_text())
    from steelkd.export import to_onnx
    from steelkd.models import load_model

    net, card = load_model(model_dir)
    onnx = to_onnx(net, tmp_path / "m.onnx", card=card, sample_size=(64, 128))
    out = tmp_path / "onnx.json"
    args = ["evaluate", "--model", str(onnx), "--data-root", str(root), "--kind", "synth", "--out", str(out)]
    res = CliRunner().invoke(app, args)  # an exported file runs in its own runtime (auto: onnxruntime)
    assert res.exit_code == 0, res.output
    scores["onnxruntime"] = json.loads(out.read_text())
    assert scores["openvino"]["num_images"] == scores["torch"]["num_images"] > 0
    for b in ("openvino", "onnxruntime"):
        assert scores[b]["mdice"] == pytest.approx(scores["torch"]["mdice"], abs=2e-3), b
