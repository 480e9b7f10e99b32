"""Runs carried over sessions: a run whose folder is gone but which ``results.json`` records is reported
from that record, not trained again; a carried teacher that a new run needs is trained again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from steelkd.experiment import experiment_config_from_dict, plan_experiment, run_experiment
from steelkd.experiment.plan import carried_runs
from test_experiment_equal_compute import ClockFit, _cfg_dict


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("tiny"), n=8, seed=1, height=32, width=128)


class LoggingFit(ClockFit):
    """:class:`ClockFit` that also writes a ``logs/metrics.csv`` with a validation curve, as training does."""

    def __call__(self, cfg: Any, *, progress: bool = True, resume: str | None = None) -> Any:
        result = super().__call__(cfg, progress=progress, resume=resume)
        rows = ["epoch,step,time/elapsed_s,train/loss_epoch,val/mdice"]
        rows += [f"{e},{e + 1},{e + 1.0},{1.0 / (e + 1)},{0.1 * (e + 1)}" for e in range(cfg.train.epochs)]
        log = Path(cfg.train.out_dir) / "logs" / "metrics.csv"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(rows) + "\n")
        return result


def _runs(out: Path) -> dict[str, dict[str, Any]]:
    return {r["run"]: r for r in json.loads((out / "results.json").read_text())["runs"]}


def test_runs_without_folders_are_carried_from_results_json(tmp_path: Path, tiny_root: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root, equal_compute=True))
    out = tmp_path / "exp"
    first = run_experiment(cfg, out, fit=LoggingFit())
    assert first.trained == 7
    before = _runs(out)
    assert all(r["hash"] == r["run"].rsplit("-", 1)[1] for r in before.values())
    dist = [r for r in before.values() if r["kind"] == "distilled"]
    teacher = next(r for r in before.values() if r["role"] == "teacher")
    assert {r["teacher_mdice"] for r in dist} == {teacher["mdice"]}
    for r in before.values():  # the output folder keeps each run's log, and the Fig. 6 runs' predictions
        assert (out / "logs" / f"{r['run']}.csv").is_file()
    assert (out / "examples" / f"{dist[0]['run']}.npz").is_file()

    shutil.rmtree(out / "runs")  # a new machine: only the committed output folder is left
    fit = LoggingFit()
    again = run_experiment(cfg, out, fit=fit)
    assert fit.calls == [] and again.trained == 0
    assert {r.status for r in again.runs} == {"carried"}
    after = _runs(out)
    assert set(after) == set(before)  # the equal-compute baselines too: same recorded seconds, same epochs
    for name, r in after.items():
        for key in ("mdice", "miou_bg", "dice", "wall_seconds", "cpu_seconds", "epochs", "teacher_mdice"):
            assert r[key] == before[name][key], (name, key)
    text = again.report.read_text()
    assert "carried" in text
    assert "![Fig. 6 exp1](figures/fig6_exp1_overlays.png)" in text  # from the kept predictions
    assert "![learning curves exp1](figures/curves_exp1.png)" in text  # from the kept logs
    assert "distilled (2 ep): best 0.2000 at epoch 2" in text
    assert [b["model"] for b in again.bench] == [b["model"] for b in first.bench]  # timed untrained


def test_a_carried_teacher_is_trained_again_for_a_new_experiment(tmp_path: Path, tiny_root: Path) -> None:
    d = _cfg_dict(tiny_root)
    out = tmp_path / "exp"
    run_experiment(experiment_config_from_dict(d), out, fit=LoggingFit())
    shutil.rmtree(out / "runs")
    data = json.loads((out / "results.json").read_text())
    for r in data["runs"]:  # the teacher of that session scored otherwise (another CPU)
        r["teacher_mdice"] = 0.123 if r["kind"] == "distilled" else None
        if r["role"] == "teacher":
            r["mdice"] = r["metrics"]["mdice"] = 0.123
    (out / "results.json").write_text(json.dumps(data))
    d["experiments"].append(
        {"name": "exp2", "teacher": "teacher", "student": "student", "distill": {"method": "kd"}}
    )
    cfg = experiment_config_from_dict(d)
    status = {
        (s.key, s.config.distill.method if s.config.distill else None, s.seed): s.status
        for s in plan_experiment(cfg, out)
    }
    assert status[("teacher", None, 0)] == "train"  # the kd students need its weights
    assert status[("student", None, 1)] == status[("student-kd-teacher", "cwd", 1)] == "carried"
    assert status[("student-kd-teacher", "kd", 1)] == "train"
    fit = LoggingFit()
    res = run_experiment(cfg, out, fit=fit)
    trained = [(c.model.name, c.distill.method if c.distill else None, c.train.seed) for c in fit.calls]
    assert trained == [
        ("resunet_convnext_atto_gc_ff", None, 0),
        ("resunet_convnext_atto", "kd", 0),
        ("resunet_convnext_atto", "kd", 1),
    ]
    assert sorted(r["experiments"][0] for r in _runs(out).values() if r["kind"] == "distilled") == [
        "exp1",
        "exp1",
        "exp2",
        "exp2",
    ]
    text = res.report.read_text()
    assert "## Experiment 2: exp2" in text
    exp1, exp2 = text.split("## Experiment 2: exp2")
    assert "learnt from the teacher as an earlier stage trained it (test mDice 0.1230)" in exp1
    assert "earlier stage trained it" not in exp2  # exp2's students learnt from this teacher
    teacher = next(r for r in _runs(out).values() if r["role"] == "teacher")
    assert teacher["mdice"] != 0.123 and [e["mdice"] for e in teacher["earlier"]] == [0.123]
    assert "earlier" not in teacher["earlier"][0]


def test_results_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"runs": 3}')
    with pytest.raises(ValueError, match=r"results\.json: not an experiment results file"):
        carried_runs(tmp_path)
    (tmp_path / "results.json").write_text('{"runs": [{"run": "student-0123456789ab", "mdice": null}]}')
    assert carried_runs(tmp_path) == {}  # never evaluated: nothing to carry


class StopAfter(LoggingFit):
    """:class:`LoggingFit` that is killed (raises) at its ``n``-th call, like a session ending mid-stage."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __call__(self, cfg: Any, *, progress: bool = True, resume: str | None = None) -> Any:
        if len(self.calls) + 1 == self.n:
            raise KeyboardInterrupt("the session ended")
        return super().__call__(cfg, progress=progress, resume=resume)


