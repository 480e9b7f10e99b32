"""A teacher handed in to an experiment (``models.<role>.run``): a run trained before with the same config."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml

from steelkd.config import ConfigError
from steelkd.experiment import experiment_config_from_dict, plan_experiment, run_config, run_experiment


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("tiny"), n=8, seed=1, height=32, width=128)


def _cfg_dict(root: Path, run: str = "", role: str = "teacher") -> dict[str, Any]:
    models: dict[str, Any] = {
        "teacher": {"name": "resunet_convnext_atto_gc_ff", "train": {"epochs": 1}},
        "student": {"name": "resunet_convnext_atto"},
    }
    if run:
        models[role]["run"] = run
    return {
        "name": "handed_in",
        "data": {"kind": "severstal", "root": str(root), "crop": [32, 64], "batch_size": 2, "num_workers": 0},
        "train": {"epochs": 1, "accelerator": "cpu", "class_weights": "median_freq"},
        "models": models,
        "experiments": [{"name": "exp1", "teacher": "teacher", "student": "student"}],
        "bench": {"repeats": 1, "warmup": 0, "device": "cpu"},
        "evaluate": {"device": "cpu", "batch_size": 2},
    }


@pytest.fixture(scope="module")
def teacher_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher role trained by the real ``steelkd.engine.fit``, outside any experiment."""
    from steelkd.engine import fit

    run_cfg = run_config(experiment_config_from_dict(_cfg_dict(tiny_root)), "teacher", seed=0)
    run_cfg.train.out_dir = str(tmp_path_factory.mktemp("study") / "teacher_run")
    fit(run_cfg, progress=False)
    return Path(run_cfg.train.out_dir)


class StudentFit:
    """Stands in for steelkd.engine.fit for the students; the teacher must never be trained."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, cfg: Any, *, progress: bool = True, resume: str | None = None) -> Any:
        from steelkd.models import create_model, make_card, save_model

        assert cfg.model.name == "resunet_convnext_atto", "the handed-in teacher was trained again"
        self.calls.append(copy.deepcopy(cfg))
        model = create_model(cfg.model.name, num_classes=len(cfg.data.class_names))
        out = Path(cfg.train.out_dir) / "model"
        save_model(model, out, make_card(model, cfg.data.class_names, config=cfg.to_dict()))
        return SimpleNamespace(seconds=1.0, cpu_seconds=2.0, model_dir=out)


def test_handed_in_teacher_is_used_not_trained(tmp_path: Path, tiny_root: Path, teacher_run: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root, run=str(teacher_run)))
    plan = plan_experiment(cfg, tmp_path / "exp")
    teacher = next(p for p in plan if "teacher" in p.uses)
    assert (teacher.dir, teacher.status) == (teacher_run, "reuse")

    fit = StudentFit()
    res = run_experiment(cfg, tmp_path / "exp", fit=fit)
    assert [c.distill is not None for c in fit.calls] == [False, True]
    assert fit.calls[1].distill.teacher == str(teacher_run / "model")
    rec = next(r for r in res.runs if "teacher" in r.spec.uses)
    elapsed = pd.read_csv(teacher_run / "logs" / "metrics.csv")["time/elapsed_s"].dropna()
    assert rec.status == "reused"
    assert rec.seconds == pytest.approx(float(elapsed.iloc[-1])) and rec.seconds > 0  # from metrics.csv
    assert rec.metrics["mdice"] >= 0  # scored on the test split like any run
    report = (tmp_path / "exp" / "report.md").read_text()
    assert f"{rec.spec.label} was handed in (`models.teacher.run`)" in report and str(teacher_run) in report


def test_teacher_trained_with_another_config_is_refused(
    tmp_path: Path, tiny_root: Path, teacher_run: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(teacher_run, other)
    saved = yaml.safe_load((other / "config.yaml").read_text())
    saved["train"]["lr"] = 0.5
    (other / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root, run=str(other)))
    with pytest.raises(ConfigError, match=r"models\.teacher\.run: .*config\.yaml: train\.lr is 0\.5"):
        plan_experiment(cfg, tmp_path / "exp")

    saved["train"]["lr"] = run_config(cfg, "teacher", seed=0).train.lr
    saved["train"]["class_weights"] = [1.0, 1.0, 1.0, 1.0, 1.0]  # not what median_freq resolves to
    (other / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"train\.class_weights is \[1\.0"):
        plan_experiment(cfg, tmp_path / "exp")

    shutil.rmtree(other / "model")
    with pytest.raises(ConfigError, match=r"models\.teacher\.run: .*other: no model/model\.json"):
        plan_experiment(cfg, tmp_path / "exp")


def test_only_a_teacher_role_can_be_handed_in(tiny_root: Path, teacher_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.student\.run: 'student' is a student role"):
        experiment_config_from_dict(_cfg_dict(tiny_root, run=str(teacher_run), role="student"))
