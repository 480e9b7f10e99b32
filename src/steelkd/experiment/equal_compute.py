"""Equal-compute baselines: a baseline student trained for as long as its distilled run cost.

Once an experiment's baseline and distilled runs are trained, :func:`plan_equal_compute` adds, per seed, a
baseline student with ``train.epochs = max(E, round(E * ratio))``, ``ratio`` the distilled run's recorded
compute over the baseline's (:func:`compute_ratio`: CPU seconds of the process tree on the CPU, wall seconds
on a GPU), hashed like any run (:mod:`steelkd.experiment.plan`). Seconds compare only on one kind of
machine: where a carried baseline was timed on other hardware than its distilled run (a stage run in
another session), :func:`plan_timing_runs` first trains the baseline again on the distilled run's hardware
(a *timing run*), and the ratio is taken against that.

Example:
    >>> equal_compute_epochs(8, 1.3)
    10
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from steelkd.experiment.config import ExperimentConfig, ExperimentSpec
from steelkd.experiment.plan import EqualCompute, Planner, RunSpec

__all__ = [
    "FinishedRun",
    "compute_ratio",
    "equal_compute_epochs",
    "plan_equal_compute",
    "plan_timing_runs",
]

log = logging.getLogger("steelkd.experiment")


class FinishedRun(Protocol):
    """What :func:`plan_equal_compute` reads of a finished run (``steelkd.experiment.results.RunRecord``)."""

    spec: RunSpec
    seconds: float | None
    cpu_seconds: float | None
    device: str | None
    hardware: str | None


def compute_ratio(base: FinishedRun, dist: FinishedRun) -> tuple[float, str]:
    """Compute of ``dist`` / compute of ``base``, and the measure used (``cpu`` or ``wall``).

    CPU seconds (user + system of the training process and its children) when both runs trained on the
    CPU and both recorded them; wall seconds otherwise (a GPU run, or a reused run from before CPU seconds
    were recorded: logged). Both runs must have been timed on the same hardware (``hardware``: the CPU
    model with its cores and threads, or the GPU).

    Raises:
        ValueError: a run has no recorded seconds (no ``steelkd_run.json``), or the two were timed on
            different (or unrecorded) hardware.
    """
    if not base.hardware or base.hardware != dist.hardware:
        raise ValueError(
            f"{dist.spec.label} was timed on {dist.hardware or 'unrecorded hardware'}, its baseline "
            f"{base.spec.label} on {base.hardware or 'unrecorded hardware'}: their seconds do not compare"
        )
    on_cpu = base.device == "cpu" and dist.device == "cpu"
    if on_cpu and base.cpu_seconds and dist.cpu_seconds:
        return dist.cpu_seconds / base.cpu_seconds, "cpu"
    if on_cpu:
        missing = [r.spec.label for r in (base, dist) if not r.cpu_seconds]
        log.info(
            "equal compute: no CPU seconds recorded for %s: wall seconds of both runs used",
            ", ".join(missing),
        )
    for r in (base, dist):
        if not r.seconds:
            raise ValueError(f"{r.spec.dir}: no recorded seconds (steelkd_run.json): equal compute unknown")
    assert base.seconds and dist.seconds
    return dist.seconds / base.seconds, "wall"


def equal_compute_epochs(epochs: int, ratio: float) -> int:
    """``max(E, round(E * ratio))``: a baseline's epochs at ``ratio`` times its compute.

    Example:
        >>> equal_compute_epochs(8, 2.3), equal_compute_epochs(8, 0.9)
        (18, 8)
    """
    return max(int(epochs), round(int(epochs) * float(ratio)))


def plan_equal_compute(
    cfg: ExperimentConfig, records: Sequence[FinishedRun], out_dir: str | Path
) -> list[RunSpec]:
    """The equal-compute baselines of the experiments with ``equal_compute``, given the finished runs.

    For each such experiment and seed: the baseline's config with ``train.epochs = max(E, round(E *
    ratio))``, ratio = :func:`compute_ratio` of that seed's distilled and baseline runs. Returns the runs
    still to be trained or reused (one per hash; a run equal to one in ``records``, e.g. the baseline
    itself when the ratio rounds to 1, is not returned again but gets the use and the alias).
    """
    timings = {(r.spec.role, r.spec.seed, r.spec.timed_on): r for r in records if r.spec.timed_on}
    planner = Planner(cfg, out_dir, (r.spec for r in records))
    for e, s, base, dist in _equal_compute_pairs(cfg, records):
        if base.hardware != dist.hardware:
            base = timings.get((e.student, s, dist.hardware or ""), base)
        _add_equal_compute(planner, e, s, base, dist)
    return planner.new


def _equal_compute_pairs(
    cfg: ExperimentConfig, records: Sequence[FinishedRun]
) -> list[tuple[ExperimentSpec, int, FinishedRun, FinishedRun]]:
    """(experiment, seed, baseline, distilled run) of every experiment with ``equal_compute``, per seed."""
    by_alias = {a: r for r in records for a in r.spec.aliases}
    return [
        (e, s, by_alias[(e.student, "plain", s, None)], by_alias[(e.student, "kd", s, e.name)])
        for e in cfg.experiments
        if e.equal_compute
        for s in cfg.seeds
    ]


def plan_timing_runs(
    cfg: ExperimentConfig, records: Sequence[FinishedRun], out_dir: str | Path, here: str
) -> list[RunSpec]:
    """The timing runs the equal-compute baselines need before :func:`plan_equal_compute`.

    A seed's baseline and distilled run timed on different hardware (the baseline carried from a stage
    run on another machine) compare only through the baseline trained again on the distilled run's
    hardware: a timing run (key ``<student>-timing``, use ``baseline_timing``, hash salted with the
    hardware, carried like any run once recorded). Its seconds stand for the baseline's in the ratio; the
    baseline's own metrics stay the ones reported. ``here``: this machine's hardware, where a timing run
    still to train would train.

    Raises:
        ValueError: a timing run is needed for other hardware than ``here`` and none is recorded (one line:
            run the stage again on that hardware).
    """
    planner = Planner(cfg, out_dir, (r.spec for r in records))
    for e, s, base, dist in _equal_compute_pairs(cfg, records):
        if base.hardware == dist.hardware or not dist.hardware:
            continue
        spec = planner.add(
            f"{e.student}-timing", e.student, "baseline_timing", s, kind="timing", timed_on=dist.hardware
        )
        if spec.status == "train" and dist.hardware != here:
            raise ValueError(
                f"{dist.spec.label} was timed on {dist.hardware}, its baseline {base.spec.label} on "
                f"{base.hardware or 'unrecorded hardware'}: its equal-compute baseline needs the "
                f"baseline timed on {dist.hardware}, and this machine is {here}: run this stage there"
            )
    return planner.new


def _add_equal_compute(
    planner: Planner, e: ExperimentSpec, seed: int, base: FinishedRun, dist: FinishedRun
) -> RunSpec:
    ratio, measure = compute_ratio(base, dist)
    e0 = base.spec.config.train.epochs
    epochs = equal_compute_epochs(e0, ratio)
    key = f"{e.student}-eq-{e.name}"
    spec = planner.add(key, e.student, "baseline_equal_compute", seed, exp=e, kind="equal", epochs=epochs)
    spec.equal_compute.append(EqualCompute(e.name, seed, dist.spec.label, ratio, measure, e0))
    log.info(
        "equal compute %s seed %d: ratio %.3f (%s seconds): %d epochs instead of %d",
        *(e.name, seed, ratio, measure, epochs, e0),
    )
    return spec
