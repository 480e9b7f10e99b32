"""The inspection service through FastAPI's test client: every endpoint and every error.

The model is the deterministic pixel-wise ONNX model of ``serve_helpers`` (a real file opened through
``load_backend``), so each painted rectangle is exactly one defect region the tests can check.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'steelkd[serve]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx (the dev extra)")

from fastapi.testclient import TestClient

from serve_helpers import BRIGHT, CLASS_NAMES, DARK, TWO_DEFECTS, frame, pixel_model, png_bytes
from steelkd.data.rle import rle_decode, rle_encode
from steelkd.predict.results import find_defects
from steelkd.serve import Limits, create_app


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pixel_model(tmp_path_factory.mktemp("model") / "pixel.onnx")


@pytest.fixture
def client(model_path: Path, tmp_path: Path) -> TestClient:
    app = create_app(model_path, tmp_path / "i.db", limits=Limits(max_bytes=200_000, max_side=1024,
                                                                   max_pixels=300_000))
    return TestClient(app)


def inspect(client: TestClient, image: np.ndarray, name: str = "a.png", **fields: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/inspect", files={"image": (name, png_bytes(image), "image/png")}, data=fields)


def test_inspect_returns_each_region_with_class_box_score_rle_and_totals(client: TestClient) -> None:
    res = inspect(client, frame(TWO_DEFECTS), coil_id="C1", position_m="2.5")
    assert res.status_code == 200, res.text
    body = res.json()
    assert [(d["class"], d["box"], d["area"]) for d in body["defects"]] == [
        ("dark", [10, 10, 20, 12], 240), ("bright", [100, 30, 40, 20], 800)]
    for d, (x, y, w, h, _) in zip(body["defects"], TWO_DEFECTS, strict=True):
        mask = rle_decode(d["rle"], (64, 256))
        assert mask.sum() == w * h and mask[y : y + h, x : x + w].all()
        assert 0.9 < d["score"] <= 1 and d["status"] == "pending" and d["source"] == "model"
    assert body["totals"] == {"dark": {"count": 1, "area": 240}, "bright": {"count": 1, "area": 800},
                              "scratch": {"count": 0, "area": 0}}
    assert body["model"]["name"] == "pixel.onnx" and body["model"]["backend"] == "onnxruntime-cpu"
    assert re.fullmatch(r"[0-9a-f]{12}", body["model"]["version"])
    assert body["latency_ms"] > 0 and body["coil_id"] == "C1" and body["position_m"] == 2.5
    assert client.get(f"/v1/inspections/{body['id']}").json() == body


def test_region_rle_is_the_whole_image_rle_of_that_region() -> None:
    rng = np.random.default_rng(0)
    label = (rng.random((40, 70)) > 0.93).astype(np.uint8) * rng.integers(1, 3, (40, 70)).astype(np.uint8)
    regions = find_defects("x", label, None, ["bg", "a", "b"], rle=True)
    import cv2

    for r in regions[:20]:
        comp = cv2.connectedComponents((label == r.class_id).astype(np.uint8), connectivity=8)[1]
        k = comp[r.y : r.y + r.h, r.x : r.x + r.w][(label == r.class_id)[r.y : r.y + r.h, r.x : r.x + r.w]]
        own = (comp == np.bincount(k).argmax()).astype(np.uint8)
        assert r.rle == rle_encode(own) and own.sum() == r.area


def test_overlay_and_image_endpoints(client: TestClient) -> None:
    image = frame(TWO_DEFECTS)
    insp = inspect(client, image).json()
    stored = np.asarray(Image.open(io.BytesIO(client.get(insp["links"]["image"]).content)).convert("RGB"))
    assert np.array_equal(stored, image)
    res = client.get(insp["links"]["overlay"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(res.content)).convert("RGB"))
    assert drawn.shape == image.shape and not np.array_equal(drawn[40, 120], image[40, 120])  # bright box
    client.post(f"/v1/inspections/{insp['id']}/defects/2/review", json={"action": "reject"})
    reviewed = np.asarray(Image.open(io.BytesIO(client.get(f"{insp['links']['overlay']}?reviewed=true")
                                                .content)).convert("RGB"))
    assert np.array_equal(reviewed[40, 120], image[40, 120])  # the rejected defect is not drawn
    assert not np.array_equal(reviewed[16, 20], image[16, 20])  # the pending one still is


def test_review_confirm_reject_relabel_and_box(client: TestClient) -> None:
    insp = inspect(client, frame(TWO_DEFECTS)).json()
    base = f"/v1/inspections/{insp['id']}"
    assert client.post(f"{base}/defects/1/review", json={"action": "confirm"}).json()["defects"][0][
        "status"] == "confirmed"
    body = client.post(f"{base}/defects/2/review", json={"action": "relabel", "class": "scratch"}).json()
    d2 = body["defects"][1]
    assert (d2["status"], d2["class"], d2["reviewed_class"], d2["final_class"]) == (
        "relabelled", "bright", "scratch", "scratch")
    assert body["totals"]["scratch"] == {"count": 1, "area": 800} and body["reviewed"] is True
    body = client.post(f"{base}/boxes", json={"class": "dark", "box": [200, 40, 10, 5]}).json()
    box = body["defects"][2]
    assert (box["n"], box["source"], box["status"], box["area"], box["box"]) == (
        3, "operator", "added", 50, [200, 40, 10, 5])
    assert rle_decode(box["rle"], (64, 256))[40:45, 200:210].all()
    body = client.post(f"{base}/defects/1/review", json={"action": "reject"}).json()  # changed later
    assert body["defects"][0]["status"] == "rejected" and body["totals"]["dark"]["count"] == 1  # the box


@pytest.mark.parametrize(("path", "payload", "status", "message"), [
    ("defects/1/review", {"action": "smash"}, 400, "action"),
    ("defects/1/review", {"action": "relabel"}, 400, "class"),
    ("defects/1/review", {"action": "relabel", "class": "rust"}, 400, "class: expected one of"),
    ("defects/1/review", {"action": "relabel", "class": 9}, 400, "class: expected a defect class 1..3"),
    ("defects/1/review", {"action": "relabel", "class": "dark"}, 400, "other than the defect's own"),
    ("defects/1/review", {"action": "confirm", "class": "dark"}, 400, "only relabel takes a class"),
    ("defects/7/review", {"action": "confirm"}, 404, "has no defect 7"),
    ("boxes", {"class": "dark", "box": [250, 0, 10, 10]}, 400, "not inside the 256x64 image"),
    ("boxes", {"class": "dark", "box": [1, 2, 3]}, 400, "box"),
    ("boxes", {"class": "nothing", "box": [1, 2, 3, 4]}, 400, "class"),
])  # fmt: skip
def test_review_errors_are_one_line_json(client: TestClient, path: str, payload: dict, status: int,
                                         message: str) -> None:
    insp = inspect(client, frame(TWO_DEFECTS)).json()
    res = client.post(f"/v1/inspections/{insp['id']}/{path}", json=payload)
    assert res.status_code == status, res.text
    assert message in res.json()["error"] and "\n" not in res.json()["error"]


def test_unknown_ids_are_404_and_never_reach_the_file_system(client: TestClient) -> None:
    for path in ("/v1/inspections/00000000-0000-4000-8000-000000000000", "/v1/inspections/xyz/overlay.png",
                 "/v1/inspections/..%2F..%2Fetc%2Fpasswd/image.png", "/v1/coils/none",
                 "/static/..%2Fstore.py", "/static/index.html"):
        res = client.get(path)
        assert res.status_code == 404 and "error" in res.json(), path
    res = client.post("/v1/inspections/xyz/defects/1/review", json={"action": "confirm"})
    assert res.status_code == 404


def test_recent_list_and_coil_view_per_metre(client: TestClient) -> None:
    one = [(10, 10, 20, 12, DARK)]
    ids = [inspect(client, frame(one), f"f{i}.png", coil_id="K7", position_m=str(p)).json()["id"]
           for i, p in enumerate([0.2, 0.9, 3.1])]
    other = inspect(client, frame(TWO_DEFECTS), coil_id="K8", position_m="1").json()["id"]
    recent = client.get("/v1/inspections", params={"limit": 3}).json()
    assert [r["id"] for r in recent] == [other, ids[2], ids[1]]
    assert [r["id"] for r in client.get("/v1/inspections", params={"coil_id": "K7"}).json()] == ids[::-1]
    client.post(f"/v1/inspections/{ids[1]}/defects/1/review", json={"action": "reject"})
    coil = client.get("/v1/coils/K7").json()
    assert coil["inspections"] == 3 and [m["metre"] for m in coil["metres"]] == [0, 3]
    assert coil["metres"][0]["inspections"] == 2
    assert coil["metres"][0]["classes"]["dark"] == {"count": 1, "area": 240}  # one rejected
    assert coil["totals"]["dark"] == {"count": 2, "area": 480}
    assert {c["coil_id"]: c["inspections"] for c in client.get("/v1/coils").json()} == {"K7": 3, "K8": 1}
    assert client.get("/v1/inspections", params={"limit": 0}).status_code == 400


def test_health_model_and_openapi(client: TestClient) -> None:
    inspect(client, frame(TWO_DEFECTS))
    health = client.get("/health").json()
    assert health == {"status": "ok", "model": "pixel.onnx", "version": health["version"], "inspections": 1}
    model = client.get("/v1/model").json()
    assert model["class_names"] == CLASS_NAMES and model["calibrated"] is True
    assert model["postprocess"]["threshold"] == [0.5, 0.5, 0.5] and model["tile"] == [256, 1600]
    assert model["limits"]["max_side"] == 1024 and len(model["colors"]) == 4
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/inspect", "/v1/inspections", "/v1/inspections/{inspection_id}",
            "/v1/inspections/{inspection_id}/overlay.png",
            "/v1/inspections/{inspection_id}/defects/{n}/review", "/v1/inspections/{inspection_id}/boxes",
            "/v1/coils/{coil_id}", "/v1/coils", "/health", "/v1/model",
            "/metrics"} <= paths


def test_metrics_count_requests_latency_quantiles_and_defects(client: TestClient) -> None:
    for _ in range(3):
        inspect(client, frame(TWO_DEFECTS))
    inspect(client, frame([(0, 0, 5, 5, BRIGHT)]))
    client.post("/v1/inspect", files={"image": ("x.png", b"not an image", "image/png")})
    text = client.get("/metrics").text
    assert 'steelkd_requests_total{method="POST",route="/v1/inspect",status="200"} 4' in text
    assert 'steelkd_requests_total{method="POST",route="/v1/inspect",status="400"} 1' in text
    assert re.search(r'steelkd_request_latency_seconds\{route="/v1/inspect",quantile="0.99"\} [0-9.]+', text)
    assert 'steelkd_request_latency_seconds_count{route="/v1/inspect"} 5' in text
    assert 'steelkd_defects_total{class="dark"} 3' in text
    assert 'steelkd_defects_total{class="bright"} 4' in text
    assert 'steelkd_defects_total{class="scratch"} 0' in text and "steelkd_inspections_total 4" in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(("image", "limit"), [
    (np.zeros((8, 1100, 3), np.uint8), "max_side"),
    (np.zeros((600, 600, 3), np.uint8), "max_pixels"),
])  # fmt: skip
def test_image_dimensions_over_a_limit_are_400_naming_it(client: TestClient, image: np.ndarray,
                                                         limit: str) -> None:
    res = inspect(client, image)
    assert res.status_code == 400 and res.json()["limit"] == limit and limit in res.json()["error"]
    assert client.get("/health").json()["inspections"] == 0


def test_a_huge_header_is_400_naming_max_pixels(client: TestClient) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 400 Mpx, a few bytes of file
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(
        b"IEND", b"")
    res = client.post("/v1/inspect", files={"image": ("bomb.png", png, "image/png")})
    assert res.status_code == 400 and res.json()["limit"] in ("max_pixels", "max_side"), res.json()


def test_request_over_max_bytes_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)  # ~270 kB PNG
    res = inspect(client, big)
    assert res.status_code == 413 and res.json() == {
        "error": "request body is over max_bytes (200000 bytes)", "limit": "max_bytes", "value": 200000}
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    body = head + b"x" * 300_000

    def chunks():  # no Content-Length: the body streams in chunks
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    ctype = {"content-type": "multipart/form-data; boundary=b"}
    res = client.post("/v1/inspect", content=chunks(), headers=ctype)
    assert res.status_code == 413 and res.json()["limit"] == "max_bytes"
    assert client.get("/health").json()["inspections"] == 0


@pytest.mark.parametrize(("files", "data", "message"), [
    ({"image": ("a.png", b"hello, not a picture", "image/png")}, {}, "not a readable image"),
    ({"image": ("a.png", b"", "image/png")}, {}, "the upload is empty"),
    ({"image": ("a.png", png_bytes(frame([]))[:60], "image/png")}, {}, "not a readable image"),
    (None, {"coil_id": "C"}, "image: Field required"),
    ({"image": ("a.png", png_bytes(frame([])), "image/png")}, {"position_m": "far"}, "position_m"),
    ({"image": ("a.png", png_bytes(frame([])), "image/png")}, {"position_m": "-1"}, "position_m"),
    ({"image": ("a.png", png_bytes(frame([])), "image/png")}, {"coil_id": "c" * 200}, "coil_id"),
])  # fmt: skip
def test_bad_uploads_are_400_with_one_line_json(client: TestClient, files: dict | None, data: dict,
                                                message: str) -> None:
    res = client.post("/v1/inspect", files=files, data=data)
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert message in err and "\n" not in err and "/tmp" not in err and "uploads" not in err
    assert client.get("/health").json()["inspections"] == 0


def test_nothing_is_written_outside_the_data_folder(model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    client = TestClient(create_app(model_path, tmp_path / "svc" / "i.db"))
    before = {p for p in tmp_path.rglob("*")}
    res = inspect(client, frame(TWO_DEFECTS), name="../../../escape.png", coil_id="../../x")
    assert res.status_code == 200 and res.json()["filename"] == "../../../escape.png"
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.is_relative_to(tmp_path / "svc") for p in created), created
    assert {p.name for p in created if p.suffix == ".png"} == {f"{res.json()['id']}.png"}
    assert not list((tmp_path / "svc" / "i-data" / "uploads").iterdir())  # the upload's temp file is gone


def test_large_frames_run_tile_by_tile(model_path: Path, tmp_path: Path) -> None:
    from steelkd.predict import load_backend

    backend = load_backend(model_path)
    shapes: list[tuple[int, ...]] = []

    class Counting:
        card, name = backend.card, "counting"

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            shapes.append(batch.shape[2:])
            return backend(batch)

    client = TestClient(create_app(Counting(), tmp_path / "i.db", tile=(64, 128)))
    boxes = [(10, 10, 20, 12, DARK), (150, 70, 60, 30, BRIGHT)]
    body = inspect(client, frame(boxes, h=160, w=300)).json()
    assert shapes and set(shapes) == {(64, 128)}  # every backend call was one tile
    assert [(d["class"], d["box"]) for d in body["defects"]] == [("dark", [10, 10, 20, 12]),
                                                                  ("bright", [150, 70, 60, 30])]


def test_the_cards_calibrated_postprocess_applies(tmp_path: Path) -> None:
    strict = pixel_model(tmp_path / "strict.onnx", postprocess={"threshold": 0.5, "min_area": [0, 1e9, 0]})
    client = TestClient(create_app(strict, tmp_path / "i.db"))
    body = inspect(client, frame(TWO_DEFECTS)).json()
    assert [d["class"] for d in body["defects"]] == ["dark"]  # the bright region is below its min area
    assert client.get("/v1/model").json()["postprocess"]["min_area_256x1600"][1] == 1_000_000_000


def test_a_saved_torch_model_is_served(tmp_path: Path) -> None:
    from steelkd.models import create_model
    from steelkd.models.saved import make_card, save_model

    model = create_model("resunet_convnext_atto", num_classes=4).eval()
    path = save_model(model, tmp_path / "atto", make_card(model, CLASS_NAMES))
    client = TestClient(create_app(path, tmp_path / "i.db"))
    body = inspect(client, frame(TWO_DEFECTS, h=64, w=128)).json()
    assert body["model"]["backend"].startswith("torch") and body["model"]["name"] == "atto"
    assert all(set(d) >= {"class", "area", "box", "score", "rle"} for d in body["defects"])
    assert client.get("/v1/model").json()["architecture"] == "resunet_convnext_atto"
    tiny = inspect(client, frame([], h=10, w=20))  # under the encoder's stride: padded, cropped back
    assert tiny.status_code == 200 and tiny.json()["image"] == {"height": 10, "width": 20}


def test_the_page_and_its_assets_are_served_with_nothing_external(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="drop"' in page.text and 'id="defects"' in page.text and 'id="coil-chart"' in page.text
    texts = [page.text]
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        res = client.get(f"/static/{name}")
        assert res.status_code == 200 and kind in res.headers["content-type"]
        texts.append(res.text)
    for text in texts:
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), "an external asset"
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text) and "@import" not in text


def test_json_errors_for_unknown_routes_and_methods(client: TestClient) -> None:
    assert client.get("/v2/nothing").json() == {"error": "Not Found"}
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN's scripts
    assert client.delete("/v1/inspect").status_code == 405


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import steelkd.serve

    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name == "fastapi":
            raise ImportError("no fastapi")
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ValueError, match=r"pip install 'steelkd\[serve\]'"):
        steelkd.serve.__getattr__("create_app")


def test_store_refuses_a_duplicate_and_lists_orphans(tmp_path: Path) -> None:
    from steelkd.serve.store import Store

    client_store = Store(tmp_path / "i.db", tmp_path / "data")
    (tmp_path / "data" / "images" / "0f0e0d0c-0b0a-4908-8706-050403020100.png").write_bytes(b"x")
    assert [p.name for p in client_store.orphan_images()] == ["0f0e0d0c-0b0a-4908-8706-050403020100.png"]
    (tmp_path / "bad.db").write_text("this is no database, it is text " * 100)
    with pytest.raises(ValueError, match=r"bad\.db: cannot open the inspection database"):
        Store(tmp_path / "bad.db", tmp_path / "data2")
    assert json.loads(json.dumps(client_store.coils())) == []


def test_a_failed_write_leaves_no_row_only_an_unreferenced_image(tmp_path: Path) -> None:
    import sqlite3

    from steelkd.serve.store import Defect, Inspection, Store, image_file, new_id, utc_now

    store = Store(tmp_path / "i.db", tmp_path / "data")
    i = new_id()
    good = Defect(1, "model", 1, 10, 0, 0, 2, 5, 0.9, 0.95, "1 10")
    bad = Defect(2, "model", 1, 10, 0, 0, 2, 5, 0.9, 0.95, "1 10", status="bogus")  # violates a CHECK
    insp = Inspection(i, utc_now(), None, None, None, image_file(i), 10, 10, ["bg", "d"], "m", "v", "b", 1.0,
                      2, [good, bad])
    with pytest.raises(sqlite3.IntegrityError):
        store.add(insp, b"png")
    assert store.count() == 0 and store.get(i) is None  # the inspection row was rolled back with it
    assert [p.name for p in store.orphan_images()] == [f"{i}.png"]
    insp.defects = [good]
    store.add(insp, b"png")
    assert store.get(i).defects == [good] and store.orphan_images() == []
