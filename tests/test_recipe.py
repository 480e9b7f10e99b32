"""Issue 11's recipe callbacks (EMA of the student, early stopping, elapsed time) and learning curves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from steelkd.config import Config, DistillConfig
from steelkd.data import synth
from steelkd.engine import fit
from steelkd.engine.callbacks import checkpoint_bytes
from steelkd.engine.recipe import ELAPSED_KEY, ElapsedTime, StudentEMA, recipe_callbacks
from steelkd.figures import plateau_epoch, plot_learning_curves, read_val_curve
from steelkd.models import create_model, load_model, make_card, save_model
from test_engine import tiny_config as engine_config

H, W = 64, 128


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, n=24, seed=0, height=H, width=W)
    return root


def tiny_config(root: Path, out: Path, **train: object) -> Config:
    """test_engine's tiny run made smaller: 64-pixel-wide crops, batch 4, 3 validation images, 2 training
    batches per epoch, lr 3e-3 (``train`` overrides any ``train.*`` field)."""
    cfg = engine_config(root, out, **{"lr": 3e-3, "limit_train_batches": 2, **train})
    cfg.data.crop, cfg.data.batch_size, cfg.data.max_val_images = [H, 64], 4, 3
    return cfg


def _floats(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v.float() for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()}


class _Record(L.Callback):
    """The student's weights after every optimizer step, and at the first batch of each validation."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []
        self.ema: list[StudentEMA] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int, *a: Any
    ) -> None:
        if i == 0:
            self.validated.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.ema = [c for c in trainer.callbacks if isinstance(c, StudentEMA)]


