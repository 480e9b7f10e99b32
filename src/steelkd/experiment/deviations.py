"""Every way an experiment differs from the paper's recipe (the report's "Deviations" section).

The paper's facts (models of experiments 1-3, recipe, notes) come from :mod:`steelkd.paper`; this module
only compares a preset with them.

Example:
    >>> from steelkd.experiment.config import load_experiment_config
    >>> paper_deviations(load_experiment_config("configs/experiments/paper.yaml"))  # doctest: +SKIP
    ['train.precision: bf16-mixed (paper: 32; fp32 assumed: not stated, PyTorch 1.13)', ...]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from steelkd.config import Config
from steelkd.experiment.config import ExperimentConfig, run_config
from steelkd.paper import PAPER_EXPERIMENTS, PAPER_RECIPE, PAPER_RECIPE_NOTES

__all__ = ["paper_deviations"]


def paper_deviations(
    cfg: ExperimentConfig, n_train: int | None = None, n_test: int | None = None
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
    role_cfgs = {
        r: run_config(cfg, r, seed=cfg.seeds[0])
        for r in sorted({r for e in cfg.experiments for r in (e.teacher, e.student)})
    }
    return [
        *_model_deviations(cfg),
        *_data_deviations(cfg, n_train, n_test),
        *_recipe_deviations(cfg, role_cfgs),
        *_distill_deviations(cfg),
    ]


def _model_deviations(cfg: ExperimentConfig) -> list[str]:
    """The models of experiments 1-3."""
    out: list[str] = []
    if len(cfg.experiments) != len(PAPER_EXPERIMENTS):
        out.append(f"experiments: {len(cfg.experiments)} (paper: {len(PAPER_EXPERIMENTS)})")
    for i, e in enumerate(cfg.experiments[: len(PAPER_EXPERIMENTS)]):
        t, s = cfg.models[e.teacher].name, cfg.models[e.student].name
        pt, ps = PAPER_EXPERIMENTS[i]
        if (t, s) != (pt, ps):
            out.append(f"experiment {i + 1} ({e.name}) models: {t} -> {s} (paper: {pt} -> {ps})")
    return out


def _data_deviations(cfg: ExperimentConfig, n_train: int | None, n_test: int | None) -> list[str]:
    """The data set and its size."""
    if cfg.data.kind != "severstal":
        return [
            f"data set: {cfg.data.kind} at {cfg.data.root or '(default)'} "
            f"(paper: Severstal Kaggle train set, defect images only, 8:2 split)"
        ]
    if n_train is not None and n_test is not None and abs((n_train + n_test) - 6666) > 10:
        return [
            f"data set size: {n_train} train (incl. validation) / {n_test} test images "
            f"(paper: the 6,666 defect images of Severstal, 8:2 ≈ 5,333 / 1,333)"
        ]
    return []


def _recipe_deviations(cfg: ExperimentConfig, role_cfgs: dict[str, Config]) -> list[str]:
    """Recipe fields, crop, augmentation and encoder weights: base sections and per role."""
    out: list[str] = []

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
        note = PAPER_RECIPE_NOTES.get(key)
        paper = f"{_short(ref)}; {note}" if note else _short(ref)
        if key.startswith("data.max_") or key.startswith("train.limit") or key == "train.max_minutes":
            paper = "no limit, the full run"
        if cfg.data.kind != "severstal" and key in ("data.defect_only", "data.test_fraction"):
            continue
        report_field(
            key, paper, {r: _value(c, key) for r, c in role_cfgs.items()}, lambda v, key=key: _differs(key, v)
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
    return out


def _distill_deviations(cfg: ExperimentConfig) -> list[str]:
    """The distillation settings and the number of seeds."""
    out: list[str] = []
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


def _value(c: Config, key: str) -> Any:
    sec, name = key.split(".")
    return getattr(getattr(c, sec), name)


def _differs(key: str, v: Any) -> bool:
    ref = PAPER_RECIPE[key]
    if isinstance(ref, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
        return not math.isclose(float(v), ref, rel_tol=1e-9, abs_tol=1e-12)
    return str(v) != str(ref)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
