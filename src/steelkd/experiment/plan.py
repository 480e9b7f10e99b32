"""The run plan: every training run an experiment needs, identified by a content hash of its config.

Every training run is identified by a content hash of its full resolved config (the teacher of a
distillation run by the teacher's own hash). Run ``r`` lives in ``OUT/runs/<role>-<hash12>/``; a run whose
``model/model.json`` exists is reused, one with only ``checkpoints/last.ckpt`` is resumed, so running an
experiment twice trains nothing and an interrupted experiment continues where it stopped. The hashes are
a contract with the run directories on disk: changing what goes into them retrains everything.

Example:
    >>> from steelkd.experiment.config import load_experiment_config
    >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
    >>> [(p.label, p.status) for p in plan_experiment(cfg, "demo_out")]  # doctest: +SKIP
    [('teacher-1f0c...', 'train'), ...]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from steelkd.config import Config
from steelkd.experiment.config import ExperimentConfig, ExperimentSpec, run_config

__all__ = ["HASH_EXCLUDE", "HASH_OMIT_DEFAULT", "RunSpec", "config_hash", "plan_experiment"]


#: Config fields left out of the content hash: they change where or how fast a run goes, not what it learns.
HASH_EXCLUDE: tuple[str, ...] = (
    "name",
    "train.out_dir",
    "data.num_workers",
    "train.log_every",
    "data.cache_images",
    "train.channels_last",
    "train.compile",
)

#: Fields added after run directories existed: left out of the hash while they hold their default (``""``),
#: so adding an optional feature does not retrain every run made before it.
HASH_OMIT_DEFAULT: tuple[str, ...] = ("distill.logit_cache",)


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
    for key in (*HASH_EXCLUDE, *HASH_OMIT_DEFAULT):
        node = d
        *parents, last = key.split(".")
        for p in parents:
            node = node.get(p) or {}
        if key in HASH_EXCLUDE or node.get(last) == "":
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
        aliases: every (role, ``plain``/``kd``, seed, experiment name or None) this run stands for: identical
            configs (e.g. a teacher and the same role's first-seed baseline) are one run.
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
        key: str, role: str, use: str, seed: int, teacher: RunSpec | None, exp: ExperimentSpec | None = None
    ) -> RunSpec:
        teacher_dir = teacher.model_dir if teacher else None
        run_cfg = run_config(
            cfg, role, seed=seed, teacher_dir=teacher_dir, distill=exp.distill if exp else None
        )
        digest = config_hash(run_cfg, teacher.hash if teacher else None)
        alias = (role, "kd" if teacher else "plain", seed, exp.name if exp else None)
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
            add(f"{e.student}-kd-{e.teacher}", e.student, "distilled", s, teachers[e.teacher], e)
    return order
