"""steelkd.io: atomic writes leave whole files with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from steelkd.io import atomic_path, atomic_write_text


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_write_has_the_umask_mode_not_the_temp_files_0600(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "sub" / "report.md"
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert _mode(target) == 0o666 & ~umask  # e.g. 0644: other users of a shared results folder can read it
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temp file left


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_atomic_path_failure_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    target.write_text("kept")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["eval.json"]
