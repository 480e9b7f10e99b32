"""Size and CPU/GPU speed of the paper's three networks and the smp U-Net baseline, side by side, in one run.

Params, GMACs (MACs = FLOPs / 2, torch FlopCounterMode) and forward latency (median, p10, p90 of
``--repeats`` runs after ``--warmup``), fp32 and bf16 autocast, at batch 1 and ``--size`` (Severstal
full size by default). Prints a markdown table and the student/teacher speed ratios (the paper, RTX 3090:
82.7 / 46.7 FPS = 1.77 for ConvNeXt-T vs the ConvNeXt-B+GC+FF teacher).

Example:
    .venv/bin/python benchmarks/models.py --repeats 10 --size 256x1600
    .venv/bin/python benchmarks/models.py --models resunet_convnext_atto --size 128x256 --repeats 3
    .venv/bin/python benchmarks/models.py --search-designs   # the parameter-count design search
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from steelkd.bench import count_gmacs, measure_latency
from steelkd.config import parse_size
from steelkd.io import atomic_write_text
from steelkd.models import count_params, create_model, list_models
from steelkd.paper import PAPER_EXPERIMENTS, PAPER_MODELS, PAPER_PARAMS_M
from steelkd.runtime import device_name

SMP_BASELINE = "smp_unet_tu-convnext_tiny"
DEFAULT_MODELS = (
    "resunet_convnext_tiny",
    "resunet_convnext_tiny_gc_ff",
    "resunet_convnext_base_gc_ff",
    SMP_BASELINE,
)
#: (student, teacher, the paper's speed-up) of the paper's three experiments
PAIRS = tuple((s, t, PAPER_MODELS[s].fps / PAPER_MODELS[t].fps) for t, s in PAPER_EXPERIMENTS)


def build(name: str, num_classes: int) -> nn.Module:
    """A steelkd registry name, or the smp U-Net baseline (``smp_unet_tu-<timm encoder>``)."""
    if name.startswith("smp_unet_"):
        import segmentation_models_pytorch as smp

        return smp.Unet(
            encoder_name=name.removeprefix("smp_unet_"), encoder_weights=None, classes=num_classes
        )
    return create_model(name, num_classes=num_classes)


def _design_params(
    enc: str,
    up: str,
    dec_scale: float,
    gc_ratio: float,
    gc_at: str,
    ff: int | str,
    ff_levels: int,
    gc_ff: bool,
) -> float:
    """Parameters (M, 5 classes) of one candidate decoder design on a ConvNeXt encoder (meta device)."""
    import timm

    from steelkd.models.blocks import ConvBNReLU, FeatureFusion, GlobalContextBlock, ResidualUnit

    with torch.device("meta"):
        encoder = timm.create_model(enc, features_only=True, pretrained=False)
        c = encoder.feature_info.channels()
        dec = [int(v * dec_scale) for v in (c[2], c[1], c[0])]
        mods: list[nn.Module] = [encoder]
        prev = c[3]
        for d, skip in zip(dec, (c[2], c[1], c[0]), strict=True):
            if up == "reduce":  # 1x1 conv to the skip's channels, then upsample and concatenate
                mods.append(ConvBNReLU(prev, skip, 1))
                cat = 2 * skip
            else:  # "cat": upsample and concatenate straight in
                cat = prev + skip
            if gc_ff and gc_at == "in":
                mods.append(GlobalContextBlock(cat, gc_ratio))
            mods.append(ResidualUnit(cat, d))
            if gc_ff and gc_at == "out":
                mods.append(GlobalContextBlock(d, gc_ratio))
            prev = d
        if gc_ff:
            width = dec[0] if ff == "d1" else int(ff)
            mods.append(FeatureFusion(([c[3]] if ff_levels == 4 else []) + dec, width))
            prev = width
        mods.append(nn.Conv2d(prev, 5, 1))
        return sum(count_params(m) for m in mods) / 1e6


def search_designs(top: int = 15) -> str:
    """Markdown table of candidate decoder designs ranked by the worst deviation from the paper's counts."""
    import itertools

    rows = []
    grid = itertools.product(
        ["cat", "reduce"], [1.0, 0.75, 0.5], [1 / 16, 1 / 4], ["in", "out"], ["d1", 256, 384, 512], [3, 4]
    )
    for up, scale, ratio, gc_at, ff, levels in grid:
        student = _design_params("convnext_tiny", up, scale, ratio, gc_at, ff, levels, gc_ff=False)
        student_gf = _design_params("convnext_tiny", up, scale, ratio, gc_at, ff, levels, gc_ff=True)
        teacher = _design_params("convnext_base", up, scale, ratio, gc_at, ff, levels, gc_ff=True)
        errs = [
            student / PAPER_PARAMS_M["resunet_convnext_tiny"] - 1,
            student_gf / PAPER_PARAMS_M["resunet_convnext_tiny_gc_ff"] - 1,
            teacher / PAPER_PARAMS_M["resunet_convnext_base_gc_ff"] - 1,
        ]
        rows.append(
            (max(abs(e) for e in errs), up, scale, ratio, gc_at, ff, levels, student, student_gf, teacher)
        )
    rows.sort(key=lambda r: r[0])
    lines = [
        "| up | decoder ch. x skip | GC ratio | GC on | FF ch. | FF levels | T (M) | T+GC+FF (M) "
        "| B+GC+FF (M) | worst dev. |",
        "|" + "|".join(" --- " for _ in range(10)) + "|",
    ]
    for worst, up, scale, ratio, gc_at, ff, levels, s, sg, t in rows[:top]:
        lines.append(
            f"| {up} | {scale:g} | 1/{round(1 / ratio)} | {gc_at} | {ff} | {levels} "
            f"| {s:.2f} | {sg:.2f} | {t:.2f} | {worst * 100:.1f}% |"
        )
    return "\n".join(lines)


