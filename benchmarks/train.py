"""Training throughput side by side: teacher step, student step, distillation step (fp32 and bf16).

For each precision it measures, in one run and at the same batch and crop:

- images/s of a supervised step of the teacher and of the student (forward, weighted CE, backward, AdamW);
- images/s of a distillation step: live (teacher forward under no_grad + student step + CWD, through the
  engine's ``LiveTeacher``) and with the teacher-logit cache (the logits come with the batch:
  ``CachedTeacher``; the loader's upsampling and cropping of the cached map runs in its worker processes
  and is not in the step);
- the share of the distillation step spent in the CWD loss (its forward and backward on the logits);
- peak memory: resident set size of a fresh process per configuration on CPU, or
  ``torch.cuda.max_memory_allocated`` on a GPU;
- with a ``+compile`` suffix on a precision (``fp32-cl+compile``), the same steps with the student's forward
  compiled by ``torch.compile`` (inductor, as ``train.compile`` does), and the seconds the first, compiling
  step took: whether compilation pays on this machine, and after how many steps.

Every configuration runs in its own child process, so peak memory is not inherited from the one before.

    python benchmarks/train.py                                # the paper's models, 2x3x256x512
    python benchmarks/train.py --teacher resunet_convnext_nano_gc_ff --student resunet_convnext_atto \
        --batch 16 --crop 128x128                            # the neu_seg_cpu preset's models
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from steelkd.config import parse_size
from steelkd.engine.distiller import LiveTeacher
from steelkd.engine.logit_cache import CachedTeacher
from steelkd.losses import ChannelWiseDivergence, WeightedCrossEntropy
from steelkd.models import create_model
from steelkd.runtime import autocast_dtype, device_name, resolve_device


def _timed(
    fn: Any, repeats: int, warmup: int, device: torch.device, first: list[float] | None = None
) -> float:
    for i in range(warmup):
        t = time.perf_counter()
        fn()
        if i == 0 and first is not None:
            first.append(time.perf_counter() - t)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _child(job: dict[str, Any], queue: Any) -> None:
    torch.manual_seed(0)
    device = resolve_device(job["device"])
    prec, compiled = job["precision"].removesuffix("+compile"), job["precision"].endswith("+compile")
    dtype = autocast_dtype(prec.removesuffix("-cl"))
    fmt = torch.channels_last if prec.endswith("-cl") else torch.contiguous_format
    n, (h, w), classes = job["batch"], job["crop"], job["classes"]
    x = torch.randn(n, 3, h, w, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (n, h, w), device=device)
    ce = WeightedCrossEntropy(torch.ones(classes)).to(device)
    cwd = ChannelWiseDivergence(tau=1.0)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    student = create_model(job["student"], num_classes=classes).to(device, memory_format=fmt).train()
    if compiled:
        student.compile(dynamic=False)  # in place, static shapes: what train.compile does
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    out: dict[str, Any] = {}
    first: list[float] = []
    if job["kind"] == "cwd":
        s_logits = torch.randn(n, classes, h, w, device=device, requires_grad=True)
        t_logits = torch.randn(n, classes, h, w, device=device)

        def cwd_step() -> None:
            cwd(s_logits, t_logits).backward()

        out["seconds"] = _timed(cwd_step, job["repeats"], job["warmup"], device)
    elif job["kind"] in ("distill", "distill_cached"):
        net = create_model(job["teacher"], num_classes=classes).to(device, memory_format=fmt)
        live = LiveTeacher(net)
        with torch.no_grad(), autocast():
            cached_logits = net(x).float()  # what the cache's loader brings with each batch
        teacher = live if job["kind"] == "distill" else CachedTeacher()
        batch = (x, y, cached_logits)

        def kd_step() -> None:
            with autocast():
                t = teacher(batch)["logits"]
                s = student(x)
            loss = ce(s.float(), y) + cwd(s, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out["seconds"] = _timed(kd_step, job["repeats"], job["warmup"], device, first)
    else:
        model = (
            student
            if job["kind"] == "student"
            else create_model(job["teacher"], num_classes=classes).to(device, memory_format=fmt)
        )
        model.train()
        mopt = opt if job["kind"] == "student" else torch.optim.AdamW(model.parameters(), lr=1e-4)

        def sup_step() -> None:
            with autocast():
                s = model(x)
            loss = ce(s.float(), y)
            mopt.zero_grad(set_to_none=True)
            loss.backward()
            mopt.step()

        out["seconds"] = _timed(sup_step, job["repeats"], job["warmup"], device, first)
    out["first_seconds"] = first[0] if first else None
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def run(job: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(job, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="resunet_convnext_base_gc_ff")
    ap.add_argument("--student", default="resunet_convnext_tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", default="256x512", help="HxW")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma-separated; a -cl suffix adds channels-last memory, +compile compiles the student",
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    results: list[dict[str, Any]] = []
    h, w = parse_size(args.crop)
    print(f"device: {device_name(resolve_device(args.device))}  torch {torch.__version__}")
    print(
        f"teacher {args.teacher}, student {args.student}, batch {args.batch}, crop {h}x{w}, "
        f"median of {args.repeats} steps after {args.warmup} warm-up\n"
    )
    print("| precision | step | images/s | s/step | peak memory (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for prec in args.precisions.split(","):
        base = {
            "teacher": args.teacher,
            "student": args.student,
            "batch": args.batch,
            "crop": (h, w),
            "classes": args.classes,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "precision": prec,
            "device": args.device,
        }
        if prec.endswith("+compile"):  # the student is compiled: its own steps (the teacher's are as above)
            res = {kind: run({**base, "kind": kind}) for kind in ("student", "distill_cached")}
            for kind, r in res.items():
                print(f"| {prec} | {kind} | {args.batch / r['seconds']:.2f} | {r['seconds']:.3f} | "
                      f"{r['peak_mb']:.0f} (first step {r['first_seconds']:.1f} s) |")  # fmt: skip
            cached = res["distill_cached"]["seconds"] / res["student"]["seconds"]
            results.append({"precision": prec, **{k: v["seconds"] for k, v in res.items()},
                            "compile_first_seconds": res["student"]["first_seconds"],
                            "distill_cached_step_vs_student_step": cached})  # fmt: skip
            continue
        kinds = ("teacher", "student", "distill", "distill_cached", "cwd")
        res = {kind: run({**base, "kind": kind}) for kind in kinds}
        for kind in kinds[:-1]:
            r = res[kind]
            ips = args.batch / r["seconds"]
            print(f"| {prec} | {kind} | {ips:.2f} | {r['seconds']:.3f} | {r['peak_mb']:.0f} |")
        share = res["cwd"]["seconds"] / res["distill"]["seconds"]
        over = res["distill"]["seconds"] / res["student"]["seconds"]
        cached = res["distill_cached"]["seconds"] / res["student"]["seconds"]
        results.append({"precision": prec, **{k: v["seconds"] for k, v in res.items()},
                        "distill_step_vs_student_step": over, "distill_cached_step_vs_student_step": cached,
                        "cwd_share": share})  # fmt: skip
        print(
            f"| {prec} | CWD loss (fwd+bwd) | - | {res['cwd']['seconds']:.4f} | share of a distillation "
            f"step: {100 * share:.1f}%; distillation step / student step: {over:.2f}x live, "
            f"{cached:.2f}x cached |"
        )
    if args.json:
        meta = {"teacher": args.teacher, "student": args.student, "batch": args.batch, "crop": [h, w],
                "repeats": args.repeats, "device": device_name(resolve_device(args.device))}  # fmt: skip
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
