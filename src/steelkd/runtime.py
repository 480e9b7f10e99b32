"""Where and in which precision a model runs: device resolution, autocast, the machine's name.

The one owner of these choices for evaluation, benchmarking, prediction and experiments (training passes
its precision string to Lightning, which understands the same names).

Example:
    >>> from steelkd.runtime import autocast_dtype, resolve_device
    >>> resolve_device("cpu").type
    'cpu'
    >>> autocast_dtype("bf16-mixed")
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "autocast_context",
    "autocast_dtype",
    "cpu_flags",
    "cpu_has_bf16",
    "device_name",
    "require_extra",
    "resolve_device",
]

#: The canonical precision names (Lightning's): fp32, bf16 autocast, fp16 autocast.
PRECISIONS: tuple[str, ...] = ("32", "bf16-mixed", "16-mixed")

_AUTOCAST: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "fp32": None,
    "bf16-mixed": torch.bfloat16,
    "bf16": torch.bfloat16,
    "16-mixed": torch.float16,
    "16": torch.float16,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`.

    Raises:
        ValueError: unknown device string, or CUDA asked for but not available.

    Example:
        >>> resolve_device("auto").type in ("cpu", "cuda")
        True
    """
    if isinstance(device, torch.device):
        return device
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r}: not a torch device (use auto, cpu, cuda, cuda:0)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def autocast_dtype(precision: str | int) -> torch.dtype | None:
    """The autocast dtype of a Lightning-style precision string (``None``: fp32, no autocast).

    Raises:
        ValueError: unknown precision.

    Example:
        >>> autocast_dtype("32") is None
        True
    """
    p = str(precision)
    if p not in _AUTOCAST:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return _AUTOCAST[p]


def autocast_context(device: torch.device, precision: str | int) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``precision`` on ``device`` (a null context for fp32).

    Raises:
        ValueError: unknown precision.
    """
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where that is not available)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags") and ":" in line:
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 can run faster than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


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


def require_extra(module: str, extra: str) -> Any:
    """Import an optional dependency, or fail with one line naming the extra that installs it.

    Raises:
        ValueError: ``"<what> needs the optional dependency <module>: pip install 'steelkd[<extra>]'"``.

    Example:
        >>> require_extra("json", "none").__name__
        'json'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"this needs the optional dependency {module!r}: pip install 'steelkd[{extra}]'"
        ) from None
