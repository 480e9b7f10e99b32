"""The report's building blocks and its general sections: header, summary, deviations, runs, models, files.

Each section is one small function that reads a :class:`ReportContext` (the config and the results handed
in) and appends its markdown to a :class:`ReportDoc`, writing its tables as CSV on the way. The
per-experiment sections (the paper's tables and Figs. 4-6) are in
:mod:`steelkd.experiment.report_experiments`. Nothing here runs a model.

Example:
    >>> doc = ReportDoc(Path("out"))  # doctest: +SKIP
    >>> summary_section(doc, ctx)  # doctest: +SKIP
    >>> doc.lines[:2]  # doctest: +SKIP
    ['## Summary', '']
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steelkd.config import NEU_SEG_CLASSES
from steelkd.experiment.config import ExperimentConfig
from steelkd.experiment.results import (
    ExperimentData,
    ExperimentView,
    RunRecord,
    experiment_views,
    run_kind,
    run_method,
)
from steelkd.paper import PAPER_EXPERIMENTS
from steelkd.tables import MeanStd, Table, format_seconds
from steelkd.trivial import result_warnings

__all__ = [
    "ReportContext",
    "ReportDoc",
    "deviations_section",
    "equal_compute_epochs",
    "files_section",
    "format_difference",
    "header_section",
    "mean_std",
    "methods_table",
    "models_section",
    "pooled_difference",
    "pretty_model_name",
    "runs_section",
    "schedule_table",
    "summary_section",
]


_SCHEDULE_KIND = {
    "baseline": "baseline",
    "baseline_timing": "timing",
    "baseline_equal_compute": "equal compute",
}
"""The schedule table's name of each undistilled :func:`~steelkd.experiment.results.run_kind`."""


