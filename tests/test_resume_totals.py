"""A run resumed from ``last.ckpt`` keeps the records of the part before: its metrics.csv rows and its wall
and CPU seconds."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from steelkd.engine import TrainResult, fit
from steelkd.engine.csvlog import ResumableExperimentWriter
from steelkd.engine.recipe import ELAPSED_KEY, ElapsedTime, process_cpu_seconds
from test_recipe import synth_root, tiny_config  # noqa: F401 (synth_root is a fixture)


@dataclass
class Resumed:
    """Two epochs trained, then the run resumed to four from ``last.ckpt``."""

    first: TrainResult
    second: TrainResult
    checkpoint: dict[str, Any]  #: the first part's last.ckpt
    wall: float  #: wall seconds of the second ``fit`` call, measured around it
    cpu: float  #: CPU seconds of the second ``fit`` call (this process; the tiny run has no workers)


def _fake_crash_rows(csv: Path) -> None:
    """Make the first part's metrics.csv look like a kill in epoch 2 by an older version of the code: a
    stale epoch-2 validation row (with a column only it has), an old column the new rows do not log, and
    no ``time/elapsed_s`` column (the new rows bring it, so the header changes again)."""
    log = pd.read_csv(csv).drop(columns=[ELAPSED_KEY])
    log["old/only"] = np.where(log["epoch"] < 2, 7.0, np.nan)
    stale = {"epoch": 2, "step": int(log["step"].max()) + 1, "val/mdice": -1.0, "stale/only": 1.0}
    pd.concat([log, pd.DataFrame([stale])], ignore_index=True).to_csv(csv, index=False)


@pytest.fixture(scope="module")
def resumed(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Resumed:  # noqa: F811
    out = tmp_path_factory.mktemp("resume") / "run"
    first = fit(tiny_config(synth_root, out, epochs=2), progress=False)
    _fake_crash_rows(first.metrics_csv)
    checkpoint = torch.load(first.last_ckpt, weights_only=True)
    wall, cpu = time.monotonic(), process_cpu_seconds()
    second = fit(tiny_config(synth_root, out, epochs=4), progress=False, resume="last")
    wall, cpu = time.monotonic() - wall, process_cpu_seconds() - cpu
    return Resumed(first, second, checkpoint, wall, cpu)


def test_resume_keeps_metrics_rows_of_the_epochs_before(resumed: Resumed) -> None:
    log = pd.read_csv(resumed.second.metrics_csv)
    val = log.dropna(subset=["val/mdice"])
    assert val["epoch"].tolist() == [0, 1, 2, 3]  # each validation once, the stale epoch-2 row dropped
    assert (val["val/mdice"] >= 0).all()
    assert "stale/only" not in log.columns  # it had a value in the dropped row only
    assert set(log.loc[log["epoch"] < 2, "old/only"]) == {7.0}
    assert log.loc[log["epoch"] >= 2, "old/only"].isna().all()
    assert val.loc[val["epoch"] < 2, ELAPSED_KEY].isna().all()
    assert val.loc[val["epoch"] >= 2, ELAPSED_KEY].notna().all()
    train = log.dropna(subset=["train/loss_step"])
    assert train.groupby("epoch").size().tolist() == [2, 2, 2, 2]  # two logged steps per epoch
    assert train["step"].is_monotonic_increasing


def test_resumed_run_reports_the_seconds_of_both_parts(resumed: Resumed) -> None:
    first, second, tick = resumed.first, resumed.second, 0.05  # os.times counts in 10 ms ticks
    assert first.cpu_seconds is not None and second.cpu_seconds is not None
    assert resumed.wall < second.seconds <= first.seconds + resumed.wall
    assert resumed.cpu < second.cpu_seconds <= first.cpu_seconds + resumed.cpu + tick
    saved = resumed.checkpoint["callbacks"]["ElapsedTime"]
    assert 0 < saved["elapsed_s"] <= first.seconds and 0 < saved["cpu_s"] <= first.cpu_seconds + tick
    final = torch.load(second.last_ckpt, weights_only=True)["callbacks"]["ElapsedTime"]
    assert saved["cpu_s"] < final["cpu_s"] <= second.cpu_seconds + tick


def test_clock_of_a_checkpoint_without_cpu_seconds() -> None:
    clock = ElapsedTime()
    clock.load_state_dict({"elapsed_s": 5.0})  # written before CPU seconds were kept
    clock.start()
    assert clock.elapsed_s() >= 5.0 and clock.cpu_s() is None  # unknown, not this part's alone
    clock.load_state_dict({"elapsed_s": 5.0, "cpu_s": 7.0})
    assert (clock.cpu_s() or 0.0) >= 7.0


def _spin_then_wait(seconds: float, spun: Any, done: Any) -> None:
    """A worker: spend ``seconds`` of CPU, say so, then wait (alive, not spending) until told to end."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    spun.set()
    done.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="live children are read from /proc")
def test_process_cpu_seconds_counts_a_live_worker() -> None:
    ctx = multiprocessing.get_context("fork")
    spun, done = ctx.Event(), ctx.Event()
    worker = ctx.Process(target=_spin_then_wait, args=(0.3, spun, done))
    before = process_cpu_seconds()
    worker.start()
    assert spun.wait(timeout=60)
    live = process_cpu_seconds() - before
    done.set()
    worker.join()
    assert 0.28 < live < 0.6, live  # counted while alive (from /proc), not only once reaped
    assert 0.28 < process_cpu_seconds() - before < 0.7  # reaped: counted once, not twice


def test_fresh_run_into_the_folder_starts_a_new_metrics_file(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    pd.DataFrame({"epoch": [0, 1], "step": [0, 1], "old": [1.0, 2.0]}).to_csv(
        log_dir / "metrics.csv", index=False
    )
    writer = ResumableExperimentWriter(str(log_dir))
    assert len(pd.read_csv(log_dir / "metrics.csv")) == 2  # kept until the first save
    writer.log_metrics({"epoch": 0, "loss": 0.5}, step=0)
    writer.save()
    assert pd.read_csv(log_dir / "metrics.csv").to_dict("records") == [{"epoch": 0, "loss": 0.5, "step": 0}]


def test_rows_without_an_epoch_keep_the_old_file(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    pd.DataFrame({"epoch": [0], "step": [0], "old": [1.0]}).to_csv(log_dir / "metrics.csv", index=False)
    writer = ResumableExperimentWriter(str(log_dir))
    writer.log_metrics({"new": 0.5}, step=5)
    writer.save()
    log = pd.read_csv(log_dir / "metrics.csv")
    assert list(log.columns) == ["epoch", "new", "old", "step"] and log["step"].tolist() == [0, 5]
