"""evaluate_model (full-size, equal-size batching, metrics = SegMetrics), benchmark_models, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from steelkd.bench import benchmark_models
from steelkd.config import parse_size
from steelkd.evaluate import evaluate_model
from steelkd.metrics import SegMetrics
from steelkd.runtime import resolve_device

CLASSES = ["background", "a", "b"]


class EncodedDataset:
    """Images whose channel 0 holds the label map and channel 1 a 'noise' flag; mixed image sizes."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        sizes = [(16, 24), (16, 24), (16, 24), (20, 20), (20, 20), (16, 24)]
        self.items = []
        for h, w in sizes:
            mask = torch.randint(0, 3, (h, w), generator=g)
            noise = (torch.rand(h, w, generator=g) < 0.3).float()
            img = torch.stack([mask.float(), noise, torch.zeros(h, w)])
            self.items.append((img, mask))
        self.class_names = list(CLASSES)
        self.ids = [f"img{i}" for i in range(len(sizes))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[i]


class ReadLabel(nn.Module):
    """Predicts the label stored in channel 0, shifted by one class where channel 1 flags noise."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, ...]] = []

    @staticmethod
    def labels(x: torch.Tensor) -> torch.Tensor:
        lab = x[:, 0].round().long()
        return torch.where(x[:, 1] > 0.5, (lab + 1) % 3, lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return nn.functional.one_hot(self.labels(x), 3).permute(0, 3, 1, 2).float() + 0 * self.dummy


def test_evaluate_model_equals_segmetrics_and_keeps_full_size() -> None:
    ds = EncodedDataset()
    expected = SegMetrics(3)
    for img, mask in ds.items:
        expected.update(ReadLabel.labels(img[None]), mask[None])
    ref = expected.compute()
    for bs in (1, 4):
        model = ReadLabel()
        res = evaluate_model(model, ds, batch_size=bs)
        assert res["num_images"] == 6
        assert res["class_names"] == CLASSES
        assert list(res["dice"]) == ["a", "b"]
        assert [res["dice"]["a"], res["dice"]["b"]] == pytest.approx(ref["dice"])
        assert [res["iou"]["a"], res["iou"]["b"]] == pytest.approx(ref["iou"])
        for key in ("mdice", "miou", "miou_bg", "kaggle_dice"):
            assert res[key] == pytest.approx(ref[key]), key
        assert 0.4 < res["mdice"] < 0.95  # noise makes it imperfect, the labels keep it well above chance
        # never resized, never mixed sizes in a batch, at most `bs` per batch
        assert {s[2:] for s in model.seen} == {(16, 24), (20, 20)}
        assert max(s[0] for s in model.seen) == min(bs, 3)
        assert sum(s[0] for s in model.seen) == 6
    json.dumps(res)  # JSON-serialisable as is


def test_evaluate_model_perfect_predictions_score_one() -> None:
    ds = EncodedDataset()
    for img, _ in ds.items:
        img[1] = 0  # no noise: the model reads the truth
    res = evaluate_model(ReadLabel(), ds, batch_size=2)
    assert res["mdice"] == pytest.approx(1.0)
    assert res["miou_bg"] == pytest.approx(1.0)
    assert res["kaggle_dice"] == pytest.approx(1.0)


def test_evaluate_model_bad_input() -> None:
    ds = EncodedDataset()
    ds.class_names = ["background", "a"]
    with pytest.raises(ValueError, match="3 classes but the data set has 2"):
        evaluate_model(ReadLabel(), ds)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_model(ReadLabel(), EncodedDataset(), batch_size=0)
    with pytest.raises(ValueError, match="precision"):
        evaluate_model(ReadLabel(), EncodedDataset(), precision="8-bit")


def test_evaluate_real_tiny_model_on_synth(synth_root: Path) -> None:
    from steelkd.config import DataConfig
    from steelkd.data import build_datasets
    from steelkd.models import create_model

    val = build_datasets(DataConfig(kind="severstal", root=str(synth_root), crop=[64, 128])).test
    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto", num_classes=5)
    res = evaluate_model(model, val, batch_size=2)
    assert res["num_images"] == len(val) > 0
    assert list(res["dice"]) == ["pitting", "crazing", "scratches", "patches"]
    for key in ("mdice", "miou", "miou_bg", "kaggle_dice"):
        assert 0.0 <= res[key] <= 1.0


def test_benchmark_models_side_by_side() -> None:
    models = {"one": nn.Conv2d(3, 5, 1), "three": nn.Conv2d(3, 5, 3, padding=1)}
    rows = benchmark_models(models, "8x12", repeats=3, warmup=1, device="cpu")
    assert [r["model"] for r in rows] == ["one", "three"]
    assert [r["params"] for r in rows] == [3 * 5 + 5, 3 * 5 * 9 + 5]
    assert rows[0]["gmacs"] * 1e9 == pytest.approx(3 * 5 * 8 * 12)
    assert rows[1]["gmacs"] * 1e9 == pytest.approx(3 * 5 * 9 * 8 * 12)
    for r in rows:
        assert (r["height"], r["width"], r["batch"], r["repeats"]) == (8, 12, 1, 3)
        assert r["fps"] == pytest.approx(1000.0 / r["latency_ms"])
        assert r["device"] == "cpu" and r["device_name"]


def test_parse_size_and_device() -> None:
    assert parse_size("256x1600") == (256, 1600)
    assert parse_size([200, 200]) == (200, 200)
    for bad in ("256", "ax3", "0x5", [1, 2, 3]):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)  # type: ignore[arg-type]
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), n=6, seed=0, height=64, width=256)


def test_cli_evaluate_and_bench(tmp_path: Path, synth_root: Path) -> None:
    from steelkd.cli import app
    from steelkd.config import SEVERSTAL_CLASSES, DataConfig
    from steelkd.data import build_datasets
    from steelkd.models import create_model, make_card, save_model

    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto", num_classes=5)
    with torch.no_grad():  # a model that marks every pixel "scratches": the trivial predictor
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0]))
    model_dir = save_model(model, tmp_path / "model", make_card(model, SEVERSTAL_CLASSES))
    runner = CliRunner()
    out = tmp_path / "eval.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data-root",
            str(synth_root),
            "--kind",
            "severstal",
            "--out",
            str(out),
            "--batch-size",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "mean (defects)" in res.output
    assert "not learned: scratches: Dice" in res.output  # flagged (docs/evaluation.md)
    saved = json.loads(out.read_text())
    assert sum(saved["pixel_counts"].values()) == sum(saved["pred_counts"].values()) > 0
    val = build_datasets(DataConfig(kind="severstal", root=str(synth_root))).test
    direct = evaluate_model(model, val)
    assert saved["mdice"] == pytest.approx(direct["mdice"])
    assert saved["num_images"] == len(val)

    res = runner.invoke(app, ["evaluate", "--model", str(model_dir)])
    assert res.exit_code == 1 and "error:" in res.output and "--data-root" in res.output

    jpath, cpath = tmp_path / "bench.json", tmp_path / "bench.csv"
    res = runner.invoke(
        app,
        [
            "bench",
            "--models",
            f"resunet_convnext_atto,{model_dir}",
            "--size",
            "32x64",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--device",
            "cpu",
            "--json",
            str(jpath),
            "--csv",
            str(cpath),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(jpath.read_text())
    assert [r["model"] for r in rows] == ["resunet_convnext_atto", str(model_dir)]
    assert rows[0]["params"] == rows[1]["params"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["device_name"].split()[0] in res.output
    assert cpath.read_text().startswith("model,")

    res = runner.invoke(app, ["bench", "--models", "no_such_model", "--size", "32x32"])
    assert res.exit_code == 1 and "no_such_model" in res.output
