"""A run killed by SIGKILL (in a step, in validation, half-way through a checkpoint write) resumes from its
last checkpoint and ends with weights bit-identical to a run never killed.

Each run is a subprocess (``tests/kill_run.py``) on four 64x64 images (one training step and one validation
per epoch, three epochs); the kill is the process sending itself SIGKILL at the chosen point, in epoch 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bad_inputs import flat_folder, train_config

#: The kill points (``tests/kill_run.py``), each in epoch 1 of 3.
KILL_POINTS = ["step", "validation", "checkpoint"]
DRIVER = Path(__file__).with_name("kill_run.py")


def _run(cfg: Path, event: str = "none", resume: str = "-") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DRIVER), str(cfg), event, "1", resume],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=DRIVER.parent,
    )


def _config(tmp: Path, data: Path, name: str) -> Path:
    cfg = train_config(data, tmp / name, train__epochs=3)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _last_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The data and an uninterrupted run."""
    tmp = tmp_path_factory.mktemp("kill")
    data = flat_folder(tmp / "flat")
    done = _run(_config(tmp, data, "ref"))
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-3000:]
    return data, tmp / "ref"


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_run_resumes_to_identical_weights(
    point: str, tmp_path: Path, reference: tuple[Path, Path]
) -> None:
    data, ref = reference
    cfg = _config(tmp_path, data, "run")
    run = tmp_path / "run"
    killed = _run(cfg, point)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()  # epoch 0's, intact: it loads
    assert torch.load(last, weights_only=True)["epoch"] == 0
    epoch0 = _last_state(run)
    assert any(not torch.equal(epoch0[k], v) for k, v in _last_state(ref).items())  # training moved them
    if point == "checkpoint":
        assert list(last.parent.glob(".last.ckpt.*.tmp")), "the half-written temporary file"
    resumed = _run(cfg, resume="last")
    assert resumed.returncode == 0 and "finished" in resumed.stdout, resumed.stderr[-3000:]
    for mine, theirs in ((_weights(run), _weights(ref)), (_last_state(run), _last_state(ref))):
        assert mine.keys() == theirs.keys()
        different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
        assert not different, f"{point}: {len(different)} tensors differ, e.g. {different[:3]}"
    # (not the file bytes: safetensors writes its metadata map in a per-process hash order)
