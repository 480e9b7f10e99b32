"""Running an experiment's plan: train (or reuse, or resume) every run, evaluate, benchmark, predict examples.

Everything that needs a model happens here, and :func:`run_plan` hands the outcome back as a plain
:class:`~steelkd.experiment.results.ExperimentData` (metrics, benchmark rows, the Fig. 6 examples with
each needed run's prediction), from which the report is assembled without running any model. The output
folder keeps what the report needs of each run beyond ``results.json`` (its log, its example predictions),
so a run carried from an earlier call (its folder gone, ``status`` ``carried``) is reported like the others:
its speed is measured on an untrained model of its architecture (speed does not depend on the weights).

Example:
    >>> from steelkd.experiment.plan import plan_experiment
    >>> data = run_plan(cfg, plan_experiment(cfg, "demo_out"))  # doctest: +SKIP
    >>> data.records[0].metrics["mdice"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelkd.config import parse_size
from steelkd.data import equal_size_batches
from steelkd.evaluate import evaluate_model, predict_logits, save_metrics_json
from steelkd.experiment.config import ExperimentConfig
from steelkd.experiment.equal_compute import plan_equal_compute, plan_timing_runs
from steelkd.experiment.plan import RESULTS_JSON, RunSpec
from steelkd.experiment.results import (
    ExampleImage,
    Examples,
    ExperimentData,
    RunRecord,
    experiment_views,
    kept_examples,
    kept_log,
    record_run,
)
from steelkd.io import atomic_path, atomic_write_text
from steelkd.tables import format_seconds

__all__ = ["RUN_INFO", "FitFn", "run_plan", "train_runs", "versions"]

log = logging.getLogger("steelkd.experiment")

FitFn = Callable[..., Any]

#: Written into each run directory once the run is trained: role, seed, hash, epochs, wall and CPU seconds,
#: the device; an equal-compute baseline also what it equals (``equal_compute_of``, ``compute_ratio``).
RUN_INFO = "steelkd_run.json"


def run_plan(
    cfg: ExperimentConfig,
    plan: list[RunSpec],
    *,
    fit: FitFn | None = None,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> ExperimentData:
    """Train (or reuse) every run of ``plan``, evaluate each, benchmark the models, predict the examples.

    After the plan's runs, the equal-compute baselines of the experiments that ask for them are planned
    from those runs' recorded seconds (:func:`~steelkd.experiment.equal_compute.plan_equal_compute`) and
    trained, after the timing runs of baselines timed on other hardware than their distilled runs
    (:func:`~steelkd.experiment.equal_compute.plan_timing_runs`).

    Args:
        cfg: the experiment config.
        plan: the runs (:func:`steelkd.experiment.plan.plan_experiment`).
        fit: the training function (default :func:`steelkd.engine.fit`); called as
            ``fit(config, progress=..., resume=...)``.
        progress: show Lightning's progress bar during training.
        out_dir: the experiment's output directory (default: the one holding the plan's ``runs/``).
    """
    from steelkd.data import build_datasets
    from steelkd.runtime import device_name

    fit = fit or _default_fit()
    root = Path(out_dir) if out_dir is not None else plan[0].dir.parent.parent
    splits = build_datasets(cfg.data)
    test_ds = splits.test
    cache = _ModelCache()
    score = _Scorer(cfg, root, test_ds, cache)
    records, trained = train_runs(plan, fit, progress, on_done=score)
    if any(e.equal_compute for e in cfg.experiments):
        timing_plan = plan_timing_runs(cfg, records, root, here=device_name(_train_device(plan[0])))
        timing, n_timing = train_runs(timing_plan, fit, progress, on_done=score)
        records, trained = records + timing, trained + n_timing
        more, n_more = train_runs(plan_equal_compute(cfg, records, root), fit, progress, on_done=score)
        records, trained = records + more, trained + n_more
    if cfg.bench.size:
        size = parse_size(cfg.bench.size)
    else:
        img, _ = test_ds[0]
        size = (int(img.shape[-2]), int(img.shape[-1]))
    bench = _bench_runs(cfg, records, size, cache)
    examples = _examples(cfg, records, score)
    return ExperimentData(
        records=records,
        trained=trained,
        bench=bench,
        bench_size=size,
        class_names=list(test_ds.class_names),
        n_train=len(splits.train),
        n_val=len(splits.val) if splits.val is not splits.test else 0,
        n_test=len(test_ds),
        examples=examples,
        versions=versions(),
        machine=device_name(bench[0]["device"]) if bench else device_name("cpu"),
    )


def versions() -> dict[str, str]:
    """Versions of python, torch, timm, lightning and steelkd."""
    import lightning
    import timm

    import steelkd

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "steelkd": steelkd.__version__,
    }


def _default_fit() -> FitFn:
    from steelkd.engine import fit

    return fit


# ---------------------------------------------------------------------------------------------- training
def train_runs(
    plan: list[RunSpec], fit: FitFn, progress: bool, on_done: Callable[[RunRecord], None] | None = None
) -> tuple[list[RunRecord], int]:
    """Train, resume, reuse or carry each run in order; returns the records and how many were trained or
    resumed. ``on_done`` is called with each record as soon as it is obtained (the experiment scores and
    records it then, so that a call cut short leaves its finished runs behind)."""
    records: list[RunRecord] = []
    done = on_done or (lambda rec: None)
    trained = 0
    n = len(plan)
    for i, spec in enumerate(plan, 1):
        what = (
            f"{spec.label} ({spec.config.model.name}, {'/'.join(spec.uses)}, seed {spec.seed}"
            + (f", teacher {spec.teacher.label}" if spec.teacher else "")
            + (f", {spec.config.train.epochs} epochs" if spec.equal_compute else "")
            + ")"
        )
        if (spec.model_dir / "model.json").is_file():
            log.info("[%d/%d] reuse %s", i, n, what)
            records.append(_reused_record(spec))
            done(records[-1])
            continue
        if spec.status == "carried" and spec.carried is not None:
            log.info("[%d/%d] carry %s from results.json (its folder is gone)", i, n, what)
            records.append(_carried_record(spec, spec.carried))
            done(records[-1])
            continue
        if spec.teacher is not None and not (spec.teacher.model_dir / "model.json").is_file():
            raise FileNotFoundError(f"{spec.teacher.model_dir}: teacher model missing for {spec.label}")
        resume = spec.dir / "checkpoints" / "last.ckpt"
        resume_arg = str(resume) if resume.is_file() else None
        log.info("[%d/%d] %s %s", i, n, "resume" if resume_arg else "train", what)
        rec = _train_one(spec, fit, progress, resume_arg)
        log.info("[%d/%d] done %s in %s", i, n, spec.label, format_seconds(rec.seconds))
        records.append(rec)
        done(rec)
        trained += 1
    return records, trained


def _reused_record(spec: RunSpec) -> RunRecord:
    """A reused run's record: seconds, CPU seconds and device from its ``steelkd_run.json``; a run trained
    outside an experiment (a handed-in teacher) has none: its wall seconds from ``logs/metrics.csv``."""
    info_path = spec.dir / RUN_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else _logged_info(spec)
    return RunRecord(
        spec,
        "reused",
        info.get("seconds"),
        cpu_seconds=info.get("cpu_seconds"),
        device=info.get("device"),
        hardware=info.get("hardware"),
    )


def _carried_record(spec: RunSpec, entry: dict[str, Any]) -> RunRecord:
    """A carried run's record: what an earlier call wrote of it in ``results.json``."""
    return RunRecord(
        spec,
        "carried",
        entry.get("wall_seconds", entry.get("seconds")),
        metrics=dict(entry.get("metrics") or {}),
        cpu_seconds=entry.get("cpu_seconds"),
        device=entry.get("device"),
        teacher_mdice=entry.get("teacher_mdice"),
        hardware=entry.get("hardware"),
    )


