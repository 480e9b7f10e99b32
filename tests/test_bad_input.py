"""Bad data and bad configs through the real command line: one line naming the file/row/value, exit != 0.

Each case of ``tests/bad_inputs.py`` is built in a temporary folder and run through ``steelkd`` (typer's
``CliRunner``, in process). The test asserts: a non-zero exit code, no exception other than the CLI's own
exit (an unexpected exception is a bug: without ``--debug`` it would be an "internal error" line), exactly one
``error:`` line which contains the expected file, row or value, no Python traceback, and (for the training
cases) that no checkpoint was written: the bad input was refused before the first step, or, met
mid-training, stopped the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import bad_inputs
from bad_inputs import ALL_BAD, Bad
from deploy_helpers import tiny_model_dir
from steelkd.cli import app
from steelkd.data.image import read_image


@pytest.fixture(scope="module", autouse=True)
def _card_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    bad_inputs.CARD_MODEL[:] = [str(tiny_model_dir(tmp_path_factory))]


def run_cli(argv: list[str], fresh: bool = False) -> tuple[int, list[str], str]:
    """Run ``steelkd argv`` in process (or in a fresh process): (exit code, the ``error:`` lines, all output).

    Fails the test when the command raised anything but its own exit (a crash).
    """
    if fresh:
        cmd = [sys.executable, "-c", "from steelkd.cli import main; main()", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        code, text = proc.returncode, proc.stdout + proc.stderr
    else:
        result = CliRunner().invoke(app, argv)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"steelkd {' '.join(argv)} crashed") from result.exception
        code, text = result.exit_code, result.output
    errors = [line for line in text.splitlines() if line.startswith(("error:", "skipped:"))]
    return code, errors, text


@pytest.mark.parametrize("case", ALL_BAD, ids=[c.id for c in ALL_BAD])
def test_bad_input_is_one_line_naming_it(case: Bad, tmp_path: Path) -> None:
    argv, expect = case.build(tmp_path)
    code, errors, text = run_cli(argv, case.fresh)
    assert code != 0, f"{case.id}: exit 0\n{text}"
    assert "Traceback" not in text
    assert len(errors) == 1, f"{case.id}: expected one error line, got:\n{text}"
    assert expect in errors[0], f"{case.id}: {expect!r} not in {errors[0]!r}"
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """``steelkd --debug`` re-raises the error with its traceback (what a bug report needs)."""
    root = bad_inputs.severstal(tmp_path / "sev", bad_inputs.CSV_HEADER + "a.jpg,1,1 x\n")
    result = CliRunner().invoke(app, ["--debug", "data", "stats", "--data", str(root)])
    assert isinstance(result.exception, ValueError) and "'x'" in str(result.exception)
    code, errors, _ = run_cli(["data", "stats", "--data", str(root)])
    assert code == 1 and len(errors) == 1


#: Odd but valid images: converted by ``data.image.read_image`` (documented there), not refused.
ODD_IMAGES: dict[str, tuple[np.ndarray, str | None]] = {
    "RGBA": (np.dstack([np.full((40, 72, 3), 120, np.uint8), np.full((40, 72), 7, np.uint8)]), "RGBA"),
    "palette": (np.full((40, 72), 3, np.uint8), "P"),
    "16-bit grey": (np.full((40, 72), 40000, np.uint16), None),
    "grey + alpha": (np.dstack([np.full((40, 72), 90, np.uint8), np.full((40, 72), 255, np.uint8)]), "LA"),
    "1x1": (np.full((1, 1), 128, np.uint8), None),
    "3x2000 strip": (np.full((3, 2000), 128, np.uint8), None),
}


@pytest.mark.parametrize("kind", list(ODD_IMAGES))
def test_odd_images_are_converted_and_predicted(kind: str, tmp_path: Path, tmp_path_factory) -> None:
    """RGBA, palette, 16-bit, grey+alpha and tiny images are converted to RGB and predicted at their size."""
    arr, mode = ODD_IMAGES[kind]
    src = tmp_path / "in" / "odd.png"
    src.parent.mkdir()
    im = Image.fromarray(arr)
    if mode == "P":
        im = im.convert("P")
    elif mode is not None and im.mode != mode:
        im = im.convert(mode)
    im.save(src)
    assert read_image(src).shape == (*arr.shape[:2], 3)
    model = tiny_model_dir(tmp_path_factory)
    code, errors, text = run_cli(
        ["predict", "-m", str(model), "-i", str(src), "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert code == 0 and not errors, text
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "odd.png"))
    assert mask.shape == arr.shape[:2]


def test_worker_wrapped_errors_become_their_original_line() -> None:
    """A DataLoader worker's error (num_workers > 0) carries the worker traceback in its message; the CLI
    prints only the original message."""
    from steelkd.cli._common import one_line

    wrapped = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise ValueError(...)\n'
        "ValueError: /data/img7.png: cannot read image (x)\n"
    )
    assert one_line(wrapped) == "/data/img7.png: cannot read image (x)"
    assert one_line(ValueError("a\nb")) == "a | b"
    assert one_line(KeyError("unknown model 'x'")) == "unknown model 'x'"