# ------------------------------------------------------------------------------------------ the pieces
class ReportDoc:
    """The report being written: markdown lines, and the tables and figures written so far.

    Args:
        out_dir: the experiment's output directory (tables go to ``tables/``, figures to ``figures/``).
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.tables_dir = out_dir / "tables"
        self.fig_dir = out_dir / "figures"
        self.lines: list[str] = []
        self.tables: list[Path] = []
        self.figures: list[Path] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table_csv(self, table: Table, name: str) -> None:
        """Write ``table`` to ``tables/<name>`` and list it."""
        self.tables.append(table.to_csv(self.tables_dir / name))

    def titled_table(self, table: Table, name: str) -> None:
        """Write ``table`` as CSV and add it to the markdown under its bold title."""
        self.table_csv(table, name)
        self.add(f"**{table.title}**", "", table.to_markdown(), "")

    def figure(self, path: Path, alt: str) -> None:
        """List a written figure and embed it."""
        self.figures.append(path)
        self.add(f"![{alt}](figures/{path.name})", "")


@dataclass
class ReportContext:
    """What every section reads: the config, the results, the deviations and derived views.

    Attributes:
        cfg: the experiment config.
        data: the results (:class:`steelkd.experiment.results.ExperimentData`).
        deviations: :func:`steelkd.experiment.deviations.paper_deviations` of this run.
        seconds: wall time of the call so far.
        views: the runs grouped by experiment.
        paper_layout: the preset has the paper's structure (T1 -> S, T2 -> T1, T2 -> S): tables are tagged
            with the paper's table numbers.
        paper_models: its models are the paper's too: the paper's numbers are quoted.
    """

    cfg: ExperimentConfig
    data: ExperimentData
    deviations: list[str]
    seconds: float
    views: list[ExperimentView] = field(init=False)
    paper_layout: bool = field(init=False)
    paper_models: bool = field(init=False)

    def __post_init__(self) -> None:
        self.views = experiment_views(self.cfg, self.data.records)
        ex = self.cfg.experiments
        self.paper_layout = (
            len(ex) == 3
            and ex[0].teacher == ex[1].student
            and ex[1].teacher == ex[2].teacher
            and ex[0].student == ex[2].student
        )
        models = [(self.cfg.models[e.teacher].name, self.cfg.models[e.student].name) for e in ex]
        self.paper_models = models == PAPER_EXPERIMENTS

    @property
    def defect(self) -> list[str]:
        """The defect classes (no background)."""
        return self.data.class_names[1:]

    @property
    def is_neu(self) -> bool:
        return self.data.class_names == NEU_SEG_CLASSES

    @property
    def speed(self) -> dict[str, dict[str, Any]]:
        """Benchmark row per model name."""
        return {b["model"]: b for b in self.data.bench}


def mean_std(recs: list[RunRecord], key: str, cls: str | None = None) -> MeanStd:
    """Mean ± std over runs of metric ``key`` (of class ``cls`` for per-class metrics)."""
    if cls is None:
        return MeanStd.of([r.metrics.get(key, float("nan")) for r in recs])
    return MeanStd.of([r.metrics.get(key, {}).get(cls, float("nan")) for r in recs])


def pooled_difference(a: MeanStd, b: MeanStd) -> tuple[float, float | None]:
    """``a − b`` and that difference in units of the pooled standard deviation ``sqrt((s_a² + s_b²) / 2)``
    (None with one seed or no spread).

    Example:
        >>> [round(x, 4) for x in pooled_difference(MeanStd(0.72, 0.01, 3), MeanStd(0.70, 0.01, 3))]
        [0.02, 2.0]
    """
    diff, sd = a.mean - b.mean, _pooled_sd(a, b)
    return diff, (diff / sd if sd else None)


def _pooled_sd(a: MeanStd, b: MeanStd) -> float | None:
    sd = math.sqrt((a.std**2 + b.std**2) / 2)
    return sd if min(a.n, b.n) >= 2 and sd > 0 else None


def format_difference(a: MeanStd, b: MeanStd, unit: str = "mDice") -> str:
    """``a − b``, the pooled standard deviation ``sqrt((s_a² + s_b²) / 2)`` and the difference in its units.

    Example:
        >>> format_difference(MeanStd(0.72, 0.01, 3), MeanStd(0.70, 0.01, 3))
        '+0.0200 mDice (pooled sd 0.0100, +2.0 sd)'
        >>> format_difference(MeanStd(0.72, 0.0, 1), MeanStd(0.70, 0.0, 1))
        '+0.0200 mDice (one seed: no sd)'
    """
    diff, sd = a.mean - b.mean, _pooled_sd(a, b)
    if sd is None:
        return f"{diff:+.4f} {unit} (one seed: no sd)"
    return f"{diff:+.4f} {unit} (pooled sd {sd:.4f}, {diff / sd:+.1f} sd)"


def pretty_model_name(model: str) -> str:
    """``resunet_convnext_tiny_gc_ff`` -> ``ResUnet+ConvNeXt-tiny+GC+FF`` (the paper's naming).

    Example:
        >>> pretty_model_name("resunet_convnext_tiny_gc_ff")
        'ResUnet+ConvNeXt-tiny+GC+FF'
    """
    parts = model.split("_")
    if parts[:2] != ["resunet", "convnext"]:
        return model
    name = "ResUnet+ConvNeXt-" + (parts[2] if len(parts) > 2 else "")
    for p in parts[3:]:
        name += "+" + p.upper()
    return name


# ---------------------------------------------------------------------------------------- the sections
def header_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """Title and the facts of the run: machine, versions, data, seeds, speed protocol, metrics, time."""
    cfg, data, bench, size = ctx.cfg, ctx.data, ctx.data.bench, ctx.data.bench_size
    doc.add(
        f"# steelkd experiment report: {cfg.name}",
        "",
        f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- machine: {data.machine} "
        f"(benchmark and evaluation device: {bench[0]['device'] if bench else cfg.evaluate.device}; "
        f"training accelerator setting: {cfg.train.accelerator})",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in data.versions.items()),
        f"- data: {cfg.data.kind} at `{cfg.data.root}`; classes {', '.join(data.class_names)}; "
        f"{data.n_train} training / {data.n_val} validation / {data.n_test} test images: checkpoints "
        f"chosen on validation mDice, every model scored once on test at full resolution",
        "- experiments: " + ", ".join(f"`{e.name}`" for e in cfg.experiments)
        + " (`steelkd experiment --only NAME` runs a subset of a preset; the resolved config lists them)",
        f"- seeds: students {cfg.seeds} (mean ± sample std over seeds); "
        f"teachers once with seed {cfg.seeds[0]}",
        f"- speed: batch 1 at {size[0]}x{size[1]}, median of {cfg.bench.repeats} timed runs after "
        f"{cfg.bench.warmup} warm-up runs, precision {cfg.bench.precision}, all models in one run",
        f"- mDice = mean over the {len(ctx.defect)} defect classes of the dataset-level Dice per class; "
        "Kaggle Dice = mean over image x class pairs (both empty = 1); see docs/evaluation.md",
        f"- wall time of this call: {format_seconds(ctx.seconds)}; resolved config: `experiment_config.yaml`",
        "",
    )


def summary_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """One line per experiment: the teacher's margin first, then what distillation did (and at equal
    compute: distilled − baseline and distilled − equal-compute baseline)."""
    doc.add("## Summary", "")
    for v in ctx.views:
        t = v.teacher.metrics["mdice"]
        b, a = mean_std(v.baselines, "mdice"), mean_std(v.distilled, "mdice")
        line = (
            f"- **{v.spec.name}**: teacher `{v.spec.teacher}` "
            f"({pretty_model_name(v.teacher.spec.config.model.name)}) "
            f"mDice {t:.4f}; teacher margin over baseline student: {t - b.mean:+.3f} mDice; "
            f"student `{v.spec.student}` ({pretty_model_name(v.baselines[0].spec.config.model.name)}) "
            f"{b.format()} → {a.format()} after distillation: distilled − baseline {format_difference(a, b)}"
        )
        if v.equal_compute:
            eq = mean_std(v.equal_compute, "mdice")
            line += (
                f"; baseline at equal compute ({equal_compute_epochs(v)} epochs) {eq.format()}: "
                f"distilled − equal-compute baseline {format_difference(a, eq)}"
            )
        doc.add(line)
    doc.add("")
    methods_table(doc, ctx)
    schedule_table(doc, ctx)
    unlearned = [f"- `{r.spec.label}`: {w}" for r in ctx.data.records for w in result_warnings(r.metrics)]
    if unlearned:
        doc.add(
            "",
            "**Not learned** (test split; a trivial predictor scores as well, see docs/evaluation.md): "
            "the comparisons above that involve these runs say nothing about the methods.",
            "",
            *unlearned,
        )
    doc.add("")


def equal_compute_epochs(view: ExperimentView) -> str:
    """The equal-compute baselines' epochs: one number, or one per seed (``5/3``)."""
    epochs = [r.spec.config.train.epochs for r in view.equal_compute]
    return str(epochs[0]) if len(set(epochs)) == 1 else "/".join(map(str, epochs))


