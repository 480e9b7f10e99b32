"""Equal-compute baselines: epochs from the two runs' recorded seconds, reuse, results.json, the report."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch

from steelkd.config import Config, ConfigError, DistillConfig
from steelkd.experiment import experiment_config_from_dict, plan_experiment, run_experiment
from steelkd.experiment.equal_compute import (
    compute_ratio,
    equal_compute_epochs,
    plan_equal_compute,
    plan_timing_runs,
)
from steelkd.experiment.results import run_kind, run_method
from steelkd.tables import MeanStd

EPOCHS = 2
#: distilled CPU seconds per seed against a baseline's 5 per epoch (10): ratios 2.5 and 1.7 -> 5 and 3
#: epochs; the wall seconds say 2.0 for both seeds (-> 4 epochs), so the CPU measure is what decides.
DISTILLED_CPU = {0: 25.0, 1: 17.0}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("tiny"), n=8, seed=1, height=32, width=128)


def _cfg_dict(root: Path, **exp: Any) -> dict[str, Any]:
    return {
        "name": "eq",
        "data": {
            "kind": "severstal",
            "root": str(root),
            "crop": [32, 128],
            "batch_size": 2,
            "num_workers": 0,
        },
        "train": {"epochs": EPOCHS, "accelerator": "cpu"},
        "models": {"teacher": "resunet_convnext_atto_gc_ff", "student": "resunet_convnext_atto"},
        "experiments": [{"name": "exp1", "teacher": "teacher", "student": "student", **exp}],
        "seeds": [0, 1],
        "bench": {"repeats": 1, "warmup": 0, "device": "cpu"},
        "evaluate": {"device": "cpu", "batch_size": 2},
    }


class ClockFit:
    """A fake ``fit``: saves a random model and reports fake wall and CPU seconds.

    Costs: teacher 50 CPU s; a plain student 5 CPU s (1 wall s) per epoch; a distilled student
    ``DISTILLED_CPU[seed]`` CPU s and 4 wall s.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, cfg: Any, *, progress: bool = True, resume: str | None = None) -> Any:
        from steelkd.models import create_model, make_card, save_model

        self.calls.append(copy.deepcopy(cfg))
        torch.manual_seed(cfg.train.seed + 10 * cfg.train.epochs + 100 * (cfg.distill is not None))
        model = create_model(cfg.model.name, num_classes=len(cfg.data.class_names))
        out = Path(cfg.train.out_dir)
        save_model(model, out / "model", make_card(model, cfg.data.class_names, config=cfg.to_dict()))
        if cfg.distill is not None:
            cpu, wall = DISTILLED_CPU[cfg.train.seed], 4.0
        elif cfg.model.name.endswith("gc_ff"):
            cpu, wall = 50.0, 10.0
        else:
            cpu, wall = 5.0 * cfg.train.epochs, 1.0 * cfg.train.epochs
        return SimpleNamespace(seconds=wall, cpu_seconds=cpu, model_dir=out / "model")


def _runs(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "results.json").read_text())["runs"]


def _info(run: dict[str, Any], out: Path) -> dict[str, Any]:
    return json.loads((out / "runs" / run["run"] / "steelkd_run.json").read_text())


