"""Choose the inference backend by measurement: the fastest whose mDice stays within tolerance of fp32.

The best backend and precision differ from one CPU to the next by more than 2x either way (bf16 is 2.6x
faster than fp32 on an AMD EPYC with AVX-512 BF16 and 1.5x slower on an Intel Xeon without it), so
nothing is assumed: :func:`tune` measures every available backend on this machine — latency at batch 1
and the mDice of its predictions on validation images — keeps the fastest whose mDice is within
``tolerance`` of PyTorch fp32 eager (``int8_tolerance`` for int8), and records the choice beside the model
(``tuning.json``, valid for this machine only: :func:`steelkd.card.recorded_choice`), where
``--backend auto`` finds it.

Example:
    >>> result = tune("runs/student/model", images, masks)  # doctest: +SKIP
    >>> result.choice["backend"]  # doctest: +SKIP
    'openvino-bf16'
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelkd.card import TUNING_NAME, machine_key
from steelkd.io import atomic_write_text
from steelkd.metrics import SegMetrics
from steelkd.postprocess import PostProcess
from steelkd.predict import BACKENDS, Predictor, load_backend
from steelkd.runtime import cpu_has_bf16

__all__ = [
    "INT8_DIR",
    "OPENVINO_DIR",
    "TuneResult",
    "available_backends",
    "benchmark_backends",
    "export_artifacts",
    "measure_backend",
    "open_backend",
    "tune",
]

#: Where ``tune`` writes the OpenVINO models inside the model folder (fp32 weights; int8).
OPENVINO_DIR = "openvino"
INT8_DIR = "openvino_int8"


@dataclass
class TuneResult:
    """What :func:`tune` measured and chose.

    Attributes:
        rows: one per backend: ``backend``, ``file``, ``latency_ms`` (median), ``mdice``, ``mdice_cost``
            (mDice minus fp32 eager's), ``eligible``, ``note``.
        choice: the chosen row's ``backend`` and ``file`` (relative to the model folder).
        record: the tuning record written (``model_dir/tuning.json``).
    """

    rows: list[dict[str, Any]]
    choice: dict[str, Any]
    record: Path
    meta: dict[str, Any] = field(default_factory=dict)


def available_backends() -> list[tuple[str, str]]:
    """``(backend, reason it is skipped or "")`` for every backend of :data:`BACKENDS` on this machine."""
    try:
        import openvino  # noqa: F401

        has_ov = True
    except ImportError:
        has_ov = False
    out = []
    for name in BACKENDS:
        reason = ""
        if name.startswith("openvino") and not has_ov:
            reason = "openvino not installed (pip install 'steelkd[openvino]')"
        elif name == "openvino-bf16" and not cpu_has_bf16():
            reason = "this CPU has no native bf16 (AVX-512 BF16 / AMX)"
        out.append((name, reason))
    return out


def measure_backend(backend: Any, size: tuple[int, int], repeats: int, warmup: int) -> float:
    """Median seconds of ``backend(x)`` on one normalised ``1 x 3 x H x W`` input (after ``warmup`` calls)."""
    x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
    for _ in range(warmup):
        backend(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _mdice(backend: Any, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """mDice of the backend's argmax predictions (no thresholds, no minimum areas) on the images."""
    predictor = Predictor(backend, PostProcess(threshold=None, min_area=0), batch_size=1)
    metric = SegMetrics(len(backend.card.class_names))
    for label, mask in zip(predictor.predict_arrays(list(images)), masks, strict=True):
        pred = torch.from_numpy(label.astype(np.int64))[None]
        metric.update(pred, torch.from_numpy(mask.astype(np.int64))[None])
    return float(metric.compute()["mdice"])


def tune(
    model_dir: str | Path,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    size: tuple[int, int] = (256, 1600),
    repeats: int = 10,
    warmup: int = 2,
    tolerance: float = 0.005,
    int8_tolerance: float = 0.01,
    calibration: Sequence[np.ndarray] | None = None,
    backends: Sequence[str] | None = None,
) -> TuneResult:
    """Measure the backends on this machine, choose, and write ``model_dir/tuning.json``.

    Args:
        model_dir: a saved model folder.
        images / masks: validation images (RGB ``uint8``) and their label maps, for mDice.
        size: ``(H, W)`` of the latency input (the line's tile size).
        repeats / warmup: timed and untimed calls per backend (median reported).
        tolerance: largest mDice loss against fp32 eager a non-int8 backend may cost.
        int8_tolerance: the same for int8.
        calibration: normalised training images (``3 x H x W`` float32) for int8; ``None``: no int8.
        backends: restrict to these names (default: every available one).

    Raises:
        ValueError: no validation images, or an unknown backend name.
    """
    model_dir = Path(model_dir)
    if not images:
        raise ValueError("tune needs validation images to measure each backend's mDice")
    _check_known(backends or [])
    names = [n for n, why in available_backends() if not why and (backends is None or n in backends)]
    want_int8 = calibration is not None and "openvino" in names
    want_int8 = want_int8 and (backends is None or "openvino-int8" in backends)
    plan = export_artifacts(model_dir, names, calibration if want_int8 else None)
    rows = [_measure(model_dir, name, file, images, masks, size, repeats, warmup) for name, file in plan]
    ref = next(r for r in rows if r["backend"] == "torch")["mdice"]
    for r in rows:
        r["mdice_cost"] = r["mdice"] - ref
        limit = int8_tolerance if "int8" in r["backend"] else tolerance
        r["eligible"] = r["mdice_cost"] >= -limit
    best = min((r for r in rows if r["eligible"]), key=lambda r: r["latency_ms"])
    choice = {"backend": best["backend"].replace("openvino-int8", "openvino"), "file": best["file"]}
    meta = {
        "machine": machine_key(),
        "size": list(size),
        "repeats": repeats,
        "warmup": warmup,
        "tolerance": tolerance,
        "int8_tolerance": int8_tolerance,
        "images": len(images),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    record = model_dir / TUNING_NAME
    atomic_write_text(record, json.dumps({**meta, "choice": choice, "rows": rows}, indent=2) + "\n")
    return TuneResult(rows, choice, record, meta)


def export_artifacts(
    model_dir: Path, names: Sequence[str], calibration: Sequence[np.ndarray] | None
) -> list[tuple[str, str]]:
    """``(backend, file relative to model_dir)`` per backend, exporting the files the runtimes load:
    ``model.onnx`` (ONNX Runtime), ``openvino/model.xml`` (fp32 IR), ``openvino_int8/model.xml`` (with
    ``calibration``; listed as backend ``openvino-int8``). Open each with :func:`open_backend`."""
    from steelkd.export import to_onnx, to_openvino
    from steelkd.models import load_model

    net, card = load_model(model_dir)
    files = {"onnxruntime": "model.onnx", "openvino": f"{OPENVINO_DIR}/model.xml"}
    if any(n.startswith("onnxruntime") for n in names):
        to_onnx(net, model_dir / files["onnxruntime"], card=card)
    if any(n.startswith("openvino") for n in names):
        to_openvino(net, model_dir / files["openvino"], card)
    plan = [(n, files.get(n.removesuffix("-bf16"), ".")) for n in names]
    if calibration is not None:
        to_openvino(net, model_dir / INT8_DIR / "model.xml", card, calibration=calibration)
        plan.append(("openvino-int8", f"{INT8_DIR}/model.xml"))
    return plan


def open_backend(model_dir: str | Path, name: str, file: str) -> Any:
    """The backend ``name`` on ``model_dir/file`` (as listed by :func:`export_artifacts`)."""
    return load_backend(Path(model_dir) / file, name.replace("openvino-int8", "openvino"))


def _measure(
    model_dir: Path,
    name: str,
    file: str,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    size: tuple[int, int],
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    row, backend = _latency_row(model_dir, name, file, size, repeats, warmup)
    row["mdice"] = _mdice(backend, images, masks)
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in row.items()}


def _latency_row(
    model_dir: Path | str, name: str, file: str, size: tuple[int, int], repeats: int, warmup: int
) -> tuple[dict[str, Any], Any]:
    """``({backend, file, runs_as, latency_ms}, the opened backend)`` for one backend of a model folder."""
    backend = open_backend(model_dir, name, file)
    seconds = measure_backend(backend, size, repeats, warmup)
    return {"backend": name, "file": file, "runs_as": backend.name, "latency_ms": seconds * 1e3}, backend


def _check_known(names: Sequence[str]) -> None:
    """Raise a one-line ValueError for a backend name that is neither in BACKENDS nor openvino-int8."""
    known = [*BACKENDS, "openvino-int8"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--backends: unknown {unknown[0]!r} (known: {', '.join(known)})")


def benchmark_backends(
    model_dir: str | Path,
    backends: Sequence[str],
    size: tuple[int, int],
    *,
    repeats: int = 10,
    warmup: int = 2,
    calibration: Sequence[np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Latency of one saved model in each backend (``openvino-int8`` needs ``calibration``), side by side.

    Returns one row per backend: ``backend``, ``runs_as``, ``latency_ms`` (median), ``fps``.

    Raises:
        ValueError: an unknown or unavailable backend (the reason is named).
    """
    _check_known(backends)
    skip = dict(available_backends())
    for b in backends:
        if skip.get(b.replace("openvino-int8", "openvino")):
            raise ValueError(
                f"--backends: {b} is not available here: {skip[b.replace('openvino-int8', 'openvino')]}"
            )
    if "openvino-int8" in backends and not calibration:
        raise ValueError("--backends openvino-int8 needs calibration images (--calib-data)")
    plain = [b for b in backends if b != "openvino-int8"]
    plan = export_artifacts(model_dir, plain, calibration if "openvino-int8" in backends else None)
    rows = [_latency_row(model_dir, name, file, size, repeats, warmup)[0] for name, file in plan]
    return [{**r, "fps": 1e3 / r["latency_ms"]} for r in rows]
