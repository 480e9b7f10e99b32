"""Figures for reports (matplotlib PNGs) and the training-loss and validation histories they plot.

Everything here works on plain numbers, arrays and ``metrics.csv`` files, so it can be tested on fake
inputs and used by any layer above (``steelkd.experiment`` draws the paper's Figs. 4-6 with these).
Figures use matplotlib's Agg backend (no display needed) and are written atomically.

Example:
    >>> from steelkd.figures import plot_dice_bars
    >>> plot_dice_bars(["pitting", "crazing"], [0.61, 0.58], [0.65, 0.65], "fig5.png")  # doctest: +SKIP
    PosixPath('fig5.png')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from steelkd.io import atomic_path
from steelkd.postprocess import palette
from steelkd.tables import MeanStd

# ---------------------------------------------------------------------------------------- loss history
_LOSSES = {"loss": "train/loss", "loss_kd": "train/loss_kd", "loss_ce": "train/loss_ce"}


def _read_metrics_csv(metrics_csv: str | Path) -> tuple[Path, pd.DataFrame]:
    """A run's ``logs/metrics.csv`` as a DataFrame; ``FileNotFoundError`` / ``ValueError`` (no ``epoch``)."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file not found")
    df = pd.read_csv(path)
    if "epoch" not in df.columns:
        raise ValueError(f"{path}: no 'epoch' column")
    return path, df


