"""What running an experiment produced, as plain objects: the report is assembled from these alone.

:mod:`steelkd.experiment.run` trains, evaluates and benchmarks and fills an :class:`ExperimentData`
(every number and array the report needs, including the example predictions of Fig. 6); the report
(:mod:`steelkd.experiment.report`) reads it and runs no model. This module also writes the raw results
(``results.json``, ``bench.json``, ``bench.csv``) and names what the output folder keeps of each run, so
that a run whose folder is gone can still be reported (``status`` ``carried``): its training log
(:func:`kept_log`) and its predictions on the Fig. 6 examples (:func:`kept_examples`).

Example:
    >>> views = experiment_views(cfg, data.records)  # doctest: +SKIP
    >>> views[0].teacher.metrics["mdice"]  # doctest: +SKIP
    0.7784
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steelkd.config import Config
from steelkd.experiment.config import ExperimentConfig, ExperimentSpec
from steelkd.experiment.plan import RunSpec, entry_hash
from steelkd.io import atomic_write_text
from steelkd.tables import write_records_csv

__all__ = [
    "ExampleImage",
    "Examples",
    "ExperimentData",
    "ExperimentView",
    "RunRecord",
    "experiment_views",
    "kept_examples",
    "kept_log",
    "record_run",
    "run_experiments",
    "run_kind",
    "run_method",
    "write_bench_files",
    "write_results_json",
]


@dataclass
class RunRecord:
    """A finished run: its spec, how it was obtained, its wall and CPU seconds and its evaluation.

    Attributes:
        spec: the run.
        status: ``trained``, ``resumed``, ``reused`` or ``carried`` (its folder is gone: seconds, metrics
            and ``teacher_mdice`` are the ones an earlier call recorded in ``results.json``).
        seconds: wall seconds of its training (None: a reused run without ``steelkd_run.json``).
        metrics: its test-split evaluation.
        cpu_seconds: user + system CPU seconds of the training process and its children (None: not
            recorded, a run from before they were).
        device: ``cpu`` or ``cuda``: where it trained (None: not recorded).
        hardware: what it trained on (:func:`steelkd.runtime.device_name`: the CPU model with its cores and
            threads, or the GPU); seconds compare only on the same (None: not recorded).
        teacher_mdice: a distilled run's teacher's test mDice as that teacher was when the student learnt
            from it (a carried teacher trained again may score otherwise); None for other runs.
    """

    spec: RunSpec
    status: str
    seconds: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float | None = None
    device: str | None = None
    teacher_mdice: float | None = None
    hardware: str | None = None


def kept_log(out_dir: Path, label: str) -> Path:
    """``OUT/logs/<run>.csv``: the copy of a run's ``logs/metrics.csv`` the output folder keeps."""
    return Path(out_dir) / "logs" / f"{label}.csv"


def kept_examples(out_dir: Path, label: str) -> Path:
    """``OUT/examples/<run>.npz``: a run's label maps of the Fig. 6 examples (key: the image index)."""
    return Path(out_dir) / "examples" / f"{label}.npz"


@dataclass
class ExperimentView:
    """The runs of one distillation experiment: its teacher, and baseline and distilled students per seed.

    ``equal_compute`` holds the equal-compute baselines per seed (empty unless the experiment asks for
    them), ``ratios`` the compute ratio (distilled / baseline) each was trained for.
    """

    spec: ExperimentSpec
    teacher: RunRecord
    baselines: list[RunRecord]
    distilled: list[RunRecord]
    equal_compute: list[RunRecord] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


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
        view = ExperimentView(e, teacher, base, dist)
        if e.equal_compute:
            view.equal_compute = [by_key[(e.student, "equal", s, e.name)] for s in cfg.seeds]
            view.ratios = [_ratio(r, e.name, s) for r, s in zip(view.equal_compute, cfg.seeds, strict=True)]
        views.append(view)
    return views


def _ratio(rec: RunRecord, experiment: str, seed: int) -> float:
    return next(q.ratio for q in rec.spec.equal_compute if (q.experiment, q.seed) == (experiment, seed))


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
    """``results.json``: name, versions, seeds, deviations, the benchmark and every run with its metrics.

    Each run: ``run`` (its label), ``hash``, ``role`` (``teacher`` when used as one, else ``student``),
    ``kind`` (``baseline``, ``baseline_equal_compute``, ``baseline_timing`` or ``distilled``; a teacher is
    a baseline),
    ``method`` (distilled runs, see :func:`run_method`), ``experiments`` (the names it stands for),
    ``seed``, ``epochs``, ``wall_seconds``, ``cpu_seconds``, ``hardware``, the test metrics flat (``mdice``,
    ``miou_bg``, ``dice`` per class) and nested (``metrics``), for a distilled run its teacher's test
    mDice then (``teacher_mdice``), and for an equal-compute baseline what it equals
    (``equal_compute``). A later call into the same folder carries the runs listed here whose folders
    are gone (:func:`steelkd.experiment.plan.carried_runs`). A run trained again (a carried teacher a new
    run needs) that scores otherwise keeps its earlier entries under ``earlier`` (oldest first): the
    students of an earlier stage learnt from those.
    """
    before = _entries(path)
    runs = [_run_entry(cfg, r) for r in data.records]
    for entry in runs:
        _keep_earlier(entry, before.get(entry["hash"]))
    results = {
        "name": cfg.name,
        "versions": data.versions,
        "seeds": cfg.seeds,
        "deviations": deviations,
        "bench": data.bench,
        "runs": runs,
    }
    atomic_write_text(path, json.dumps(results, indent=2, default=str) + "\n")
    return path


