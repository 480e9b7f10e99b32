"""Load test of ``steelkd serve`` on loopback: requests/s and p50/p99 latency at 1, 4 and 16 clients.

Starts ``steelkd serve`` in a subprocess on 127.0.0.1 (a free port, a fresh database), then for each
client count runs that many threads, each with its own keep-alive connection, posting ``--requests``
images (bounded also by ``--time-limit`` seconds per level). It fails (exit code 1) on any failed request
and checks that every result was stored exactly once: each returned id is distinct, its row is in the
database once with all its defects, and the database holds no other row. Only loopback is ever contacted.

The default model is an untrained ``resunet_convnext_atto`` (the paper's student size; the weights do
not change the cost) saved to a temporary folder; ``--model`` serves any saved or exported model.

Example:
    .venv/bin/python benchmarks/service_load.py --quick
    .venv/bin/python benchmarks/service_load.py --clients 1,4,16 --requests 12 --size 256x1600 --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _images(n: int, h: int, w: int, seed: int = 0) -> list[bytes]:
    """``n`` grey PNG frames with a few dark and bright rectangles each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.normal(120, 6, (h, w))
        for _ in range(3):
            dh, dw = int(rng.integers(h // 8, h // 3)), int(rng.integers(w // 20, w // 6))
            y, x = int(rng.integers(0, h - dh)), int(rng.integers(0, w - dw))
            img[y : y + dh, x : x + dw] = rng.choice([20, 240])
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _multipart(data: bytes, coil: str, position: float) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="coil_id"\r\n\r\n{coil}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="position_m"\r\n\r\n{position}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="f.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def _client(port: int, images: list[bytes], n: int, deadline: float, tag: str, out: list[dict]) -> None:
    """One client: ``n`` requests on one keep-alive connection; appends one record per request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            body, ctype = _multipart(images[i % len(images)], tag, float(i))
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/inspect", body, {"Content-Type": ctype})
                res = conn.getresponse()
                payload = json.loads(res.read())
                status = res.status
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, payload = 0, {"error": str(exc)}
            out.append({"status": status, "seconds": time.perf_counter() - start, "id": payload.get("id"),
                        "defects": len(payload.get("defects", [])), "error": payload.get("error")})
    finally:
        conn.close()


def run_level(port: int, images: list[bytes], clients: int, requests: int, limit_s: float) -> dict[str, Any]:
    """``clients`` concurrent clients of ``requests`` requests each; the figures and the records."""
    records: list[list[dict]] = [[] for _ in range(clients)]
    deadline = time.monotonic() + limit_s
    threads = [threading.Thread(target=_client,
                                args=(port, images, requests, deadline, f"load-{clients}-{k}", records[k]))
               for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = [r for rs in records for r in rs]
    ok = [r for r in flat if r["status"] == 200]
    lat = np.array([r["seconds"] for r in ok]) * 1000 if ok else np.array([np.nan])
    return {"clients": clients, "requests": len(flat), "ok": len(ok), "failed": len(flat) - len(ok),
            "seconds": round(wall, 2), "req_per_s": round(len(ok) / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "records": flat}


def check_stored(db: Path, records: list[dict]) -> list[str]:
    """Problems with 'every result stored exactly once' (empty when all is well)."""
    problems = []
    ids = [r["id"] for r in records if r["status"] == 200]
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicate id(s) returned")
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, n_defects FROM inspections").fetchall())
        counts = dict(conn.execute("SELECT inspection_id, COUNT(*) FROM defects GROUP BY inspection_id"))
    if len(rows) != len(ids) or set(rows) != set(ids):
        problems.append(f"database holds {len(rows)} inspections for {len(ids)} successful requests")
    for r in records:
        stored = (rows.get(r["id"]), counts.get(r["id"], 0))
        if r["status"] == 200 and stored != (r["defects"], r["defects"]):
            problems.append(f"inspection {r['id']}: {counts.get(r['id'], 0)} defect rows, response had "
                            f"{r['defects']}")
    return problems


def _default_model(root: Path) -> Path:
    from steelkd.models import create_model
    from steelkd.models.saved import make_card, save_model

    model = create_model("resunet_convnext_atto", num_classes=5).eval()
    names = ["background", "pitting", "crazing", "scratches", "patches"]
    return save_model(model, root / "atto_untrained", make_card(model, names))


def _serve(model: Path, db: Path, backend: str, log: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    exe = Path(sys.executable).with_name("steelkd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from steelkd.cli import main; main()"]
    proc = subprocess.Popen([*cmd, "serve", "--model", str(model), "--db", str(db), "--port", str(port),
                             "--backend", backend], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"steelkd serve did not start:\n{log.read_text()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="model to serve (default: an untrained resunet_convnext_atto)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=12, help="requests per client")
    ap.add_argument("--size", default="256x1600", help="image HxW")
    ap.add_argument("--time-limit", type=float, default=180.0, help="seconds per client count, at most")
    ap.add_argument("--quick", action="store_true", help="1,4,16 clients x 3 requests of 128x800 images")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.size = 3, "128x800"
    h, w = (int(v) for v in args.size.lower().split("x"))
    levels = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="steelkd-load-") as tmp:
        root = Path(tmp)
        model = args.model or _default_model(root)
        proc, port = _serve(model, root / "i.db", args.backend, root / "serve.log")
        try:
            info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=10).read())
            images = _images(8, h, w)
            _client(port, images, 2, time.monotonic() + 60, "warmup", warm := [])
            results, records = [], list(warm)
            for clients in levels:
                res = run_level(port, images, clients, args.requests, args.time_limit)
                records += res.pop("records")
                results.append(res)
            problems = check_stored(root / "i.db", records)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"model {info['name']} ({info['architecture']}, backend {info['backend']}), images {w}x{h}, "
          f"{args.requests} requests per client")
    print(f"{'clients':>7} {'requests':>8} {'failed':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['failed']:>6} {r['req_per_s']:>7.2f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}")
    failed = sum(r["failed"] for r in results)
    print(f"stored exactly once: {'yes' if not problems else 'NO: ' + '; '.join(problems[:5])}; "
          f"failed requests: {failed}")
    if args.json:
        args.json.write_text(json.dumps({"model": info["name"], "architecture": info["architecture"],
                                         "backend": info["backend"], "size": [h, w], "levels": results,
                                         "stored_exactly_once": not problems, "failed": failed}, indent=1))
    return 0 if not problems and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
