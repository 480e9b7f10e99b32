"""Untrusted files: pickles with payloads are refused in one line, and their payload never runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deploy_helpers import tiny_model_dir, write_images
from steelkd.cli import app
from steelkd.models import create_model, load_model


class _Payload:
    """Unpickling this runs ``touch <marker>`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, marker: Path, **extra: object) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload(marker), **extra}, path)
    return path


@pytest.mark.parametrize("name", ["evil.ckpt", "evil.pt", "evil.pth"])
def test_pickle_payloads_are_refused_and_never_run(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / name, marker)
    encoder = create_model("resunet_convnext_atto").load_encoder_weights
    loader = load_model if name.endswith(".ckpt") else encoder
    with pytest.raises(ValueError) as info:
        loader(evil)
    msg = str(info.value)
    assert msg.startswith(f"{evil}: refused") and "system" in msg and "\n" not in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert not marker.exists()


def test_a_model_folder_whose_weights_are_a_pickle_is_refused(tmp_path: Path, tmp_path_factory) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir(tmp_path_factory), folder)
    _evil(folder / "model.safetensors", marker)
    with pytest.raises(Exception) as info:  # safetensors never unpickles: it rejects the file
        load_model(folder)
    assert "model.safetensors" in str(info.value) or "header" in str(info.value).lower()
    assert not marker.exists()


def test_cli_predict_on_an_evil_checkpoint_is_one_line_without_advice(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "evil.ckpt", marker)
    write_images(tmp_path / "img", 1, seed=0)
    res = CliRunner().invoke(app, ["predict", "--model", str(evil), "--input", str(tmp_path / "img"),
                                   "--out", str(tmp_path / "out")])  # fmt: skip
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused" in lines[0], res.output
    assert "Traceback" not in res.output and "weights_only" not in res.output.replace("weights_only=True", "")
    assert not marker.exists()