def summarize(times: list[float], batch: int) -> dict[str, float]:
    """Median, p10, p90 (seconds) and images per second at the median."""
    med = statistics.median(times)
    deciles = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [med] * 9
    return {"median_s": med, "p10_s": deciles[0], "p90_s": deciles[-1], "fps": batch / med}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="names to measure")
    parser.add_argument("--size", default="256x1600", help="input HxW (default 256x1600)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model and dtype")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--out", default="", help="also write the markdown to this file")
    parser.add_argument(
        "--search-designs", action="store_true", help="print the decoder design search and exit"
    )
    args = parser.parse_args(argv)
    if args.search_designs:
        print(search_designs())
        return 0

    known = set(list_models())
    for name in args.models:
        if name not in known and not name.startswith("smp_unet_"):
            raise SystemExit(f"error: unknown model {name!r} (see `steelkd models list`)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        h, w = parse_size(args.size)
    except ValueError as exc:
        raise SystemExit(f"error: --size: {exc}") from None
    device = torch.device(args.device)
    dtypes: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, h, w, device=device)

    models: dict[str, nn.Module] = {}
    rows: dict[str, dict[str, Any]] = {}
    start = time.time()
    for name in args.models:
        model = build(name, args.num_classes).to(device).eval()
        models[name] = model
        rows[name] = {"params_m": count_params(model) / 1e6, "gmacs": count_gmacs(model, (1, 3, h, w))}
    for key in args.dtypes:
        # Interleaved: after each model's warm-up, one timed run of every model per round, so a change of
        # load on a shared machine hits all models alike instead of biasing one of them.
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():
            measure_latency(model, x, repeats=1, warmup=args.warmup, dtype=dtypes[key])
        for _ in range(args.repeats):
            for name, model in models.items():
                times[name].append(
                    measure_latency(model, x, repeats=1, warmup=0, dtype=dtypes[key])["median_s"]
                )
        for name in models:
            rows[name][key] = summarize(times[name], args.batch)
            print(
                f"  {name} {key}: median {rows[name][key]['median_s'] * 1e3:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    lines = [
        f"Device: {device_name(device)}; input {args.batch}x3x{h}x{w}; median of {args.repeats} "
        f"interleaved runs after {args.warmup} warm-up; torch {torch.__version__}; "
        f"total {time.time() - start:.0f} s.",
        "",
    ]
    head = ["model", "params (M)", "paper params (M)", f"GMACs @{h}x{w}"]
    for key in args.dtypes:
        head += [f"{key} median ms (p10-p90)", f"{key} FPS"]
    head.append("paper FPS (3090)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(" --- " for _ in head) + "|")
    for name, row in rows.items():
        paper = PAPER_MODELS.get(name)
        cells = [
            f"`{name}`",
            f"{row['params_m']:.2f}",
            f"{paper.params_m:.2f}" if paper else "",
            f"{row['gmacs']:.2f}",
        ]
        for key in args.dtypes:
            s = row[key]
            cells += [
                f"{s['median_s'] * 1e3:.0f} ({s['p10_s'] * 1e3:.0f}-{s['p90_s'] * 1e3:.0f})",
                f"{s['fps']:.2f}",
            ]
        cells.append(f"{paper.fps:.1f}" if paper else "")
        lines.append("| " + " | ".join(cells) + " |")
    ratios = []
    for student, teacher, paper_ratio in PAIRS:
        if student in rows and teacher in rows:
            measured = ", ".join(
                f"{key} {rows[teacher][key]['median_s'] / rows[student][key]['median_s']:.2f}x"
                for key in args.dtypes
            )
            ratios.append(f"- `{student}` vs `{teacher}`: {measured} (paper: {paper_ratio:.2f}x)")
    if ratios:
        lines += ["", "Student/teacher speed ratio (teacher latency / student latency):", *ratios]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