# ------------------------------------------------------------------------------------------ end to end
def test_equal_compute_runs_reuse_results_json_and_report(
    tmp_path: Path, tiny_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(tiny_root, equal_compute=True))
    out = tmp_path / "exp"
    fit = ClockFit()
    res = run_experiment(cfg, out, fit=fit)

    # teacher, 2 baselines, 2 distilled, then the 2 equal-compute baselines at round(E * CPU ratio) epochs
    assert res.trained == len(fit.calls) == 7
    eq_calls = fit.calls[5:]
    assert [c.distill for c in eq_calls] == [None, None]
    assert [(c.train.seed, c.train.epochs) for c in eq_calls] == [(0, 5), (1, 3)]  # not E=2, not wall's 4
    for c in eq_calls:  # the baseline's config but for the epochs
        base = next(
            b
            for b in fit.calls[:5]
            if b.distill is None and b.train.seed == c.train.seed and b.model.name == c.model.name
        )
        a, b = c.to_dict(), base.to_dict()
        for d in (a, b):
            d["train"].pop("out_dir"), d["train"].pop("epochs")
        assert a == b

    runs = _runs(out)
    assert len(runs) == 7
    for r in runs:
        for key in (
            "role",
            "kind",
            "method",
            "experiments",
            "seed",
            "wall_seconds",
            "cpu_seconds",
            "epochs",
            "mdice",
            "miou_bg",
            "dice",
            "run",
            "uses",
            "status",
            "metrics",
        ):
            assert key in r, (r["run"], key)
        assert r["mdice"] == pytest.approx(r["metrics"]["mdice"]) and r["dice"] == r["metrics"]["dice"]
        assert r["experiments"] == ["exp1"]
    by_kind = {(r["role"], r["kind"], r["seed"]): r for r in runs}
    assert set(by_kind) == {("teacher", "baseline", 0)} | {
        ("student", kind, s) for kind in ("baseline", "distilled", "baseline_equal_compute") for s in (0, 1)
    }
    assert by_kind[("teacher", "baseline", 0)]["method"] is None
    assert {by_kind[("student", "distilled", s)]["method"] for s in (0, 1)} == {"cwd"}
    eq0, eq1 = (by_kind[("student", "baseline_equal_compute", s)] for s in (0, 1))
    assert (eq0["epochs"], eq1["epochs"], eq0["method"]) == (5, 3, None)
    assert eq0["cpu_seconds"] == pytest.approx(25.0) and eq0["wall_seconds"] == pytest.approx(5.0)
    dist0 = by_kind[("student", "distilled", 0)]
    info = _info(eq0, out)
    assert info["equal_compute_of"] == dist0["run"] and info["compute_ratio"] == pytest.approx(2.5)
    assert info["compute_measure"] == "cpu" and info["base_epochs"] == EPOCHS
    assert _info(dist0, out)["cpu_seconds"] == pytest.approx(25.0)
    assert eq0["run"].startswith("student-eq-exp1-")

    # the report: Table 1d with the three student rows, the difference with the pooled sd, the summary
    text = res.report.read_text()
    assert "Table 1d — exp1: students at equal compute" in text
    t = pd.read_csv(out / "tables" / "exp1_equal_compute.csv")
    assert [n.split(" ", 1)[1] for n in t["student"]] == [
        "baseline",
        "baseline at equal compute",
        "distilled",
    ]
    assert list(t["epochs"].astype(str)) == ["2", "5/3", "2"]
    assert t.loc[1, "compute ratio"] == pytest.approx((2.5 + 1.7) / 2)
    eq_md = [r["mdice"] for r in (eq0, eq1)]
    dist_md = [by_kind[("student", "distilled", s)]["mdice"] for s in (0, 1)]
    assert t.loc[1, "mDice"] == pytest.approx(sum(eq_md) / 2)
    assert t.loc[1, "mIoU (incl. bg)"] == pytest.approx((eq0["miou_bg"] + eq1["miou_bg"]) / 2)
    diff = sum(dist_md) / 2 - sum(eq_md) / 2
    sd = math.sqrt((MeanStd.of(dist_md).std ** 2 + MeanStd.of(eq_md).std ** 2) / 2)
    m = re.search(
        r"distilled − equal-compute baseline: ([+-][0-9.]+) mDice \(pooled sd ([0-9.]+), "
        r"([+-][0-9.]+) sd\)",
        text,
    )
    assert m, text
    assert float(m.group(1)) == pytest.approx(diff, abs=6e-5)
    assert float(m.group(2)) == pytest.approx(sd, abs=6e-5)
    assert float(m.group(3)) == pytest.approx(diff / sd, abs=0.06)
    summary = text[text.index("## Summary") : text.index("## Deviations")]
    assert "distilled − baseline" in summary and "distilled − equal-compute baseline" in summary
    assert "baseline at equal compute (5/3 epochs)" in summary
    assert "Methods side by side" in summary
    methods = pd.read_csv(out / "tables" / "methods.csv")
    assert list(methods["experiment"]) == ["exp1"] and list(methods["method"]) == ["cwd"]
    assert methods.loc[0, "− equal compute"] == pytest.approx(diff)
    assert methods.loc[0, "− equal compute (sd)"] == pytest.approx(diff / sd)
    assert methods.loc[0, "its epochs"] == "5/3" and methods.loc[0, "compute ratio"] == pytest.approx(2.1)
    base_md = MeanStd.of([by_kind[("student", "baseline", s)]["mdice"] for s in (0, 1)])
    assert methods.loc[0, "− baseline"] == pytest.approx(sum(dist_md) / 2 - base_md.mean)
    # the undistilled student by schedule length: the baselines' epochs, then each equal-compute run's
    schedule = pd.read_csv(out / "tables" / "schedule.csv")
    assert list(schedule["student"]) == ["student"] * 3 and list(schedule["epochs"]) == [EPOCHS, 3, 5]
    assert list(schedule["runs"]) == ["baseline x2", "equal compute x1", "equal compute x1"]
    assert schedule.loc[0, "mDice"] == pytest.approx(base_md.mean)
    assert schedule.loc[2, "mDice"] == pytest.approx(eq0["mdice"])
    assert "Undistilled students by schedule length" in summary

    # a second call reads the same seconds from steelkd_run.json and reuses every run
    fit2 = ClockFit()
    res2 = run_experiment(cfg, out, fit=fit2)
    assert fit2.calls == [] and res2.trained == 0
    assert {r.status for r in res2.runs} == {"reused"}
    assert sorted(r["epochs"] for r in _runs(out) if r["kind"] == "baseline_equal_compute") == [3, 5]

    # a reused run without cpu_seconds (made before they were recorded): wall seconds for both runs
    base0 = by_kind[("student", "baseline", 0)]
    path = out / "runs" / base0["run"] / "steelkd_run.json"
    old = json.loads(path.read_text())
    del old["cpu_seconds"]
    path.write_text(json.dumps(old))
    fit3 = ClockFit()
    with caplog.at_level(logging.INFO, logger="steelkd.experiment"):
        run_experiment(cfg, out, fit=fit3)
    assert [(c.train.seed, c.train.epochs) for c in fit3.calls] == [(0, 4)]  # wall ratio 4 s / 2 s
    assert "no CPU seconds recorded" in caplog.text