def _logged_info(spec: RunSpec) -> dict[str, Any]:
    """Wall seconds (``time/elapsed_s`` at the last validation in ``logs/metrics.csv``) and device."""
    from steelkd.figures import read_val_curve

    try:
        elapsed = read_val_curve(spec.dir / "logs" / "metrics.csv")["elapsed_s"].dropna()
    except (FileNotFoundError, ValueError):  # no log, or no validation logged
        return {}
    return {"seconds": float(elapsed.iloc[-1]), "device": _train_device(spec)} if len(elapsed) else {}


def _train_one(spec: RunSpec, fit: FitFn, progress: bool, resume_arg: str | None) -> RunRecord:
    """Run ``fit`` on the spec's config; record its wall and CPU seconds (the whole run's, a resumed one's
    every part: :class:`steelkd.engine.TrainResult`) in ``steelkd_run.json``."""
    spec.dir.mkdir(parents=True, exist_ok=True)
    device = _train_device(spec)
    result = fit(copy.deepcopy(spec.config), progress=progress, resume=resume_arg)
    gc.collect()  # frees the finished run (its model, loaders and their workers) before the next one
    if not (spec.model_dir / "model.json").is_file():
        raise FileNotFoundError(f"{spec.model_dir}: training finished but wrote no model")
    status = "resumed" if resume_arg else "trained"
    from steelkd.runtime import device_name

    rec = RunRecord(spec, status, float(result.seconds), cpu_seconds=result.cpu_seconds, device=device)
    rec.hardware = device_name(device)
    _write_run_info(rec)
    return rec


