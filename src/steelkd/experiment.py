"""The paper's experiments end to end: train teachers and students, distil, evaluate, benchmark, report.

An experiment config (YAML, see ``configs/experiments/``) maps one to one onto :class:`ExperimentConfig`:
the base ``data`` and ``train`` sections of a normal run config, a ``models`` map from role to model
(with optional per-role overrides), the ``experiments`` (teacher role -> student role), the student
``seeds``, the ``distill`` defaults and the ``bench`` / ``evaluate`` settings.

Every training run is identified by a content hash of its full resolved config (the teacher of a
distillation run by the teacher's own hash). Run ``r`` lives in ``OUT/runs/<role>-<hash12>/``; a run whose
``model/model.json`` exists is reused, one with only ``checkpoints/last.ckpt`` is resumed, so running an
experiment twice trains nothing and an interrupted experiment continues where it stopped.

Example:
    >>> from steelkd.experiment import load_experiment_config, run_experiment
    >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
    >>> result = run_experiment(cfg, "demo_out")  # doctest: +SKIP
    >>> result.report  # doctest: +SKIP
    PosixPath('demo_out/report.md')
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import platform
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from steelkd.config import (
    NEU_SEG_CLASSES,
    Config,
    ConfigError,
    DataConfig,
    DistillConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    read_yaml_mapping,
)
from steelkd.evaluate import (
    benchmark_models,
    evaluate_model,
    parse_size,
    predict_logits,
    save_metrics_json,
)
from steelkd.io import atomic_write_text
from steelkd.postprocess import overlay
from steelkd.report import (
    MeanStd,
    Table,
    plot_dice_bars,
    plot_loss_curves,
    plot_overlay_grid,
    read_loss_history,
    write_records_csv,
)

log = logging.getLogger("steelkd.experiment")

FitFn = Callable[..., Any]


# ------------------------------------------------------------------------------------------------ config
@dataclass
class RoleSpec:
    """One model role of an experiment (e.g. ``teacher``, ``student``).

    In YAML a role is either just a model name (``teacher: resunet_convnext_base_gc_ff``) or a mapping
    with these fields.

    Args:
        name: registered model name (``steelkd models list``).
        pretrained: ImageNet encoder weights through timm (needs a network).
        encoder_weights: local encoder weights file (no network needed).
        kwargs: extra model constructor arguments.
        train: overrides of the base ``train`` section for this role's runs (e.g. ``{epochs: 120}``).
        data: overrides of the base ``data`` section for this role's training (e.g. ``{crop: [256, 800]}``);
            evaluation always uses the base ``data`` section, so every model is scored on the same images.
    """

    name: str
    pretrained: bool = False
    encoder_weights: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentSpec:
    """One distillation experiment: ``teacher`` and ``student`` are role names from ``models``."""

    name: str
    teacher: str
    student: str


@dataclass
class BenchSpec:
    """Side-by-side speed measurement of every model of the experiment.

    Args:
        size: input ``[height, width]`` at batch 1; empty: the native size of the first evaluation image.
        repeats: timed forward passes per model (the median is reported; at least 20 recommended).
        warmup: untimed passes first.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``...
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
    """

    size: list[int] = field(default_factory=list)
    repeats: int = 20
    warmup: int = 5
    device: str = "auto"
    precision: str = "32"


@dataclass
class EvalSpec:
    """How every trained model is evaluated (on the base ``data`` section's val/test split, full size).

    Args:
        batch_size: images per forward pass (images of equal size only).
        device: ``auto``, ``cpu``, ``cuda``...
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        num_workers: image-reading worker processes.
        overlay_scan: how many evaluation images are scanned to pick one example per class for Fig. 6.
    """

    batch_size: int = 1
    device: str = "auto"
    precision: str = "32"
    num_workers: int = 0
    overlay_scan: int = 400


@dataclass
class ExperimentConfig:
    """A whole experiment preset (``configs/experiments/*.yaml``), one field per top-level YAML key.

    Args:
        name: name of the experiment (report title).
        data: base data section (:class:`steelkd.config.DataConfig`), shared by every run.
        train: base training recipe (:class:`steelkd.config.TrainConfig`); ``out_dir`` is set per run.
        models: role name -> :class:`RoleSpec` (or just a model name).
        experiments: the distillation experiments, each teacher role -> student role.
        seeds: training seeds of the students: each baseline and each distilled student is trained once
            per seed (mean ± std in the tables). Teachers are trained once, with the first seed.
        distill: distillation defaults (:class:`steelkd.config.DistillConfig`); ``teacher`` is filled in.
        bench: :class:`BenchSpec`.
        evaluate: :class:`EvalSpec`.

    Example:
        >>> cfg = experiment_config_from_dict({
        ...     "models": {"t": "resunet_convnext_atto_gc_ff", "s": "resunet_convnext_atto"},
        ...     "experiments": [{"name": "exp1", "teacher": "t", "student": "s"}]})
        >>> cfg.models["s"].name, cfg.seeds
        ('resunet_convnext_atto', [0])
    """

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: dict[str, RoleSpec] = field(default_factory=dict)
    experiments: list[ExperimentSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    distill: DistillConfig = field(default_factory=DistillConfig)
    bench: BenchSpec = field(default_factory=BenchSpec)
    evaluate: EvalSpec = field(default_factory=EvalSpec)

    def base_config(self) -> Config:
        """The base run config (data + train, default model, no distillation)."""
        return Config(name=self.name, data=copy.deepcopy(self.data), train=copy.deepcopy(self.train))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _simple_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build a flat dataclass from a mapping, rejecting unknown keys and checking scalar types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        tp = hints[k]
        if tp is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        elif tp in (int, float, str, bool) and not isinstance(v, tp):
            if tp is str and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = str(v)  # e.g. precision: 32
            else:
                raise ConfigError(f"{where}.{k}: expected {tp.__name__}, got {v!r}")
        elif typing.get_origin(tp) is list and not isinstance(v, list):
            raise ConfigError(f"{where}.{k}: expected a list, got {v!r}")
        elif typing.get_origin(tp) is dict and not isinstance(v, dict):
            raise ConfigError(f"{where}.{k}: expected a mapping, got {v!r}")
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def experiment_config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a nested dict (as read from YAML).

    Raises:
        ConfigError: unknown keys, wrong types, unknown roles or models, empty seeds.
    """
    if not isinstance(data, dict):
        raise ConfigError("experiment config: expected a mapping at the top level")
    known = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]} (known: {', '.join(sorted(known))})")
    distill = data.get("distill") or {}
    base = config_from_dict(
        {"data": data.get("data") or {}, "train": data.get("train") or {}, "distill": distill}
    )
    assert base.distill is not None
    if base.distill.teacher:
        raise ConfigError("distill.teacher: leave empty in an experiment config (set per experiment)")
    models_raw = data.get("models") or {}
    if not isinstance(models_raw, dict) or not models_raw:
        raise ConfigError("models: expected a non-empty mapping of role -> model name")
    models: dict[str, RoleSpec] = {}
    for role, spec in models_raw.items():
        role = str(role)
        if not role.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"models.{role}: role names may use letters, digits, '_' and '-' only")
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"models.{role}: expected a model name or a mapping with 'name'")
        models[role] = _simple_dataclass(RoleSpec, spec, f"models.{role}")
    exps_raw = data.get("experiments") or []
    if not isinstance(exps_raw, list) or not exps_raw:
        raise ConfigError("experiments: expected a non-empty list of {name, teacher, student}")
    exps: list[ExperimentSpec] = []
    for i, e in enumerate(exps_raw):
        spec = _simple_dataclass(ExperimentSpec, e, f"experiments[{i}]")
        for key in ("teacher", "student"):
            if getattr(spec, key) not in models:
                raise ConfigError(
                    f"experiments[{i}].{key}: unknown role {getattr(spec, key)!r} "
                    f"(roles: {', '.join(models)})"
                )
        if spec.teacher == spec.student:
            raise ConfigError(f"experiments[{i}]: teacher and student are the same role {spec.teacher!r}")
        exps.append(spec)
    names = [e.name for e in exps]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiments: duplicate experiment names {names}")
    seeds = data.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: duplicate seeds in {seeds}")
    bench = _simple_dataclass(BenchSpec, data.get("bench") or {}, "bench")
    if bench.size:
        parse_size(bench.size)
    if bench.repeats < 1 or bench.warmup < 0:
        raise ConfigError(f"bench: repeats must be >= 1 and warmup >= 0, got {bench.repeats}/{bench.warmup}")
    ev = _simple_dataclass(EvalSpec, data.get("evaluate") or {}, "evaluate")
    cfg = ExperimentConfig(
        name=str(data.get("name", "experiment")),
        data=base.data,
        train=base.train,
        models=models,
        experiments=exps,
        seeds=list(seeds),
        distill=base.distill,
        bench=bench,
        evaluate=ev,
    )
    _check_model_names(cfg)
    for role in cfg.models:  # per-role overrides must make a valid run config, on one device
        devices = run_config(cfg, role, seed=cfg.seeds[0]).train.devices
        if not (devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)):
            raise ConfigError(
                f"models.{role}: train.devices={devices!r}: an experiment trains each run in its own "
                "process on one device; use 1 (multi-GPU: see docs/evaluation.md)"
            )
    return cfg


def _check_model_names(cfg: ExperimentConfig) -> None:
    from steelkd.models import list_models

    available = set(list_models())
    for role, spec in cfg.models.items():
        if spec.name not in available:
            raise ConfigError(f"models.{role}.name: unknown model {spec.name!r} (see `steelkd models list`)")


def load_experiment_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``key=value`` overrides (e.g. ``data.root=/data``) and validate.

    Raises:
        ConfigError: naming the file and the bad key or value.

    Example:
        >>> cfg = load_experiment_config("configs/experiments/paper.yaml",
        ...                              ["data.root=/data/severstal"])  # doctest: +SKIP
    """
    p = Path(path)
    data = read_yaml_mapping(p, "experiment config")
    try:
        data = apply_overrides(data, list(overrides))
        return experiment_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


# -------------------------------------------------------------------------------------------- run plan
def run_config(
    cfg: ExperimentConfig, role: str, *, seed: int, teacher_dir: str | Path | None = None
) -> Config:
    """The full run config of ``role`` trained with ``seed`` (distilled from ``teacher_dir`` if given).

    Base ``data``/``train`` sections, then the role's overrides; ``train.seed = seed``.
    """
    spec = cfg.models[role]
    d: dict[str, Any] = {
        "name": role,
        "data": {**asdict(cfg.data), **spec.data},
        "model": asdict(ModelConfig(spec.name, spec.pretrained, spec.encoder_weights, dict(spec.kwargs))),
        "train": {**asdict(cfg.train), **spec.train, "seed": int(seed)},
        "distill": None,
    }
    if teacher_dir is not None:
        d["distill"] = {**asdict(cfg.distill), "teacher": str(teacher_dir)}
    try:
        return config_from_dict(d)
    except ConfigError as exc:
        raise ConfigError(f"models.{role}: {exc}") from exc


#: Config fields left out of the content hash: they change where or how fast a run goes, not what it learns.
HASH_EXCLUDE: tuple[str, ...] = ("name", "train.out_dir", "data.num_workers", "train.log_every")


def config_hash(run_cfg: Config, teacher_hash: str | None = None) -> str:
    """Content hash (12 hex digits) of a run config; a distillation run names its teacher by hash.

    Example:
        >>> from steelkd.config import Config
        >>> a, b = Config(), Config()
        >>> b.train.out_dir = "elsewhere"
        >>> config_hash(a) == config_hash(b)
        True
        >>> b.train.lr = 3e-4
        >>> config_hash(a) == config_hash(b)
        False
    """
    d = run_cfg.to_dict()
    for key in HASH_EXCLUDE:
        node = d
        *parents, last = key.split(".")
        for p in parents:
            node = node.get(p) or {}
        node.pop(last, None)
    if d.get("distill") is not None:
        d["distill"]["teacher"] = f"run:{teacher_hash}" if teacher_hash else d["distill"]["teacher"]
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class RunSpec:
    """One training run of the plan.

    Attributes:
        key: ``<role>`` or ``<student role>-kd-<teacher role>`` (the run directory's prefix).
        role: the model role trained.
        uses: what the run is used as: any of ``teacher``, ``baseline``, ``distilled``.
        seed: training seed.
        config: the resolved run config (``train.out_dir`` and ``distill.teacher`` set).
        hash: content hash (see :func:`config_hash`).
        dir: the run directory ``OUT/runs/<key>-<hash>``.
        teacher: the teacher run (distillation runs only).
        status: ``reuse`` (model exists), ``resume`` (last checkpoint exists) or ``train``.
        aliases: every (role, ``plain``/``kd``, seed, teacher role) this run stands for: identical configs
            (e.g. a teacher and the same role's first-seed baseline) are one run.
    """

    key: str
    role: str
    uses: list[str]
    seed: int
    config: Config
    hash: str
    dir: Path
    teacher: RunSpec | None = None
    status: str = "train"
    aliases: list[tuple[str, str, int, str | None]] = field(default_factory=list)

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def label(self) -> str:
        return f"{self.key}-{self.hash}"


def _find_run_dir(runs_root: Path, key: str, digest: str) -> tuple[Path, str]:
    """Existing directory of a hash (any role prefix), and its status; else a new path and 'train'."""
    preferred = runs_root / f"{key}-{digest}"
    candidates = [preferred, *sorted(p for p in runs_root.glob(f"*-{digest}") if p != preferred)]
    for cand in candidates:
        if (cand / "model" / "model.json").is_file():
            return cand, "reuse"
    for cand in candidates:
        if (cand / "checkpoints" / "last.ckpt").is_file():
            return cand, "resume"
    return preferred, "train"


def plan_experiment(cfg: ExperimentConfig, out_dir: str | Path) -> list[RunSpec]:
    """Every training run the experiment needs, in order (teachers, baselines, distilled), deduplicated.

    A teacher role trained with the first seed is the same run as that role's first-seed baseline (same
    config, same hash), so it is trained once. Each run's ``status`` says whether it is reused, resumed
    or trained from scratch.
    """
    runs_root = Path(out_dir) / "runs"
    by_hash: dict[str, RunSpec] = {}
    order: list[RunSpec] = []

    def add(
        key: str, role: str, use: str, seed: int, teacher: RunSpec | None, teacher_role: str | None = None
    ) -> RunSpec:
        run_cfg = run_config(cfg, role, seed=seed, teacher_dir=teacher.model_dir if teacher else None)
        digest = config_hash(run_cfg, teacher.hash if teacher else None)
        alias = (role, "kd" if teacher else "plain", seed, teacher_role)
        if digest in by_hash:
            spec = by_hash[digest]
            if use not in spec.uses:
                spec.uses.append(use)
        else:
            run_dir, status = _find_run_dir(runs_root, key, digest)
            run_cfg.train.out_dir = str(run_dir)
            spec = RunSpec(key, role, [use], seed, run_cfg, digest, run_dir, teacher, status)
            by_hash[digest] = spec
            order.append(spec)
        if alias not in spec.aliases:
            spec.aliases.append(alias)
        return spec

    teachers: dict[str, RunSpec] = {}
    for e in cfg.experiments:
        if e.teacher not in teachers:
            teachers[e.teacher] = add(e.teacher, e.teacher, "teacher", cfg.seeds[0], None)
    for e in cfg.experiments:
        for s in cfg.seeds:
            add(e.student, e.student, "baseline", s, None)
    for e in cfg.experiments:
        for s in cfg.seeds:
            add(f"{e.student}-kd-{e.teacher}", e.student, "distilled", s, teachers[e.teacher], e.teacher)
    return order


# ------------------------------------------------------------------------------------------ execution
@dataclass
class RunRecord:
    """A finished run: its spec, how it was obtained, its wall time and its evaluation."""

    spec: RunSpec
    status: str
    seconds: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


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


RUN_INFO = "steelkd_run.json"


def _default_fit() -> FitFn:
    from steelkd.engine import fit

    return fit


def _train_runs(plan: list[RunSpec], fit: FitFn, progress: bool) -> tuple[list[RunRecord], int]:
    records: list[RunRecord] = []
    trained = 0
    n = len(plan)
    for i, spec in enumerate(plan, 1):
        what = (
            f"{spec.label} ({spec.config.model.name}, {'/'.join(spec.uses)}, seed {spec.seed}"
            + (f", teacher {spec.teacher.label}" if spec.teacher else "")
            + ")"
        )
        info_path = spec.dir / RUN_INFO
        if (spec.model_dir / "model.json").is_file():
            seconds = None
            if info_path.is_file():
                seconds = json.loads(info_path.read_text()).get("seconds")
            log.info("[%d/%d] reuse %s", i, n, what)
            records.append(RunRecord(spec, "reused", seconds))
            continue
        if spec.teacher is not None and not (spec.teacher.model_dir / "model.json").is_file():
            raise FileNotFoundError(f"{spec.teacher.model_dir}: teacher model missing for {spec.label}")
        resume = spec.dir / "checkpoints" / "last.ckpt"
        resume_arg = str(resume) if resume.is_file() else None
        log.info("[%d/%d] %s %s", i, n, "resume" if resume_arg else "train", what)
        spec.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        result = fit(copy.deepcopy(spec.config), progress=progress, resume=resume_arg)
        seconds = float(getattr(result, "seconds", 0.0) or (time.perf_counter() - t0))
        if not (spec.model_dir / "model.json").is_file():
            raise FileNotFoundError(f"{spec.model_dir}: training finished but wrote no model")
        status = "resumed" if resume_arg else "trained"
        atomic_write_text(
            info_path,
            json.dumps(
                {
                    "key": spec.key,
                    "role": spec.role,
                    "uses": spec.uses,
                    "seed": spec.seed,
                    "hash": spec.hash,
                    "model": spec.config.model.name,
                    "teacher": spec.teacher.label if spec.teacher else None,
                    "seconds": seconds,
                    "status": status,
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                },
                indent=2,
            )
            + "\n",
        )
        log.info("[%d/%d] done %s in %s", i, n, spec.label, _fmt_seconds(seconds))
        records.append(RunRecord(spec, status, seconds))
        trained += 1
    return records, trained


def _eval_key(cfg: ExperimentConfig) -> str:
    d = {"data": asdict(cfg.data), "precision": cfg.evaluate.precision}
    d["data"].pop("num_workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]


class _ModelCache:
    """Trained models loaded once per experiment call (kept on the CPU between uses)."""

    def __init__(self) -> None:
        self.models: dict[str, torch.nn.Module] = {}

    def get(self, rec: RunRecord) -> torch.nn.Module:
        from steelkd.checkpoint import load_model

        if rec.spec.label not in self.models:
            self.models[rec.spec.label] = load_model(rec.spec.model_dir)[0].eval()
        return self.models[rec.spec.label]

    def release(self) -> None:
        for m in self.models.values():
            m.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _evaluate_runs(cfg: ExperimentConfig, records: list[RunRecord], val_ds: Any, cache: _ModelCache) -> None:
    key = _eval_key(cfg)
    for i, rec in enumerate(records, 1):
        path = rec.spec.dir / f"eval-{key}.json"
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
    first: dict[str, RunRecord] = {}
    for rec in records:  # one model per architecture: speed does not depend on the weights
        name = rec.spec.config.model.name
        if name not in first or (
            rec.spec.label in cache.models and first[name].spec.label not in cache.models
        ):
            first[name] = rec
    models = {name: cache.get(rec) for name, rec in first.items()}
    log.info("[bench] %d models at %dx%d, %d repeats", len(models), size[0], size[1], cfg.bench.repeats)
    rows = benchmark_models(
        models,
        size,
        repeats=cfg.bench.repeats,
        warmup=cfg.bench.warmup,
        device=cfg.bench.device,
        precision=cfg.bench.precision,
    )
    return rows


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
            ``results.json`` and ``report.md``.
        fit: the training function (default :func:`steelkd.engine.fit`); called as
            ``fit(config, progress=..., resume=...)``.
        progress: show Lightning's progress bar during training.

    Returns:
        An :class:`ExperimentResult`; ``trained`` counts the runs trained or resumed in this call.

    Example:
        >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
        >>> res = run_experiment(cfg, "demo_out")  # doctest: +SKIP
    """
    from steelkd.data import build_datasets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    atomic_write_text(out / "experiment_config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    plan = plan_experiment(cfg, out)
    counts = {s: sum(1 for p in plan if p.status == s) for s in ("reuse", "resume", "train")}
    log.info(
        "experiment %s: %d runs (%d to train, %d to resume, %d to reuse) in %s",
        cfg.name,
        len(plan),
        counts["train"],
        counts["resume"],
        counts["reuse"],
        out,
    )
    records, trained = _train_runs(plan, fit or _default_fit(), progress)

    _train_ds, val_ds = build_datasets(cfg.data)
    cache = _ModelCache()
    _evaluate_runs(cfg, records, val_ds, cache)
    if cfg.bench.size:
        size = parse_size(cfg.bench.size)
    else:
        img, _ = val_ds[0]
        size = (int(img.shape[-2]), int(img.shape[-1]))
    bench = _bench_runs(cfg, records, size, cache)
    write_records_csv(bench, out / "bench.csv")
    atomic_write_text(out / "bench.json", json.dumps(bench, indent=2) + "\n")

    tables, figures = _write_report(
        cfg, out, records, bench, val_ds, len(_train_ds), size, time.perf_counter() - t_start, cache
    )
    log.info("report written to %s (%.1f s)", out / "report.md", time.perf_counter() - t_start)
    return ExperimentResult(out, out / "report.md", records, bench, tables, figures, trained)


# ------------------------------------------------------------------------------------------ the paper
#: The paper's models of experiments 1-3 (teacher, student) and its results (Tables 1-5).
PAPER_EXPERIMENTS: list[tuple[str, str]] = [
    ("resunet_convnext_tiny_gc_ff", "resunet_convnext_tiny"),
    ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny_gc_ff"),
    ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny"),
]
PAPER_RESULTS: list[dict[str, Any]] = [
    {
        "table": 1,
        "teacher": 0.7784,
        "before": 0.7503,
        "after": 0.7633,
        "params": (36.02, 33.91),
        "fps": (68.0, 82.7),
        "dice_table": None,
        "dice": None,
    },
    {
        "table": 2,
        "teacher": 0.7859,
        "before": 0.7784,
        "after": 0.7835,
        "params": (100.98, 36.02),
        "fps": (46.7, 68.0),
        "dice_table": 3,
        "dice": ([0.6484, 0.6692, 0.7876, 0.7998], [0.6477, 0.6904, 0.7919, 0.7999]),
    },
    {
        "table": 4,
        "teacher": 0.7859,
        "before": 0.7503,
        "after": 0.7711,
        "params": (100.98, 33.91),
        "fps": (46.7, 82.7),
        "dice_table": 5,
        "dice": ([0.6135, 0.5829, 0.7710, 0.7986], [0.6467, 0.6486, 0.7762, 0.7976]),
    },
]
#: The paper's recipe, compared field by field with a preset to list the deviations.
PAPER_RECIPE: dict[str, Any] = {
    "train.epochs": 80,
    "train.lr": 1e-4,
    "data.batch_size": 8,
    "train.scheduler": "none",
    "train.precision": "32",
    "train.dice_weight": 0.0,
    "train.max_minutes": 0.0,
    "train.limit_train_batches": 1.0,
    "data.max_train_images": 0,
    "data.max_val_images": 0,
    "data.defect_only": True,
    "data.test_fraction": 0.2,
}
_PAPER_NOTES = {
    "train.precision": "fp32 assumed: not stated, PyTorch 1.13",
    "train.scheduler": "constant lr: none stated",
    "train.dice_weight": "L = L_KD + L_wCE only",
}


def paper_deviations(
    cfg: ExperimentConfig, n_train: int | None = None, n_val: int | None = None
) -> list[str]:
    """Every way the experiment differs from the paper's recipe, one line each (empty: none).

    Compares model names of experiments 1-3, data set, epochs, lr, batch, crop, augmentation, scheduler,
    precision, distillation settings and quick-run limits, for the base sections and every role's
    overrides.

    Example:
        >>> cfg = load_experiment_config("configs/experiments/paper.yaml")  # doctest: +SKIP
        >>> paper_deviations(cfg)  # doctest: +SKIP
        ['train.precision: bf16-mixed (paper: 32; fp32 assumed: not stated, PyTorch 1.13)', ...]
    """
    out: list[str] = []
    # Models of experiments 1-3.
    if len(cfg.experiments) != len(PAPER_EXPERIMENTS):
        out.append(f"experiments: {len(cfg.experiments)} (paper: {len(PAPER_EXPERIMENTS)})")
    for i, e in enumerate(cfg.experiments[: len(PAPER_EXPERIMENTS)]):
        t, s = cfg.models[e.teacher].name, cfg.models[e.student].name
        pt, ps = PAPER_EXPERIMENTS[i]
        if (t, s) != (pt, ps):
            out.append(f"experiment {i + 1} ({e.name}) models: {t} -> {s} (paper: {pt} -> {ps})")
    # Data set.
    if cfg.data.kind != "severstal":
        out.append(
            f"data set: {cfg.data.kind} at {cfg.data.root or '(default)'} "
            f"(paper: Severstal Kaggle train set, defect images only, 8:2 split)"
        )
    elif n_train is not None and n_val is not None and abs((n_train + n_val) - 6666) > 10:
        out.append(
            f"data set size: {n_train} train / {n_val} test images "
            f"(paper: the 6,666 defect images of Severstal, 8:2 ≈ 5,333 / 1,333)"
        )
    # Recipe fields, base and per role.
    roles = sorted({r for e in cfg.experiments for r in (e.teacher, e.student)})
    role_cfgs = {r: run_config(cfg, r, seed=cfg.seeds[0]) for r in roles}

    def value(c: Config, key: str) -> Any:
        sec, name = key.split(".")
        return getattr(getattr(c, sec), name)

    def differs(key: str, v: Any) -> bool:
        ref = PAPER_RECIPE[key]
        if isinstance(ref, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
            return not math.isclose(float(v), ref, rel_tol=1e-9, abs_tol=1e-12)
        return str(v) != str(ref)

    def report_field(key: str, paper: str, per_role: dict[str, Any], bad: Callable[[Any], bool]) -> None:
        vals = {r: v for r, v in per_role.items() if bad(v)}
        if not vals:
            return
        if len(vals) == len(per_role) and len({json.dumps(v, default=str) for v in vals.values()}) == 1:
            out.append(f"{key}: {_short(next(iter(vals.values())))} (paper: {paper})")
        else:
            for r, v in vals.items():
                out.append(f"{key} for {r} ({cfg.models[r].name}): {_short(v)} (paper: {paper})")

    for key, ref in PAPER_RECIPE.items():
        note = _PAPER_NOTES.get(key)
        paper = f"{_short(ref)}; {note}" if note else _short(ref)
        if key.startswith("data.max_") or key.startswith("train.limit") or key == "train.max_minutes":
            paper = "no limit, the full run"
        if cfg.data.kind != "severstal" and key in ("data.defect_only", "data.test_fraction"):
            continue
        report_field(
            key, paper, {r: value(c, key) for r, c in role_cfgs.items()}, lambda v, key=key: differs(key, v)
        )
    report_field(
        "data.crop",
        "random crop, size not stated",
        {r: c.data.crop for r, c in role_cfgs.items()},
        lambda v: not v,
    )
    for aug in ("hflip", "vflip", "brightness_contrast"):
        report_field(
            f"data.{aug}",
            "used (probability not stated)",
            {r: getattr(c.data, aug) for r, c in role_cfgs.items()},
            lambda v: not v,
        )
    pre = {r: c.model.pretrained or bool(c.model.encoder_weights) for r, c in role_cfgs.items()}
    if not any(pre.values()):
        out.append("encoders: trained from scratch, no ImageNet weights (paper: not stated)")
    # Distillation.
    d = cfg.distill
    if d.tau != 1.0:
        out.append(f"distill.tau: {d.tau} (paper: 1)")
    if d.where != "logits":
        out.append(f"distill.where: {d.where} (paper: the final class-logit maps)")
    if d.variant != "paper_eq5":
        out.append(
            f"distill.variant: {d.variant} (paper eq. 5 wraps a class softmax inside φ: paper_eq5; "
            "standard CWD, Shu et al., works on raw logits)"
        )
    if d.loss_weight != 1.0:
        out.append(f"distill.loss_weight: {d.loss_weight} (paper: L = L_KD + L_wCE, weight 1)")
    if len(cfg.seeds) > 1:
        out.append(
            f"seeds: students trained {len(cfg.seeds)} times (seeds {cfg.seeds}); the paper reports one run"
        )
    return out


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# -------------------------------------------------------------------------------------------- report
def _fmt_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    s = float(s)
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


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


@dataclass
class _ExpView:
    spec: ExperimentSpec
    teacher: RunRecord
    baselines: list[RunRecord]
    distilled: list[RunRecord]


def _views(cfg: ExperimentConfig, records: list[RunRecord]) -> list[_ExpView]:
    by_key: dict[tuple[str, str, int, str | None], RunRecord] = {}
    for r in records:
        for alias in r.spec.aliases:
            by_key.setdefault(alias, r)
    views = []
    for e in cfg.experiments:
        teacher = by_key[(e.teacher, "plain", cfg.seeds[0], None)]
        base = [by_key[(e.student, "plain", s, None)] for s in cfg.seeds]
        dist = [by_key[(e.student, "kd", s, e.teacher)] for s in cfg.seeds]
        views.append(_ExpView(e, teacher, base, dist))
    return views


def _ms(recs: list[RunRecord], key: str, cls: str | None = None) -> MeanStd:
    if cls is None:
        return MeanStd.of([r.metrics.get(key, float("nan")) for r in recs])
    return MeanStd.of([r.metrics.get(key, {}).get(cls, float("nan")) for r in recs])


def _pretty(model: str) -> str:
    """``resunet_convnext_tiny_gc_ff`` -> ``ResUnet+ConvNeXt-tiny+GC+FF`` (the paper's naming)."""
    parts = model.split("_")
    if parts[:2] != ["resunet", "convnext"]:
        return model
    name = "ResUnet+ConvNeXt-" + (parts[2] if len(parts) > 2 else "")
    for p in parts[3:]:
        name += "+" + p.upper()
    return name


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


def _crop_box(mask: np.ndarray, cls: int) -> tuple[int, int]:
    """Column window (x0, x1) of width 2·H around class ``cls`` for wide images (the whole width else)."""
    h, w = mask.shape
    if w <= 2 * h:
        return 0, w
    cols = np.nonzero((mask == cls).any(axis=0))[0]
    center = int(cols.mean()) if len(cols) else w // 2
    x0 = min(max(0, center - h), w - 2 * h)
    return x0, x0 + 2 * h


def _example_predictions(
    cfg: ExperimentConfig, recs: list[RunRecord], val_ds: Any, examples: dict[int, int], cache: _ModelCache
) -> dict[str, dict[int, np.ndarray]]:
    """Label maps of the example images for each run (run label -> image index -> H x W)."""
    idxs = sorted(set(examples.values()))
    inputs = {i: val_ds[i][0] for i in idxs}
    out: dict[str, dict[int, np.ndarray]] = {}
    for rec in recs:
        if rec.spec.label in out:
            continue
        model = cache.get(rec)
        preds: dict[int, np.ndarray] = {}
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i in idxs:
            by_size.setdefault(tuple(inputs[i].shape), []).append(i)
        for group in by_size.values():
            for j in range(0, len(group), max(1, cfg.evaluate.batch_size)):
                chunk = group[j : j + max(1, cfg.evaluate.batch_size)]
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


def _overlay_figure(
    cfg: ExperimentConfig,
    view: _ExpView,
    val_ds: Any,
    examples: dict[int, int],
    preds: dict[str, dict[int, np.ndarray]],
    path: Path,
) -> Path | None:
    if not examples:
        return None
    runs = [
        ("baseline student", view.baselines[0]),
        ("distilled student", view.distilled[0]),
        ("teacher", view.teacher),
    ]
    names = list(val_ds.class_names)
    panels, row_labels = [], []
    for cls, idx in examples.items():
        image = np.asarray(val_ds.read_image(idx))
        truth = np.asarray(val_ds.read_mask(idx))
        x0, x1 = _crop_box(truth, cls)
        row = [image[:, x0:x1], overlay(image, truth, names, legend=False)[:, x0:x1]]
        for _label, rec in runs:
            row.append(overlay(image, preds[rec.spec.label][idx], names, legend=False)[:, x0:x1])
        panels.append(row)
        crop = f" [{x0}:{x1}]" if (x0, x1) != (0, truth.shape[1]) else ""
        row_labels.append(f"{names[cls]}\n{val_ds.ids[idx]}{crop}")
    cols = [
        "image",
        "ground truth",
        *[f"{label}\n{_pretty(rec.spec.config.model.name)}" for label, rec in runs],
    ]
    return plot_overlay_grid(
        panels,
        row_labels,
        cols,
        path,
        title=f"Fig. 6 — {view.spec.name}: predictions per defect class (seed {cfg.seeds[0]})",
        legend=names[1:],
    )


def _write_report(
    cfg: ExperimentConfig,
    out: Path,
    records: list[RunRecord],
    bench: list[dict[str, Any]],
    val_ds: Any,
    n_train: int,
    size: tuple[int, int],
    seconds_so_far: float,
    cache: _ModelCache,
) -> tuple[list[Path], list[Path]]:
    from steelkd.bench import device_name

    tables_dir, fig_dir = out / "tables", out / "figures"
    tables: list[Path] = []
    figures: list[Path] = []
    class_names = list(val_ds.class_names)
    defect = class_names[1:]
    speed = {b["model"]: b for b in bench}
    views = _views(cfg, records)
    # The paper's structure: exp1 T1 -> S, exp2 T2 -> T1, exp3 T2 -> S (whatever the models);
    # its numbers are quoted only when the models are the paper's too.
    ex = cfg.experiments
    paper_layout = (
        len(ex) == 3
        and ex[0].teacher == ex[1].student
        and ex[1].teacher == ex[2].teacher
        and ex[0].student == ex[2].student
    )
    paper_models = [(cfg.models[e.teacher].name, cfg.models[e.student].name) for e in ex] == PAPER_EXPERIMENTS
    is_neu = class_names == NEU_SEG_CLASSES

    md: list[str] = [f"# steelkd experiment report: {cfg.name}", ""]
    ver = versions()
    train_dev = cfg.train.accelerator
    md += [
        f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- machine: {device_name(bench[0]['device']) if bench else device_name('cpu')} "
        f"(benchmark and evaluation device: {bench[0]['device'] if bench else cfg.evaluate.device}; "
        f"training accelerator setting: {train_dev})",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()),
        f"- data: {cfg.data.kind} at `{cfg.data.root}`; classes {', '.join(class_names)}; "
        f"{n_train} training / {len(val_ds)} evaluation images, evaluated at full resolution",
        f"- seeds: students {cfg.seeds} (mean ± sample std over seeds); "
        f"teachers once with seed {cfg.seeds[0]}",
        f"- speed: batch 1 at {size[0]}x{size[1]}, median of {cfg.bench.repeats} timed runs after "
        f"{cfg.bench.warmup} warm-up runs, precision {cfg.bench.precision}, all models in one run",
        f"- mDice = mean over the {len(defect)} defect classes of the dataset-level Dice per class; "
        "Kaggle Dice = mean over image x class pairs (both empty = 1); see docs/evaluation.md",
        f"- wall time of this call: {_fmt_seconds(seconds_so_far)}; "
        "resolved config: `experiment_config.yaml`",
        "",
    ]

    # Headline: the teacher's margin comes first, then what distillation did.
    md += ["## Summary", ""]
    for v in views:
        t = v.teacher.metrics["mdice"]
        b, a = _ms(v.baselines, "mdice"), _ms(v.distilled, "mdice")
        md.append(
            f"- **{v.spec.name}**: teacher `{v.spec.teacher}` ({_pretty(v.teacher.spec.config.model.name)}) "
            f"mDice {t:.4f}; teacher margin over baseline student: {t - b.mean:+.3f} mDice; "
            f"student `{v.spec.student}` ({_pretty(v.baselines[0].spec.config.model.name)}) "
            f"{b.format()} → {a.format()} after distillation ({a.mean - b.mean:+.4f} mDice)"
        )
    md.append("")

    devs = paper_deviations(cfg, n_train, len(val_ds))
    md += ["## Deviations from the paper's recipe", ""]
    md += [f"- {d}" for d in devs] if devs else ["- none"]
    md += [
        "",
        "The paper: AdamW, lr 1e-4, 80 epochs, batch 8, random crop + h/v flip + brightness/contrast, "
        "τ = 1, CWD on the final class logits, Severstal defect images split 8:2, RTX 3090.",
        "",
    ]

    # Runs.
    run_rows = []
    for r in records:
        m = r.metrics
        run_rows.append(
            [
                r.spec.label,
                r.spec.role,
                r.spec.config.model.name,
                "/".join(r.spec.uses),
                r.spec.seed,
                r.spec.teacher.label if r.spec.teacher else "",
                r.status,
                _fmt_seconds(r.seconds),
                m.get("mdice"),
                m.get("kaggle_dice"),
                m.get("miou"),
                m.get("miou_bg"),
                *[m.get("dice", {}).get(c) for c in defect],
            ]
        )
    runs_table = Table(
        "All runs",
        [
            "run",
            "role",
            "model",
            "used as",
            "seed",
            "teacher",
            "status",
            "wall time",
            "mDice",
            "Kaggle Dice",
            "mIoU (defects)",
            "mIoU (incl. bg)",
            *[f"Dice {c}" for c in defect],
        ],
        run_rows,
    )
    tables.append(runs_table.to_csv(tables_dir / "runs.csv"))
    md += [
        "## Runs",
        "",
        runs_table.to_markdown(),
        "",
        "Directories: `runs/<run>/` (reused when `model/model.json` exists; resumed from "
        "`checkpoints/last.ckpt` otherwise).",
        "",
    ]

    # Models side by side.
    roles_of: dict[str, list[str]] = {}
    for role, spec in cfg.models.items():
        roles_of.setdefault(spec.name, []).append(role)
    bench_rows = [
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
    bench_table = Table(
        f"Models side by side ({bench[0]['device'] if bench else ''})",
        ["model", "roles", "params (M)", "GMACs", "latency (ms, median)", "FPS"],
        bench_rows,
        digits=2,
    )
    tables.append(bench_table.to_csv(tables_dir / "models.csv"))
    md += [
        "## Models side by side",
        "",
        f"One run on {bench[0]['device_name'] if bench else ''}, batch 1, {size[0]}x{size[1]}, "
        f"precision {cfg.bench.precision}.",
        "",
        bench_table.to_markdown(),
        "",
    ]

    # Per experiment: margin, then the paper's tables (mDice: Tables 1/2/4; Dice per class: Tables 3/5).
    speed_digits = {"params (M)": 2, "GMACs": 2, "FPS": 1}
    for k, v in enumerate(views):
        e = v.spec
        tm, sm = v.teacher.spec.config.model.name, v.baselines[0].spec.config.model.name
        t_speed, s_speed = speed.get(tm, {}), speed.get(sm, {})
        t_mdice = v.teacher.metrics["mdice"]
        b, a = _ms(v.baselines, "mdice"), _ms(v.distilled, "mdice")
        paper = PAPER_RESULTS[k] if paper_layout else None
        md += [
            f"## Experiment {k + 1}: {e.name} — teacher {_pretty(tm)} → student {_pretty(sm)}",
            "",
            f"teacher margin over baseline student: {t_mdice - b.mean:+.3f} mDice",
            "",
        ]
        ref = f" (paper's Table {paper['table']})" if paper else ""
        t1 = Table(
            f"Table {k + 1}a — {e.name}: mDice before and after distillation{ref}",
            ["network", "mDice before", "mDice after", "params (M)", "GMACs", "FPS"],
            [
                [
                    f"{_pretty(tm)} (teacher)",
                    t_mdice,
                    None,
                    _get(t_speed, "params", 1e-6),
                    _get(t_speed, "gmacs"),
                    _get(t_speed, "fps"),
                ],
                [
                    f"{_pretty(sm)} (student)",
                    b,
                    a,
                    _get(s_speed, "params", 1e-6),
                    _get(s_speed, "gmacs"),
                    _get(s_speed, "fps"),
                ],
            ],
            col_digits=speed_digits,
        )
        tables.append(t1.to_csv(tables_dir / f"{e.name}_mdice.csv"))
        md += [f"**{t1.title}**", "", t1.to_markdown(), ""]
        if t_speed.get("fps") and s_speed.get("fps"):
            md.append(
                f"Student {100 * (s_speed['fps'] / t_speed['fps'] - 1):+.0f}% FPS relative to the teacher "
                f"({s_speed['fps']:.1f} vs {t_speed['fps']:.1f} FPS, {s_speed['device_name']})."
            )
        if paper and paper_models:
            md.append(
                f"Paper: teacher {paper['teacher']:.4f}, student {paper['before']:.4f} → "
                f"{paper['after']:.4f}; params {paper['params'][0]} / {paper['params'][1]} M; "
                f"FPS {paper['fps'][0]} / {paper['fps'][1]} (RTX 3090)."
            )
        md.append("")
        # Dice per class (the paper's Tables 3 and 5; Fig. 5 for experiment 1).
        pref = ""
        if paper:
            pref = f" (paper's Table {paper['dice_table']})" if paper["dice_table"] else " (paper's Fig. 5)"
        before_cls = [_ms(v.baselines, "dice", c) for c in defect]
        after_cls = [_ms(v.distilled, "dice", c) for c in defect]
        teacher_cls = [float(v.teacher.metrics["dice"].get(c, float("nan"))) for c in defect]
        t3 = Table(
            f"Table {k + 1}b — {e.name}: Dice per class before and after distillation{pref}",
            ["distilled", *defect, "mDice"],
            [["before", *before_cls, b], ["after", *after_cls, a], ["teacher", *teacher_cls, t_mdice]],
        )
        tables.append(t3.to_csv(tables_dir / f"{e.name}_dice_per_class.csv"))
        md += [f"**{t3.title}**", "", t3.to_markdown(), ""]
        if paper and paper_models and paper["dice"]:
            md += [
                "Paper: before "
                + ", ".join(f"{x:.4f}" for x in paper["dice"][0])
                + "; after "
                + ", ".join(f"{x:.4f}" for x in paper["dice"][1])
                + ".",
                "",
            ]
        # All metrics (NEU-Seg convention: mIoU incl. background).
        t_all = Table(
            f"Table {k + 1}c — {e.name}: all metrics (dataset-level; Kaggle Dice per image x class)",
            ["network", "mDice", "Kaggle Dice", "mIoU (defects)", "mIoU (incl. bg)"],
            [
                [
                    f"{_pretty(tm)} (teacher)",
                    t_mdice,
                    v.teacher.metrics["kaggle_dice"],
                    v.teacher.metrics["miou"],
                    v.teacher.metrics["miou_bg"],
                ],
                [
                    f"{_pretty(sm)} baseline",
                    b,
                    _ms(v.baselines, "kaggle_dice"),
                    _ms(v.baselines, "miou"),
                    _ms(v.baselines, "miou_bg"),
                ],
                [
                    f"{_pretty(sm)} distilled",
                    a,
                    _ms(v.distilled, "kaggle_dice"),
                    _ms(v.distilled, "miou"),
                    _ms(v.distilled, "miou_bg"),
                ],
            ],
        )
        tables.append(t_all.to_csv(tables_dir / f"{e.name}_all_metrics.csv"))
        md += [f"**{t_all.title}**", "", t_all.to_markdown(), ""]
        if is_neu:
            md += [
                f"NEU-Seg: published results quote mIoU over the {len(class_names)} classes including "
                "background (e.g. a from-scratch U-Net ≈ 80.6 mIoU); compare those with 'mIoU (incl. bg)', "
                "the defect-only figures with the rest.",
                "",
            ]
        # Fig. 4: losses of the distilled student (first seed).
        d0 = v.distilled[0]
        metrics_csv = d0.spec.dir / "logs" / "metrics.csv"
        if metrics_csv.is_file():
            try:
                f4 = plot_loss_curves(
                    read_loss_history(metrics_csv),
                    fig_dir / f"fig4_{e.name}_losses.png",
                    title=f"Fig. 4 — {e.name}: L_KD and L while distilling {_pretty(sm)} "
                    f"(seed {d0.spec.seed})",
                )
                figures.append(f4)
                md += [f"![Fig. 4 {e.name}](figures/{f4.name})", ""]
            except ValueError as exc:
                md += [f"(no loss curves: {exc})", ""]
        f5 = plot_dice_bars(
            defect,
            before_cls,
            after_cls,
            fig_dir / f"fig5_{e.name}_dice_per_class.png",
            title=f"Fig. 5 — {e.name}: Dice per class before and after distillation",
            labels=(f"{_pretty(sm)} baseline", f"{_pretty(sm)} distilled"),
            reference=teacher_cls,
            reference_label=f"{_pretty(tm)} teacher",
        )
        figures.append(f5)
        md += [f"![Fig. 5 {e.name}](figures/{f5.name})", ""]

    # Fig. 6: overlays.
    examples = _pick_examples(val_ds, cfg.evaluate.overlay_scan)
    missing = ", ".join(c for i, c in enumerate(defect, 1) if i not in examples)
    needed = [r for v in views for r in (v.baselines[0], v.distilled[0], v.teacher)]
    preds = _example_predictions(cfg, needed, val_ds, examples, cache) if examples else {}
    md += [
        "## Predictions (Fig. 6)",
        "",
        f"One evaluation image per defect class (the one with the most pixels of that class among the first "
        f"{min(len(val_ds), cfg.evaluate.overlay_scan)}); wide images are shown cropped around the defect. "
        f"Classes without an example: {missing or 'none'}.",
        "",
    ]
    for v in views:
        f6 = _overlay_figure(cfg, v, val_ds, examples, preds, fig_dir / f"fig6_{v.spec.name}_overlays.png")
        if f6 is not None:
            figures.append(f6)
            md += [f"![Fig. 6 {v.spec.name}](figures/{f6.name})", ""]

    results = {
        "name": cfg.name,
        "versions": ver,
        "seeds": cfg.seeds,
        "deviations": devs,
        "bench": bench,
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
            for r in records
        ],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    md += [
        "## Files",
        "",
        "- `tables/*.csv`: every table above (mean, std and n columns for seeded values)",
        "- `figures/*.png`, `bench.json`/`bench.csv`, `results.json` (all metrics), "
        "`runs/<run>/eval-*.json` (per-model evaluation)",
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(md))
    return tables, figures


def _get(d: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
    v = d.get(key)
    return None if v is None else float(v) * scale