def test_without_equal_compute_nothing_more_is_trained(tmp_path: Path, tiny_root: Path) -> None:
    d = _cfg_dict(tiny_root)
    d["seeds"] = [0]
    cfg = experiment_config_from_dict(d)
    fit = ClockFit()
    res = run_experiment(cfg, tmp_path / "plain", fit=fit)
    assert res.trained == 3
    assert {r["kind"] for r in _runs(tmp_path / "plain")} == {"baseline", "distilled"}
    assert "equal compute" not in res.report.read_text()


# ----------------------------------------------------------------------------------------------- units
def _finished(
    spec: Any, seconds: float | None, cpu: float | None, device: str | None = "cpu", hardware: str = "CPU A"
) -> Any:
    return SimpleNamespace(
        spec=spec, status="trained", seconds=seconds, cpu_seconds=cpu, device=device, hardware=hardware
    )


def test_compute_ratio_measure() -> None:
    spec = SimpleNamespace(label="x", dir=Path("runs/x"))
    assert compute_ratio(_finished(spec, 2.0, 10.0), _finished(spec, 3.0, 25.0)) == (2.5, "cpu")
    gpu = compute_ratio(_finished(spec, 2.0, 10.0, "cuda"), _finished(spec, 3.0, 25.0, "cuda"))
    assert gpu == (1.5, "wall")
    assert compute_ratio(_finished(spec, 2.0, None), _finished(spec, 3.0, 25.0)) == (1.5, "wall")
    assert compute_ratio(_finished(spec, 2.0, 10.0, None), _finished(spec, 3.0, 25.0, None))[1] == "wall"
    with pytest.raises(ValueError, match="no recorded seconds"):
        compute_ratio(_finished(spec, None, None), _finished(spec, 3.0, None))
    with pytest.raises(ValueError, match="x was timed on CPU B, its baseline x on CPU A: their seconds"):
        compute_ratio(_finished(spec, 2.0, 10.0), _finished(spec, 3.0, 25.0, hardware="CPU B"))
    with pytest.raises(ValueError, match="on unrecorded hardware"):
        compute_ratio(_finished(spec, 2.0, 10.0, hardware=""), _finished(spec, 3.0, 25.0, hardware=""))
    assert [equal_compute_epochs(8, r) for r in (0.5, 1.0, 1.3, 2.26)] == [8, 8, 10, 18]


