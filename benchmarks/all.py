"""``make bench``: every benchmark in one run, then ``benchmarks/RESULTS.md`` and ``benchmarks/results.json``.

Runs each script of ``benchmarks/`` (quick mode by default: a few minutes on 2 cores; ``--full`` for the
scripts' full modes) one after the other on this machine, collects their JSON, and writes the tables, the
machine, the versions, the CPU's peak and a flat ``ratios`` object with the targets of issue 10 and whether
each is met. Run it on a quiet machine: the ratios are measured side by side, but a second heavy job skews
the figures that share the CPU with it.

Example:
    .venv/bin/python benchmarks/all.py            # quick
    .venv/bin/python benchmarks/all.py --full
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RLE_CSV = HERE.parents[1] / "shared" / "data" / "severstal" / "train_subset.csv"

#: target per ratio key: (comparison, value); None where steelkd does not implement the measured thing yet.
TARGETS: dict[str, tuple[str, float]] = {
    "student_best_vs_smp_fp32": (">=", 3.0),
    "student_int8_vs_smp_fp32": (">=", 4.5),
    "student_vs_teacher_min": (">=", 1.77),
    "train_student_fast_vs_plain": (">=", 2.0),
    "distill_step_vs_student_step": ("<=", 1.5),
    "distill_cached_step_vs_student_step": ("<=", 1.15),
    "predict_end_to_end_vs_model_only": (">=", 0.9),
    "rle_decode_vs_kaggle": (">=", 5.0),
    "rle_encode_vs_kaggle": (">=", 5.0),
}


#: What bounds a ratio that misses its target and what would close it (measured facts; docs/speed.md).
NOTES: dict[str, str] = {
    "student_int8_vs_smp_fp32": (
        "OpenVINO int8 is no faster than OpenVINO bf16 on the CPUs measured (AMD EPYC; an Intel Xeon with"
        " AMX, where int8 is slower). `python benchmarks/ov_profile.py` (per-layer counters, Intel Xeon "
        "with AMX, 256x1600): the quantised matrix products do get faster (FullyConnected 144 -> 81 ms) "
        "but int8 adds layout Reorders (35 -> 93 ms), FakeQuantize (31 ms) and an unfused PowerStatic "
        "(112 ms) around the LayerNorms and GELUs, which stay in bf16. What would close it: quantising "
        "only the 1x1 convolutions/FC layers and keeping LayerNorm+GELU fused (NNCF ignored scopes), or a"
        " runtime that fuses int8 ConvNeXt blocks."
    ),
    "train_student_fast_vs_plain": (
        "The fast settings measured are bf16 autocast, channels-last and torch.compile (the +compile rows). "
        "bf16 speeds the atto student's step at 128x128, batch 8, little on CPU (1.11x on an Intel Xeon "
        "with AMX, 1.36x on an AMD EPYC): its matrix products are small and much of the step is "
        "elementwise and memory-bound work (depthwise convolutions, LayerNorm, upsampling, AdamW); not "
        "profiled per operator yet. torch.compile (inductor) makes the step slower on CPU "
        "(see the +compile rows) and costs about a minute of compilation, so train.compile stays off; "
        "data.cache_images takes JPEG decoding out of the loader, which this step measurement does not "
        "include. What would close it: a GPU, or larger batches and crops where bf16 matrix products "
        "dominate."
    ),
    "distill_step_vs_student_step": (
        "Every live distillation step runs the teacher's forward pass (nano+GC+FF: its training step costs "
        "~3.6-4.5x the student's in the table below, its no-grad forward about a third of that); the "
        "teacher-logit cache (distill.logit_cache) removes it from the step (the cached ratio) at a measured "
        "cost in accuracy (docs/speed.md), and a smaller teacher (femto+GC+FF) costs less."
    ),
    "distill_cached_step_vs_student_step": (
        "The cached step is the student step plus the CWD loss on logits the batch brings; what is left "
        "above 1.0 is the loss and measurement noise (the loader's upsampling and cropping of the cached "
        "map runs in its worker processes, outside the step; see docs/speed.md)."
    ),
    **{
        key: (
            "numpy-bound; the figure varies by about +-20% between runs on a shared 2-core machine (7 "
            "repeats in both modes; compare `python benchmarks/rle.py` run alone)."
        )
        for key in ("rle_decode_vs_kaggle", "rle_encode_vs_kaggle")
    },
}


def _run(script: str, args: list[str], json_path: Path) -> tuple[str, dict[str, Any]]:
    """Run ``benchmarks/<script>`` with ``--json``; returns its stdout (markdown) and its JSON."""
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(json_path)]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return done.stdout, json.loads(json_path.read_text())


def collect(full: bool) -> dict[str, Any]:
    q = [] if full else ["--quick"]
    with tempfile.TemporaryDirectory(prefix="steelkd_bench_") as tmp:
        t = Path(tmp)
        speed_md, speed = _run("speed.py", q, t / "speed.json")
        pred_args = [] if full else ["--images", "6", "--batch-size", "2", "--backends", "torch-fp32"]
        pred_md, pred = _run("predict.py", pred_args, t / "predict.json")
        train_args = ["--teacher", "resunet_convnext_nano_gc_ff", "--student", "resunet_convnext_atto",
                      "--batch", "8", "--crop", "128x128", "--classes", "4",
                      "--precisions",
                      "fp32,bf16,fp32-cl,bf16-cl,fp32-cl+compile,bf16-cl+compile"]  # fmt: skip
        train_args += ["--repeats", "5" if full else "3", "--warmup", "2" if full else "1"]
        train_md, train = _run("train.py", train_args, t / "train.json")
        rle_md, rle = ("", {})
        if RLE_CSV.is_file():
            rle_md, rle = _run(
                "rle.py", ["--csv", str(RLE_CSV), "--repeats", "7" if full else "3"], t / "rle.json"
            )
    fp32 = next(r for r in train["results"] if r["precision"] == "fp32")
    fastest = min(train["results"], key=lambda r: r["student"])
    ratios = {k: v for k, v in speed["ratios"].items() if k != "student_best_backend"}
    ratios.update(
        {
            # fast settings: the fastest of bf16 autocast, channels-last and a compiled student
            "train_student_fast_vs_plain": fp32["student"] / fastest["student"],
            "distill_step_vs_student_step": min(
                r["distill_step_vs_student_step"] for r in train["results"] if "distill" in r
            ),
            "distill_cached_step_vs_student_step": min(
                r["distill_cached_step_vs_student_step"] for r in train["results"]
            ),
            "predict_end_to_end_vs_model_only": min(r["model_share"] for r in pred["results"]),
            "rle_decode_vs_kaggle": rle["rows"][0]["speedup"] if rle else None,
            "rle_encode_vs_kaggle": rle["rows"][1]["speedup"] if rle else None,
        }
    )
    return {
        "mode": "full" if full else "quick",
        "machine": speed["machine"],
        "versions": _versions(),
        "peak": speed["peak"],
        "student_best_backend": speed["ratios"].get("student_best_backend"),
        "train_fastest_settings": fastest["precision"],
        "ratios": ratios,
        "targets": {
            k: {"target": f"{op} {v}", "met": _met(ratios.get(k), op, v)} for k, (op, v) in TARGETS.items()
        },
        "markdown": {"speed": speed_md, "predict": pred_md, "train": train_md, "rle": rle_md},
        "raw": {"speed": speed, "predict": pred, "train": train, "rle": rle},
    }


def _met(value: float | None, op: str, target: float) -> bool | None:
    if value is None:
        return None
    return value >= target if op == ">=" else value <= target


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import openvino

        out["openvino"] = openvino.__version__
    except ImportError:
        pass
    return out


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        "# steelkd benchmark results",
        "",
        f"`make bench` ({res['mode']} mode, `python benchmarks/all.py`) on {res['machine']}; "
        + ", ".join(f"{k} {v}" for k, v in res["versions"].items())
        + f"; written {time.strftime('%Y-%m-%d %H:%M')}. Medians; every ratio is measured side by side in "
        "this one run. Figures from another session or CPU are not comparable.",
        "",
        "## Ratios and targets",
        "",
        "| ratio | measured | target | met |",
        "| --- | ---: | --- | --- |",
    ]
    for k, t in res["targets"].items():
        v = res["ratios"].get(k)
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| `{k}` | {'–' if v is None else f'{v:.2f}'} | {t['target']} | {met} |")
    lines += ["", f"Student's fastest non-int8 backend here: {res['student_best_backend']}.", ""]
    missed = [k for k, t in res["targets"].items() if t["met"] is not True]
    if missed:
        lines += ["### Missed or not measured, and what bounds them", ""]
        lines += [f"- `{k}`: {NOTES.get(k, 'not analysed yet.')}" for k in missed]
        lines.append("")
    sections = (
        ("Inference speed and peak fraction", "speed"),
        ("Batch prediction end to end", "predict"),
        ("Training step throughput", "train"),
        ("RLE codec", "rle"),
    )
    for title, key in sections:
        if res["markdown"][key].strip():
            lines += [f"## {title}", "", res["markdown"][key].strip(), ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the scripts' full modes (much longer)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for RESULTS.md and results.json")
    args = ap.parse_args(argv)
    res = collect(args.full)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(to_markdown(res))
    slim = {k: v for k, v in res.items() if k != "markdown"}
    (args.out / "results.json").write_text(json.dumps(slim, indent=2, default=str) + "\n")
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
