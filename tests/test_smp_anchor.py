"""scripts/smp_anchor.py: smp's Unet behind steelkd's forward contract, trained by steelkd's fit from a
preset's role, scored on test and tabled beside the experiment's runs of that role and seed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from script_helpers import ROOT, load_script
from steelkd.runtime import device_name


def _script() -> ModuleType:
    return load_script("smp_anchor")


def test_smp_unet_keeps_the_input_size_and_refuses_features() -> None:
    sa = _script()
    net = sa.SmpUnet("convnext_atto", 3)
    assert net(torch.zeros(1, 3, 50, 70)).shape == (1, 3, 50, 70)  # padded to 64 x 96, cropped back
    with pytest.raises(ValueError, match="no features to distil"):
        net(torch.zeros(1, 3, 64, 64), return_features=True)
    assert [sa._encoder(n) for n in ("resunet_convnext_atto", "resunet_convnext_femto_gc_ff")] == [
        "convnext_atto",
        "convnext_femto",
    ]


def test_anchor_trains_from_a_preset_role_and_tables_it(tmp_path: Path, monkeypatch) -> None:
    sa = _script()
    out = tmp_path / "anchor"
    out.mkdir()
    theirs = {
        "run": "student-abc",
        "model": "resunet_convnext_atto",
        "model_role": "student",
        "kind": "baseline",
        "seed": 0,
        "epochs": 1,
        "mdice": 0.25,
        "miou_bg": 0.5,
        "cpu_seconds": 7.0,
        "hardware": "CPU X",
    }
    other_seed = {**theirs, "run": "student-def", "seed": 1}
    here = {**theirs, "run": "student-timing-ghi", "kind": "baseline_timing", "hardware": device_name("cpu")}
    (tmp_path / "results.json").write_text(json.dumps({"runs": [theirs, other_seed, here]}))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "student-abc.csv").write_text("epoch,step,val/mdice\n0,3,0.31\n1,7,0.42\n")
    argv = ["smp_anchor.py", "--config", str(ROOT / "configs/experiments/demo.yaml"), "--seed", "0"]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(out), "--set", "train.epochs=1"]
    argv += [f"data.root={tmp_path / 'data'}", "data.synth_n=8", "train.val_every=1"]
    monkeypatch.setattr(sys, "argv", argv)
    sa.main()
    rec = json.loads((out / "smp_unet_convnext_atto_student_s0.json").read_text())
    assert rec["model"] == "smp_unet_convnext_atto" and rec["epochs"] == 1 and rec["best_epoch"] == 1
    assert rec["val_mdice_per_epoch"] == [round(rec["best_val_mdice"], 4)]
    assert 0.0 <= rec["mdice"] <= 1.0 and rec["cpu_seconds"] > 0 and rec["config"]["train"]["seed"] == 0
    assert (tmp_path / "runs" / "smp_unet_convnext_atto_student_s0" / "model" / "model.json").is_file()
    table = (out / "anchor.md").read_text()
    assert "| anchor student seed 0 | smp_unet_convnext_atto | 1 |" in table
    # best val mDice from the experiment's kept log; no cost ratio across hardware
    row = "| baseline student-abc | resunet_convnext_atto | 1 | 0.4200 | 0.2500 | 0.5000 | 7.0 | — | CPU X |"
    assert row in table
    ratio = 7.0 / rec["cpu_seconds"]  # one epoch each, timed on this machine
    timing = "| baseline_timing student-timing-ghi | resunet_convnext_atto | 1 | — | 0.2500 | 0.5000 | 7.0 |"
    assert f"{timing} {ratio:.2f} |" in table
    assert "student-def" not in table  # another seed
    (out / "anchor.md").unlink()
    shutil.rmtree(tmp_path / "runs")
    monkeypatch.setattr(sys, "argv", [*argv[:5], "--out", str(out), "--table-only"])
    sa.main()  # the table again from the JSON, training nothing
    assert not (tmp_path / "runs").exists()
    assert (out / "anchor.md").read_text() == table