def test_plan_equal_compute_hash_and_dedup(tmp_path: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(Path("/d"), equal_compute=True))
    plan = plan_experiment(cfg, tmp_path)
    assert all("baseline_equal_compute" not in p.uses for p in plan)  # planned only after training
    base = {p.seed: p for p in plan if p.uses == ["baseline"]}
    dist = {p.seed: p for p in plan if p.teacher is not None}
    records = [_finished(p, 1.0, 1.0) for p in plan if p.teacher is None]
    records += [_finished(dist[0], 1.0, 2.6), _finished(dist[1], 1.0, 0.8)]  # seed 1: cheaper than baseline
    new = plan_equal_compute(cfg, records, tmp_path)
    assert [(p.seed, p.config.train.epochs, p.status) for p in new] == [(0, 5, "train")]
    assert new[0].key == "student-eq-exp1" and new[0].hash != base[0].hash
    assert new[0].dir == tmp_path / "runs" / f"student-eq-exp1-{new[0].hash}"
    assert new[0].aliases == [("student", "equal", 0, "exp1")]
    assert new[0].equal_compute[0].of == dist[0].label and new[0].equal_compute[0].ratio == pytest.approx(2.6)
    # ratio below 1: the equal-compute baseline is the baseline itself (E epochs, same hash)
    assert "baseline_equal_compute" in base[1].uses and ("student", "equal", 1, "exp1") in base[1].aliases
    assert run_kind(base[1]) == "baseline" and run_kind(new[0]) == "baseline_equal_compute"
    # the same ratios again: the same hashes (a rerun reuses the run)
    again = plan_equal_compute(cfg, records, tmp_path)
    assert [p.hash for p in again] == [new[0].hash]


def test_a_baseline_timed_on_other_hardware_is_timed_again(tmp_path: Path) -> None:
    cfg = experiment_config_from_dict(_cfg_dict(Path("/d"), equal_compute=True))
    plan = plan_experiment(cfg, tmp_path)
    base = {p.seed: p for p in plan if p.uses == ["baseline"]}
    records = [_finished(p, 1.0, 1000.0, hardware="CPU A") for p in plan if p.teacher is None]
    records += [_finished(p, 1.0, 25.0, hardware="CPU B") for p in plan if p.teacher is not None]
    assert plan_timing_runs(cfg, records, tmp_path, here="CPU B") != []
    with pytest.raises(ValueError, match="needs the baseline timed on CPU B, and this machine is CPU C"):
        plan_timing_runs(cfg, records, tmp_path, here="CPU C")
    timing = plan_timing_runs(cfg, records, tmp_path, here="CPU B")
    assert [(t.key, t.uses, t.seed, t.timed_on, t.status) for t in timing] == [
        ("student-timing", ["baseline_timing"], s, "CPU B", "train") for s in (0, 1)
    ]
    assert [t.config.to_dict()["train"]["epochs"] for t in timing] == [EPOCHS, EPOCHS]
    assert {t.hash for t in timing}.isdisjoint(p.hash for p in plan)  # salted with the hardware
    assert run_kind(timing[0]) == "baseline_timing"
    # the ratio is taken against the timing run (10 CPU s), not the carried baseline (1000 CPU s)
    timed = [_finished(t, 1.0, 10.0, hardware="CPU B") for t in timing]
    eq = plan_equal_compute(cfg, [*records, *timed], tmp_path)
    assert [(p.seed, p.config.train.epochs) for p in eq] == [(0, 5), (1, 5)]
    assert eq[0].equal_compute[0].ratio == pytest.approx(2.5)
    with pytest.raises(ValueError, match="their seconds do not compare"):
        plan_equal_compute(cfg, records, tmp_path)  # no timing run: no ratio across machines
    # the same hardware: no timing run
    same = [_finished(r.spec, 1.0, 10.0, hardware="CPU B") for r in records]
    assert plan_timing_runs(cfg, same, tmp_path, here="CPU B") == []
    assert base[0].timed_on == ""


def test_run_method_names() -> None:
    def m(**kw: Any) -> str | None:
        return run_method(Config(distill=DistillConfig(**kw)))

    assert run_method(Config()) is None
    assert [m(), m(method="kd"), m(method="dist"), m(logit_cache="auto")] == [
        "cwd",
        "kd",
        "dist",
        "cwd+cache",
    ]
    assert [m(where="features"), m(method="kd", where="logits_low")] == ["cwd:features", "kd:logits_low"]


def test_equal_compute_config_field() -> None:
    cfg = experiment_config_from_dict(_cfg_dict(Path("/d")))
    assert cfg.experiments[0].equal_compute is False
    with pytest.raises(ConfigError, match="equal_compute"):
        experiment_config_from_dict(_cfg_dict(Path("/d"), equal_compute="often"))
