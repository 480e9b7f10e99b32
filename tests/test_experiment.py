"""The experiment runner: config format, content-hash reuse, resume, the report, and the paper preset."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from steelkd.config import Config, ConfigError, DistillConfig
from steelkd.experiment import (
    ExperimentConfig,
    config_hash,
    experiment_config_from_dict,
    load_experiment_config,
    paper_deviations,
    plan_experiment,
    run_config,
    run_experiment,
)
from steelkd.experiment.plan import HASH_OMIT_DEFAULT

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "experiments"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), n=8, seed=0, height=64, width=256)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Very small images for the runner tests that use a fake fit (speed)."""
    from steelkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("tiny"), n=8, seed=1, height=32, width=128)


def _small(root: Path, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "small",
        "data": {
            "kind": "severstal",
            "root": str(root),
            "crop": [64, 128],
            "batch_size": 2,
            "num_workers": 0,
        },
        "train": {"epochs": 1, "accelerator": "cpu"},
        "models": {"teacher": "resunet_convnext_atto_gc_ff", "student": "resunet_convnext_atto"},
        "experiments": [{"name": "exp1", "teacher": "teacher", "student": "student"}],
        "seeds": [0],
        "bench": {"repeats": 2, "warmup": 0, "device": "cpu"},
        "evaluate": {"device": "cpu", "batch_size": 2},
    }
    d.update(extra)
    return d


