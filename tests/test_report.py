"""Report building blocks on fake inputs: tables hold the right numbers, figures are written."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from steelkd.report import (
    MeanStd,
    Table,
    plot_dice_bars,
    plot_loss_curves,
    plot_overlay_grid,
    read_loss_history,
    write_records_csv,
)


def _png_shape(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path).shape


def test_mean_std_matches_numpy() -> None:
    vals = [0.71, 0.75, 0.74]
    ms = MeanStd.of(vals)
    assert ms.n == 3
    assert ms.mean == pytest.approx(np.mean(vals))
    assert ms.std == pytest.approx(np.std(vals, ddof=1))
    assert ms.format(3) == f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"
    assert MeanStd.of([0.5]).format(2) == "0.50"
    assert MeanStd.of([0.5, float("nan")]).n == 1
    empty = MeanStd.of([])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.format() == "–"


def test_table_markdown_and_csv_hold_the_numbers(tmp_path: Path) -> None:
    before = MeanStd.of([0.70, 0.72])
    t = Table(
        "Table 1",
        ["network", "mDice before", "mDice after", "params (M)"],
        [["teacher", 0.7859, None, 100.98], ["student", before, MeanStd.of([0.77]), 33.91]],
    )
    md = t.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| network | mDice before | mDice after | params (M) |"
    assert lines[2] == "| teacher | 0.7859 |  | 100.9800 |"
    assert lines[3] == "| student | 0.7100 ± 0.0141 | 0.7700 | 33.9100 |"
    path = t.to_csv(tmp_path / "sub" / "t1.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == [
        "network",
        "mDice before",
        "mDice before_std",
        "mDice before_n",
        "mDice after",
        "mDice after_std",
        "mDice after_n",
        "params (M)",
    ]
    assert df.loc[0, "mDice before"] == pytest.approx(0.7859)
    assert df.loc[0, "mDice before_n"] == 1
    assert math.isnan(df.loc[0, "mDice after"])
    assert df.loc[1, "mDice before"] == pytest.approx(0.71)
    assert df.loc[1, "mDice before_std"] == pytest.approx(np.std([0.70, 0.72], ddof=1))
    assert df.loc[1, "mDice before_n"] == 2
    assert df.loc[1, "params (M)"] == pytest.approx(33.91)
    pd.testing.assert_frame_equal(t.to_dataframe(), df)


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        Table("x", ["a", "b"], [[1, 2], [3]])


def test_write_records_csv_union_of_columns(tmp_path: Path) -> None:
    p = write_records_csv([{"model": "a", "fps": 10.5}, {"model": "b", "gmacs": 2.0}], tmp_path / "r.csv")
    df = pd.read_csv(p)
    assert list(df.columns) == ["model", "fps", "gmacs"]
    assert df.loc[0, "fps"] == 10.5 and math.isnan(df.loc[1, "fps"]) and df.loc[1, "gmacs"] == 2.0


def _fake_metrics_csv(path: Path, *, lightning_suffixes: bool) -> dict[int, dict[str, float]]:
    """A Lightning-like metrics.csv: 2 epochs x 3 logged steps, then an epoch row and a val row."""
    rows = []
    truth: dict[int, dict[str, float]] = {}
    step = 0
    for epoch in range(2):
        losses, kds, ces = [], [], []
        for _ in range(3):
            step += 1
            loss, kd = 2.0 - 0.1 * step, 0.5 - 0.02 * step
            ce = loss - kd
            losses.append(loss), kds.append(kd), ces.append(ce)
            if lightning_suffixes:
                rows.append(
                    {
                        "epoch": epoch,
                        "step": step,
                        "train/loss_step": loss,
                        "train/loss_kd_step": kd,
                        "train/loss_ce_step": ce,
                    }
                )
            else:
                rows.append(
                    {
                        "epoch": epoch,
                        "step": step,
                        "train/loss": loss,
                        "train/loss_kd": kd,
                        "train/loss_ce": ce,
                    }
                )
        truth[epoch] = {
            "loss": float(np.mean(losses)),
            "loss_kd": float(np.mean(kds)),
            "loss_ce": float(np.mean(ces)),
        }
        if lightning_suffixes:
            rows.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "train/loss_epoch": truth[epoch]["loss"],
                    "train/loss_kd_epoch": truth[epoch]["loss_kd"],
                }
            )  # no loss_ce epoch column
        rows.append({"epoch": epoch, "step": step, "val/mdice": 0.3 + 0.1 * epoch})
    pd.DataFrame(rows).to_csv(path, index=False)
    return truth


@pytest.mark.parametrize("suffixes", [True, False])
def test_read_loss_history_epoch_means(tmp_path: Path, suffixes: bool) -> None:
    truth = _fake_metrics_csv(tmp_path / "metrics.csv", lightning_suffixes=suffixes)
    hist = read_loss_history(tmp_path / "metrics.csv")
    steps = hist[hist.kind == "step"]
    epochs = hist[hist.kind == "epoch"].set_index("epoch")
    assert len(steps) == 6
    assert list(epochs.index) == [0, 1]
    for e, t in truth.items():
        for k in ("loss", "loss_kd", "loss_ce"):
            assert epochs.loc[e, k] == pytest.approx(t[k])
        assert epochs.loc[e, "x"] == e + 1
    # step positions lie inside their epoch, increasing
    for e in (0, 1):
        xs = steps[steps.epoch == e]["x"].to_numpy()
        assert np.all(np.diff(xs) > 0) and xs.min() > e and xs.max() <= e + 1


def test_read_loss_history_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_loss_history(tmp_path / "missing.csv")
    pd.DataFrame({"epoch": [0], "val/mdice": [0.5]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="no training loss"):
        read_loss_history(tmp_path / "m.csv")


def test_plot_loss_curves_writes_png(tmp_path: Path) -> None:
    _fake_metrics_csv(tmp_path / "metrics.csv", lightning_suffixes=True)
    out = plot_loss_curves(
        read_loss_history(tmp_path / "metrics.csv"), tmp_path / "figs" / "fig4.png", title="Fig. 4"
    )
    h, w, _ = _png_shape(out)
    assert h > 200 and w > 300
    assert not list((tmp_path / "figs").glob(".*tmp"))  # atomic: no temp file left


def test_plot_dice_bars(tmp_path: Path) -> None:
    classes = ["pitting", "crazing", "scratches", "patches"]
    out = plot_dice_bars(
        classes,
        [MeanStd.of([0.6, 0.62])] * 4,
        [0.65, 0.66, 0.78, 0.8],
        tmp_path / "f5.png",
        reference=[0.7, 0.7, 0.8, 0.8],
    )
    assert _png_shape(out)[0] > 200
    with pytest.raises(ValueError, match="4 classes but 3/4 values"):
        plot_dice_bars(classes, [0.1] * 3, [0.1] * 4, tmp_path / "bad.png")


def test_plot_overlay_grid(tmp_path: Path) -> None:
    img = np.zeros((32, 64, 3), np.uint8)
    panels = [[img, img, img], [img, img, img]]
    out = plot_overlay_grid(
        panels,
        ["pitting", "scratches"],
        ["image", "truth", "student"],
        tmp_path / "f6.png",
        legend=["pitting", "crazing", "scratches", "patches"],
    )
    assert _png_shape(out)[1] > 300
    with pytest.raises(ValueError, match="rows"):
        plot_overlay_grid([[img]], ["a", "b"], ["c"], tmp_path / "bad.png")
