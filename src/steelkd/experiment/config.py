"""The experiment config: its schema (one dataclass per YAML section) and how it is loaded and validated.

An experiment config (YAML, see ``configs/experiments/``) maps one to one onto :class:`ExperimentConfig`:
the base ``data`` and ``train`` sections of a normal run config, a ``models`` map from role to model
(with optional per-role overrides), the ``experiments`` (teacher role -> student role), the student
``seeds``, the ``distill`` defaults and the ``bench`` / ``evaluate`` settings. :func:`run_config` resolves
one role and seed into the full run config that is trained (and hashed, see
:mod:`steelkd.experiment.plan`); validation uses it to reject per-role overrides that make no valid run.

Example:
    >>> cfg = experiment_config_from_dict({
    ...     "models": {"t": "resunet_convnext_atto_gc_ff", "s": "resunet_convnext_atto"},
    ...     "experiments": [{"name": "exp1", "teacher": "t", "student": "s"}]})
    >>> run_config(cfg, "s", seed=3).train.seed
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from steelkd.config import (
    Config,
    ConfigError,
    DataConfig,
    DistillConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dataclass_from_dict,
    parse_size,
    read_yaml_mapping,
)
from steelkd.io import safe_name

__all__ = [
    "BenchSpec",
    "EvalSpec",
    "ExperimentConfig",
    "ExperimentSpec",
    "RoleSpec",
    "experiment_config_from_dict",
    "load_experiment_config",
    "run_config",
]


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
        run: a run folder (``steelkd train`` or a recipe study wrote it: ``config.yaml`` and ``model/``)
            where this role was already trained with exactly the run config the experiment would train it
            with: used instead of training it again. Teacher roles only (students are trained once per
            seed); a folder trained with another config is refused, naming the first field that differs
            (:func:`steelkd.experiment.plan.check_handed_in`). Relative to the directory you run from.
    """

    name: str
    pretrained: bool = False
    encoder_weights: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    run: str = ""


@dataclass
class ExperimentSpec:
    """One distillation experiment: ``teacher`` and ``student`` are role names from ``models``.

    Args:
        name: the experiment's name (its rows in the report).
        teacher / student: role names from ``models``.
        distill: overrides of the ``distill`` section for this experiment's distilled runs, e.g.
            ``{logit_cache: auto}`` or ``{where: features}``; two experiments may share a teacher and a
            student and differ only here (the baselines are then trained once).
        equal_compute: also train, for every seed, a baseline student at the distilled run's compute:
            the baseline's config with ``train.epochs = max(E, round(E * ratio))``, ratio = compute of
            that seed's distilled run / compute of its baseline run (CPU seconds of the run's process
            tree on the CPU, wall seconds on a GPU). Planned once those two runs are trained
            (:func:`steelkd.experiment.equal_compute.plan_equal_compute`).
    """

    name: str
    teacher: str
    student: str
    distill: dict[str, Any] = field(default_factory=dict)
    equal_compute: bool = False


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    models = _parse_models(data.get("models") or {})
    exps = _parse_experiments(data.get("experiments") or [], models)
    seeds = _parse_seeds(data.get("seeds", [0]))
    cfg = ExperimentConfig(
        name=str(data.get("name", "experiment")),
        data=base.data,
        train=base.train,
        models=models,
        experiments=exps,
        seeds=seeds,
        distill=base.distill,
        bench=_parse_bench(data.get("bench") or {}),
        evaluate=dataclass_from_dict(EvalSpec, data.get("evaluate") or {}, "evaluate"),
    )
    _check_model_names(cfg)
    _check_role_runs(cfg)
    return cfg


def _parse_models(models_raw: Any) -> dict[str, RoleSpec]:
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
        models[role] = dataclass_from_dict(RoleSpec, spec, f"models.{role}")
    return models


def _parse_experiments(exps_raw: Any, models: dict[str, RoleSpec]) -> list[ExperimentSpec]:
    if not isinstance(exps_raw, list) or not exps_raw:
        raise ConfigError("experiments: expected a non-empty list of {name, teacher, student}")
    exps: list[ExperimentSpec] = []
    for i, e in enumerate(exps_raw):
        spec = dataclass_from_dict(ExperimentSpec, e, f"experiments[{i}]")
        for key in ("teacher", "student"):
            if getattr(spec, key) not in models:
                raise ConfigError(
                    f"experiments[{i}].{key}: unknown role {getattr(spec, key)!r} "
                    f"(roles: {', '.join(models)})"
                )
        if spec.teacher == spec.student:
            raise ConfigError(f"experiments[{i}]: teacher and student are the same role {spec.teacher!r}")
        if "teacher" in spec.distill:
            raise ConfigError(
                f"experiments[{i}].distill.teacher: the teacher is the experiment's teacher role"
            )
        exps.append(spec)
    names = [e.name for e in exps]
    for i, name in enumerate(names):
        try:
            safe_name(name, f"experiments[{i}].name")  # it names report figures
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if len(set(names)) != len(names):
        raise ConfigError(f"experiments: duplicate experiment names {names}")
    return exps


