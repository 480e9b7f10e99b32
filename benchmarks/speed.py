"""Inference speed of the student and the teacher in every backend, against the smp U-Net baseline.

All in one run, batch 1, 1x3xHxW (Severstal's 256x1600 by default), medians: the student
(``resunet_convnext_tiny``) and the teacher (``resunet_convnext_base_gc_ff``) in PyTorch eager fp32/bf16,
compiled (inductor, frozen, channels-last) fp32/bf16, ONNX Runtime fp32, OpenVINO fp32/bf16 and OpenVINO
int8 (NNCF, calibrated on synthetic steel images: speed does not depend on the weights; the Dice each
backend costs is measured by ``steelkd tune`` on a trained model), and
``segmentation_models_pytorch.Unet("tu-convnext_tiny")`` in PyTorch fp32 eager. Prints the CPU's peak
(derived from its flags, and the calibration matmul) and every row's achieved fraction of it, and the
ratios ``make bench`` checks.

Example:
    .venv/bin/python benchmarks/speed.py --quick --json /tmp/speed.json
    .venv/bin/python benchmarks/speed.py --repeats 10 --backends torch,openvino-bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelkd.bench import count_gmacs, cpu_peak, peak_kind
from steelkd.config import SEVERSTAL_CLASSES, parse_size
from steelkd.data.image import normalize
from steelkd.data.synth import render
from steelkd.io import atomic_write_text
from steelkd.models import create_model, make_card, save_model
from steelkd.runtime import device_name
from steelkd.tune import available_backends, benchmark_backends, measure_backend

STUDENT, TEACHER = "resunet_convnext_tiny", "resunet_convnext_base_gc_ff"
SMP = "smp_unet_tu-convnext_tiny"
ALL = ("torch", "torch-bf16", "torch-compile", "torch-compile-bf16", "onnxruntime", "openvino",
       "openvino-bf16", "openvino-int8")  # fmt: skip
QUICK = ("torch", "torch-bf16", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8")


def _calibration(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    return [normalize(render(0, i, *size)[0]) for i in range(n)]


def _model_dir(name: str, root: Path) -> Path:
    """A random-init model saved as a steelkd folder (speed does not depend on the weights)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(SEVERSTAL_CLASSES)).eval()
    return save_model(model, root / name, make_card(model, SEVERSTAL_CLASSES))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = parse_size(args.size)
    skip = dict(available_backends())
    backends = [b for b in args.backends.split(",") if b and not skip.get(b)]
    peak = cpu_peak()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="steelkd_speed_") as tmp:
        import segmentation_models_pytorch as smp

        smp_model = smp.Unet("tu-convnext_tiny", encoder_weights=None, classes=len(SEVERSTAL_CLASSES)).eval()
        smp_gmacs = count_gmacs(smp_model, (1, 3, *size))

        def smp_call(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return smp_model(torch.from_numpy(x)).numpy()

        s = measure_backend(smp_call, size, args.repeats, args.warmup)
        rows.append({"model": SMP, "backend": "torch", "latency_ms": s * 1e3, "gmacs": smp_gmacs})
        calib = _calibration(args.calib, size) if "openvino-int8" in backends else None
        for name in (STUDENT, TEACHER):
            folder = _model_dir(name, Path(tmp))
            gmacs = count_gmacs(create_model(name, num_classes=len(SEVERSTAL_CLASSES)), (1, 3, *size))
            measured = benchmark_backends(
                folder, backends, size, repeats=args.repeats, warmup=args.warmup, calibration=calib
            )
            for r in measured:
                rows.append(
                    {"model": name, "backend": r["backend"], "latency_ms": r["latency_ms"], "gmacs": gmacs}
                )
                print(f"{name} {r['backend']}: {r['latency_ms']:.0f} ms", file=sys.stderr)
    for r in rows:
        achieved = 2 * r["gmacs"] / (r["latency_ms"] / 1e3)
        prec = peak_kind(r["backend"])
        r["gflops"] = achieved
        r["of_theoretical_peak"] = achieved / peak["theoretical_gflops"][prec]
        mm = peak["matmul_gflops"].get(prec)
        r["of_matmul_peak"] = achieved / mm if mm else None
    return {"size": list(size), "repeats": args.repeats, "warmup": args.warmup, "machine": device_name("cpu"),
            "peak": peak, "rows": rows, "ratios": ratios(rows)}  # fmt: skip


def ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The speed ratios ``make bench`` checks (latency of the reference / latency of the candidate)."""
    smp = next(r["latency_ms"] for r in rows if r["model"] == SMP)
    student = {r["backend"]: r["latency_ms"] for r in rows if r["model"] == STUDENT}
    teacher = {r["backend"]: r["latency_ms"] for r in rows if r["model"] == TEACHER}
    non_int8 = [v for k, v in student.items() if "int8" not in k]
    both = [teacher[b] / student[b] for b in student if b in teacher]
    return {
        "student_best_vs_smp_fp32": smp / min(non_int8) if non_int8 else None,
        "student_best_backend": min((v, k) for k, v in student.items() if "int8" not in k)[1]
        if non_int8
        else None,
        "student_int8_vs_smp_fp32": smp / student["openvino-int8"] if "openvino-int8" in student else None,
        "student_vs_teacher_min": min(both) if both else None,
    }  # type: ignore[return-value]


def to_markdown(res: dict[str, Any]) -> str:
    p = res["peak"]
    lines = [
        f"Inference, batch 1, 1x3x{res['size'][0]}x{res['size'][1]}, median of {res['repeats']} after "
        f"{res['warmup']} warm-up calls, {res['machine']}.",
        "",
        f"Peak of this CPU: derived from its flags {p['theoretical_gflops']['fp32']:.0f} GFLOP/s fp32 "
        f"({p['cores']} cores x 2 FMA x {p['fp32_lanes']} lanes x 2 x {p['ghz']:.2f} GHz), "
        f"{p['theoretical_gflops']['bf16']:.0f} bf16, {p['theoretical_gflops']['int8']:.0f} int8"
        f"{' (AMX tiles: 1,024 bf16 / 2,048 int8 per cycle and core)' if p.get('amx') else ''}; "
        f"calibration matmul {p['matmul_gflops']['fp32']:.0f} GFLOP/s fp32, "
        f"{p['matmul_gflops']['bf16']:.0f} bf16.",
        "",
        "| model | backend | latency (ms) | GFLOP/s | of derived peak | of matmul peak |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        mm = f"{100 * r['of_matmul_peak']:.0f}%" if r["of_matmul_peak"] else "–"
        lines.append(
            f"| `{r['model']}` | {r['backend']} | {r['latency_ms']:.0f} | {r['gflops']:.0f} | "
            f"{100 * r['of_theoretical_peak']:.0f}% | {mm} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x1600")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--backends", default=",".join(ALL))
    ap.add_argument("--calib", type=int, default=16, help="int8 calibration images (synthetic)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up, no torch.compile")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 1
        if args.backends == ",".join(ALL):
            args.backends = ",".join(QUICK)
    res = measure(args)
    print(to_markdown(res))
    print(json.dumps(res["ratios"], indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
