"""The whole experiment in one call: plan, run, write the raw results and the report.

The end of the chain config -> plan -> run -> report: nothing else in the package imports this module.

Example:
    >>> from steelkd.experiment import load_experiment_config, run_experiment
    >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
    >>> run_experiment(cfg, "demo_out").report  # doctest: +SKIP
    PosixPath('demo_out/report.md')
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steelkd.experiment.config import ExperimentConfig
from steelkd.experiment.deviations import paper_deviations
from steelkd.experiment.plan import RESULTS_JSON, plan_experiment
from steelkd.experiment.report import write_report
from steelkd.experiment.results import RunRecord, write_bench_files, write_results_json
from steelkd.experiment.run import FitFn, run_plan
from steelkd.io import atomic_write_text

__all__ = ["ExperimentResult", "run_experiment"]

log = logging.getLogger("steelkd.experiment")


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` produced."""

    out_dir: Path
    report: Path
    runs: list[RunRecord]
    bench: list[dict[str, Any]]
    tables: list[Path]
    figures: list[Path]
    trained: int


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    fit: FitFn | None = None,
    progress: bool = False,
) -> ExperimentResult:
    """Train (or reuse), evaluate and benchmark every model of ``cfg``, and write ``OUT/report.md``.

    Args:
        cfg: the experiment config.
        out_dir: output directory: ``runs/``, ``tables/``, ``figures/``, ``bench.json``/``bench.csv``,
            ``results.json``, ``logs/`` and ``examples/`` (what is kept of each run) and ``report.md``. Runs
            an earlier call recorded in its ``results.json`` whose folders are gone are carried.
        fit: the training function (default :func:`steelkd.engine.fit`); called as
            ``fit(config, progress=..., resume=...)``.
        progress: show Lightning's progress bar during training.

    Returns:
        An :class:`ExperimentResult`; ``trained`` counts the runs trained or resumed in this call.

    Example:
        >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
        >>> res = run_experiment(cfg, "demo_out")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    atomic_write_text(out / "experiment_config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    plan = plan_experiment(cfg, out)
    counts = {s: sum(1 for p in plan if p.status == s) for s in ("reuse", "resume", "train", "carried")}
    log.info(
        "experiment %s: %d runs (%d to train, %d to resume, %d to reuse, %d carried) in %s",
        cfg.name,
        len(plan),
        counts["train"],
        counts["resume"],
        counts["reuse"],
        counts["carried"],
        out,
    )
    n_equal = len(cfg.seeds) * sum(e.equal_compute for e in cfg.experiments)
    if n_equal:
        log.info(
            "and %d equal-compute baselines, planned once their runs are trained (after timing runs of "
            "baselines carried from other hardware than their distilled runs', if any)",
            n_equal,
        )
    data = run_plan(cfg, plan, fit=fit, progress=progress, out_dir=out)
    write_bench_files(data.bench, out)
    deviations = paper_deviations(cfg, data.n_train + data.n_val, data.n_test)
    write_results_json(out / RESULTS_JSON, cfg, data, deviations)
    tables, figures = write_report(cfg, data, deviations, out, time.perf_counter() - t_start)
    log.info("report written to %s (%.1f s)", out / "report.md", time.perf_counter() - t_start)
    return ExperimentResult(out, out / "report.md", data.records, data.bench, tables, figures, data.trained)
