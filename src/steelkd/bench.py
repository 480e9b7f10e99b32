"""Speed and size measurements behind every speed figure in steelkd: GMACs, latency, models side by side.

Parameter counts are :func:`steelkd.models.count_params`; the device's name is
:func:`steelkd.runtime.device_name`.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from steelkd.config import parse_size
from steelkd.models import count_params
from steelkd.runtime import autocast_dtype, cpu_flags, cpu_has_bf16, device_name, resolve_device

__all__ = ["benchmark_models", "count_gmacs", "cpu_peak", "matmul_gflops", "measure_latency", "peak_kind"]


def count_gmacs(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Multiply-accumulates of one forward pass, in units of 1e9 (MACs = FLOPs / 2).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls, linear layers;
    element-wise ops, norms and interpolation are not counted, as in most published GMAC figures). The
    model runs once in eval mode under ``inference_mode`` on a zero input on its own device.

    Args:
        model: the network.
        input_shape: e.g. ``(1, 3, 256, 1600)``.

    Example:
        >>> count_gmacs(nn.Conv2d(3, 8, 3, padding=1, bias=False), (1, 3, 10, 10)) * 1e9
        21600.0
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(*input_shape, device=device)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    x: torch.Tensor,
    *,
    repeats: int = 20,
    warmup: int = 3,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Time the forward pass of ``model`` on ``x`` (eval mode, ``inference_mode``).

    Args:
        model: the network (on the device to measure).
        x: the input batch, on the same device.
        repeats: timed runs (the median is reported).
        warmup: untimed runs first.
        dtype: ``None`` (fp32) or ``torch.bfloat16`` / ``torch.float16`` through
            ``torch.autocast(device_type, dtype=dtype)``.

    Returns:
        ``{"median_s", "p10_s", "p90_s", "fps", "repeats", "batch", "dtype", "device"}``; ``fps`` is
        images per second at the median (batch size / median).

    Example:
        >>> stats = measure_latency(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 64, 64), repeats=3)
        >>> sorted(stats)[:3]
        ['batch', 'device', 'dtype']
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    device = x.device
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.inference_mode(), ctx:
            for _ in range(warmup):
                model(x)
            _sync(device)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    med = statistics.median(times)
    q = _quantiles(times)
    return {
        "median_s": med,
        "p10_s": q[0],
        "p90_s": q[1],
        "fps": x.shape[0] / med,
        "repeats": repeats,
        "batch": int(x.shape[0]),
        "dtype": str(dtype or torch.float32).replace("torch.", ""),
        "device": str(device),
    }


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], deciles[-1]



def benchmark_models(
    models: Mapping[str, nn.Module],
    size: str | Sequence[int],
    *,
    repeats: int = 20,
    warmup: int = 5,
    device: str | torch.device = "auto",
    precision: str = "32",
    batch_size: int = 1,
) -> list[dict[str, Any]]:
    """Params, GMACs and throughput of several models, measured one after the other in one process.

    Every model sees the same input (``batch_size`` x 3 x H x W) on the same device, so the FPS column
    compares like with like. Uses :mod:`steelkd.bench` (median latency over ``repeats`` after ``warmup``).

    Args:
        models: label -> network (e.g. model name or path -> model).
        size: input ``"HxW"`` or ``(H, W)``, e.g. the data set's native ``256x1600``.
        repeats: timed forward passes per model (>= 20 recommended).
        warmup: untimed passes first.
        device: ``auto``, ``cpu``, ``cuda``...
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast during the timed passes).
        batch_size: images per forward pass (1 = the paper's FPS).

    Returns:
        One dict per model, in input order: ``model``, ``architecture``, ``params``, ``gmacs``,
        ``latency_ms`` (median), ``p10_ms``, ``p90_ms``, ``fps``, ``batch``, ``height``, ``width``,
        ``precision``, ``repeats``, ``warmup``, ``device``, ``device_name``.

    Example:
        >>> from steelkd.models import create_model
        >>> rows = benchmark_models({"atto": create_model("resunet_convnext_atto")}, "64x64",
        ...                         repeats=2, warmup=0, device="cpu")
        >>> rows[0]["model"], rows[0]["params"] > 0
        ('atto', True)
    """
    h, w = parse_size(size)
    dtype = autocast_dtype(precision)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    dev = resolve_device(device)
    name = device_name(dev)
    rows: list[dict[str, Any]] = []
    for label, model in models.items():
        model = model.to(dev).eval()
        gmacs = count_gmacs(model, (batch_size, 3, h, w))
        x = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
        stats = measure_latency(model, x, repeats=repeats, warmup=warmup, dtype=dtype)
        rows.append(
            {
                "model": label,
                "architecture": str(getattr(model, "name", type(model).__name__)),
                "params": count_params(model),
                "gmacs": gmacs,
                "latency_ms": stats["median_s"] * 1e3,
                "p10_ms": stats["p10_s"] * 1e3,
                "p90_ms": stats["p90_s"] * 1e3,
                "fps": stats["fps"],
                "batch": batch_size,
                "height": h,
                "width": w,
                "precision": precision,
                "repeats": repeats,
                "warmup": warmup,
                "device": str(dev),
                "device_name": name,
            }
        )
        model.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """The calibration loop: GFLOP/s of an ``n x n`` matrix product on the CPU (median of ``repeats``).

    What the BLAS this torch uses reaches on this machine: the practical peak a network's convolutions
    and matmuls can approach.
    """
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def cpu_peak(calibrate: bool = True) -> dict[str, Any]:
    """What this CPU can do: a peak derived from its flags, and the calibration loop's measurement.

    ``theoretical_gflops`` = cores x 2 FMA units x SIMD fp32 lanes (16 with AVX-512, 8 with AVX2) x 2
    FLOP x the clock in ``/proc/cpuinfo``; bf16 doubles it where the CPU has AVX-512 BF16 (VDPBF16PS),
    int8 quadruples it with VNNI (VPDPBUSD); with AMX (``amx_bf16`` / ``amx_int8``: Sapphire Rapids and
    later) the tile unit's 1,024 bf16 FLOP and 2,048 int8 operations per cycle and core are the bf16 and
    int8 peaks instead. Two FMA units per core is an assumption (true for current
    server x86 cores; AMD Zen 4 splits AVX-512 into two 256-bit halves, which halves the real fp32 figure),
    which is why the measured matmul rates (``matmul_gflops``) are reported beside it.

    Returns:
        ``cores``, ``ghz``, ``fp32_lanes``, ``amx``, ``theoretical_gflops`` {fp32, bf16, int8}, and with
        ``calibrate`` ``matmul_gflops`` {fp32, bf16}.
    """
    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ghz = _cpu_ghz()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = cores * 2 * lanes * 2 * ghz
    bf16 = cores * 1024 * ghz if "amx_bf16" in flags else fp32 * (2 if cpu_has_bf16() else 1)
    vnni = bool(flags & {"avx512_vnni", "avx_vnni"})
    int8 = cores * 2048 * ghz if "amx_int8" in flags else fp32 * (4 if vnni else 1)
    out: dict[str, Any] = {
        "cores": cores,
        "ghz": ghz,
        "fp32_lanes": lanes,
        "amx": bool(flags & {"amx_bf16", "amx_int8"}),
        "theoretical_gflops": {
            "fp32": fp32,
            "bf16": bf16,
            "int8": int8,
        },
    }
    if calibrate:
        out["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    return out


def peak_kind(name: str) -> str:
    """The peak of :func:`cpu_peak` a backend or precision name runs against: ``int8``, ``bf16``, ``fp32``.

    Example:
        >>> peak_kind("openvino-bf16"), peak_kind("openvino-int8"), peak_kind("32")
        ('bf16', 'int8', 'fp32')
    """
    return "int8" if "int8" in name else "bf16" if "bf16" in name else "fp32"


def _cpu_ghz() -> float:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("cpu mhz") and ":" in line:
                return float(line.split(":", 1)[1]) / 1000
    return float("nan")
