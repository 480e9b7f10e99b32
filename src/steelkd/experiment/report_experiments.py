"""The report's per-experiment sections: the paper's Tables 1-5 and Figs. 4, 5 and 6.

For experiment ``k``: the teacher's margin, Table ``k``a (mDice before/after with params, GMACs, FPS; the
paper's Tables 1, 2, 4), Table ``k``b (Dice per class; Tables 3, 5), Table ``k``c (all metrics), Table
``k``d (the students at equal compute, for an experiment with ``equal_compute``), the learning curves
(validation mDice against epochs and wall time), Fig. 4 (losses of the first-seed distilled student) and
Fig. 5 (Dice bars); then Fig. 6 (example predictions) for all experiments. Everything is read from the
results handed in; no model runs here. Logs are read from the copies the output folder keeps
(``OUT/logs/``), so runs carried from an earlier call are drawn too.

Example:
    >>> for k, view in enumerate(ctx.views):  # doctest: +SKIP
    ...     experiment_section(doc, ctx, k, view)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steelkd.experiment.report_sections import (
    ReportContext,
    ReportDoc,
    equal_compute_epochs,
    format_difference,
    mean_std,
    pretty_model_name,
)
from steelkd.experiment.results import ExampleImage, ExperimentView, RunRecord, kept_log
from steelkd.figures import (
    plateau_epoch,
    plot_dice_bars,
    plot_learning_curves,
    plot_loss_curves,
    plot_overlay_grid,
    read_loss_history,
    read_val_curve,
)
from steelkd.paper import PAPER_RESULTS
from steelkd.postprocess import overlay
from steelkd.tables import MeanStd, Table

__all__ = ["crop_box", "experiment_section", "predictions_section"]

_SPEED_DIGITS = {"params (M)": 2, "GMACs": 2, "FPS": 1}


def experiment_section(doc: ReportDoc, ctx: ReportContext, k: int, view: ExperimentView) -> None:
    """Experiment ``k`` (0-based): margin, Tables ``k+1``a/b/c (and d: equal compute), Figs. 4 and 5."""
    tm, sm = view.teacher.spec.config.model.name, view.baselines[0].spec.config.model.name
    margin = view.teacher.metrics["mdice"] - mean_std(view.baselines, "mdice").mean
    doc.add(
        f"## Experiment {k + 1}: {view.spec.name} — teacher {pretty_model_name(tm)} → student "
        f"{pretty_model_name(sm)}",
        "",
        f"teacher margin over baseline student: {margin:+.3f} mDice",
        "",
    )
    _teacher_provenance(doc, view)
    paper = PAPER_RESULTS[k] if ctx.paper_layout else None
    quote = paper if ctx.paper_models else None
    _mdice_table(doc, ctx, k, view, paper, quote)
    _dice_per_class_table(doc, ctx, k, view, paper, quote)
    _all_metrics_table(doc, ctx, k, view)
    if view.equal_compute:
        _equal_compute_table(doc, k, view)
    _curves_figure(doc, view)
    _loss_figure(doc, view)
    _dice_figure(doc, ctx, view)


def _teacher_provenance(doc: ReportDoc, view: ExperimentView) -> None:
    """A line when the students learnt from the teacher as it was before it was trained again (a carried
    teacher retrained in a later stage, on other hardware or in another session: same config and seed)."""
    t = view.teacher
    then = sorted({r.teacher_mdice for r in view.distilled if r.teacher_mdice is not None})
    if not then or all(abs(x - t.metrics["mdice"]) < 1e-9 for x in then):
        return
    doc.add(
        f"The distilled students learnt from the teacher as an earlier stage trained it (test mDice "
        f"{', '.join(f'{x:.4f}' for x in then)}); the teacher in the tables is the same run config trained "
        f"again for a later stage ({t.metrics['mdice']:.4f}, on {t.hardware or 'unrecorded hardware'}): "
        "floating-point results differ between CPUs, so a retrained teacher is a sibling, not a copy.",
        "",
    )


def _mdice_table(
    doc: ReportDoc,
    ctx: ReportContext,
    k: int,
    view: ExperimentView,
    paper: dict[str, Any] | None,
    quote: dict[str, Any] | None,
) -> None:
    """Table ``k``a: mDice before and after, params, GMACs and FPS (the paper's Tables 1, 2, 4)."""
    tm, sm = view.teacher.spec.config.model.name, view.baselines[0].spec.config.model.name
    t_speed, s_speed = ctx.speed.get(tm, {}), ctx.speed.get(sm, {})
    ref = f" (paper's Table {paper['table']})" if paper else ""
    speed = [("params", 1e-6), ("gmacs", 1.0), ("fps", 1.0)]
    table = Table(
        f"Table {k + 1}a — {view.spec.name}: mDice before and after distillation{ref}",
        ["network", "mDice before", "mDice after", "params (M)", "GMACs", "FPS"],
        [
            [f"{pretty_model_name(tm)} (teacher)", view.teacher.metrics["mdice"], None]
            + [_get(t_speed, key, scale) for key, scale in speed],
            [
                f"{pretty_model_name(sm)} (student)",
                mean_std(view.baselines, "mdice"),
                mean_std(view.distilled, "mdice"),
            ]
            + [_get(s_speed, key, scale) for key, scale in speed],
        ],
        col_digits=_SPEED_DIGITS,
    )
    doc.titled_table(table, f"{view.spec.name}_mdice.csv")
    if t_speed.get("fps") and s_speed.get("fps"):
        doc.add(
            f"Student {100 * (s_speed['fps'] / t_speed['fps'] - 1):+.0f}% FPS relative to the teacher "
            f"({s_speed['fps']:.1f} vs {t_speed['fps']:.1f} FPS, {s_speed['device_name']})."
        )
    if quote:
        doc.add(
            f"Paper: teacher {quote['teacher']:.4f}, student {quote['before']:.4f} → "
            f"{quote['after']:.4f}; params {quote['params'][0]} / {quote['params'][1]} M; "
            f"FPS {quote['fps'][0]} / {quote['fps'][1]} (RTX 3090)."
        )
    doc.add("")


def _dice_per_class_table(
    doc: ReportDoc,
    ctx: ReportContext,
    k: int,
    view: ExperimentView,
    paper: dict[str, Any] | None,
    quote: dict[str, Any] | None,
) -> None:
    """Table ``k``b: Dice per class before and after, and the teacher's (the paper's Tables 3, 5, Fig. 5)."""
    pref = ""
    if paper:
        pref = f" (paper's Table {paper['dice_table']})" if paper["dice_table"] else " (paper's Fig. 5)"
    before, after, teacher = _dice_per_class(ctx, view)
    table = Table(
        f"Table {k + 1}b — {view.spec.name}: Dice per class before and after distillation{pref}",
        ["distilled", *ctx.defect, "mDice"],
        [
            ["before", *before, mean_std(view.baselines, "mdice")],
            ["after", *after, mean_std(view.distilled, "mdice")],
            ["teacher", *teacher, view.teacher.metrics["mdice"]],
        ],
    )
    doc.titled_table(table, f"{view.spec.name}_dice_per_class.csv")
    if quote and quote["dice"]:
        doc.add(
            "Paper: before "
            + ", ".join(f"{x:.4f}" for x in quote["dice"][0])
            + "; after "
            + ", ".join(f"{x:.4f}" for x in quote["dice"][1])
            + ".",
            "",
        )


def _dice_per_class(ctx: ReportContext, view: ExperimentView) -> tuple[list[Any], list[Any], list[float]]:
    before = [mean_std(view.baselines, "dice", c) for c in ctx.defect]
    after = [mean_std(view.distilled, "dice", c) for c in ctx.defect]
    teacher = [float(view.teacher.metrics["dice"].get(c, float("nan"))) for c in ctx.defect]
    return before, after, teacher


def _all_metrics_table(doc: ReportDoc, ctx: ReportContext, k: int, view: ExperimentView) -> None:
    """Table ``k``c: mDice, Kaggle Dice, mIoU with and without background (NEU-Seg's convention)."""
    tm, sm = view.teacher.spec.config.model.name, view.baselines[0].spec.config.model.name
    keys = ("mdice", "kaggle_dice", "miou", "miou_bg")
    table = Table(
        f"Table {k + 1}c — {view.spec.name}: all metrics (dataset-level; Kaggle Dice per image x class)",
        ["network", "mDice", "Kaggle Dice", "mIoU (defects)", "mIoU (incl. bg)"],
        [
            [f"{pretty_model_name(tm)} (teacher)", *[view.teacher.metrics[key] for key in keys]],
            [f"{pretty_model_name(sm)} baseline", *[mean_std(view.baselines, key) for key in keys]],
            [f"{pretty_model_name(sm)} distilled", *[mean_std(view.distilled, key) for key in keys]],
        ],
    )
    doc.titled_table(table, f"{view.spec.name}_all_metrics.csv")
    if ctx.is_neu:
        doc.add(
            f"NEU-Seg: published results quote mIoU over the {len(ctx.data.class_names)} classes including "
            "background (e.g. a from-scratch U-Net ≈ 80.6 mIoU); compare those with 'mIoU (incl. bg)', "
            "the defect-only figures with the rest.",
            "",
        )


def _equal_compute_table(doc: ReportDoc, k: int, view: ExperimentView) -> None:
    """Table ``k``d: baseline, baseline at the distilled run's compute, distilled; the differences."""
    sm = pretty_model_name(view.baselines[0].spec.config.model.name)
    ratio = MeanStd.of(view.ratios)
    measures = {q.measure for r in view.equal_compute for q in r.spec.equal_compute}
    keys = ("mdice", "miou_bg")
    rows = [
        [f"{sm} baseline", str(view.baselines[0].spec.config.train.epochs), 1.0],
        [f"{sm} baseline at equal compute", equal_compute_epochs(view), ratio],
        [f"{sm} distilled", str(view.distilled[0].spec.config.train.epochs), ratio],
    ]
    for row, recs in zip(rows, (view.baselines, view.equal_compute, view.distilled), strict=True):
        row += [mean_std(recs, key) for key in keys]
    table = Table(
        f"Table {k + 1}d — {view.spec.name}: students at equal compute",
        ["student", "epochs", "compute ratio", "mDice", "mIoU (incl. bg)"],
        rows,
        col_digits={"compute ratio": 2},
    )
    doc.titled_table(table, f"{view.spec.name}_equal_compute.csv")
    dist, eq = mean_std(view.distilled, "mdice"), mean_std(view.equal_compute, "mdice")
    doc.add(
        f"distilled − equal-compute baseline: {format_difference(dist, eq)}; "
        f"distilled − baseline: {format_difference(dist, mean_std(view.baselines, 'mdice'))}.",
        "",
        f"Compute ratio = compute of the distilled run / compute of the baseline run of the same seed "
        f"({' and '.join(sorted(measures))} seconds: CPU seconds of the training process and its children "
        "on the CPU, wall seconds on a GPU; both runs timed on the same hardware: a baseline carried "
        "from another machine is timed again on the distilled run's, `baseline_timing` in the runs "
        "table); the equal-compute baseline trains max(E, round(E × ratio)) epochs, its cosine schedule "
        "spanning them.",
        "",
    )


def _curves_figure(doc: ReportDoc, view: ExperimentView) -> None:
    """Validation mDice against epochs and wall minutes of the teacher and the first-seed students, with
    each run's plateau (the first validation at >= 95% of its best) and best epoch in a line of text."""
    runs: list[tuple[str, RunRecord]] = [("teacher", view.teacher), ("baseline", view.baselines[0])]
    runs += [("distilled", view.distilled[0])]
    runs += [("equal-compute baseline", view.equal_compute[0])] if view.equal_compute else []
    curves = {}
    for what, rec in runs:
        log_csv = kept_log(doc.out_dir, rec.spec.label)
        try:
            curves[f"{what} ({rec.spec.config.train.epochs} ep)"] = read_val_curve(log_csv)
        except (FileNotFoundError, ValueError):  # no log kept (e.g. a run carried from before logs were)
            continue
    if not curves:
        return
    name = view.spec.name
    title = f"{name}: validation mDice (seed {view.baselines[0].spec.seed})"
    path = plot_learning_curves(curves, doc.fig_dir / f"curves_{name}.png", title=title)
    facts = []
    for label, c in curves.items():
        v = c["val/mdice"].to_numpy()
        facts.append(
            f"{label}: best {v.max():.4f} at epoch {int(c['epoch'].iloc[v.argmax()]) + 1}, "
            f"95% of it from epoch {int(c['epoch'].iloc[plateau_epoch(v)]) + 1}"
        )
    doc.add("Learning curves (validation split; epochs count from 1): " + "; ".join(facts) + ".", "")
    doc.figure(path, f"learning curves {name}")


def _loss_figure(doc: ReportDoc, view: ExperimentView) -> None:
    """Fig. 4: L_KD and L of the first-seed distilled student, from its kept ``logs/metrics.csv``."""
    d0 = view.distilled[0]
    metrics_csv = kept_log(doc.out_dir, d0.spec.label)
    if not metrics_csv.is_file():
        return
    name = view.spec.name
    student = pretty_model_name(view.baselines[0].spec.config.model.name)
    try:
        path = plot_loss_curves(
            read_loss_history(metrics_csv),
            doc.fig_dir / f"fig4_{name}_losses.png",
            title=f"Fig. 4 — {name}: L_KD and L while distilling {student} (seed {d0.spec.seed})",
        )
    except ValueError as exc:
        doc.add(f"(no loss curves: {exc})", "")
        return
    doc.figure(path, f"Fig. 4 {name}")


def _dice_figure(doc: ReportDoc, ctx: ReportContext, view: ExperimentView) -> None:
    """Fig. 5: bars of Dice per class, baseline vs distilled (± std), with the teacher."""
    tm, sm = view.teacher.spec.config.model.name, view.baselines[0].spec.config.model.name
    before, after, teacher = _dice_per_class(ctx, view)
    name = view.spec.name
    path = plot_dice_bars(
        ctx.defect,
        before,
        after,
        doc.fig_dir / f"fig5_{name}_dice_per_class.png",
        title=f"Fig. 5 — {name}: Dice per class before and after distillation",
        labels=(f"{pretty_model_name(sm)} baseline", f"{pretty_model_name(sm)} distilled"),
        reference=teacher,
        reference_label=f"{pretty_model_name(tm)} teacher",
    )
    doc.figure(path, f"Fig. 5 {name}")


# ---------------------------------------------------------------------------------------------- Fig. 6
def predictions_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """Fig. 6 for every experiment: one example image per defect class, truth and three predictions."""
    examples = ctx.data.examples
    found = {ex.cls for ex in examples.images}
    missing = ", ".join(c for i, c in enumerate(ctx.defect, 1) if i not in found)
    doc.add(
        "## Predictions (Fig. 6)",
        "",
        f"One evaluation image per defect class (the one with the most pixels of that class among the first "
        f"{examples.scanned}); wide images are shown cropped around the defect. "
        f"Classes without an example: {missing or 'none'}.",
        "",
    )
    if not examples.images:
        return
    for view in ctx.views:
        lacking = [r.spec.label for r in _overlay_runs(view) if r.spec.label not in examples.predictions]
        if lacking:  # carried runs whose predictions were not kept
            doc.add(f"(no Fig. 6 for {view.spec.name}: no predictions kept for {', '.join(lacking)})", "")
            continue
        path = _overlay_figure(ctx, view, doc.fig_dir / f"fig6_{view.spec.name}_overlays.png")
        doc.figure(path, f"Fig. 6 {view.spec.name}")


def _overlay_runs(view: ExperimentView) -> list[RunRecord]:
    return [view.baselines[0], view.distilled[0], view.teacher]


def _overlay_figure(ctx: ReportContext, view: ExperimentView, path: Path) -> Path:
    runs = [
        ("baseline student", view.baselines[0]),
        ("distilled student", view.distilled[0]),
        ("teacher", view.teacher),
    ]
    names = list(ctx.data.class_names)
    predictions = ctx.data.examples.predictions
    panels, row_labels = [], []
    for ex in ctx.data.examples.images:
        x0, x1 = crop_box(ex.truth, ex.cls)
        row = [ex.image[:, x0:x1], _paint(ex, ex.truth, names)[:, x0:x1]]
        for _label, rec in runs:
            row.append(_paint(ex, predictions[rec.spec.label][ex.index], names)[:, x0:x1])
        panels.append(row)
        crop = f" [{x0}:{x1}]" if (x0, x1) != (0, ex.truth.shape[1]) else ""
        row_labels.append(f"{names[ex.cls]}\n{ex.image_id}{crop}")
    cols = [
        "image",
        "ground truth",
        *[f"{label}\n{pretty_model_name(rec.spec.config.model.name)}" for label, rec in runs],
    ]
    return plot_overlay_grid(
        panels,
        row_labels,
        cols,
        path,
        title=f"Fig. 6 — {view.spec.name}: predictions per defect class (seed {ctx.cfg.seeds[0]})",
        legend=names[1:],
    )


def _paint(ex: ExampleImage, label_map: np.ndarray, names: list[str]) -> np.ndarray:
    return overlay(ex.image, label_map, names, legend=False)


def crop_box(mask: np.ndarray, cls: int) -> tuple[int, int]:
    """Column window (x0, x1) of width 2·H around class ``cls`` for wide images (the whole width else).

    Example:
        >>> m = np.zeros((10, 100), np.uint8); m[:, 70:72] = 3
        >>> crop_box(m, 3)
        (60, 80)
    """
    h, w = mask.shape
    if w <= 2 * h:
        return 0, w
    cols = np.nonzero((mask == cls).any(axis=0))[0]
    center = int(cols.mean()) if len(cols) else w // 2
    x0 = min(max(0, center - h), w - 2 * h)
    return x0, x0 + 2 * h


def _get(d: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
    v = d.get(key)
    return None if v is None else float(v) * scale