def record_run(path: Path, cfg: ExperimentConfig, rec: RunRecord) -> None:
    """Add ``rec``'s entry to ``results.json`` at ``path`` (replacing one of the same hash), keeping the
    rest: written as each run finishes, so a call cut short leaves its finished runs for the next call to
    carry; the call's final :func:`write_results_json` replaces the whole file."""
    data = json.loads(path.read_text()) if path.is_file() else {"name": cfg.name, "runs": []}
    runs = [r for r in data.get("runs", []) if entry_hash(r) != rec.spec.hash]
    entry = _run_entry(cfg, rec)
    _keep_earlier(entry, next((r for r in data.get("runs", []) if entry_hash(r) == rec.spec.hash), None))
    data["runs"] = [*runs, entry]
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    """The run entries of an existing ``results.json`` by hash (none: empty)."""
    return {entry_hash(r): r for r in json.loads(path.read_text()).get("runs", [])} if path.is_file() else {}


def _keep_earlier(entry: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Carry ``old``'s ``earlier`` entries into ``entry``, and ``old`` itself when it scored otherwise."""
    if old is None:
        return
    earlier = list(old.get("earlier") or [])
    if old.get("metrics") and old.get("mdice") != entry.get("mdice"):
        earlier.append({k: v for k, v in old.items() if k != "earlier"})
    if earlier:
        entry["earlier"] = earlier


def _run_entry(cfg: ExperimentConfig, r: RunRecord) -> dict[str, Any]:
    spec, m = r.spec, r.metrics
    return {
        "run": spec.label,
        "hash": spec.hash,
        "role": "teacher" if "teacher" in spec.uses else "student",
        "kind": run_kind(spec),
        "method": run_method(spec.config),
        "experiments": run_experiments(cfg, spec),
        "model_role": spec.role,
        "model": spec.config.model.name,
        "uses": spec.uses,
        "seed": spec.seed,
        "epochs": spec.config.train.epochs,
        "teacher": spec.teacher.label if spec.teacher else None,
        "teacher_mdice": r.teacher_mdice,
        "status": r.status,
        "seconds": r.seconds,
        "wall_seconds": r.seconds,
        "cpu_seconds": r.cpu_seconds,
        "device": r.device,
        "hardware": r.hardware,
        "mdice": m.get("mdice"),
        "miou_bg": m.get("miou_bg"),
        "dice": m.get("dice", {}),
        "equal_compute": [asdict(q) for q in spec.equal_compute] or None,
        "metrics": m,
    }


def run_kind(spec: RunSpec) -> str:
    """``distilled``, ``baseline`` (teachers too), ``baseline_equal_compute`` (only that) or
    ``baseline_timing`` (a baseline trained again on other hardware for its seconds: ``timed_on``)."""
    if spec.teacher is not None:
        return "distilled"
    if spec.timed_on:
        return "baseline_timing"
    return "baseline_equal_compute" if spec.uses == ["baseline_equal_compute"] else "baseline"


def run_method(run_cfg: Config) -> str | None:
    """A distilled run's method: ``distill.method``, ``:<where>`` unless logits, ``+cache`` with the cache.

    Example:
        >>> from steelkd.config import Config, DistillConfig
        >>> run_method(Config(distill=DistillConfig(method="cwd", logit_cache="auto")))
        'cwd+cache'
        >>> run_method(Config(distill=DistillConfig(where="features"))), run_method(Config())
        ('cwd:features', None)
    """
    d = run_cfg.distill
    if d is None:
        return None
    return d.method + ("" if d.where == "logits" else f":{d.where}") + ("+cache" if d.logit_cache else "")


def run_experiments(cfg: ExperimentConfig, spec: RunSpec) -> list[str]:
    """The experiments a run stands for (as teacher, baseline, distilled or equal-compute baseline)."""
    names: list[str] = []
    for role, kind, seed, exp in spec.aliases:
        for e in cfg.experiments:
            as_teacher = e.teacher == role and seed == cfg.seeds[0]
            plain = kind == "plain" and (e.student == role or as_teacher)
            if (plain or e.name == exp) and e.name not in names:
                names.append(e.name)
    return [e.name for e in cfg.experiments if e.name in names]
