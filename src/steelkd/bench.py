"""Speed and size measurements used by every speed figure in steelkd (params, GMACs, latency, device)."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``).

    Example:
        >>> count_params(nn.Conv2d(3, 8, 3))
        224
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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


def device_name(device: str | torch.device | None = None) -> str:
    """Human-readable name of the device: the GPU's name, or the CPU model with its core count.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None``: CUDA when available, else CPU.

    Example:
        >>> device_name("cpu")  # doctest: +SKIP
        'AMD EPYC 7B13 (2 cores, 2 torch threads)'
    """
    dev = torch.device(device) if device is not None else None
    if dev is None:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{_cpu_model()} ({_cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