def methods_table(doc: ReportDoc, ctx: ReportContext) -> None:
    """Every experiment's method in one table (``tables/methods.csv``): the distilled students against
    the baseline and the equal-compute baseline, each difference also in pooled standard deviations."""
    with_eq = any(v.equal_compute for v in ctx.views)
    rows = []
    for v in ctx.views:
        b, a = mean_std(v.baselines, "mdice"), mean_std(v.distilled, "mdice")
        row = [v.spec.name, run_method(v.distilled[0].spec.config), a, b, *pooled_difference(a, b)]
        if with_eq and v.equal_compute:
            eq = mean_std(v.equal_compute, "mdice")
            row += [eq, equal_compute_epochs(v), MeanStd.of(v.ratios), *pooled_difference(a, eq)]
        elif with_eq:
            row += [None] * 5
        rows.append(row)
    cols = ["experiment", "method", "distilled mDice", "baseline mDice", "− baseline", "− baseline (sd)"]
    if with_eq:
        cols += ["equal-compute mDice", "its epochs", "compute ratio", "− equal compute"]
        cols += ["− equal compute (sd)"]
    table = Table(
        "Methods side by side (test mDice, mean ± std over seeds; − X: distilled minus baseline X, "
        "(sd): in pooled standard deviations)",
        cols,
        rows,
        col_digits={"− baseline (sd)": 1, "− equal compute (sd)": 1, "compute ratio": 2},
    )
    doc.titled_table(table, "methods.csv")


def schedule_table(doc: ReportDoc, ctx: ReportContext) -> None:
    """The undistilled students by schedule length (``tables/schedule.csv``), when they were trained for
    more than one: baseline, timing and equal-compute runs of the same recipe, grouped by epochs. It shows
    what a longer plain schedule buys, the yardstick of any distillation gain (each schedule's warm-up and
    cosine span its own length, so a longer run is another curve, not a continuation)."""
    students = {e.student for e in ctx.cfg.experiments}
    groups: dict[tuple[str, int], list[RunRecord]] = {}
    for r in ctx.data.records:
        if r.spec.role in students and r.spec.teacher is None:
            groups.setdefault((r.spec.role, r.spec.config.train.epochs), []).append(r)
    if max(Counter(role for role, _ in groups).values(), default=0) < 2:
        return
    rows = []
    for (role, epochs), recs in sorted(groups.items()):
        kinds = Counter(_SCHEDULE_KIND[run_kind(r.spec)] for r in recs)
        used = ", ".join(f"{k} x{n}" for k, n in kinds.items())
        seeds = "/".join(str(r.spec.seed) for r in recs)
        rows.append([role, epochs, used, seeds, mean_std(recs, "mdice"), mean_std(recs, "miou_bg")])
    table = Table(
        "Undistilled students by schedule length (test mDice, mean ± std over every run of that length: "
        "baselines, timing runs and equal-compute baselines of the same recipe)",
        ["student", "epochs", "runs", "seeds", "mDice", "mIoU (incl. bg)"],
        rows,
    )
    doc.titled_table(table, "schedule.csv")