def _train_device(spec: RunSpec) -> str:
    """Where the run trains (``cpu`` or ``cuda``): :func:`steelkd.engine.train.train_device`."""
    from steelkd.engine.train import train_device

    return train_device(spec.config).type


def _write_run_info(rec: RunRecord) -> None:
    spec = rec.spec
    info: dict[str, Any] = {
        "key": spec.key,
        "role": spec.role,
        "uses": spec.uses,
        "seed": spec.seed,
        "hash": spec.hash,
        "model": spec.config.model.name,
        "teacher": spec.teacher.label if spec.teacher else None,
        "epochs": spec.config.train.epochs,
        "seconds": rec.seconds,
        "cpu_seconds": rec.cpu_seconds,
        "device": rec.device,
        "hardware": rec.hardware,
        "status": rec.status,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if spec.equal_compute:
        q = spec.equal_compute[0]
        info.update(
            equal_compute_of=q.of, compute_ratio=q.ratio, compute_measure=q.measure, base_epochs=q.base_epochs
        )
    atomic_write_text(spec.dir / RUN_INFO, json.dumps(info, indent=2) + "\n")


# ------------------------------------------------------------------------------- evaluation and benchmark
class _Scorer:
    """What is done with each run as soon as it is finished: scored on the test split, its log and its
    Fig. 6 predictions kept in the output folder, its entry written into ``results.json``
    (:func:`record_run`), so a later call can carry it even if this one is cut short. A carried run is only
    remembered (a distilled run's teacher is looked up among the runs seen)."""

    def __init__(self, cfg: ExperimentConfig, out_dir: Path, test_ds: Any, cache: _ModelCache) -> None:
        self.cfg, self.out_dir, self.test_ds, self.cache = cfg, out_dir, test_ds, cache
        self.picked = _pick_examples(test_ds, cfg.evaluate.overlay_scan)
        self.seen: dict[str, RunRecord] = {}

    def __call__(self, rec: RunRecord) -> None:
        self.seen[rec.spec.hash] = rec
        if rec.status == "carried":
            return
        _evaluate_runs(self.cfg, [rec], self.test_ds, self.cache)
        teacher = self.seen.get(rec.spec.teacher.hash) if rec.spec.teacher else None
        rec.teacher_mdice = teacher.metrics.get("mdice") if teacher else None
        src = rec.spec.dir / "logs" / "metrics.csv"
        if src.is_file():
            atomic_write_text(kept_log(self.out_dir, rec.spec.label), src.read_text())
        if self.picked:
            idxs = sorted(set(self.picked.values()))
            preds = _example_predictions(self.cfg, [rec], self.test_ds, idxs, self.cache)
            _save_examples(kept_examples(self.out_dir, rec.spec.label), preds[rec.spec.label])
        record_run(self.out_dir / RESULTS_JSON, self.cfg, rec)


class _ModelCache:
    """Trained models loaded once per experiment call (kept on the CPU between uses)."""

    def __init__(self) -> None:
        self.models: dict[str, torch.nn.Module] = {}

    def get(self, rec: RunRecord) -> torch.nn.Module:
        """The run's trained model; a carried run's architecture with random weights (for speed only)."""
        from steelkd.models import create_model, load_model

        if rec.spec.label not in self.models:
            if rec.status == "carried":
                c = rec.spec.config
                model = create_model(c.model.name, num_classes=c.data.num_classes, **c.model.kwargs)
            else:
                model = load_model(rec.spec.model_dir)[0]
            self.models[rec.spec.label] = model.eval()
        return self.models[rec.spec.label]

    def release(self) -> None:
        for m in self.models.values():
            m.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _eval_key(cfg: ExperimentConfig) -> str:
    d = {"data": asdict(cfg.data), "precision": cfg.evaluate.precision}
    d["data"].pop("num_workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _evaluate_runs(cfg: ExperimentConfig, records: list[RunRecord], val_ds: Any, cache: _ModelCache) -> None:
    key = _eval_key(cfg)
    for i, rec in enumerate(records, 1):
        path = rec.spec.dir / f"eval-{key}.json"
        if rec.status == "carried":  # its metrics are the recorded ones
            continue
        if path.is_file():
            rec.metrics = json.loads(path.read_text())
            continue
        log.info("[eval %d/%d] %s on %d images", i, len(records), rec.spec.label, len(val_ds))
        model = cache.get(rec)
        rec.metrics = evaluate_model(
            model,
            val_ds,
            batch_size=cfg.evaluate.batch_size,
            device=cfg.evaluate.device,
            precision=cfg.evaluate.precision,
            num_workers=cfg.evaluate.num_workers,
        )
        save_metrics_json(rec.metrics, path)
        cache.release()
        log.info(
            "[eval %d/%d] %s mDice %.4f (%.1f s)",
            i,
            len(records),
            rec.spec.label,
            rec.metrics["mdice"],
            rec.metrics["seconds"],
        )


def _bench_runs(
    cfg: ExperimentConfig, records: list[RunRecord], size: tuple[int, int], cache: _ModelCache
) -> list[dict[str, Any]]:
    from steelkd.bench import benchmark_models

    first: dict[str, RunRecord] = {}
    for rec in records:  # one model per architecture: speed does not depend on the weights
        name = rec.spec.config.model.name
        if name not in first or _rank(rec, cache) < _rank(first[name], cache):
            first[name] = rec
    models = {name: cache.get(rec) for name, rec in first.items()}
    log.info("[bench] %d models at %dx%d, %d repeats", len(models), size[0], size[1], cfg.bench.repeats)
    return benchmark_models(
        models,
        size,
        repeats=cfg.bench.repeats,
        warmup=cfg.bench.warmup,
        device=cfg.bench.device,
        precision=cfg.bench.precision,
    )


def _rank(rec: RunRecord, cache: _ModelCache) -> int:
    """Which run of an architecture to time: one loaded already, then a trained one, then a carried one."""
    return 0 if rec.spec.label in cache.models else 2 if rec.status == "carried" else 1


# ------------------------------------------------------------------------------------ Fig. 6 examples
def _examples(cfg: ExperimentConfig, records: list[RunRecord], score: _Scorer) -> Examples:
    """The Fig. 6 examples and the predictions on them of each experiment's baseline, distilled, teacher,
    as the scorer kept them in ``OUT/examples/`` (:func:`kept_examples`; a carried run's from an earlier
    call, when it kept them)."""
    val_ds, picked = score.test_ds, score.picked
    examples = Examples(scanned=min(len(val_ds), cfg.evaluate.overlay_scan))
    if not picked:
        return examples
    for cls, idx in picked.items():
        examples.images.append(
            ExampleImage(
                cls=cls,
                index=idx,
                image_id=str(val_ds.ids[idx]),
                image=np.asarray(val_ds.read_image(idx)),
                truth=np.asarray(val_ds.read_mask(idx)),
            )
        )
    needed = [r for v in experiment_views(cfg, records) for r in (v.baselines[0], v.distilled[0], v.teacher)]
    for rec in needed:
        kept = kept_examples(score.out_dir, rec.spec.label)
        if kept.is_file():
            with np.load(kept) as z:
                preds = {int(k): z[k] for k in z.files}
            if set(picked.values()) <= set(preds):
                examples.predictions[rec.spec.label] = preds
    return examples


def _save_examples(path: Path, preds: dict[int, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{str(i): lm for i, lm in preds.items()})


def _pick_examples(val_ds: Any, n_scan: int) -> dict[int, int]:
    """For each defect class, the index of the scanned val image with the most pixels of it."""
    best: dict[int, tuple[int, int]] = {}
    for i in range(min(len(val_ds), max(1, n_scan))):
        m = np.asarray(val_ds.read_mask(i))
        counts = np.bincount(m.reshape(-1), minlength=len(val_ds.class_names))
        for c in range(1, len(counts)):
            if counts[c] > best.get(c, (0, -1))[0]:
                best[c] = (int(counts[c]), i)
    return {c: i for c, (_, i) in sorted(best.items())}


def _example_predictions(
    cfg: ExperimentConfig, recs: list[RunRecord], val_ds: Any, idxs: list[int], cache: _ModelCache
) -> dict[str, dict[int, np.ndarray]]:
    """Label maps of the example images for each run (run label -> image index -> H x W)."""
    inputs = {i: val_ds[i][0] for i in idxs}
    batches = equal_size_batches([tuple(inputs[i].shape) for i in idxs], max(1, cfg.evaluate.batch_size))
    out: dict[str, dict[int, np.ndarray]] = {}
    for rec in recs:
        if rec.spec.label in out:
            continue
        model = cache.get(rec)
        preds: dict[int, np.ndarray] = {}
        for batch in batches:
            chunk = [idxs[j] for j in batch]
            logits = predict_logits(
                model,
                torch.stack([inputs[i] for i in chunk]),
                device=cfg.evaluate.device,
                precision=cfg.evaluate.precision,
            )
            for i, lm in zip(chunk, logits.argmax(1).numpy().astype(np.uint8), strict=True):
                preds[i] = lm
        out[rec.spec.label] = preds
    cache.release()
    return out
