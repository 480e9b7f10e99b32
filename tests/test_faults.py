"""Faults in training: NaN/inf losses, an unwritable or full output folder, checkpoint writes cut short.

The runs are tiny (four 64x64 images, 32x32 crops, ``resunet_convnext_atto``, CPU, no workers): one training
step and one validation per epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from typer.testing import CliRunner

from bad_inputs import flat_folder, train_config
from steelkd.cli import app
from steelkd.config import config_from_dict
from steelkd.engine import fit
from steelkd.engine.callbacks import AtomicCheckpointIO, NonFiniteLossError, OutputFolderError


def _cfg(tmp: Path, out: Path, **over: object):  # type: ignore[no-untyped-def]
    return config_from_dict(train_config(flat_folder(tmp / "flat"), out, **over))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Poison(Callback):
    """At global step ``at`` fill one weight with ``value`` (what a diverging run does), after noting the
    digest of ``last.ckpt`` as it was then."""

    def __init__(self, at: int, value: float) -> None:
        self.at, self.value, self.digest = at, value, ""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.at:
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            self.digest = _sha(last) if last.is_file() else ""
            with torch.no_grad():
                next(pl_module.model.parameters()).fill_(self.value)


#: The non-finite losses tried.
NON_FINITE = [float("nan"), float("inf")]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, value: float
) -> None:
    out = tmp_path / "run"
    poison = _Poison(at=1, value=value)
    with pytest.raises(NonFiniteLossError) as info:
        fit(_cfg(tmp_path, out, train__epochs=3), progress=False, callbacks=[poison])
    msg = str(info.value)
    assert "at step 1 (epoch 1, batch 0)" in msg and "last good checkpoint" in msg and "\n" not in msg
    last = out / "checkpoints" / "last.ckpt"
    assert poison.digest and _sha(last) == poison.digest  # the epoch-0 checkpoint, untouched
    state = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert not (out / "model").exists()


def test_non_finite_loss_through_the_cli_is_one_line(tmp_path: Path) -> None:
    cfg = train_config(flat_folder(tmp_path / "flat"), tmp_path / "run", train__lr=1e30, train__epochs=2)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "cfg.yaml")])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "training loss is" in errors[0] and "at step" in errors[0], result.output


def test_cli_names_the_best_epoch_counting_from_one(tmp_path: Path) -> None:
    cfg = train_config(flat_folder(tmp_path / "flat"), tmp_path / "run", train__epochs=2)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "cfg.yaml")])
    assert result.exit_code == 0, result.output
    best = json.loads((tmp_path / "run" / "best_metrics.json").read_text())["epoch"]  # logged, 0-based
    assert f"best epoch {best + 1} of 2 on the validation split" in result.output


def test_unwritable_output_folder_fails_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError) as info:  # the config copy or OutputCheck's probe, whichever writes first
        fit(_cfg(tmp_path, blocker / "run"), progress=False)
    assert str(blocker / "run") in str(info.value) and "\n" not in str(info.value)


def test_cli_names_an_unwritable_output_folder_first(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    cfg = train_config(flat_folder(tmp_path / "flat"), tmp_path / "a-file" / "run")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "cfg.yaml")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "a-file/run: output folder is not writable" in errors[0]


def test_output_check_names_an_unwritable_folder(tmp_path: Path) -> None:
    from steelkd.engine.callbacks import check_output_folder

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputFolderError, match="output folder is not writable"):
        check_output_folder(tmp_path / "a-file" / "run", 1024)


def test_file_size_limit_fails_early(tmp_path: Path) -> None:
    """``ulimit -f`` below one checkpoint: one line naming the limit, exit 1, before any step."""
    cfg = train_config(flat_folder(tmp_path / "flat"), tmp_path / "run")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    limit = 4 * 1024 * 1024

    def _limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from steelkd.cli import main; main()",
            "train",
            "--config",
            str(tmp_path / "cfg.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "ulimit -f" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An 8 MB tmpfs (root only; skipped where mount is not allowed)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_full_disk_fails_early(tmp_path: Path, small_tmpfs: Path) -> None:
    with pytest.raises(OutputFolderError, match="MB free") as info:
        fit(_cfg(tmp_path, small_tmpfs / "run"), progress=False)
    assert str(small_tmpfs / "run") in str(info.value) and "\n" not in str(info.value)


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise RuntimeError("cut short")


def test_checkpoint_write_cut_short_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    before = _sha(target)
    with pytest.raises(RuntimeError, match="cut short"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "x": _Unpicklable()}, target)
    assert _sha(target) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary file left
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))


def test_runs_write_checkpoints_atomically(tmp_path: Path) -> None:
    """The trainer of a run uses :class:`AtomicCheckpointIO` (so a kill mid-write keeps the old file)."""
    used: list[str] = []

    class _Spy(Callback):
        def on_train_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            used.append(type(trainer.strategy.checkpoint_io).__name__)

    fit(_cfg(tmp_path, tmp_path / "run"), progress=False, callbacks=[_Spy()])
    assert used == ["AtomicCheckpointIO"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