def _parse_seeds(seeds: Any) -> list[int]:
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: duplicate seeds in {seeds}")
    return list(seeds)


def _parse_bench(data: Any) -> BenchSpec:
    bench = dataclass_from_dict(BenchSpec, data, "bench")
    if bench.size:
        try:
            parse_size(bench.size)
        except ValueError as exc:
            raise ConfigError(f"bench.size: {exc}") from None
    if bench.repeats < 1 or bench.warmup < 0:
        raise ConfigError(f"bench: repeats must be >= 1 and warmup >= 0, got {bench.repeats}/{bench.warmup}")
    return bench


def _check_role_runs(cfg: ExperimentConfig) -> None:
    """Per-role overrides must make a valid run config, on one device; a handed-in run only for teachers."""
    students = {e.student for e in cfg.experiments}
    for role, spec in cfg.models.items():
        if spec.run and role in students:
            raise ConfigError(
                f"models.{role}.run: {role!r} is a student role (trained once per seed); only a teacher "
                "role can use a run trained before"
            )
    for role in cfg.models:
        train = run_config(cfg, role, seed=cfg.seeds[0]).train
        if train.min_steps:
            raise ConfigError(
                f"models.{role}: train.min_steps={train.min_steps}: experiments schedule by train.epochs "
                "(equal-compute baselines scale the epochs, the tables show them); set epochs instead"
            )
        devices = train.devices
        if not (devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)):
            raise ConfigError(
                f"models.{role}: train.devices={devices!r}: an experiment trains each run in its own "
                "process on one device; use 1 (multi-GPU: see docs/evaluation.md)"
            )


def _check_model_names(cfg: ExperimentConfig) -> None:
    from steelkd.models import list_models

    available = set(list_models())
    for role, spec in cfg.models.items():
        if spec.name not in available:
            raise ConfigError(f"models.{role}.name: unknown model {spec.name!r} (see `steelkd models list`)")


def load_experiment_config(
    path: str | Path, overrides: Sequence[str] = (), only: Sequence[str] = ()
) -> ExperimentConfig:
    """Read an experiment YAML, apply ``key=value`` overrides (e.g. ``data.root=/data``) and validate.

    Args:
        path: the experiment YAML.
        overrides: ``section.field=value`` overrides, applied before validation.
        only: keep only the experiments of these names (empty = all): a stage of a long experiment. Its
            runs have the same hashes as in the whole experiment, so a later run of all of it reuses them.

    Raises:
        ConfigError: naming the file and the bad key or value, or an unknown experiment name in ``only``.

    Example:
        >>> cfg = load_experiment_config("configs/experiments/paper.yaml",
        ...                              ["data.root=/data/severstal"])  # doctest: +SKIP
    """
    p = Path(path)
    data = read_yaml_mapping(p, "experiment config")
    try:
        data = apply_overrides(data, list(overrides))
        if only:
            data["experiments"] = _only_experiments(data.get("experiments"), only)
        return experiment_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def _only_experiments(exps_raw: Any, only: Sequence[str]) -> list[Any]:
    """The entries of ``exps_raw`` named in ``only``, in the config's order; an unknown name is an error."""
    exps = exps_raw if isinstance(exps_raw, list) else []
    names = [e.get("name") for e in exps if isinstance(e, dict)]
    unknown = [n for n in only if n not in names]
    if unknown:
        known = ", ".join(map(str, names))
        raise ConfigError(f"only: no experiment named {unknown[0]!r} (experiments: {known})")
    return [e for e in exps if isinstance(e, dict) and e.get("name") in only]


def run_config(
    cfg: ExperimentConfig,
    role: str,
    *,
    seed: int,
    teacher_dir: str | Path | None = None,
    distill: dict[str, Any] | None = None,
) -> Config:
    """The full run config of ``role`` trained with ``seed`` (distilled from ``teacher_dir`` if given).

    Base ``data``/``train`` sections, then the role's overrides; ``train.seed = seed``; a distilled run's
    ``distill`` section is the base one with the experiment's overrides (``distill``) on top.
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
        d["distill"] = {**asdict(cfg.distill), **(distill or {}), "teacher": str(teacher_dir)}
    try:
        return config_from_dict(d)
    except ConfigError as exc:
        raise ConfigError(f"models.{role}: {exc}") from exc
