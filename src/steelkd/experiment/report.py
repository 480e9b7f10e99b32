"""``OUT/report.md``, ``OUT/tables/*.csv`` and ``OUT/figures/*.png``, assembled from the results handed in.

The report runs no model: :mod:`steelkd.experiment.run` computes every number and prediction, and
:func:`write_report` lays them out, one function per section (see
:mod:`steelkd.experiment.report_sections` and :mod:`steelkd.experiment.report_experiments`):
header, summary, deviations from the paper, runs, models side by side, one section per experiment
(the paper's tables, Figs. 4 and 5), the example predictions (Fig. 6) and the list of files.

Example:
    >>> tables, figures = write_report(cfg, data, paper_deviations(cfg), Path("out"), 12.0)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from steelkd.experiment.config import ExperimentConfig
from steelkd.experiment.report_experiments import experiment_section, predictions_section
from steelkd.experiment.report_sections import (
    ReportContext,
    ReportDoc,
    deviations_section,
    files_section,
    header_section,
    models_section,
    runs_section,
    summary_section,
)
from steelkd.experiment.results import ExperimentData
from steelkd.io import atomic_write_text

__all__ = ["write_report"]


def write_report(
    cfg: ExperimentConfig, data: ExperimentData, deviations: list[str], out_dir: Path, seconds: float
) -> tuple[list[Path], list[Path]]:
    """Write ``out_dir/report.md`` with its tables and figures; returns (tables, figures) written.

    Args:
        cfg: the experiment config.
        data: the results (:func:`steelkd.experiment.run.run_plan`).
        deviations: the deviations from the paper's recipe
            (:func:`steelkd.experiment.deviations.paper_deviations`).
        out_dir: the experiment's output directory.
        seconds: wall time of the call so far (stated in the header).
    """
    ctx = ReportContext(cfg, data, deviations, seconds)
    doc = ReportDoc(Path(out_dir))
    header_section(doc, ctx)
    summary_section(doc, ctx)
    deviations_section(doc, ctx)
    runs_section(doc, ctx)
    models_section(doc, ctx)
    for k, view in enumerate(ctx.views):
        experiment_section(doc, ctx, k, view)
    predictions_section(doc, ctx)
    files_section(doc, ctx)
    atomic_write_text(doc.out_dir / "report.md", "\n".join(doc.lines))
    return doc.tables, doc.figures
