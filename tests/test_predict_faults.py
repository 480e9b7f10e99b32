"""Prediction under faults: a batch prediction SIGKILLed half-way and run again writes every output exactly
once and a complete, valid submission (read back with the repo's RLE decoder).

The kill: the ``steelkd predict`` subprocess writes half of its 9th output file (a mask or an overlay)
into the temporary file beside it, syncs it and sends itself SIGKILL (as ``kill -9`` or the OOM killer).
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from deploy_helpers import tiny_model_dir, write_images
from steelkd.data.rle import rle_decode

KILL_AT_WRITE = 9
_DRIVER = f"""
import io, os, signal, sys
import steelkd.predict.pipeline as pipeline
from steelkd.io import atomic_path
calls = [0]
real = pipeline.atomic_write_bytes
def dying_write(path, data):
    calls[0] += 1
    if calls[0] == {KILL_AT_WRITE}:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(data[: len(data) // 2]); fh.flush(); os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
if sys.argv[1] == "kill":
    pipeline.atomic_write_bytes = dying_write
sys.argv = ["steelkd", *sys.argv[2:]]
from steelkd.cli import main
main()
"""


def _predict(model: Path, inputs: Path, out: Path, kill: bool) -> subprocess.CompletedProcess[str]:
    argv = ["predict", "-m", str(model), "-i", str(inputs), "-o", str(out), "-b", "2", "--no-progress"]
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, "kill" if kill else "run", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_killed_prediction_rerun_writes_each_output_once(tmp_path: Path, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model_dir(tmp_path_factory)
    inputs = tmp_path / "in"
    stems = sorted(p.stem for p, _ in write_images(inputs, 12, seed=3, h=32, w=64))
    out = tmp_path / "out"

    killed = _predict(model, inputs, out, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    masks = out / "masks"
    whole = [p for p in masks.iterdir() if not p.name.startswith(".")]
    assert 0 < len(whole) < len(stems)  # killed half-way
    for p in whole:  # what was written is whole
        assert np.asarray(Image.open(p)).shape == (32, 64)
    assert list(out.rglob(".*.tmp")), "the killed write's temporary file"
    assert not (out / "submission.csv").exists()

    rerun = _predict(model, inputs, out, kill=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for sub, ext in (("masks", ".png"), ("overlays", ".png")):
        assert sorted(p.name for p in (out / sub).iterdir()) == [s + ext for s in stems]
    assert not list(out.rglob("*.tmp"))

    with open(out / "submission.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [(r["ImageId"], int(r["ClassId"])) for r in rows]
    assert len(keys) == len(set(keys)) == len(stems) * 4
    assert {k[0] for k in keys} == {s + ".png" for s in stems}
    for r in rows:
        label = np.asarray(Image.open(masks / (Path(r["ImageId"]).stem + ".png")))
        decoded = rle_decode(r["EncodedPixels"], label.shape)
        assert np.array_equal(decoded, (label == int(r["ClassId"])).astype(np.uint8))

    clean = _predict(model, inputs, tmp_path / "clean", kill=False)
    assert clean.returncode == 0
    assert (tmp_path / "clean" / "submission.csv").read_text() == (out / "submission.csv").read_text()
