"""What running an experiment produced, as plain objects: the report is assembled from these alone.

:mod:`steelkd.experiment.run` trains, evaluates and benchmarks and fills an :class:`ExperimentData`
(every number and array the report needs, including the example predictions of Fig. 6); the report
(:mod:`steelkd.experiment.report`) reads it and runs no model. This module also writes the raw results
(``results.json``, ``bench.json``, ``bench.csv``).

Example:
    >>> views = experiment_views(cfg, data.records)  # doctest: +SKIP
    >>> views[0].teacher.metrics["mdice"]  # doctest: +SKIP
    0.7784
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steelkd.experiment.config import ExperimentConfig, ExperimentSpec
from steelkd.experiment.plan import RunSpec
from steelkd.io import atomic_write_text
from steelkd.tables import write_records_csv

__all__ = [
    "ExampleImage",
    "Examples",
    "ExperimentData",
    "ExperimentView",
    "RunRecord",
    "experiment_views",
    "write_bench_files",
    "write_results_json",
]


@dataclass
class RunRecord:
    """A finished run: its spec, how it was obtained, its wall time and its evaluation."""

    spec: RunSpec
    status: str
    seconds: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentView:
    """The runs of one distillation experiment: its teacher, and baseline and distilled students per seed."""

    spec: ExperimentSpec
    teacher: RunRecord
    baselines: list[RunRecord]
    distilled: list[RunRecord]


def experiment_views(cfg: ExperimentConfig, records: list[RunRecord]) -> list[ExperimentView]:
    """Group the finished runs by experiment (a run standing for several roles appears in each)."""
    by_key: dict[tuple[str, str, int, str | None], RunRecord] = {}
    for r in records:
        for alias in r.spec.aliases:
            by_key.setdefault(alias, r)
    views = []
    for e in cfg.experiments:
        teacher = by_key[(e.teacher, "plain", cfg.seeds[0], None)]
        base = [by_key[(e.student, "plain", s, None)] for s in cfg.seeds]
        dist = [by_key[(e.student, "kd", s, e.name)] for s in cfg.seeds]
        views.append(ExperimentView(e, teacher, base, dist))
    return views


@dataclass
class ExampleImage:
    """One example evaluation image of Fig. 6: the image with the most pixels of defect class ``cls``.

    Attributes:
        cls: the defect class (label value) it is the example of.
        index: its index in the evaluation data set.
        image_id: its id (file name).
        image: ``H x W x 3`` uint8 RGB.
        truth: ``H x W`` label map.
    """

    cls: int
    index: int
    image_id: str
    image: np.ndarray
    truth: np.ndarray


@dataclass
class Examples:
    """The example images of Fig. 6 and each needed run's prediction on them.

    Attributes:
        scanned: how many evaluation images were scanned to pick them.
        images: one per defect class that occurs in the scanned images, in class order.
        predictions: run label -> image index -> ``H x W`` uint8 label map.
    """

    scanned: int
    images: list[ExampleImage] = field(default_factory=list)
    predictions: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)


@dataclass
class ExperimentData:
    """Everything an experiment produced that the report is assembled from.

    Attributes:
        records: every run of the plan, finished and evaluated, in plan order.
        trained: how many runs were trained or resumed in this call.
        bench: the side-by-side benchmark rows (:func:`steelkd.bench.benchmark_models`).
        bench_size: the benchmark's input ``(height, width)``.
        class_names: the evaluation data's classes, background first.
        n_train / n_val / n_test: number of training, validation (checkpoint selection) and test (the one
            score of each run) images (base ``data`` section).
        examples: the Fig. 6 examples and predictions.
        versions: python, torch, timm, lightning and steelkd versions.
        machine: name of the benchmark device (CPU model or GPU name).
    """

    records: list[RunRecord]
    trained: int
    bench: list[dict[str, Any]]
    bench_size: tuple[int, int]
    class_names: list[str]
    n_train: int
    n_val: int
    n_test: int
    examples: Examples
    versions: dict[str, str]
    machine: str


def write_bench_files(bench: list[dict[str, Any]], out_dir: Path) -> None:
    """``OUT/bench.csv`` and ``OUT/bench.json``: the benchmark rows."""
    write_records_csv(bench, out_dir / "bench.csv")
    atomic_write_text(out_dir / "bench.json", json.dumps(bench, indent=2) + "\n")


def write_results_json(
    path: Path, cfg: ExperimentConfig, data: ExperimentData, deviations: list[str]
) -> Path:
    """``results.json``: name, versions, seeds, deviations, the benchmark and every run with its metrics."""
    results = {
        "name": cfg.name,
        "versions": data.versions,
        "seeds": cfg.seeds,
        "deviations": deviations,
        "bench": data.bench,
        "runs": [
            {
                "run": r.spec.label,
                "role": r.spec.role,
                "model": r.spec.config.model.name,
                "uses": r.spec.uses,
                "seed": r.spec.seed,
                "teacher": r.spec.teacher.label if r.spec.teacher else None,
                "status": r.status,
                "seconds": r.seconds,
                "metrics": r.metrics,
            }
            for r in data.records
        ],
    }
    atomic_write_text(path, json.dumps(results, indent=2, default=str) + "\n")
    return path
