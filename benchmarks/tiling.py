"""Peak memory (and time) of whole-frame versus tiled prediction of one large frame.

Each mode runs in its own subprocess, so one mode's memory is not hidden by the other's. In the child: an
untrained model of the registry is saved and loaded through :class:`steelkd.predict.TorchBackend` (the
weights change neither memory nor time), a small warm-up frame runs first (allocator and kernels), then
the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), the current RSS is read, one frame of
``--size`` is predicted through :class:`steelkd.predict.Predictor` (normalise, forward, blend, softmax,
post-process) and the peak RSS (``VmHWM``) is read: peak minus the RSS before is what the prediction
itself needed. Where the mark cannot be reset, ``ru_maxrss`` is used (a lower bound).

Example:
    .venv/bin/python benchmarks/tiling.py              # resunet_convnext_tiny, 256x4096, 256x512 tiles
    .venv/bin/python benchmarks/tiling.py --size 256x8192 --tiles 256x512,256x1024 --overlap 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from steelkd.config import parse_size
from steelkd.runtime import device_name


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mib() -> float:
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(
    model: str, size: tuple[int, int], tile: tuple[int, int] | None, overlap: int, threads: int
) -> dict:
    """One measurement in this process (run through ``--child``)."""
    import numpy as np
    import torch

    from steelkd.models import create_model
    from steelkd.models.saved import make_card, save_model
    from steelkd.postprocess import PostProcess
    from steelkd.predict import Predictor, TorchBackend

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        net = create_model(model, num_classes=5)
        save_model(net, tmp, make_card(net, ["background", "pitting", "crazing", "scratches", "patches"]))
        del net
        pred = Predictor(TorchBackend(tmp), PostProcess(), batch_size=1, tile=tile, tile_overlap=overlap)
        rng = np.random.default_rng(0)
        pred.predict_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # warm-up
        frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        reset = _reset_peak()
        rss = _status_mib("VmRSS")
        before = rss if reset and rss is not None else _peak_mib()
        t0 = time.perf_counter()
        label = pred.predict_image(frame)
        seconds = time.perf_counter() - t0
        after = _peak_mib()
    return {"mode": "whole" if tile is None else f"{tile[0]}x{tile[1]} tiles, overlap {overlap}",
            "peak_rss_mib": round(after, 1), "prediction_mib": round(after - before, 1),
            "seconds": round(seconds, 2), "shape": list(label.shape), "peak_reset": reset}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resunet_convnext_tiny")
    ap.add_argument("--size", default="256x4096", help="frame HxW")
    ap.add_argument("--tiles", default="256x512", help="comma-separated tile sizes HxW")
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = parse_size(args.size)
    if args.child is not None:
        tile = None if args.child == "whole" else parse_size(args.child)
        print(json.dumps(child(args.model, size, tile, args.overlap, args.threads)))
        return
    rows = []
    for mode in ["whole", *args.tiles.split(",")]:
        cmd = [sys.executable, __file__, "--child", mode, "--model", args.model, "--size", args.size,
               "--overlap", str(args.overlap), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    whole = rows[0]["prediction_mib"]
    print(f"{args.model}, one {size[0]}x{size[1]} frame, {device_name('cpu')}, {args.threads} threads")
    print(f"{'mode':32s} {'peak RSS MiB':>13s} {'prediction MiB':>15s} {'saved':>7s} {'seconds':>8s}")
    for r in rows:
        saved = 1 - r["prediction_mib"] / whole if whole > 0 else float("nan")
        print(f"{r['mode']:32s} {r['peak_rss_mib']:13.0f} {r['prediction_mib']:15.0f} {saved:7.0%} "
              f"{r['seconds']:8.2f}")
    if args.out is not None:
        record = {"model": args.model, "size": list(size), "rows": rows}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
