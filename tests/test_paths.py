"""Names from data and configs cannot make a command write outside its output folder.

One check owns it, :func:`steelkd.io.safe_name`: an experiment name (report figures), an imported item's
name (``steelkd data import``) and an image name (``steelkd predict`` masks and overlays) are plain file
names or refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelkd.cli import app
from steelkd.config import ConfigError
from steelkd.experiment.config import experiment_config_from_dict
from steelkd.io import safe_name

ESCAPES = ["..", "../../outside", "/abs/path", "a/b", "a\\b", ".hidden", "", "two\nlines"]


@pytest.mark.parametrize("name", ESCAPES)
def test_safe_name_refuses_what_could_leave_the_folder(name: str) -> None:
    with pytest.raises(ValueError) as info:
        safe_name(name, "image name")
    assert "image name" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["../../../outside", "/tmp/abs", "a/b"])
def test_experiment_names_are_plain_file_names(name: str) -> None:
    data = {
        "models": {"t": "resunet_convnext_atto", "s": "resunet_convnext_atto"},
        "experiments": [{"name": name, "teacher": "t", "student": "s"}],
    }
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.name"):
        experiment_config_from_dict(data)


def test_coco_file_names_cannot_write_outside_the_import(tmp_path: Path) -> None:
    """A COCO file whose ``file_name`` climbs out of the image folder imports under a flattened name inside
    ``--out``: it is refused in one line and nothing appears outside ``--out``."""
    src = tmp_path / "export"
    (src / "images").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "outside" / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "../../outside/a.png", "height": 16, "width": 16}],
        "categories": [{"id": 1, "name": "scratch"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]],
                "bbox": [2, 2, 8, 8],
                "area": 64,
            }
        ],
    }
    (src / "annotations.json").write_text(json.dumps(doc))
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "work" / "imported"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "import",
            "--format",
            "coco",
            "--src",
            str(src / "annotations.json"),
            "--out",
            str(out),
            "--images",
            str(src / "images"),
        ],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out.parent or out in p.parents or p == out for p in new), sorted(map(str, new))
    assert result.exit_code == 1 and "not a plain file name" in result.output, result.output


def test_predict_outputs_stay_in_out(tmp_path: Path, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """Every file ``steelkd predict`` writes is under ``--out``; hidden-looking names (``..x000``) are refused
    per image (exit 2), one line each."""
    from deploy_helpers import tiny_model_dir, write_images

    inputs = tmp_path / "in" / "..weird"
    write_images(inputs, 2, seed=0, h=32, w=64, prefix="..x")
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "-m",
            str(tiny_model_dir(tmp_path_factory)),
            "-i",
            str(inputs),
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == out or out in p.parents for p in new), sorted(map(str, new))
    assert result.exit_code == 2 and result.output.count("not a plain file name") == 2, result.output
