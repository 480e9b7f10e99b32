"""The table of ``docs/reliability.md`` is counted from the test suite, never typed.

Each row counts the cases of the test that tries them (the bad-input lists of ``tests/bad_inputs.py``, the
``parametrize`` values of the fault tests, the property tests and their example count). The test rebuilds the
table between the markers and fails when the committed file differs, after rewriting it, so a stale table
is fixed by running this test once and committing the file.
"""

from __future__ import annotations

import inspect
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import bad_inputs
import test_bad_input
import test_faults
import test_kill_resume
import test_paths
import test_predict_faults
import test_properties
import test_untrusted

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
START, END = (
    "<!-- reliability-table: start (written by tests/test_reliability_doc.py) -->",
    "<!-- reliability-table: end -->",
)

#: What happens to each group of bad inputs, and where.
GROUP_TEXT: dict[str, tuple[str, str]] = {
    "csv": ("malformed train.csv rows and files", "one `error:` line naming the file and line (and ImageId)"),
    "rle": (
        "bad RLE strings (odd, non-numeric, out of range, overlapping, unsorted)",
        "one line naming the csv line, ImageId and the bad run/token",
    ),
    "ids": ("missing and duplicate image ids", "one line naming the id(s) / folder"),
    "image": (
        "truncated, corrupt, empty, non-image, huge, wrong-size images (incl. one met mid-training)",
        "one line naming the file; refused before the first step, or the run stops at the file",
    ),
    "mask": (
        "masks with labels outside the classes, colour, truncated or 16-bit masks",
        "one line naming the mask file and the value",
    ),
    "empty": ("empty data sets, splits and prediction inputs", "one line naming the folder or split"),
    "split": (
        "bad split files (not JSON, wrong shape, ids not names, overlapping, unknown, `../..`)",
        "one line naming the split file",
    ),
    "config": (
        "bad configs: unknown keys, wrong types, values out of range, bad `--set`",
        "one line naming the file and `section.field`",
    ),
    "card": (
        "bad model cards (schema: types, class list, normalisation, postprocess, architecture)",
        "one line naming model.json and the field, before any model is built",
    ),
    "model": (
        "corrupt model files (.ckpt, .onnx, OpenVINO .xml, truncated or mismatched model.safetensors)",
        "one line naming the file; nothing unpickled",
    ),
    "classes": ("bad classes.yaml files", "one line naming the file and the entry"),
}


def _params(func: Callable[..., object]) -> int:
    """Number of cases of a ``pytest.mark.parametrize``-d test (1 when it is not parametrised)."""
    n = 1
    for mark in getattr(func, "pytestmark", []):
        if mark.name == "parametrize":
            n *= len(mark.args[1])
    return n


def _tests(module: types.ModuleType) -> list[str]:
    return [n for n, f in inspect.getmembers(module, inspect.isfunction) if n.startswith("test_")]


def rows() -> list[tuple[str, str, str, str]]:
    """``(what was tried, how many, what happened, test)`` for every row of the table."""
    out: list[tuple[str, str, str, str]] = []
    groups = Counter(c.group for c in bad_inputs.ALL_BAD)
    for group, (what, happened) in GROUP_TEXT.items():
        out.append(
            (
                what,
                str(groups[group]),
                happened + "; exit 1, no traceback (`--debug` shows it)",
                "`test_bad_input.py::test_bad_input_is_one_line_naming_it`",
            )
        )
    assert set(groups) == set(GROUP_TEXT), "every group of tests/bad_inputs.py has a row"
    out.append(
        (
            "odd but valid images (RGBA, palette, 16-bit, grey+alpha, 1x1, 3x2000)",
            str(len(test_bad_input.ODD_IMAGES)),
            "converted to RGB 8-bit (tiny ones padded to 32 px and cropped back), predicted at their size",
            "`test_bad_input.py::test_odd_images_are_converted_and_predicted`",
        )
    )
    u = test_untrusted
    pickles = sum(_params(getattr(u, t)) for t in _tests(u))
    out.append(
        (
            "pickles with payloads (.ckpt, .pt, .pth, a model folder's weights, through predict)",
            str(pickles),
            "refused in one line, payload never runs, no advice to load unsafely",
            "`test_untrusted.py`",
        )
    )
    props = _tests(test_properties)
    out.append(
        (
            f"property tests (hypothesis) on the parsers and CLI option parsing ({len(props)} properties)",
            f"{test_properties.N_EXAMPLES} examples each (CLI: {max(40, test_properties.N_EXAMPLES // 2)})",
            "only documented one-line errors, never a crash",
            "`test_properties.py`",
        )
    )
    p = test_paths
    names = sum(_params(getattr(p, t)) for t in _tests(p))
    out.append(
        (
            "names that could write outside the output folder (`..`, absolute, `/`, hidden; experiment "
            "names, COCO file names, predict inputs)",
            str(names),
            "refused by `io.safe_name` in one line; nothing written outside `--out`",
            "`test_paths.py`",
        )
    )
    out.append(
        (
            "NaN / inf training loss",
            str(len(test_faults.NON_FINITE)) + " (+ a diverging lr via the CLI)",
            "run stops before the optimizer step, one line naming step/epoch/batch, last.ckpt untouched",
            "`test_faults.py::test_non_finite_loss_*`",
        )
    )
    out.append(
        (
            "unwritable output folder, `ulimit -f`, a full 8 MB tmpfs",
            str(
                sum(
                    any(k in t for k in ("unwritable_output_folder_fails", "size_limit", "full_disk"))
                    for t in _tests(test_faults)
                )
            ),
            "fails before the first step with one line naming the folder (and the space or limit needed)",
            "`test_faults.py` (`unwritable`, `file_size_limit`, `full_disk`)",
        )
    )
    out.append(
        (
            "checkpoint write cut short",
            str(sum("cut_short" in t for t in _tests(test_faults))),
            "previous file intact, no temporary file left",
            "`test_faults.py::test_checkpoint_write_cut_short_keeps_the_previous_file`",
        )
    )
    out.append(
        (
            "SIGKILL of a training run: " + ", ".join(test_kill_resume.KILL_POINTS),
            str(len(test_kill_resume.KILL_POINTS)),
            "resumed with `resume=last`: every tensor torch.equal to an uninterrupted run",
            "`test_kill_resume.py` (slow)",
        )
    )
    out.append(
        (
            f"SIGKILL of a batch prediction (in its write no. {test_predict_faults.KILL_AT_WRITE})",
            str(len(_tests(test_predict_faults))),
            "rerun: every output once, no temp file, complete submission decoding to the masks",
            "`test_predict_faults.py`",
        )
    )
    return out


def table() -> str:
    lines = ["| what was tried | how many | what happened | test |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    total = sum(Counter(c.group for c in bad_inputs.ALL_BAD).values())
    lines.append(f"\n{total} bad inputs through the command line in all.")
    return "\n".join(lines)


def test_reliability_table_is_current() -> None:
    text = DOC.read_text()
    assert START in text and END in text, f"{DOC}: markers missing"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    fresh = f"{head}{START}\n{table()}\n{END}{tail}"
    if fresh != text:
        DOC.write_text(fresh)
        raise AssertionError(f"{DOC} was stale: rewritten from the test suite's cases; commit it")
    print(table())