def test_a_call_cut_short_leaves_its_finished_runs_to_carry(tmp_path: Path, tiny_root: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root))
    out = tmp_path / "exp"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out, fit=StopAfter(5))  # teacher, 2 baselines, 1 distilled, then killed
    kinds = sorted((r["kind"], r["seed"]) for r in _runs(out).values())
    assert kinds == [("baseline", 0), ("baseline", 0), ("baseline", 1), ("distilled", 0)]
    shutil.rmtree(out / "runs")
    fit = LoggingFit()
    res = run_experiment(cfg, out, fit=fit)
    # the teacher again (the seed-1 distilled run needs it), then only the run that was never finished
    assert [(c.distill is not None, c.train.seed) for c in fit.calls] == [(False, 0), (True, 1)]
    assert sorted(r.status for r in res.runs) == ["carried"] * 3 + ["trained"] * 2


def test_a_stage_on_other_hardware_times_the_carried_baselines_again(tmp_path: Path, tiny_root: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root, equal_compute=True))
    out = tmp_path / "exp"
    run_experiment(cfg, out, fit=LoggingFit())
    # an earlier session on another CPU recorded the baselines (at other seconds); the distilled runs
    # and their equal-compute baselines were not run there
    data = json.loads((out / "results.json").read_text())
    data["runs"] = [r for r in data["runs"] if r["kind"] in ("baseline",)]
    for r in data["runs"]:
        r["hardware"], r["cpu_seconds"] = "Another CPU (2 cores, 2 torch threads)", 1000.0
    (out / "results.json").write_text(json.dumps(data))
    shutil.rmtree(out / "runs")
    fit = LoggingFit()
    res = run_experiment(cfg, out, fit=fit)
    calls = [(c.distill is not None, c.train.seed, c.train.epochs) for c in fit.calls]
    # teacher; the distilled runs; the baselines timed again here (ClockFit: 5 CPU s per epoch); the
    # equal-compute baselines from those timings (25/10 and 17/10 -> 5 and 3 epochs)
    trained = [(False, 0, 2), (True, 0, 2), (True, 1, 2), (False, 0, 2), (False, 1, 2)]
    assert calls == [*trained, (False, 0, 5), (False, 1, 3)]
    runs = list(_runs(out).values())
    timing = [r for r in runs if r["kind"] == "baseline_timing"]
    assert [(r["seed"], r["cpu_seconds"], r["experiments"]) for r in timing] == [(0, 10.0, []), (1, 10.0, [])]
    assert {r["hardware"] for r in timing} == {r["hardware"] for r in runs if r["kind"] == "distilled"}
    base = [r for r in runs if r["kind"] == "baseline" and r["role"] == "student"]
    assert {r["hardware"] for r in base} == {"Another CPU (2 cores, 2 torch threads)"}  # still reported
    text = res.report.read_text()
    assert "Used as `baseline_timing`" in text and "Another CPU" in text
    shutil.rmtree(out / "runs")  # the next session on this hardware carries everything
    again = LoggingFit()
    assert run_experiment(cfg, out, fit=again).trained == 0 and again.calls == []