def _manual_ema(steps: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    avg = _floats(steps[0])
    for s in steps[1:]:
        avg = {k: decay * avg[k] + (1 - decay) * v for k, v in _floats(s).items()}
    return avg


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_recipe_callbacks_follow_the_config() -> None:
    cfg = Config()
    assert [type(c) for c in recipe_callbacks(cfg)] == [ElapsedTime]
    cfg.train.ema_decay, cfg.train.early_stop_patience = 0.99, 3
    ema, stop, clock = recipe_callbacks(cfg)
    assert isinstance(ema, StudentEMA) and ema.decay == 0.99
    assert (stop.monitor, stop.mode, stop.patience) == ("val/mdice", "max", 3)
    assert isinstance(clock, ElapsedTime)
    with pytest.raises(ValueError, match="decay"):
        StudentEMA(decay=1.0)


def test_ema_is_validated_checkpointed_and_exported(synth_root: Path, tmp_path: Path) -> None:
    decay = 0.6
    cfg = tiny_config(synth_root, tmp_path / "ema", epochs=2, val_every=2, ema_decay=decay)
    rec = _Record()
    result = fit(cfg, progress=False, callbacks=[rec])
    assert len(rec.steps) == 4 and len(rec.validated) == 1
    ema = _manual_ema(rec.steps, decay)
    raw = _floats(rec.steps[-1])
    assert _max_diff(ema, raw) > 1e-4  # the average is not the raw weights
    _assert_close(_floats(rec.validated[0]), ema)  # validation ran on the average
    exported, _ = load_model(result.model_dir)
    _assert_close(_floats(exported.state_dict()), ema)  # the exported model is the average
    for ckpt in (result.best_ckpt, result.last_ckpt):
        state = torch.load(ckpt, weights_only=True)
        _assert_close(_floats(state["state_dict"], "model."), ema)
        _assert_close(_floats(state["current_model_state"], "model."), raw)
        assert state["averaging_state"]["n_averaged"] == 4
    # Only the student is averaged.
    (cb,) = rec.ema
    assert cb._average_model is not None
    assert set(cb._average_model.module.state_dict()) == set(exported.state_dict())


class _Estimate(L.Callback):
    """The checkpoint-size estimate the output check makes, taken at the end of training."""

    estimate = 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.estimate = checkpoint_bytes(pl_module, trainer.callbacks)


def test_checkpoint_estimate_counts_the_ema_copy(synth_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_root, tmp_path / "size", epochs=1, limit_train_batches=1, ema_decay=0.5)
    est = _Estimate()
    result = fit(cfg, progress=False, callbacks=[est])
    assert "current_model_state" in torch.load(result.last_ckpt, weights_only=True)  # the EMA's extra copy
    assert est.estimate >= result.last_ckpt.stat().st_size


def _teacher_dir(tmp_path: Path, class_names: list[str]) -> Path:
    torch.manual_seed(1)
    teacher = create_model("resunet_convnext_atto", num_classes=len(class_names))
    return save_model(teacher, tmp_path / "teacher", make_card(teacher, class_names))


def test_ema_of_a_distiller_averages_the_student_only(synth_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_root, tmp_path / "kd", epochs=1, ema_decay=0.5)
    cfg.distill = DistillConfig(teacher=str(_teacher_dir(tmp_path, cfg.data.class_names)))
    rec = _Record()
    result = fit(cfg, progress=False, callbacks=[rec])
    (cb,) = rec.ema
    assert cb._prefix == "model."
    averaged = cb._average_model.module  # type: ignore[union-attr]
    teacher, _ = load_model(cfg.distill.teacher)
    assert set(averaged.state_dict()) == set(teacher.state_dict())  # the student's keys: no teacher.*
    _assert_close(_floats(load_model(result.model_dir)[0].state_dict()), _manual_ema(rec.steps, 0.5))
    state = torch.load(result.last_ckpt, weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert not any(k.startswith("teacher.") for k in state[key]), key


class _Kill(L.Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("killed")


def test_ema_and_clock_resume_from_last_checkpoint(synth_root: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"epochs": 2, "ema_decay": 0.7, "deterministic": True}
    fit(tiny_config(synth_root, tmp_path / "full", **kw), progress=False)
    part = tiny_config(synth_root, tmp_path / "part", **kw)
    with pytest.raises(RuntimeError, match="killed"):
        fit(part, progress=False, callbacks=[_Kill(at_epoch=1)])
    before = torch.load(tmp_path / "part/checkpoints/last.ckpt", weights_only=True)
    start = time.monotonic()
    fit(part, progress=False, resume="last")
    session = time.monotonic() - start
    a = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "part/checkpoints/last.ckpt", weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert b["averaging_state"]["n_averaged"] == a["averaging_state"]["n_averaged"] == 4
    # The clock went on from the checkpoint's seconds (metrics.csv keeps epoch 0's row of the killed part).
    clock_before = before["callbacks"]["ElapsedTime"]["elapsed_s"]
    curve = read_val_curve(tmp_path / "part/logs/metrics.csv")
    assert curve["epoch"].tolist() == [0, 1]
    last = curve[curve["epoch"] == 1]["elapsed_s"].to_numpy()
    assert len(last) == 1 and clock_before < last[0] < clock_before + session, (clock_before, last, session)
    full = read_val_curve(tmp_path / "full/logs/metrics.csv")["elapsed_s"].to_numpy()
    assert len(full) == 2 and np.isfinite(full).all() and (np.diff(full) > 0).all(), full


class _FrozenBatchNorm(L.Callback):
    """Momentum 0: training batches leave the BatchNorm statistics as they are (with lr 0: no change)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0


def test_early_stopping_stops_a_run_that_cannot_improve(synth_root: Path, tmp_path: Path) -> None:
    patience = 2
    cfg = tiny_config(synth_root, tmp_path / "stop", epochs=10, lr=0.0, early_stop_patience=patience)
    cfg.train.limit_train_batches = 1
    result = fit(cfg, progress=False, callbacks=[_FrozenBatchNorm()])
    curve = read_val_curve(result.metrics_csv)
    assert len(curve) == patience + 1
    assert curve["val/mdice"].nunique() == 1  # lr 0: nothing changes
    assert torch.load(result.last_ckpt, weights_only=True)["epoch"] == patience


def test_read_val_curve_takes_validation_rows(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    pd.DataFrame(
        {
            "epoch": [0, 0, 0, 1, 1, 1, 1],
            "step": [0, 1, 1, 2, 3, 3, 3],
            "train/loss_step": [1.0, 0.9, np.nan, 0.8, 0.7, np.nan, np.nan],
            "val/mdice": [np.nan, np.nan, 0.2, np.nan, np.nan, 0.3, 0.35],  # epoch 1 validated twice
            ELAPSED_KEY: [np.nan, np.nan, 10.0, np.nan, np.nan, 20.0, 25.0],
        }
    ).to_csv(csv, index=False)
    curve = read_val_curve(csv)
    assert curve["epoch"].tolist() == [0, 1]
    assert curve["val/mdice"].tolist() == [0.2, 0.35] and curve["elapsed_s"].tolist() == [10.0, 25.0]
    pd.DataFrame({"epoch": [0], "val/mdice": [0.1]}).to_csv(csv, index=False)
    assert read_val_curve(csv)["elapsed_s"].isna().all()  # an old run: no clock
    pd.DataFrame({"epoch": [0], "train/loss": [0.1]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="val/mdice"):
        read_val_curve(csv)
    with pytest.raises(FileNotFoundError):
        read_val_curve(tmp_path / "missing.csv")


def test_plateau_epoch() -> None:
    assert plateau_epoch([0.1, 0.5, 0.76, 0.8, 0.79]) == 2  # 0.76 >= 0.95 * 0.8
    assert plateau_epoch([0.1, 0.5, 0.75, 0.8, 0.79]) == 3  # 0.75 < 0.76
    assert plateau_epoch([0.1, np.nan, 0.5], fraction=0.2) == 0
    assert plateau_epoch([np.nan, 0.4, 0.5], fraction=0.5) == 1
    assert plateau_epoch([0.3, 0.9, 0.6], fraction=1.0) == 1
    assert plateau_epoch([0.0, 0.0]) == 0
    with pytest.raises(ValueError, match="finite"):
        plateau_epoch([np.nan])
    with pytest.raises(ValueError, match="fraction"):
        plateau_epoch([0.5], fraction=0.0)


def test_learning_curve_figure_is_written(tmp_path: Path) -> None:
    epochs = np.arange(6)
    curves = {
        "baseline": pd.DataFrame(
            {"epoch": epochs, "elapsed_s": 60.0 * (epochs + 1), "val/mdice": [0.1, 0.3, 0.5, 0.6, 0.62, 0.61]}
        ),
        "no clock": pd.DataFrame(
            {"epoch": epochs, "elapsed_s": np.nan, "val/mdice": np.linspace(0.2, 0.7, 6)}
        ),
    }
    out = plot_learning_curves(curves, tmp_path / "curves.png")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no column"):
        plot_learning_curves({"x": pd.DataFrame({"epoch": [0]})}, tmp_path / "bad.png")