def deviations_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """Every deviation from the paper's recipe, and the recipe itself."""
    doc.add("## Deviations from the paper's recipe", "")
    doc.add(*([f"- {d}" for d in ctx.deviations] if ctx.deviations else ["- none"]))
    doc.add(
        "",
        "The paper: AdamW, lr 1e-4, 80 epochs, batch 8, random crop + h/v flip + brightness/contrast, "
        "τ = 1, CWD on the final class logits, Severstal defect images split 8:2, RTX 3090.",
        "",
    )


def runs_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """Every run with its status, wall and CPU time, epochs and metrics (``tables/runs.csv``)."""
    defect = ctx.defect
    rows = []
    for r in ctx.data.records:
        m = r.metrics
        rows.append(
            [
                r.spec.label,
                r.spec.role,
                r.spec.config.model.name,
                "/".join(r.spec.uses),
                r.spec.seed,
                r.spec.teacher.label if r.spec.teacher else "",
                r.status,
                format_seconds(r.seconds),
                format_seconds(r.cpu_seconds),
                r.hardware or "",
                r.spec.config.train.epochs,
                m.get("mdice"),
                m.get("kaggle_dice"),
                m.get("miou"),
                m.get("miou_bg"),
                *[m.get("dice", {}).get(c) for c in defect],
            ]
        )
    columns = ["run", "role", "model", "used as", "seed", "teacher", "status", "wall time", "CPU time"]
    columns += ["trained on", "epochs", "mDice"]
    columns += ["Kaggle Dice", "mIoU (defects)", "mIoU (incl. bg)", *[f"Dice {c}" for c in defect]]
    table = Table("All runs", columns, rows)
    doc.table_csv(table, "runs.csv")
    doc.add(
        "## Runs",
        "",
        table.to_markdown(),
        "",
        "Directories: `runs/<run>/` (reused when `model/model.json` exists; resumed from "
        "`checkpoints/last.ckpt` otherwise). Status `carried`: the run's folder is gone (a run folder "
        "does not outlive its machine); its seconds and metrics are the ones an earlier call recorded in "
        "`results.json`, its log and example predictions the copies kept in `logs/` and `examples/`.",
        *(
            [
                "Used as `baseline_timing`: a baseline trained again on its distilled run's hardware, only "
                "for its seconds (compute ratios compare runs timed on one kind of machine); its metrics are "
                "not in the tables."
            ]
            if any(r.spec.timed_on for r in ctx.data.records)
            else []
        ),
        *[
            f"{r.spec.label} was handed in (`models.{r.spec.role}.run`): trained before, outside this "
            f"experiment, with the same run config, in `{r.spec.dir}`."
            for r in ctx.data.records
            if r.spec.handed_in
        ],
        "",
    )


def models_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """The side-by-side benchmark of every model (``tables/models.csv``)."""
    bench, size = ctx.data.bench, ctx.data.bench_size
    roles_of: dict[str, list[str]] = {}
    for role, spec in ctx.cfg.models.items():
        roles_of.setdefault(spec.name, []).append(role)
    rows = [
        [
            b["model"],
            ", ".join(roles_of.get(b["model"], [])),
            b["params"] / 1e6,
            b["gmacs"],
            b["latency_ms"],
            b["fps"],
        ]
        for b in bench
    ]
    table = Table(
        f"Models side by side ({bench[0]['device'] if bench else ''})",
        ["model", "roles", "params (M)", "GMACs", "latency (ms, median)", "FPS"],
        rows,
        digits=2,
    )
    doc.table_csv(table, "models.csv")
    doc.add(
        "## Models side by side",
        "",
        f"One run on {bench[0]['device_name'] if bench else ''}, batch 1, {size[0]}x{size[1]}, "
        f"precision {ctx.cfg.bench.precision}.",
        "",
        table.to_markdown(),
        "",
    )


def files_section(doc: ReportDoc, ctx: ReportContext) -> None:
    """What else ``OUT/`` holds."""
    doc.add(
        "## Files",
        "",
        "- `tables/*.csv`: every table above (mean, std and n columns for seeded values)",
        "- `figures/*.png`, `bench.json`/`bench.csv`, `results.json` (all metrics), "
        "`runs/<run>/eval-*.json` (per-model evaluation)",
        "- `logs/<run>.csv` (each run's `logs/metrics.csv`), `examples/<run>.npz` (its Fig. 6 label maps): "
        "with `results.json`, what a later call needs to report a run whose folder is gone",
        "",
    )