class FakeFit:
    """Stands in for steelkd.engine.fit: saves a random model of the right architecture and a loss log."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str | None]] = []

    def __call__(self, cfg: Any, *, progress: bool = True, resume: str | None = None) -> Any:
        from steelkd.models import create_model, make_card, save_model

        self.calls.append((copy.deepcopy(cfg), resume))
        out = Path(cfg.train.out_dir)
        torch.manual_seed(cfg.train.seed)
        model = create_model(cfg.model.name, num_classes=len(cfg.data.class_names))
        save_model(model, out / "model", make_card(model, cfg.data.class_names, config=cfg.to_dict()))
        rows = [
            {"epoch": 0, "step": s, "train/loss_step": 2.0 - 0.1 * s, "train/loss_kd_step": 0.5 - 0.05 * s}
            for s in range(1, 4)
        ]
        rows.append({"epoch": 0, "step": 3, "train/loss_epoch": 1.8, "train/loss_kd_epoch": 0.4})
        (out / "logs").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out / "logs" / "metrics.csv", index=False)
        return SimpleNamespace(seconds=1.25, cpu_seconds=2.5, model_dir=out / "model")


# ------------------------------------------------------------------------------------------ config
def test_config_roles_and_defaults() -> None:
    cfg = experiment_config_from_dict(
        {
            "models": {
                "t": {
                    "name": "resunet_convnext_atto_gc_ff",
                    "train": {"epochs": 7},
                    "data": {"crop": [32, 64]},
                },
                "s": "resunet_convnext_atto",
            },
            "experiments": [{"name": "e", "teacher": "t", "student": "s"}],
            "train": {"epochs": 3},
            "seeds": [4, 5],
        }
    )
    assert isinstance(cfg, ExperimentConfig)
    t = run_config(cfg, "t", seed=5)
    s = run_config(cfg, "s", seed=4, teacher_dir="/x/model")
    assert (t.model.name, t.train.epochs, t.data.crop, t.train.seed) == (
        "resunet_convnext_atto_gc_ff",
        7,
        [32, 64],
        5,
    )
    assert (s.model.name, s.train.epochs, s.train.seed) == ("resunet_convnext_atto", 3, 4)
    assert s.distill is not None and s.distill.teacher == "/x/model" and t.distill is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"experiments": [{"name": "e", "teacher": "nobody", "student": "s"}]}, "unknown role 'nobody'"),
        ({"models": {"t": "resunet_convnext_atto", "s": "no_such_net"}}, "unknown model 'no_such_net'"),
        (
            {
                "models": {
                    "t": {"name": "resunet_convnext_atto", "train": {"epoch": 3}},
                    "s": "resunet_convnext_atto",
                }
            },
            "models.t: unknown key train.epoch",
        ),
        ({"bogus": 1}, "unknown key bogus"),
        ({"seeds": []}, "seeds"),
        ({"bench": {"size": [256]}}, "size"),
        ({"distill": {"teacher": "x"}}, "distill.teacher"),
        ({"train": {"devices": 2}}, "train.devices=2"),
        ({"train": {"min_steps": 500}}, "train.min_steps=500: experiments schedule by train.epochs"),
    ],
)
def test_config_errors(patch: dict[str, Any], message: str) -> None:
    d = {
        "models": {"t": "resunet_convnext_atto", "s": "resunet_convnext_atto"},
        "experiments": [{"name": "e", "teacher": "t", "student": "s"}],
    }
    d.update(patch)
    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        experiment_config_from_dict(d)


def test_presets_load_and_plan(tmp_path: Path) -> None:
    paper = load_experiment_config(PRESETS / "paper.yaml", ["data.root=/data/severstal"])
    assert paper.data.root == "/data/severstal"
    assert [(paper.models[e.teacher].name, paper.models[e.student].name) for e in paper.experiments] == [
        ("resunet_convnext_tiny_gc_ff", "resunet_convnext_tiny"),
        ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny_gc_ff"),
        ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny"),
    ]
    plan = plan_experiment(paper, tmp_path)
    n_seeds = len(paper.seeds)
    # 2 teachers + tiny x seeds + tiny_gc_ff x (seeds - 1: seed 0 is the exp-1 teacher) + 3 x seeds distilled
    assert len(plan) == 2 + n_seeds + (n_seeds - 1) + 3 * n_seeds
    shared = [p for p in plan if set(p.uses) == {"teacher", "baseline"}]
    assert len(shared) == 1 and shared[0].config.model.name == "resunet_convnext_tiny_gc_ff"
    assert all(p.status == "train" for p in plan)
    assert all(p.dir.parent == tmp_path / "runs" and p.dir.name.endswith(p.hash) for p in plan)
    kd = [p for p in plan if p.teacher is not None]
    assert all(p.config.distill.teacher == str(p.teacher.model_dir) for p in kd)
    devs = "\n".join(paper_deviations(paper))
    assert "train.precision: bf16-mixed" in devs and "distill.variant" in devs
    assert "train.epochs" not in devs and "models" not in devs and "data set" not in devs

    neu = load_experiment_config(PRESETS / "neu_seg_cpu.yaml")
    assert neu.data.class_names == ["background", "inclusion", "patches", "scratches"]
    assert len(neu.seeds) == 3 and len(neu.experiments) == 1
    devs = "\n".join(paper_deviations(neu))
    assert "data set: folder" in devs and "train.epochs" in devs
    demo = load_experiment_config(PRESETS / "demo.yaml")
    assert demo.data.kind == "synth"
    assert "train.epochs for teacher" in "\n".join(paper_deviations(demo))


def test_config_hash_content_and_teacher() -> None:
    cfg = experiment_config_from_dict(_small(Path("/d")))
    a = run_config(cfg, "student", seed=0)
    b = run_config(cfg, "student", seed=0)
    b.train.out_dir, b.data.num_workers = "/elsewhere", 7
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(run_config(cfg, "student", seed=1))
    b.train.lr = 5e-4
    assert config_hash(a) != config_hash(b)
    # a distillation run names its teacher by hash, not by path
    k1 = run_config(cfg, "student", seed=0, teacher_dir="/out1/runs/t/model")
    k2 = run_config(cfg, "student", seed=0, teacher_dir="/out2/runs/t/model")
    assert config_hash(k1, "abc") == config_hash(k2, "abc") != config_hash(k1, "abd")


def test_run_hashes_are_a_contract_with_run_folders_on_disk() -> None:
    """The hashes are a contract with run folders on disk: these are the values since the validation split
    (``data.val_fraction``, which changes what every run learns, so older runs are retrained on purpose).
    A field added later at its default (``HASH_OMIT_DEFAULT``, e.g. ``distill.logit_cache``) and a speed
    setting (``HASH_EXCLUDE``, e.g. ``train.compile``) leave them unchanged."""
    cfg = experiment_config_from_dict(_small(Path("/d")))
    assert config_hash(run_config(cfg, "teacher", seed=0)) == "6b8a44a26533"
    assert config_hash(run_config(cfg, "student", seed=0, teacher_dir="/t"), "abc") == "4b0a019676e5"
    cached = run_config(cfg, "student", seed=0, teacher_dir="/t", distill={"logit_cache": "auto"})
    assert config_hash(cached, "abc") != "4b0a019676e5"
    compiled = run_config(cfg, "teacher", seed=0)
    compiled.train.compile = True
    assert config_hash(compiled) == "6b8a44a26533"
    cropped = run_config(cfg, "teacher", seed=0)
    cropped.data.crop_on_defect = 0.5
    assert config_hash(cropped) != "6b8a44a26533"


def test_hash_omitted_defaults_are_the_config_defaults() -> None:
    """A field is left out of the hash only at its real default: a stale entry would merge different runs."""
    d = Config(distill=DistillConfig(teacher="t")).to_dict()
    for key, default in HASH_OMIT_DEFAULT.items():
        section, field = key.split(".")
        assert d[section][field] == default, key


def test_experiments_differing_only_in_distill_settings_share_teacher_and_baselines() -> None:
    exps = [
        {"name": "live", "teacher": "teacher", "student": "student"},
        {"name": "cached", "teacher": "teacher", "student": "student", "distill": {"logit_cache": "auto"}},
    ]
    cfg = experiment_config_from_dict(_small(Path("/d"), experiments=exps, seeds=[0, 1]))
    plan = plan_experiment(cfg, "/tmp/out")
    uses = [tuple(r.uses) for r in plan]
    assert uses.count(("teacher",)) == 1 and uses.count(("baseline",)) == 2
    kd = [r for r in plan if "distilled" in r.uses]
    assert len(kd) == 4 and len({r.hash for r in kd}) == 4
    assert sorted(r.config.distill.logit_cache for r in kd) == ["", "", "auto", "auto"]
    assert {a[3] for r in kd for a in r.aliases} == {"live", "cached"}
    with pytest.raises(ConfigError, match=r"experiments\[0\].distill.teacher"):
        experiment_config_from_dict(
            _small(Path("/d"), experiments=[{**exps[0], "distill": {"teacher": "x"}}])
        )


def test_only_keeps_named_experiments_with_the_same_run_hashes(tmp_path: Path) -> None:
    exps = [
        {"name": "live", "teacher": "teacher", "student": "student"},
        {"name": "cached", "teacher": "teacher", "student": "student", "distill": {"logit_cache": "auto"}},
    ]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_small(Path("/d"), experiments=exps, seeds=[0, 1])))
    whole = plan_experiment(load_experiment_config(path), tmp_path / "out")
    stage_cfg = load_experiment_config(path, only=["cached"])
    assert [e.name for e in stage_cfg.experiments] == ["cached"]
    stage = plan_experiment(stage_cfg, tmp_path / "out")
    # the stage is the whole plan less the other experiment's distilled runs, hash for hash
    assert {r.hash for r in stage} == {r.hash for r in whole if r.config.distill is None} | {
        r.hash for r in whole if r.config.distill is not None and r.config.distill.logit_cache == "auto"
    }
    assert len(stage) == len(whole) - 2
    message = r"exp\.yaml: only: no experiment named 'dist' \(experiments: live, cached\)"
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(path, only=["dist"])


# ---------------------------------------------------------------------------------------- the chain
#: The package's modules in chain order: each may import only modules before it.
CHAIN = [
    "config",
    "plan",
    "equal_compute",
    "results",
    "deviations",
    "run",
    "report_sections",
    "report_experiments",
    "report",
    "pipeline",
]
#: What the report side (results, deviations, report*) must not import: it runs no model.
MODEL_CODE = ("torch", "steelkd.models", "steelkd.engine", "steelkd.evaluate", "steelkd.bench")


def _imports(module: str) -> set[str]:
    tree = ast.parse((REPO / "src" / "steelkd" / "experiment" / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_package_is_a_one_way_chain() -> None:
    files = {p.stem for p in (REPO / "src" / "steelkd" / "experiment").glob("*.py")} - {"__init__"}
    assert files == set(CHAIN)
    for i, module in enumerate(CHAIN):
        own = {n.split(".")[2] for n in _imports(module) if n.startswith("steelkd.experiment.")}
        later = own & set(CHAIN[i:])
        assert not later, f"{module} imports {later}, which come later in the chain"
    for module in ("results", "deviations", "report_sections", "report_experiments", "report"):
        bad = {n for n in _imports(module) if n.startswith(MODEL_CODE) or n == "steelkd.experiment.run"}
        assert not bad, f"{module} imports model code {bad}"


# ------------------------------------------------------------------------------------- reuse + report
def test_reuse_resume_and_report(tmp_path: Path, tiny_root: Path) -> None:
    out = tmp_path / "exp"
    cfg = experiment_config_from_dict(_small(tiny_root))
    fit = FakeFit()
    res = run_experiment(cfg, out, fit=fit)
    assert len(fit.calls) == 3 and res.trained == 3
    assert [c.distill is not None for c, _ in fit.calls] == [False, False, True]
    teacher_cfg = fit.calls[0][0]
    assert fit.calls[2][0].distill.teacher == str(Path(teacher_cfg.train.out_dir) / "model")

    # second run: everything reused, nothing trained
    fit2 = FakeFit()
    res2 = run_experiment(cfg, out, fit=fit2)
    assert fit2.calls == [] and res2.trained == 0
    assert {r.status for r in res2.runs} == {"reused"}
    assert all(r.seconds == pytest.approx(1.25) for r in res2.runs)  # wall time kept from the first run

    # an interrupted run (checkpoint, no model) is resumed; a new seed trains only the new students
    victim = res.runs[1].spec.dir
    for f in (victim / "model").iterdir():
        f.unlink()
    (victim / "checkpoints").mkdir()
    (victim / "checkpoints" / "last.ckpt").write_bytes(b"x")
    cfg2 = experiment_config_from_dict(_small(tiny_root, seeds=[0, 1]))
    fit3 = FakeFit()
    res3 = run_experiment(cfg2, out, fit=fit3)
    resumed = [(c.train.out_dir, r) for c, r in fit3.calls if r is not None]
    assert resumed == [(str(victim), str(victim / "checkpoints" / "last.ckpt"))]
    assert sorted(c.train.seed for c, _ in fit3.calls) == [0, 1, 1]  # resumed seed-0 baseline + 2 new
    assert res3.trained == 3

    # the report: margin before the tables, numbers equal the per-run evaluations
    text = res3.report.read_text()
    margin = text.index("teacher margin over baseline student:")
    assert margin < text.index("Table 1a") < text.index("Table 1b") < text.index("Table 1c")
    recs = {(r.spec.role, r.spec.teacher is not None, r.spec.seed): r for r in res3.runs}
    t = recs[("teacher", False, 0)].metrics
    base = [recs[("student", False, s)].metrics for s in (0, 1)]
    dist = [recs[("student", True, s)].metrics for s in (0, 1)]
    for r in res3.runs:  # each run's evaluation is stored beside it
        saved = json.loads(next(r.spec.dir.glob("eval-*.json")).read_text())
        assert saved["mdice"] == pytest.approx(r.metrics["mdice"])
    t1 = pd.read_csv(out / "tables" / "exp1_mdice.csv")
    assert t1.loc[0, "mDice before"] == pytest.approx(t["mdice"])
    assert t1.loc[1, "mDice before"] == pytest.approx(sum(m["mdice"] for m in base) / 2)
    assert t1.loc[1, "mDice after"] == pytest.approx(sum(m["mdice"] for m in dist) / 2)
    assert t1.loc[1, "mDice after_n"] == 2
    bench = {b["model"]: b for b in json.loads((out / "bench.json").read_text())}
    assert t1.loc[0, "params (M)"] == pytest.approx(bench["resunet_convnext_atto_gc_ff"]["params"] / 1e6)
    assert t1.loc[1, "FPS"] == pytest.approx(bench["resunet_convnext_atto"]["fps"])
    t3 = pd.read_csv(out / "tables" / "exp1_dice_per_class.csv")
    assert list(t3["distilled"]) == ["before", "after", "teacher"]
    for cls in ("pitting", "crazing", "scratches", "patches"):
        vals = [m["dice"][cls] for m in dist]
        if all(v == v for v in vals):  # NaN when a class never occurs
            assert t3.loc[1, cls] == pytest.approx(sum(vals) / 2)
    margin_val = float(re.search(r"teacher margin over baseline student: ([+-][0-9.]+)", text).group(1))
    assert margin_val == pytest.approx(t["mdice"] - sum(m["mdice"] for m in base) / 2, abs=6e-4)
    from steelkd.trivial import result_warnings

    flagged = [(r.spec.label, w) for r in res3.runs for w in result_warnings(r.metrics)]
    assert ("**Not learned**" in text) == bool(flagged)
    for label, w in flagged:  # every run no better than a trivial predictor is named under the summary
        assert f"- `{label}`: {w}" in text
    for fig in ("fig4_exp1_losses.png", "fig5_exp1_dice_per_class.png", "fig6_exp1_overlays.png"):
        assert (out / "figures" / fig).stat().st_size > 5000
        assert f"figures/{fig}" in text
    for needle in (
        "versions: python",
        "torch",
        "timm",
        "lightning",
        "steelkd",
        "machine:",
        "seeds: students [0, 1]",
        "Deviations from the paper",
        "mIoU (incl. bg)",
        "wall time",
    ):
        assert needle in text, needle


# ----------------------------------------------------------------------------------- the paper preset
@pytest.mark.slow
def test_paper_preset_end_to_end_on_tiny_synthetic_data(tmp_path: Path, synth_root: Path) -> None:
    """paper.yaml with the real engine, atto/femto stand-ins for ConvNeXt-B/T, one short epoch."""
    overrides = [
        f"data.root={synth_root}",
        "data.crop=[64,128]",
        "data.batch_size=4",
        "data.num_workers=0",
        "train.epochs=1",
        "train.limit_train_batches=2",
        "train.limit_val_batches=1",
        "train.precision='32'",
        "train.accelerator=cpu",
        "train.log_every=1",
        "models.base_gc_ff.name=resunet_convnext_femto_gc_ff",
        "models.tiny_gc_ff.name=resunet_convnext_atto_gc_ff",
        "models.tiny.name=resunet_convnext_atto",
        "seeds=[0]",
        "bench.size=[64,256]",
        "bench.repeats=2",
        "bench.warmup=0",
        "bench.device=cpu",
        "evaluate.device=cpu",
        "evaluate.batch_size=2",
        "evaluate.num_workers=0",
    ]
    cfg = load_experiment_config(PRESETS / "paper.yaml", overrides)
    out = tmp_path / "paper"
    res = run_experiment(cfg, out)
    assert res.trained == 6  # 2 teachers, atto baseline (atto_gc_ff baseline = exp-1 teacher), 3 distilled
    text = res.report.read_text()
    for k, name in enumerate(("exp1", "exp2", "exp3"), 1):
        assert f"## Experiment {k}: {name}" in text
        assert (out / "figures" / f"fig4_{name}_losses.png").is_file()
        assert (out / "figures" / f"fig5_{name}_dice_per_class.png").is_file()
        assert (out / "figures" / f"fig6_{name}_overlays.png").is_file()
    assert text.count("teacher margin over baseline student:") == 3 + 3  # summary + sections
    for ref in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Fig. 5"):
        assert f"(paper's {ref})" in text
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"trained"}
    models = pd.read_csv(out / "tables" / "models.csv")
    assert set(models["model"]) == {
        "resunet_convnext_femto_gc_ff",
        "resunet_convnext_atto_gc_ff",
        "resunet_convnext_atto",
    }
    t = pd.read_csv(out / "tables" / "exp3_mdice.csv")
    assert t["network"].tolist()[0].endswith("(teacher)") and not pd.isna(t.loc[1, "mDice after"])
    devs = text[text.index("## Deviations") : text.index("## Runs")]
    assert "experiment 3 (exp3) models: resunet_convnext_femto_gc_ff -> resunet_convnext_atto" in devs
    assert "train.epochs: 1 (paper: 80)" in devs
    # a distilled run's loss log has L_KD
    kd_run = next(r for r in res.runs if r.spec.teacher is not None)
    assert "train/loss_kd" in (kd_run.spec.dir / "logs" / "metrics.csv").read_text()
