"""The run plan: every training run an experiment needs, identified by a content hash of its config.

Every training run is identified by a content hash of its full resolved config (the teacher of a
distillation run by the teacher's own hash). Run ``r`` lives in ``OUT/runs/<role>-<hash12>/``; a run whose
``model/model.json`` exists is reused, one with only ``checkpoints/last.ckpt`` is resumed, so running an
experiment twice trains nothing and an interrupted experiment continues where it stopped. The hashes are
a contract with the run directories on disk: changing what goes into them retrains everything. A teacher
role with ``run:`` (:class:`~steelkd.experiment.config.RoleSpec`) is handed in: that folder, trained
elsewhere with the same run config (:func:`check_handed_in`), is the role's run.

Run folders need not outlive the machine: a run whose folder is gone but which an earlier call recorded in
``OUT/results.json`` (same hash, with its test metrics) is **carried** (:func:`carried_runs`): its recorded
seconds and metrics stand for it and it is not trained again, unless a run still to be trained needs its
weights (a teacher), in which case it is trained again. So a long preset runs in stages over sessions
whose machines keep only the committed output folder.

An experiment with ``equal_compute`` needs a second planning step once its baseline and distilled runs are
trained: :mod:`steelkd.experiment.equal_compute` adds, per seed, a baseline student trained for as many
epochs as make its compute equal to the distilled run's, planned with this module's :class:`Planner`.

Example:
    >>> from steelkd.experiment.config import load_experiment_config
    >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
    >>> [(p.label, p.status) for p in plan_experiment(cfg, "demo_out")]  # doctest: +SKIP
    [('teacher-1f0c...', 'train'), ...]
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steelkd.config import Config, ConfigError, load_config
from steelkd.experiment.config import ExperimentConfig, ExperimentSpec, run_config

__all__ = [
    "HASH_EXCLUDE",
    "HASH_OMIT_DEFAULT",
    "RESULTS_JSON",
    "EqualCompute",
    "RunSpec",
    "carried_runs",
    "check_handed_in",
    "config_hash",
    "entry_hash",
    "plan_experiment",
]

log = logging.getLogger("steelkd.experiment")


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

#: The experiment's raw results in its output folder; written by :mod:`steelkd.experiment.results`, read
#: here for the runs an earlier call recorded (:func:`carried_runs`).
RESULTS_JSON = "results.json"

#: Fields added after run directories existed, with their defaults: left out of the hash while they hold
#: that default, so adding an optional feature does not retrain every run made before it.
HASH_OMIT_DEFAULT: dict[str, object] = {
    "distill.logit_cache": "",
    "data.crop_on_defect": 0.0,
    "train.min_steps": 0,
}


def _hashed_fields(run_cfg: Config) -> dict:
    """The run config as a dict without the fields the hash leaves out."""
    d = run_cfg.to_dict()
    for key in (*HASH_EXCLUDE, *HASH_OMIT_DEFAULT):
        node = d
        *parents, last = key.split(".")
        for p in parents:
            node = node.get(p) or {}
        if key in HASH_EXCLUDE or (last in node and node[last] == HASH_OMIT_DEFAULT[key]):
            node.pop(last, None)
    return d


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
    d = _hashed_fields(run_cfg)
    if d.get("distill") is not None:
        d["distill"]["teacher"] = f"run:{teacher_hash}" if teacher_hash else d["distill"]["teacher"]
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class EqualCompute:
    """What an equal-compute baseline stands for: one experiment's distilled run of one seed.

    Attributes:
        experiment: the experiment's name.
        seed: the seed.
        of: the distilled run's label.
        ratio: compute of the distilled run / compute of the baseline run.
        measure: ``cpu`` (CPU seconds of the runs' process trees) or ``wall`` (wall seconds).
        base_epochs: the baseline's epochs E (the run trains ``max(E, round(E * ratio))``).
    """

    experiment: str
    seed: int
    of: str
    ratio: float
    measure: str
    base_epochs: int


@dataclass
class RunSpec:
    """One training run of the plan.

    Attributes:
        key: ``<role>``, ``<student role>-kd-<teacher role>`` or ``<student role>-eq-<experiment>`` (the run
            directory's prefix).
        role: the model role trained.
        uses: what the run is used as: any of ``teacher``, ``baseline``, ``distilled``,
            ``baseline_equal_compute``.
        seed: training seed.
        config: the resolved run config (``train.out_dir`` and ``distill.teacher`` set).
        hash: content hash (see :func:`config_hash`).
        dir: the run directory ``OUT/runs/<key>-<hash>``.
        teacher: the teacher run (distillation runs only).
        status: ``reuse`` (model exists), ``resume`` (last checkpoint exists), ``carried`` (no folder, but
            recorded in the output folder's ``results.json``: see ``carried``) or ``train``.
        aliases: every (role, ``plain``/``kd``/``equal``, seed, experiment name or None) this run stands for:
            identical configs (e.g. a teacher and the same role's first-seed baseline) are one run.
        equal_compute: the distilled runs it is the equal-compute baseline of (see :class:`EqualCompute`).
        handed_in: the run was trained outside the experiment: ``dir`` is the teacher role's ``run:`` folder.
        timed_on: a timing run's hardware (:func:`plan_timing_runs`): the baseline of the same config and
            seed trained again there for its seconds; its hash is the config's salted with the hardware.
        carried: the run's entry in an earlier ``results.json`` of the output folder (:func:`carried_runs`),
            when it has one; used as the run's record while ``status`` is ``carried``.
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
    equal_compute: list[EqualCompute] = field(default_factory=list)
    handed_in: bool = False
    carried: dict[str, Any] | None = None
    timed_on: str = ""

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


def entry_hash(entry: dict[str, Any]) -> str:
    """The content hash of a ``results.json`` run entry (``hash``, or the end of its ``run`` label)."""
    return str(entry.get("hash") or entry["run"].rsplit("-", 1)[-1])


def carried_runs(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The runs an earlier call recorded in ``OUT/results.json`` with test metrics, by content hash.

    Entries from before ``hash`` was written are keyed by the hash ending their ``run`` label; entries
    without ``mdice`` (never evaluated) are left out. No file: an empty dict.

    Raises:
        ValueError: the file exists but is not a results file (one line naming it).
    """
    path = Path(out_dir) / RESULTS_JSON
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text())["runs"]
        return {entry_hash(r): r for r in runs if r.get("mdice") is not None}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        what = f"{exc.__class__.__name__}: {exc}"
        raise ValueError(f"{path}: not an experiment results file ({what})") from None


def check_handed_in(run_dir: str | Path, planned: Config) -> Path:
    """The run folder ``run_dir`` (trained elsewhere: ``steelkd train``, a recipe study) as ``planned``'s run.

    Its ``config.yaml`` (the config training saved) must equal ``planned`` on every field the run hash
    covers, ``data.root`` compared as a resolved path and ``planned``'s class weights resolved as training
    resolves them (a method name becomes the list of weights; all but ``none`` read the training masks'
    pixel counts). Its ``model/model.json`` must exist.

    Raises:
        ConfigError: no finished model, or naming the first field that differs.

    Example:
        >>> check_handed_in("../study_out/plateau_neu_seg/teacher_nano_gc_ff_12ep", cfg)  # doctest: +SKIP
        PosixPath('../study_out/plateau_neu_seg/teacher_nano_gc_ff_12ep')
    """
    run = Path(run_dir)
    if not (run / "model" / "model.json").is_file():
        raise ConfigError(f"{run}: no model/model.json: not a finished run")
    saved = load_config(run / "config.yaml")
    want = copy.deepcopy(planned)
    if isinstance(want.train.class_weights, str):
        want.train.class_weights = _resolved_class_weights(want)
    for cfg in (want, saved):
        cfg.data.root = str(Path(cfg.data.root).resolve()) if cfg.data.root else cfg.data.root
    a, b = _flat(_hashed_fields(want)), _flat(_hashed_fields(saved))
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            raise ConfigError(
                f"{run / 'config.yaml'}: {key} is {b.get(key)!r}, the role's run config has {a.get(key)!r}"
            )
    return run


def _resolved_class_weights(cfg: Config) -> list[float]:
    from steelkd.engine.train import resolve_class_weights

    if cfg.train.class_weights == "none":
        return resolve_class_weights(cfg, None)
    from steelkd.data import build_datasets

    return resolve_class_weights(cfg, build_datasets(cfg.data).train)


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Planner:
    """Adds runs to a plan: one run per content hash, found on disk where it exists (package-internal:
    :mod:`steelkd.experiment.equal_compute` plans with it too).

    ``known`` are runs planned before (their hashes are not planned again); ``new`` collects the runs
    this planner added, in order.
    """

    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path, known: Iterable[RunSpec] = ()) -> None:
        self.cfg = cfg
        self.runs_root = Path(out_dir) / "runs"
        self.carried = carried_runs(out_dir)
        self.by_hash: dict[str, RunSpec] = {s.hash: s for s in known}
        self.new: list[RunSpec] = []

    def add(
        self,
        key: str,
        role: str,
        use: str,
        seed: int,
        *,
        teacher: RunSpec | None = None,
        exp: ExperimentSpec | None = None,
        kind: str = "plain",
        epochs: int | None = None,
        handed_in: str = "",
        timed_on: str = "",
    ) -> RunSpec:
        """The run of ``role`` with ``seed`` (from ``teacher`` if given; ``epochs`` replace the recipe's);
        ``handed_in``: a run folder trained elsewhere with this config (:func:`check_handed_in`);
        ``timed_on``: a timing run for that hardware (its hash salted with it)."""
        run_cfg = run_config(
            self.cfg,
            role,
            seed=seed,
            teacher_dir=teacher.model_dir if teacher else None,
            distill=exp.distill if exp and teacher else None,
        )
        if epochs is not None:
            run_cfg.train.epochs = int(epochs)
        digest = config_hash(run_cfg, teacher.hash if teacher else None)
        if timed_on:
            digest = hashlib.sha256(f"{digest} timed on {timed_on}".encode()).hexdigest()[:12]
        spec = self.by_hash.get(digest)
        if spec is None:
            if handed_in:
                run_dir, status = check_handed_in(handed_in, run_cfg), "reuse"
            else:
                run_dir, status = _find_run_dir(self.runs_root, key, digest)
            carried = self.carried.get(digest)
            status = "carried" if status == "train" and carried is not None else status
            run_cfg.train.out_dir = str(run_dir)
            spec = RunSpec(key, role, [], seed, run_cfg, digest, run_dir, teacher, status)
            spec.handed_in, spec.carried, spec.timed_on = bool(handed_in), carried, timed_on
            self.by_hash[digest] = spec
            self.new.append(spec)
        if use not in spec.uses:
            spec.uses.append(use)
        alias = (role, kind, seed, exp.name if exp and kind != "plain" else None)
        if alias not in spec.aliases:
            spec.aliases.append(alias)
        return spec


def plan_experiment(cfg: ExperimentConfig, out_dir: str | Path) -> list[RunSpec]:
    """Every training run the experiment needs, in order (teachers, baselines, distilled), deduplicated.

    A teacher role trained with the first seed is the same run as that role's first-seed baseline (same
    config, same hash), so it is trained once. Each run's ``status`` says whether it is reused, resumed,
    carried from the output folder's ``results.json`` (:func:`carried_runs`; a carried teacher of a run
    still to train is trained again) or trained from scratch; a teacher role with ``run:`` is that folder
    (:func:`check_handed_in`: raises ConfigError when it was trained with another config). The
    equal-compute baselines are not in it: they are planned once the baselines and distilled runs are
    trained (:func:`steelkd.experiment.equal_compute.plan_equal_compute`).
    """
    planner = Planner(cfg, out_dir)
    teachers: dict[str, RunSpec] = {}
    for e in cfg.experiments:
        if e.teacher not in teachers:
            run = cfg.models[e.teacher].run
            try:
                teachers[e.teacher] = planner.add(
                    e.teacher, e.teacher, "teacher", cfg.seeds[0], handed_in=run
                )
            except ConfigError as exc:
                raise ConfigError(f"models.{e.teacher}.run: {exc}") from None
    for e in cfg.experiments:
        for s in cfg.seeds:
            planner.add(e.student, e.student, "baseline", s)
    for e in cfg.experiments:
        for s in cfg.seeds:
            key = f"{e.student}-kd-{e.teacher}"
            planner.add(key, e.student, "distilled", s, teacher=teachers[e.teacher], exp=e, kind="kd")
    for spec in planner.new:  # a carried teacher whose weights a run still to train needs: train it again
        teacher = spec.teacher
        if teacher is not None and teacher.status == "carried" and spec.status in ("train", "resume"):
            teacher.status = "train"
            log.info("%s: carried, but %s needs its weights: trained again", spec.teacher.label, spec.label)
    return planner.new
