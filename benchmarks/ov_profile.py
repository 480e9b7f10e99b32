"""Where OpenVINO spends the student's time: per-layer counters of the bf16 and the int8 model, side by side.

Exports the student (random weights: speed does not depend on them) to an OpenVINO IR, quantises a copy
to int8 with NNCF (calibrated on random images: only the kernels matter here), compiles both on the CPU
with performance counters on (the fp32 IR under the bf16 inference-precision hint, and the int8 IR) and
sums the measured real time of one inference by layer type and by the kernel that ran it. That says which
layers int8 speeds up, which stay in bf16/fp32, and what bounds the int8 ratio.

    python benchmarks/ov_profile.py                       # resunet_convnext_tiny, 1x3x256x1600
    python benchmarks/ov_profile.py --model resunet_convnext_atto --size 200x200 --top 12
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelkd.config import parse_size
from steelkd.export import to_openvino
from steelkd.models import create_model, make_card
from steelkd.runtime import device_name, require_extra


def _profile(core: Any, xml: Path, hint: str, x: np.ndarray, repeats: int) -> tuple[float, list[Any]]:
    """Median latency (ms) of ``repeats`` inferences and the counters of the last one."""
    compiled = core.compile_model(
        str(xml), "CPU", {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": "1"}
    )
    request = compiled.create_infer_request()
    request.infer([x])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        request.infer([x])
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), request.get_profiling_info()


def _table(title: str, counters: list[Any], key: str, top: int) -> list[str]:
    sums: dict[str, float] = defaultdict(float)
    for c in counters:
        sums[getattr(c, key)] += c.real_time.total_seconds() * 1000
    total = sum(sums.values()) or 1.0
    lines = [f"| {title} | ms | share |", "| --- | ---: | ---: |"]
    for name, ms in sorted(sums.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{name}` | {ms:.1f} | {100 * ms / total:.0f}% |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resunet_convnext_tiny")
    ap.add_argument("--size", default="256x1600", help="HxW at batch 1")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top", type=int, default=10, help="rows per table")
    args = ap.parse_args()
    require_extra("openvino", "openvino")
    import openvino as ov

    h, w = parse_size(args.size)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.classes).eval()
    card = make_card(model, [f"c{i}" for i in range(args.classes)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    calib = [rng.standard_normal((3, h, w)).astype(np.float32) for _ in range(8)]
    core = ov.Core()
    print(f"{args.model} at 1x3x{h}x{w} on {device_name('cpu')}, OpenVINO {ov.__version__}\n")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = to_openvino(model, Path(tmp) / "fp32.xml", card, sample_size=(h, w))
        int8 = to_openvino(model, Path(tmp) / "int8.xml", card, calibration=calib, sample_size=(h, w))
        for label, xml, hint in (("bf16", fp32, "bf16"), ("int8", int8, "bf16")):
            ms, counters = _profile(core, xml, hint, x, args.repeats)
            ran = [c for c in counters if c.real_time.total_seconds() > 0]
            print(f"## {label}: {ms:.0f} ms per inference (median of {args.repeats})\n")
            print("\n".join(_table("layer type", ran, "node_type", args.top)) + "\n")
            print("\n".join(_table("kernel (exec type)", ran, "exec_type", args.top)) + "\n")


if __name__ == "__main__":
    main()
