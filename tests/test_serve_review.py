"""The review loop: reviewed inspections exported as a folder data set that training reads; the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'steelkd[serve]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx (the dev extra)")

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_helpers import BRIGHT, DARK, TWO_DEFECTS, frame, pixel_model, png_bytes
from steelkd.cli import app as cli_app
from steelkd.serve import create_app


@pytest.fixture
def served(tmp_path: Path) -> tuple[TestClient, Path]:
    model = pixel_model(tmp_path / "pixel.onnx")
    return TestClient(create_app(model, tmp_path / "svc" / "i.db")), tmp_path / "svc" / "i.db"


def _inspect(client: TestClient, image: np.ndarray) -> str:
    res = client.post("/v1/inspect", files={"image": ("f.png", png_bytes(image), "image/png")})
    assert res.status_code == 200, res.text
    return res.json()["id"]


def test_export_reviewed_writes_label_maps_training_reads(served: tuple[TestClient, Path],
                                                          tmp_path: Path) -> None:
    client, db = served
    image = frame([*TWO_DEFECTS, (200, 40, 30, 10, DARK)])
    done = _inspect(client, image)
    pending = _inspect(client, frame(TWO_DEFECTS))  # only partly reviewed: not exported
    boxed = _inspect(client, frame([]))  # no model defect, one drawn box: exported
    base = f"/v1/inspections/{done}/defects"  # defects in class order, then top to bottom
    client.post(f"{base}/1/review", json={"action": "confirm"})  # dark at (10, 10)
    client.post(f"{base}/2/review", json={"action": "relabel", "class": "scratch"})  # dark at (200, 40)
    client.post(f"{base}/3/review", json={"action": "reject"})  # bright at (100, 30)
    client.post(f"/v1/inspections/{done}/boxes", json={"class": "bright", "box": [60, 50, 8, 6]})
    client.post(f"/v1/inspections/{pending}/defects/1/review", json={"action": "confirm"})
    client.post(f"/v1/inspections/{boxed}/boxes", json={"class": "dark", "box": [0, 0, 4, 4]})

    out = tmp_path / "reviewed"
    res = CliRunner().invoke(cli_app, ["data", "export-reviewed", "--db", str(db), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "exported 2 reviewed image(s)" in res.output
    assert sorted(p.stem for p in (out / "masks").iterdir()) == sorted([done, boxed])
    mask = np.asarray(Image.open(out / "masks" / f"{done}.png"))
    assert (mask[10:22, 10:30] == 1).all()  # confirmed: dark
    assert (mask[30:50, 100:140] == 0).all()  # rejected: background
    assert (mask[40:50, 200:230] == 3).all()  # relabelled: scratch
    assert (mask[50:56, 60:68] == 2).all()  # the operator's box: bright
    assert int((mask > 0).sum()) == 240 + 300 + 48
    assert np.array_equal(np.asarray(Image.open(out / "images" / f"{done}.png").convert("RGB")), image)
    assert "scratch" in (out / "classes.yaml").read_text()

    from steelkd.config import DataConfig
    from steelkd.data.build import build_datasets

    train, _, val = build_datasets(DataConfig(kind="folder", root=str(out), crop=[], val_fraction=0))
    assert len(train) + len(val) == 2 and train.class_names == ["background", "dark", "bright", "scratch"]
    ids = sorted([*train.ids, *val.ids])
    ds, i = (train, train.ids.index(done)) if done in train.ids else (val, val.ids.index(done))
    assert ids == sorted([done, boxed]) and np.array_equal(ds.read_mask(i), mask)


def test_export_reviewed_errors_are_one_line(served: tuple[TestClient, Path], tmp_path: Path) -> None:
    client, db = served
    _inspect(client, frame([(10, 10, 20, 12, BRIGHT)]))
    runner = CliRunner()
    res = runner.invoke(cli_app, ["data", "export-reviewed", "--db", str(db), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no reviewed inspection yet" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli_app, ["data", "export-reviewed", "--db", str(tmp_path / "none.db"),
                                  "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "none.db: inspection database not found" in res.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    insp = client.get("/v1/inspections").json()[0]["id"]
    client.post(f"/v1/inspections/{insp}/defects/1/review", json={"action": "confirm"})
    res = runner.invoke(cli_app, ["data", "export-reviewed", "--db", str(db), "--out", str(other)])
    assert res.exit_code == 1 and "is not an earlier steelkd import" in res.output
    assert (other / "notes.txt").read_text() == "keep me"


def test_serve_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli_app, ["serve", "--model", str(tmp_path / "none"), "--db", str(tmp_path / "i.db")])
    assert res.exit_code == 1 and "none: model not found" in res.output
    assert "Traceback" not in res.output
    model = pixel_model(tmp_path / "pixel.onnx")
    db = str(tmp_path / "i.db")
    res = runner.invoke(cli_app, ["serve", "--model", str(model), "--tile", "big", "--db", db])
    assert res.exit_code == 1 and "big" in res.output
    res = runner.invoke(cli_app, ["serve", "--model", str(model), "--port", "0"])
    assert res.exit_code == 1 and "--port: expected 1..65535, got 0" in res.output
    res = runner.invoke(cli_app, ["serve", "--model", str(model), "--max-side", "0", "--db", db])
    assert res.exit_code == 1 and "max_side: expected >= 1, got 0" in res.output
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        res = runner.invoke(cli_app, ["serve", "--model", str(model), "--port", port, "--db", db])
    assert res.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in res.output
