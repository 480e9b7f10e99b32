"""Report building blocks on fake inputs: tables hold the right numbers, figures show what they are given."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from steelkd.figures import plot_dice_bars, plot_loss_curves, plot_overlay_grid, read_loss_history
from steelkd.postprocess import overlay, palette
from steelkd.tables import MeanStd, Table, format_seconds, write_records_csv


def _png_shape(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path).shape


def _rgb(path: Path) -> np.ndarray:
    """The PNG as H x W x 3 integers 0..255."""
    return (mpimg.imread(path)[..., :3] * 255).round().astype(np.int64)


def _near(rgb: np.ndarray, color: Any, tol: int = 10) -> np.ndarray:
    """Mask of the pixels within ``tol`` of ``color`` (RGB 0..255 or a matplotlib colour name)."""
    if isinstance(color, str):
        color = [round(255 * c) for c in to_rgb(color)]
    return np.abs(rgb - np.asarray(color, dtype=np.int64)).max(axis=-1) <= tol


def _bar_heights(mask: np.ndarray) -> list[int]:
    """Heights in pixels of the bars in ``mask`` (they stand on the lowest row where the colour is widest)."""
    per_row = mask.sum(axis=1)
    base = int(np.nonzero(per_row >= per_row.max() // 2)[0].max()) - 1
    cols = np.nonzero(mask[base])[0]
    runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
    heights = []
    for run in runs:  # up from the base, across thin grid lines, to the first real gap
        col = mask[: base + 1, int(run[len(run) // 2])][::-1]
        top = 0
        for y in np.nonzero(col)[0]:
            if y - top > 3:
                break
            top = y
        heights.append(int(top) + 1)
    return heights


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
    # not blank: L (blue) and L_KD (red) are drawn, L above L_KD as in the data (L > L_KD)
    rgb = _rgb(out)
    total, kd = _near(rgb, "tab:blue", 6), _near(rgb, "tab:red", 6)
    assert total.sum() > 200 and kd.sum() > 200
    assert np.median(np.nonzero(total)[0]) < np.median(np.nonzero(kd)[0])
    # L_wCE (green, no epoch column: epoch means from the steps) is drawn too
    assert _near(rgb, "tab:green", 6).sum() > 100


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
    # three series: baseline orange, distilled blue, teacher grey, one bar per class each
    rgb = _rgb(out)
    assert len(_bar_heights(_near(rgb, "tab:orange", 4))) == 4
    assert len(_bar_heights(_near(rgb, "tab:blue", 4))) == 4
    assert len(_bar_heights(_near(rgb, "0.6", 4))) == 4


def test_plot_dice_bars_heights_follow_the_values(tmp_path: Path) -> None:
    classes = ["pitting", "crazing", "scratches", "patches"]
    after = [0.2, 0.4, 0.6, 0.8]
    up = plot_dice_bars(classes, [0.5] * 4, after, tmp_path / "up.png")
    down = plot_dice_bars(classes, [0.5] * 4, after[::-1], tmp_path / "down.png")
    h_up = _bar_heights(_near(_rgb(up), "tab:blue", 4))
    h_down = _bar_heights(_near(_rgb(down), "tab:blue", 4))
    assert len(h_up) == 4 and h_up[0] > 20
    for h, v in zip(h_up, after, strict=True):  # bar height proportional to the Dice value
        assert h / h_up[-1] == pytest.approx(v / after[-1], abs=0.03)
    assert h_down == pytest.approx(h_up[::-1], abs=2)
    # the baseline bars (grey without a reference) are equal, at 0.5
    h_base = _bar_heights(_near(_rgb(up), "tab:gray", 4))
    assert len(h_base) == 4 and max(h_base) - min(h_base) <= 2
    assert h_base[0] / h_up[-1] == pytest.approx(0.5 / 0.8, abs=0.03)


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
    # the legend shows the colour of each class (the same as steelkd.postprocess.overlay paints)
    rgb = _rgb(out)
    for color in palette(5)[1:]:
        assert _near(rgb, color, 3).sum() > 20, color


def test_plot_overlay_grid_shows_the_defect_colours_where_the_mask_is(tmp_path: Path) -> None:
    names = ["background", "pitting", "crazing", "scratches"]
    image = np.full((60, 120, 3), 100, np.uint8)
    mask = np.zeros((60, 120), np.uint8)
    mask[10:50, 10:40] = 1  # left: pitting
    mask[20:40, 80:110] = 3  # right: scratches
    painted = overlay(image, mask, names, legend=False)
    colors = {1: painted[30, 25], 3: painted[30, 95]}
    assert not np.array_equal(colors[1], colors[3]) and not np.array_equal(colors[1], image[0, 0])
    out = plot_overlay_grid([[image, painted]], ["pitting"], ["image", "truth"], tmp_path / "f6.png")
    rgb = _rgb(out)
    # the two panels: column runs mostly of the image's grey (the truth panel: grey and the colours)
    grey = _near(rgb, image[0, 0], 3)
    cols = np.nonzero(grey.sum(axis=0) > 20)[0]
    panels = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
    assert len(panels) == 2
    x0, x1 = panels[1].min(), panels[1].max()
    rows = np.nonzero(grey[:, x0 : x1 + 1].sum(axis=1) > 20)[0]
    y0, y1 = rows.min(), rows.max()
    for cls, color in colors.items():
        ys, xs = np.nonzero(_near(rgb, color, 6))
        assert len(ys) > 100, cls
        assert xs.min() >= x0  # only in the truth panel, none in the plain image
        # centred where the mask is, in panel coordinates
        my, mx = (np.nonzero(mask == cls)[k].mean() for k in (0, 1))
        assert (ys.mean() - y0) / (y1 - y0 + 1) == pytest.approx((my + 0.5) / mask.shape[0], abs=0.05)
        assert (xs.mean() - x0) / (x1 - x0 + 1) == pytest.approx((mx + 0.5) / mask.shape[1], abs=0.05)
        # and the same share of the panel as of the mask
        share = len(ys) / ((y1 - y0 + 1) * (x1 - x0 + 1))
        assert share == pytest.approx((mask == cls).mean(), rel=0.25)


def test_format_seconds() -> None:
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(600) == "10.0 min"
    assert format_seconds(7200) == "2.00 h"
    assert format_seconds(None) == format_seconds(float("nan")) == "n/a"