def read_loss_history(metrics_csv: str | Path) -> pd.DataFrame:
    """Read the training losses of a run from its Lightning ``logs/metrics.csv``.

    Accepts both ways Lightning names logged values: ``train/loss`` (step rows) or ``train/loss_step``
    plus ``train/loss_epoch``. Epoch means missing from the file are computed from the step values.

    Args:
        metrics_csv: path of the CSVLogger file (columns ``epoch``, ``step``, ``train/loss`` ...).

    Returns:
        A DataFrame with columns ``kind`` (``"step"`` or ``"epoch"``), ``x`` (training progress in
        epochs: a step row inside epoch e lies in (e, e+1], an epoch mean at e+1), ``epoch``, and
        ``loss`` (L), ``loss_kd`` (L_KD) and ``loss_ce`` (L_wCE) where logged (NaN otherwise).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file has no ``epoch`` column or no training loss.

    Example:
        >>> hist = read_loss_history("runs/x/logs/metrics.csv")  # doctest: +SKIP
        >>> hist[hist.kind == "epoch"][["epoch", "loss", "loss_kd"]]  # doctest: +SKIP
    """
    path, df = _read_metrics_csv(metrics_csv)
    step_cols = {k: next((c for c in (v + "_step", v) if c in df.columns), None) for k, v in _LOSSES.items()}
    epoch_cols = {k: (v + "_epoch") if (v + "_epoch") in df.columns else None for k, v in _LOSSES.items()}
    if step_cols["loss"] is None and epoch_cols["loss"] is None:
        raise ValueError(
            f"{path}: no training loss column (expected train/loss, train/loss_step or train/loss_epoch)"
        )
    step = df["step"] if "step" in df.columns else pd.Series(np.arange(len(df)), index=df.index)

    # Step rows: any row carrying a step value of some loss.
    present_step = [c for c in step_cols.values() if c is not None]
    step_rows = df[df[present_step].notna().any(axis=1)] if present_step else df.iloc[0:0]
    frames: list[pd.DataFrame] = []
    if len(step_rows):
        s = pd.DataFrame({"kind": "step", "epoch": step_rows["epoch"].astype(int).to_numpy()})
        st = step.loc[step_rows.index].to_numpy(dtype=np.float64)
        x = np.empty(len(s), dtype=np.float64)
        for e in np.unique(s["epoch"]):
            m = (s["epoch"] == e).to_numpy()
            lo, hi = st[m].min(), st[m].max()
            span = max(hi - lo + 1.0, 1.0)
            x[m] = e + (st[m] - lo + 1.0) / span
        s["x"] = x
        for k, c in step_cols.items():
            s[k] = step_rows[c].to_numpy(dtype=np.float64) if c is not None else np.nan
        frames.append(s)

    # Epoch rows: the logged epoch means, else means of the step values.
    present_epoch = [c for c in epoch_cols.values() if c is not None]
    if present_epoch:
        er = df[df[present_epoch].notna().any(axis=1)]
        e = pd.DataFrame({"kind": "epoch", "epoch": er["epoch"].astype(int).to_numpy()})
        for k, c in epoch_cols.items():
            e[k] = er[c].to_numpy(dtype=np.float64) if c is not None else np.nan
        e = e.groupby("epoch", as_index=False).agg({"kind": "first", **{k: "mean" for k in _LOSSES}})
    elif frames:
        e = frames[0].groupby("epoch", as_index=False)[list(_LOSSES)].mean()
        e.insert(0, "kind", "epoch")
    else:  # pragma: no cover - guarded above
        e = pd.DataFrame(columns=["kind", "epoch", *_LOSSES])
    if frames:  # fill epoch means of losses logged only per step
        means = frames[0].groupby("epoch")[list(_LOSSES)].mean()
        for k in _LOSSES:
            missing = e[k].isna()
            e.loc[missing, k] = e.loc[missing, "epoch"].map(means[k])
    e["x"] = e["epoch"].astype(float) + 1.0
    frames.append(e)
    out = pd.concat(frames, ignore_index=True)[["kind", "x", "epoch", *_LOSSES]]
    return out.sort_values(["kind", "x"], kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------------- learning curves
#: The wall-clock column the training logs at each validation (``steelkd.engine.recipe.ELAPSED_KEY``).
ELAPSED_COLUMN = "time/elapsed_s"


def read_val_curve(metrics_csv: str | Path) -> pd.DataFrame:
    """Read the validation curve of a run from its Lightning ``logs/metrics.csv``: one row per validation.

    Args:
        metrics_csv: path of the CSVLogger file (columns ``epoch``, ``step``, ``val/mdice`` ... and, from
            runs with the recipe callbacks, ``time/elapsed_s``).

    Returns:
        A DataFrame sorted by epoch with columns ``epoch`` (0-based, int), ``step``, ``elapsed_s``
        (seconds of training at that validation; NaN where not logged) and every ``val/...`` column.
        An epoch validated twice (a resumed run that redid it) keeps its last row.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file has no ``epoch`` or no ``val/mdice`` column.

    Example:
        >>> curve = read_val_curve("runs/x/logs/metrics.csv")  # doctest: +SKIP
        >>> curve[["epoch", "elapsed_s", "val/mdice"]]  # doctest: +SKIP
    """
    path, df = _read_metrics_csv(metrics_csv)
    if "val/mdice" not in df.columns:
        raise ValueError(f"{path}: no 'val/mdice' column (no validation logged)")
    rows = df[df["val/mdice"].notna()]
    val_cols = [c for c in df.columns if c.startswith("val/")]
    timed = ELAPSED_COLUMN in df.columns
    out = pd.DataFrame(
        {
            "epoch": rows["epoch"].astype(int).to_numpy(),
            "step": rows["step"].to_numpy() if "step" in df.columns else np.nan,
            "elapsed_s": rows[ELAPSED_COLUMN].to_numpy(np.float64) if timed else np.nan,
        }
    )
    for c in val_cols:
        out[c] = rows[c].to_numpy(np.float64)
    out = out.drop_duplicates("epoch", keep="last")
    return out.sort_values("epoch", kind="stable").reset_index(drop=True)


def plateau_epoch(values: Sequence[float] | np.ndarray, fraction: float = 0.95) -> int:
    """Position of the first value that reaches ``fraction`` of the best (maximum) value.

    The "plateau" of a learning curve of a non-negative score such as mDice: where it first comes within
    ``1 - fraction`` of the best it ever reaches. NaN values are skipped (never the plateau).

    Args:
        values: the score at each validation, in order.
        fraction: the share of the best value to reach, in (0, 1].

    Returns:
        The 0-based position in ``values`` (map it to an epoch with the curve's ``epoch`` column).

    Raises:
        ValueError: ``fraction`` out of range, or no finite value.

    Example:
        >>> plateau_epoch([0.1, 0.5, 0.78, 0.8, 0.79], fraction=0.95)
        2
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"plateau fraction must be in (0, 1], got {fraction}")
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        raise ValueError("plateau_epoch: no finite value")
    best = float(v[finite].max())
    return int(np.flatnonzero(finite & (v >= fraction * best))[0])


def plot_learning_curves(
    curves: Mapping[str, pd.DataFrame],
    path: str | Path,
    *,
    metric: str = "val/mdice",
    fraction: float = 0.95,
    title: str = "Validation mDice",
) -> Path:
    """Validation ``metric`` of several runs against epoch (left) and wall-clock minutes (right).

    One line per run, in the same colour in both panels; each run's plateau (:func:`plateau_epoch`, the
    first validation reaching ``fraction`` of its best) is marked with a ring and named in the legend.
    The epoch axis counts epochs trained (the logged 0-based ``epoch`` + 1). Runs without ``elapsed_s``
    are left out of the right panel.

    Args:
        curves: run label -> its :func:`read_val_curve` frame (``epoch``, ``elapsed_s``, ``metric``).
        path: PNG file to write.
        metric: the column to plot.
        fraction: the plateau's share of the best value.
        title: figure title.

    Example:
        >>> curves = {"ema": read_val_curve("runs/ema/logs/metrics.csv")}  # doctest: +SKIP
        >>> plot_learning_curves(curves, "learning_curves.png")  # doctest: +SKIP
    """
    fig, (ax_ep, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    timed = 0
    for i, (name, df) in enumerate(curves.items()):
        if metric not in df.columns:
            raise ValueError(f"plot_learning_curves: run {name!r} has no column {metric!r}")
        d = df[df[metric].notna()].sort_values("epoch", kind="stable")
        if not len(d):
            continue
        color = colors[i % len(colors)]
        y = d[metric].to_numpy(np.float64)
        epochs = d["epoch"].to_numpy(np.float64) + 1.0  # epochs trained at that validation
        k = plateau_epoch(y, fraction)
        label = f"{name} (plateau epoch {int(epochs[k])}, best {np.nanmax(y):.3f})"
        ax_ep.plot(epochs, y, "-", marker=".", color=color, label=label)
        ax_ep.plot(epochs[k], y[k], "o", mfc="none", mec=color, markersize=11, markeredgewidth=1.8)
        if "elapsed_s" in d.columns and d["elapsed_s"].notna().any():
            minutes = d["elapsed_s"].to_numpy(np.float64) / 60.0
            ok = np.isfinite(minutes)
            ax_t.plot(minutes[ok], y[ok], "-", marker=".", color=color, label=name)
            if ok[k]:
                ax_t.plot(minutes[k], y[k], "o", mfc="none", mec=color, markersize=11, markeredgewidth=1.8)
            timed += 1
    if not timed:
        ax_t.text(0.5, 0.5, "no time/elapsed_s logged", ha="center", va="center", transform=ax_t.transAxes)
    ax_ep.set_xlabel("epoch")
    ax_t.set_xlabel("wall-clock minutes")
    ax_ep.set_ylabel(metric)
    for ax in (ax_ep, ax_t):
        ax.grid(True, alpha=0.3)
    if curves:
        ax_ep.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title} (ring: first validation at {fraction:.0%} of the run's best)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- figures
def _save(fig: Any, path: str | Path) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target


def plot_loss_curves(history: pd.DataFrame, path: str | Path, *, title: str = "Training losses") -> Path:
    """Plot the distillation loss L_KD and the total loss L (and L_wCE when logged) over training (Fig. 4).

    Epoch means are drawn as lines with markers; per-step values, when present, as faint lines behind.

    Args:
        history: the frame of :func:`read_loss_history`.
        path: PNG file to write.
        title: figure title.

    Example:
        >>> plot_loss_curves(read_loss_history("run/logs/metrics.csv"), "fig4.png")  # doctest: +SKIP
    """
    series = [
        ("loss", "L (total)", "tab:blue", "-"),
        ("loss_kd", "L_KD (distillation)", "tab:red", "-"),
        ("loss_ce", "L_wCE (weighted CE)", "tab:green", "--"),
    ]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = history[history["kind"] == "step"]
    epochs = history[history["kind"] == "epoch"]
    drawn = 0
    for key, label, color, style in series:
        if key not in history.columns or history[key].isna().all():
            continue
        s = steps[steps[key].notna()]
        if len(s) > 1:
            ax.plot(s["x"], s[key], color=color, alpha=0.25, linewidth=0.8, linestyle=style)
        ep = epochs[epochs[key].notna()]
        if len(ep):
            ax.plot(
                ep["x"],
                ep[key],
                color=color,
                marker="o",
                markersize=4,
                linestyle=style,
                label=f"{label}, epoch mean",
            )
            drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, "no loss values logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _mean_err(values: Sequence[MeanStd | float]) -> tuple[np.ndarray, np.ndarray]:
    means = np.array([v.mean if isinstance(v, MeanStd) else float(v) for v in values], dtype=np.float64)
    errs = np.array([v.std if isinstance(v, MeanStd) and v.n > 1 else 0.0 for v in values], dtype=np.float64)
    return means, errs


def plot_dice_bars(
    class_names: Sequence[str],
    before: Sequence[MeanStd | float],
    after: Sequence[MeanStd | float],
    path: str | Path,
    *,
    title: str = "Dice per class before and after distillation",
    labels: tuple[str, str] = ("baseline student", "distilled student"),
    reference: Sequence[MeanStd | float] | None = None,
    reference_label: str = "teacher",
) -> Path:
    """Bars of Dice per defect class, before and after distillation (Fig. 5), with ± std error bars.

    Args:
        class_names: the defect classes (no background), one group of bars each.
        before / after: Dice per class of the baseline and the distilled student.
        path: PNG file to write.
        title: figure title.
        labels: legend labels of the two bar series.
        reference: optional third series (e.g. the teacher), drawn in grey.
        reference_label: its legend label.

    Example:
        >>> plot_dice_bars(["pitting", "crazing"], [0.61, 0.58], [0.65, 0.65], "fig5.png")  # doctest: +SKIP
    """
    if not (len(class_names) == len(before) == len(after)):
        raise ValueError(f"plot_dice_bars: {len(class_names)} classes but {len(before)}/{len(after)} values")
    series: list[tuple[str, Sequence[MeanStd | float], str]] = [
        (labels[0], before, "tab:gray" if reference is None else "tab:orange"),
        (labels[1], after, "tab:blue"),
    ]
    if reference is not None:
        series.append((reference_label, reference, "0.6"))
    x = np.arange(len(class_names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(class_names) + 2), 4.2))
    for i, (label, values, color) in enumerate(series):
        means, errs = _mean_err(values)
        pos = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(
            pos, means, width, yerr=errs if errs.any() else None, capsize=3, label=label, color=color
        )
        for b, m in zip(bars, means, strict=True):
            if not math.isnan(m):
                ax.annotate(
                    f"{m:.3f}",
                    (b.get_x() + b.get_width() / 2, m),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, list(class_names))
    ax.set_xlabel("defect class")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncol=len(series), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_overlay_grid(
    panels: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "Predictions",
    legend: Sequence[str] = (),
    colors: Sequence[Sequence[int]] | None = None,
) -> Path:
    """A grid of overlay images: one row per example (defect class), one column per model (Fig. 6).

    Args:
        panels: ``panels[r][c]`` is an RGB uint8 image (already painted, e.g. by
            :func:`steelkd.postprocess.overlay`).
        row_labels: label of each row (e.g. the defect class of that example).
        col_labels: title of each column (e.g. "ground truth", "baseline student", ...).
        path: PNG file to write.
        title: figure title.
        legend: class names of label values 1, 2, ... for the colour legend.
        colors: RGB colours (0..255) of label values 1, 2, ...; default: those of
            :func:`steelkd.postprocess.overlay` (:func:`steelkd.postprocess.palette`).

    Example:
        >>> grid = [[gt_rgb, student_rgb]]  # doctest: +SKIP
        >>> plot_overlay_grid(grid, ["pitting"], ["truth", "student"], "fig6.png")  # doctest: +SKIP
    """
    nr, nc = len(panels), len(col_labels)
    if nr == 0 or len(row_labels) != nr or any(len(r) != nc for r in panels):
        raise ValueError(f"plot_overlay_grid: expected {len(row_labels)} rows of {nc} images")
    h, w = panels[0][0].shape[:2]
    cell_w = 3.6
    cell_h = max(1.2, min(3.6, cell_w * h / max(w, 1)))
    fig, axes = plt.subplots(nr, nc, figsize=(cell_w * nc, cell_h * nr + 0.9), squeeze=False)
    for r in range(nr):
        for c in range(nc):
            ax = axes[r][c]
            ax.imshow(panels[r][c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
    if legend:
        if colors is None:
            colors = [tuple(int(v) for v in c) for c in palette(len(legend) + 1)[1:]]
        handles = [
            Patch(color=np.asarray(colors[i % len(colors)]) / 255.0, label=name)
            for i, name in enumerate(legend)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if legend else 0, 1, 0.97))
    return _save(fig, path)


def plot_calibration(calibration: Any, path: str | Path) -> Path:
    """PNG: per class, precision against recall over the thresholds (at the chosen minimum area).

    Two curves per class: pixel level (the Dice's precision and recall; in the class colour) and image
    level (share of the alarms that are right, share of the images with the class that raise one; grey);
    the chosen pair is marked on both with a star, the 0.5 threshold with a ring.

    Args:
        calibration: a :class:`steelkd.calibrate.Calibration`.
        path: the PNG to write (atomically).
    """
    classes = calibration.classes
    cols = min(4, max(1, len(classes)))
    rows = math.ceil(len(classes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    colors = palette(len(calibration.class_names)) / 255.0
    for ax, (c, cal) in zip(axes.ravel(), enumerate(classes, start=1), strict=False):
        j = cal.index[1] if cal.index is not None else 0
        col = colors[c]
        for prefix, color, marker, label in (("", col, ".", "pixels"), ("image_", "0.35", "x", "images")):
            rec, prec = cal.curves[f"{prefix}recall"][:, j], cal.curves[f"{prefix}precision"][:, j]
            ax.plot(rec, prec, "-", color=color, marker=marker, markersize=4, label=label)
            if cal.index is not None:
                ax.plot(rec[cal.index[0]], prec[cal.index[0]], "k*", markersize=12)
            half = int(np.argmin(np.abs(np.asarray(calibration.thresholds) - 0.5)))
            ax.plot(rec[half], prec[half], "o", mfc="none", mec="gray", markersize=9)
        chosen = f"t={cal.threshold:g}, min area {cal.min_area:g}" if cal.calibrated else "default kept"
        ax.set_title(f"{cal.name}\n{chosen}", fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for ax in axes.ravel()[len(classes) :]:
        ax.axis("off")
    what = calibration.target + (f" {calibration.value:g}" if calibration.value is not None else "")
    fig.suptitle(
        f"calibration on {calibration.num_images} images, target {what} (star: chosen, ring: threshold 0.5)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
