"""Property-based tests (hypothesis) on every parser and on the CLI's option parsing.

Each parser gets arbitrary input and must either return a valid value or raise its documented error
(``ValueError`` / ``ConfigError`` / ``FileNotFoundError``, one line); anything else is a crash. The RLE codec
must also round-trip every mask. ``max_examples`` is kept modest so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from steelkd.card import ModelCard
from steelkd.cli import app
from steelkd.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    dataclass_from_dict,
    parse_size,
)
from steelkd.data.importers.common import parse_class_list, read_classes_yaml
from steelkd.data.rle import rle_decode, rle_encode, rle_runs
from steelkd.data.severstal import read_train_csv
from steelkd.data.split import load_split

#: Examples per property (``STEELKD_HYPOTHESIS_EXAMPLES`` raises it for a deeper search).
N_EXAMPLES = int(os.environ.get("STEELKD_HYPOTHESIS_EXAMPLES", "60"))
EXAMPLES = settings(
    max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

#: JSON-like values, nested a little: what a card, a split file or a YAML config can hold.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc), f"multi-line message: {exc!r}"


# --------------------------------------------------------------------------------------------- RLE
@EXAMPLES
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 20)), elements=st.integers(0, 1)))
def test_rle_round_trip(mask: np.ndarray) -> None:
    text = rle_encode(mask)
    assert np.array_equal(rle_decode(text, mask.shape), mask)
    assert rle_encode(rle_decode(text, mask.shape)) == text


TOKENS = st.lists(
    st.one_of(st.integers(-5, 400), st.sampled_from(["x", "1.5", "", "+3", "-0", "9" * 25])), max_size=8
).map(lambda t: " ".join(str(v) for v in t))


@EXAMPLES
@given(st.one_of(TOKENS, st.text(max_size=30)), st.tuples(st.integers(1, 16), st.integers(1, 16)))
def test_rle_garbage_is_a_value_error(text: str, shape: tuple[int, int]) -> None:
    for parse in (lambda: rle_decode(text, shape), lambda: rle_runs(text, shape)):
        try:
            out = parse()
        except ValueError as exc:
            _one_line(exc)
            continue
        if isinstance(out, np.ndarray):
            assert out.shape == shape and set(np.unique(out)) <= {0, 1}


# --------------------------------------------------------------------------------------------- CSV
ROW_FIELDS = st.sampled_from(
    ["a.jpg", "b.jpg", "", "1", "5", "x", "1 3", "1 3 9 2", "0 2", "\ufeff", '"', "a_1"]
)


@EXAMPLES
@given(
    st.sampled_from(["ImageId,ClassId,EncodedPixels", "ImageId_ClassId,EncodedPixels", "x,y", ""]),
    st.lists(st.lists(ROW_FIELDS, max_size=4).map(",".join), max_size=6),
    st.binary(max_size=8),
)
def test_severstal_csv_reader(tmp_path: Path, header: str, rows: list[str], tail: bytes) -> None:
    p = tmp_path / "train.csv"
    p.write_bytes(("\n".join([header, *rows]) + "\n").encode() + tail)
    try:
        table = read_train_csv(p, shape=(4, 4))
    except ValueError as exc:
        _one_line(exc)
        assert str(p) in str(exc)
        return
    assert list(table.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert table["ClassId"].between(1, 4).all()


# ---------------------------------------------------------------------------------------- sizes, configs
@EXAMPLES
@given(
    st.one_of(st.text(max_size=12), st.lists(st.one_of(st.integers(-3, 9), st.text(max_size=3)), max_size=3))
)
def test_parse_size(text: object) -> None:
    try:
        h, w = parse_size(text)  # type: ignore[arg-type]
    except ValueError as exc:
        _one_line(exc)
        return
    assert h >= 1 and w >= 1


KEYS = st.sampled_from(
    [
        "train.lr",
        "train.epochs",
        "data.crop",
        "data",
        "model.kwargs.x",
        "distill",
        "train.lr.x",
        "nope",
        "",
        ".",
        "data.class_names",
        "distill.tau",
    ]
)
VALUES = st.sampled_from(
    ["1", "0", "-1", "3e-4", "[1, 2]", "[", "null", "{a: 1}", "'x'", "true", ".nan", "]"]
)


@EXAMPLES
@given(st.lists(st.one_of(st.tuples(KEYS, VALUES).map("=".join), st.text(max_size=10)), max_size=4))
def test_overrides_and_config(overrides: list[str]) -> None:
    try:
        cfg = config_from_dict(apply_overrides({}, overrides))
    except ConfigError as exc:
        _one_line(exc)
        return
    assert isinstance(cfg, Config) and cfg.train.lr >= 0


@EXAMPLES
@given(st.dictionaries(st.sampled_from(["name", "data", "model", "train", "distill", "x"]), JSON, max_size=4))
def test_dataclass_from_dict(data: dict) -> None:
    try:
        cfg = dataclass_from_dict(Config, data)
    except ConfigError as exc:
        _one_line(exc)
        return
    assert isinstance(cfg, Config)


# ----------------------------------------------------------------------------------- cards, splits, classes
CARD_KEYS = st.sampled_from(
    ["class_names", "num_classes", "normalization", "architecture", "postprocess", "model_kwargs", "x"]
)


@EXAMPLES
@given(st.one_of(JSON, st.dictionaries(CARD_KEYS, JSON, max_size=5)))
def test_model_card(card: object) -> None:
    try:
        c = ModelCard.from_dict(card, "model.json")  # type: ignore[arg-type]
    except ValueError as exc:
        _one_line(exc)
        assert "model.json" in str(exc)
        return
    assert c.num_classes >= 2 and all(isinstance(n, str) for n in c.class_names)


@EXAMPLES
@given(st.one_of(JSON, st.dictionaries(st.sampled_from(["train", "test", "sizes"]), JSON, max_size=3)))
def test_split_file(tmp_path: Path, content: object) -> None:
    p = tmp_path / "split.json"
    p.write_text(json.dumps(content))
    try:
        split = load_split(p)
    except ValueError as exc:
        _one_line(exc)
        assert str(p) in str(exc)
        return
    assert all(isinstance(i, str) for i in split["train"] + split["test"])


@EXAMPLES
@given(
    st.one_of(
        st.text(max_size=40),
        JSON.map(json.dumps),
        st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 2), "name": st.text(max_size=4)}, optional={"color": JSON}
            ),
            max_size=3,
        ).map(lambda c: json.dumps({"classes": c})),
    )
)
def test_classes_yaml(tmp_path: Path, text: str) -> None:
    p = tmp_path / "classes.yaml"
    p.write_text(text)
    try:
        classes = read_classes_yaml(p)
    except ValueError as exc:
        _one_line(exc)
        assert str(p) in str(exc)
        return
    assert [c.id for c in classes] == list(range(len(classes)))


@EXAMPLES
@given(st.one_of(st.none(), st.text(max_size=20)))
def test_class_list_option(text: str | None) -> None:
    try:
        names = parse_class_list(text)
    except ValueError as exc:
        _one_line(exc)
        return
    assert names is None or all(isinstance(n, str) and n for n in names)


# ------------------------------------------------------------------------------------------------ CLI
OPTION_VALUES = st.one_of(
    st.sampled_from(["", "-1", "0", "1", "x", "nope.yaml", "a=b", "--", "-", "1e9", "256x1600", "..", "/"]),
    st.text(alphabet="abc019-_.=/x", max_size=6),
)
COMMANDS: dict[str, list[str]] = {
    "predict": [
        "-m",
        "-i",
        "-o",
        "--backend",
        "--device",
        "--batch-size",
        "--threshold",
        "--min-area",
        "--tile",
        "--tile-overlap",
        "--max-side",
        "--overlay-format",
        "--tta",
        "--no-progress",
    ],
    "train": ["--config", "--out", "--epochs", "--precision", "--devices", "--resume", "--set"],
    "data stats": ["--data", "--kind", "--split", "--class-names"],
    "data split": ["--data", "--out", "--seed", "--test-fraction"],
    "evaluate": ["--model", "--config", "--data-root", "--kind", "--batch-size", "--threshold"],
}


@settings(
    max_examples=max(40, N_EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(sorted(COMMANDS)), st.data())
def test_cli_option_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, data) -> None:  # type: ignore[no-untyped-def]
    """Random options for a few commands, run in an empty folder: exit 0, 1 (one ``error:`` line) or 2 (a
    usage error), never an exception."""
    monkeypatch.chdir(tmp_path)
    names = data.draw(st.lists(st.sampled_from(COMMANDS[command]), max_size=5))
    argv = command.split()
    for name in names:
        argv += [name] if name in ("--tta", "--no-progress") else [name, data.draw(OPTION_VALUES)]
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"steelkd {argv} crashed") from result.exception
    assert result.exit_code in (0, 1, 2), (argv, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1, (
            result.output
        )
