"""Training and distillation engine: learning, frozen teacher, exact resume, DDP equality."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from steelkd.config import Config, DistillConfig, save_config
from steelkd.data import synth
from steelkd.engine import DistillerModule, EpochSeededSampler, build_module, fit
from steelkd.models import create_model, load_model, make_card, save_model

H, W = 64, 256


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, n=40, seed=0, height=H, width=W)
    return root


def tiny_config(root: Path, out: Path, **train: object) -> Config:
    cfg = Config(name="t")
    cfg.data.kind = "severstal"
    cfg.data.root = str(root)
    cfg.data.split_file = str(out.parent / "split.json")
    cfg.data.crop = [H, 128]
    cfg.data.batch_size = 8
    cfg.data.num_workers = 0
    cfg.model.name = "resunet_convnext_atto"
    cfg.train.lr = 2e-3
    cfg.train.epochs = 2
    cfg.train.precision = "32"
    cfg.train.accelerator = "cpu"
    cfg.train.log_every = 1
    cfg.train.out_dir = str(out)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_training_makes_loss_fall_and_dice_rise(synth_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_root, tmp_path / "run", epochs=12, scheduler="cosine", lr=3e-3)
    result = fit(cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    losses = log["train/loss_epoch"].dropna().to_numpy()
    assert losses[-1] < 0.6 * losses[0], losses
    dice = log["val/mdice"].dropna().to_numpy()
    # Chance level for a model that predicts a class everywhere is far below 0.2 on this data.
    assert dice.max() > 0.4, dice
    assert result.best_metrics["mdice"] == pytest.approx(dice.max(), abs=1e-6)
    _, card = load_model(result.model_dir)
    assert card["architecture"] == "resunet_convnext_atto"
    assert card["metrics"]["mdice"] == pytest.approx(dice.max(), abs=1e-6)
    assert card["config"]["train"]["class_weights"][0] < card["config"]["train"]["class_weights"][1]
    for col in ("train/loss_step", "train/loss_ce_step", "lr", "val/dice_pitting", "val/kaggle_dice"):
        assert col in log.columns


def test_min_steps_raise_the_epochs_and_the_schedule_spans_them(synth_root: Path, tmp_path: Path) -> None:
    from steelkd.config import load_config

    cfg = tiny_config(synth_root, tmp_path / "run", epochs=1, min_steps=7, limit_train_batches=2,
                      limit_val_batches=1, scheduler="cosine", log_every=1)  # fmt: skip
    result = fit(cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    assert sorted(log["val/mdice"].dropna().index.map(log["epoch"]).unique()) == [0, 1, 2, 3]  # ceil(7/2)
    assert int(log["step"].max()) + 1 == 8
    assert load_config(tmp_path / "run" / "config.yaml").train.epochs == 4  # the config says what it trained
    lrs = log["lr"].dropna().to_numpy()
    assert lrs[-1] < 0.25 * lrs.max()  # the cosine decays over the 8 steps, not over the 2 of epochs=1
    assert cfg.train.epochs == 1  # the caller's config is not changed


def _teacher_dir(tmp_path: Path, class_names: list[str]) -> Path:
    torch.manual_seed(1)
    teacher = create_model("resunet_convnext_atto_gc_ff", num_classes=len(class_names))
    # Non-trivial BN statistics, so a silent update would show.
    with torch.no_grad():
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    return save_model(teacher, tmp_path / "teacher", make_card(teacher, class_names))


def test_distillation_epoch_leaves_teacher_bit_identical(synth_root: Path, tmp_path: Path) -> None:
    """Run the distiller through real Lightning epochs and compare the live teacher to its file."""
    cfg = tiny_config(synth_root, tmp_path / "kd", epochs=2)
    cfg.distill = DistillConfig(teacher=str(_teacher_dir(tmp_path, cfg.data.class_names)))
    seen: dict[str, torch.Tensor] = {}

    class Grab(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: DistillerModule) -> None:
            assert not pl_module.teacher.training
            seen.update({k: v.detach().clone() for k, v in pl_module.teacher.net.state_dict().items()})

    result = fit(cfg, progress=False, callbacks=[Grab()])
    log = pd.read_csv(result.metrics_csv)
    kd = log["train/loss_kd_step"].dropna()
    assert len(kd) > 0 and kd.gt(0).all()
    ref, _ = load_model(cfg.distill.teacher)
    assert seen
    for k, v in ref.state_dict().items():
        assert torch.equal(v, seen[k]), k
    # The distilled checkpoint holds the student only; the exported model is the student.
    ckpt = torch.load(result.last_ckpt, weights_only=True)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    _, card = load_model(result.model_dir)
    assert card["architecture"] == "resunet_convnext_atto"


def test_distillation_gradient_reaches_student_only(synth_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_root, tmp_path / "kd", epochs=1)
    cfg.train.class_weights = [1.0] * 5
    cfg.distill = DistillConfig(teacher=str(_teacher_dir(tmp_path, cfg.data.class_names)))
    module = build_module(cfg, steps_per_epoch=1)
    module.train()
    assert module.model.training and not module.teacher.training
    opt_params = {id(p) for p in module.trainable_parameters()}
    assert opt_params == {id(p) for p in module.model.parameters()}
    module.log_losses = lambda *a, **k: None  # type: ignore[method-assign]
    x = torch.randn(2, 3, H, 128)
    y = torch.randint(0, 5, (2, H, 128))
    module.training_step((x, y), 0).backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.parameters())


class _Kill(L.Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("killed")


def test_resume_after_kill_matches_uninterrupted_run(synth_root: Path, tmp_path: Path) -> None:
    full = tiny_config(
        synth_root, tmp_path / "full", epochs=3, scheduler="cosine", deterministic=True, val_every=3
    )
    fit(full, progress=False)
    part = tiny_config(
        synth_root, tmp_path / "part", epochs=3, scheduler="cosine", deterministic=True, val_every=3
    )
    with pytest.raises(RuntimeError, match="killed"):
        fit(part, progress=False, callbacks=[_Kill(at_epoch=2)])
    fit(part, progress=False, resume="last")
    a = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_epoch_seeded_sampler_depends_on_epoch_only() -> None:
    s = EpochSeededSampler(10, seed=3)
    first = list(s)
    assert sorted(i % 10 for i in first) == list(range(10))
    s.set_epoch(1)
    second = list(s)
    assert [i // 10 for i in second] == [1] * 10 and [i % 10 for i in second] != [i % 10 for i in first]
    s.set_epoch(0)
    assert list(s) == first


@pytest.mark.slow
def test_ddp_two_processes_validation_equals_single_process(synth_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_root, tmp_path / "ddp", epochs=1, devices=2, strategy="ddp")
    cfg.data.max_val_images = 7  # odd on purpose: sharding must not double-count any image
    save_config(cfg, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("steelkd")
    proc = subprocess.run(
        [str(exe), "train", "--config", str(tmp_path / "ddp.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = pd.read_csv(tmp_path / "ddp/logs/metrics.csv")
    ddp_dice = log["val/mdice"].dropna().iloc[-1]
    # The same weights, validated in one process.
    single = tiny_config(synth_root, tmp_path / "single", epochs=1)
    single.data.max_val_images = 7
    from steelkd.data import build_datasets
    from steelkd.metrics import SegMetrics

    val_ds = build_datasets(single.data).val
    model, _ = load_model(tmp_path / "ddp/model")
    metric = SegMetrics(5)
    with torch.inference_mode():
        for i in range(len(val_ds)):
            x, y = val_ds[i]
            metric.update(model(x[None]).argmax(1), y[None])
    assert float(metric.compute()["mdice"]) == pytest.approx(float(ddp_dice), abs=1e-6)


@pytest.mark.parametrize("where", ["logits_low", "features"])
def test_distillation_where_options(synth_root: Path, tmp_path: Path, where: str) -> None:
    cfg = tiny_config(synth_root, tmp_path / "kd", epochs=1)
    cfg.train.class_weights = [1.0] * 5
    cfg.distill = DistillConfig(teacher=str(_teacher_dir(tmp_path, cfg.data.class_names)), where=where)
    module = build_module(cfg, steps_per_epoch=1)
    module.log_losses = lambda *a, **k: None  # type: ignore[method-assign]
    adapter = getattr(module.distill_loss, "adapter", None)
    adapters = list(adapter.parameters()) if adapter is not None else []
    # atto student and atto+GC+FF teacher share decoder widths: adapters only where channels differ
    assert (where == "features") == (adapter is not None)
    assert {id(p) for p in adapters} <= {id(p) for p in module.trainable_parameters()}
    x = torch.randn(2, 3, H, 128)
    y = torch.randint(0, 5, (2, H, 128))
    module.train()
    loss = module.training_step((x, y), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None for p in module.model.parameters())
    assert all(p.grad is None for p in module.teacher.parameters())
