"""The service on a real uvicorn server on loopback: concurrency, a slow client, and a killed writer."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

_NO_EXTRA = "the serve extra is not installed (pip install 'steelkd[serve]')"
uvicorn = pytest.importorskip("uvicorn", reason=_NO_EXTRA)
pytest.importorskip("fastapi", reason=_NO_EXTRA)

from serve_helpers import DARK, frame, pixel_model, png_bytes  # noqa: E402
from steelkd.serve import create_app  # noqa: E402
from steelkd.serve.store import Store  # noqa: E402


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A live server in a thread on a free loopback port; yields (port, db)."""
    db = tmp_path / "i.db"
    app = create_app(pixel_model(tmp_path / "pixel.onnx"), db)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                        timeout_keep_alive=5))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield srv.servers[0].sockets[0].getsockname()[1], db
    srv.should_exit = True
    thread.join(10)


def multipart(data: bytes, **fields: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="f.png"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_image(port: int, data: bytes, timeout: float = 30, **fields: str) -> tuple[int, dict]:
    body, ctype = multipart(data, **fields)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/inspect", body, {"Content-Type": ctype})
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_concurrent_requests_never_mix_results(server: tuple[int, Path]) -> None:
    port, db = server
    boxes = [(8 * i, 4 + (i % 5) * 8, 6 + i, 5, DARK) for i in range(16)]  # a different box per client

    def one(i: int) -> tuple[int, int, dict]:
        status, body = post_image(port, png_bytes(frame([boxes[i]])), coil_id=f"c{i}")
        return i, status, body

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    for i, status, body in results:
        x, y, w, h, _ = boxes[i]
        assert status == 200, body
        assert body["coil_id"] == f"c{i}" and [d["box"] for d in body["defects"]] == [[x, y, w, h]]
        assert get_json(port, f"/v1/inspections/{body['id']}")["defects"][0]["box"] == [x, y, w, h]
    assert len({b["id"] for _, _, b in results}) == 16 and Store(db, db.with_name("i-data")).count() == 16


def test_a_slow_client_does_not_block_others(server: tuple[int, Path]) -> None:
    port, _ = server
    body, ctype = multipart(png_bytes(frame([(10, 10, 20, 12, DARK)])))
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        head = (f"POST /v1/inspect HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        slow.sendall(head + body[:50])  # then stalls mid-upload
        time.sleep(0.3)
        start = time.monotonic()
        for _ in range(3):
            status, res = post_image(port, png_bytes(frame([(10, 10, 20, 12, DARK)])), timeout=10)
            assert status == 200 and len(res["defects"]) == 1
        assert time.monotonic() - start < 10
        slow.sendall(body[50:])  # the slow upload still completes and is served
        reply = slow.recv(65536).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 200")
    finally:
        slow.close()


_WRITER = textwrap.dedent("""
    import sys
    from steelkd.serve.store import Defect, Inspection, Store, image_file, new_id, utc_now
    store = Store(sys.argv[1], sys.argv[2])
    png = b"\\x89PNG" + b"x" * 3_000_000  # a large file: a wide window for a kill between file and rows
    while True:
        i = new_id()
        defects = [Defect(n, "model", 1, 10, 0, 0, 2, 5, 0.9, 0.95, "1 10") for n in range(1, 201)]
        store.add(Inspection(i, utc_now(), "c", 1.0, None, image_file(i), 10, 10, ["bg", "d"], "m", "v", "b",
                             1.0, len(defects), defects), png)
        print(i, flush=True)
""")


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1, 1.6])
def test_a_killed_writer_leaves_no_half_written_inspection(tmp_path: Path, delay: float) -> None:
    db, data = tmp_path / "i.db", tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(data)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one inspection committed
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    store = Store(db, data)
    rows = list(store.iter_all())
    assert rows
    for insp in rows:
        assert len(insp.defects) == insp.n_defects == 200
        assert store.image_path(insp).stat().st_size == 3_000_004
    referenced = {store.image_path(i).name for i in rows}
    images = {p.name for p in (data / "images").glob("*.png")}
    assert referenced <= images and len(images - referenced) <= 1  # at most the one being committed
    assert not [p for p in (data / "images").iterdir() if p.suffix != ".png" and not p.name.startswith(".")]


def test_the_load_benchmark_reports_and_checks_storage(tmp_path: Path) -> None:
    """benchmarks/service_load.py in quick mode (pixel model): figures per level, no failure, stored once."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "service_load.py"
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, str(script), "--quick", "--clients", "1,4", "--model",
                          str(pixel_model(tmp_path / "pixel.onnx")), "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    figures = json.loads(out.read_text())
    assert [lv["clients"] for lv in figures["levels"]] == [1, 4]
    assert [lv["requests"] for lv in figures["levels"]] == [3, 12]
    assert figures["failed"] == 0 and figures["stored_exactly_once"] is True
    assert all(lv["req_per_s"] > 0 and lv["p99_ms"] >= lv["p50_ms"] > 0 for lv in figures["levels"])
    assert "stored exactly once: yes" in res.stdout
