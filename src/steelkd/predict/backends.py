"""Backends: ``logits = backend(batch)`` and nothing else, plus the model card they read.

- :class:`TorchBackend`: a model saved by :func:`steelkd.models.save_model` (or an engine ``.ckpt``),
  fp32 or bf16 autocast, on CPU or CUDA;
- :class:`OnnxBackend`: a model written by ``steelkd export``, run by ONNX Runtime without any PyTorch
  model code; the class names and the normalisation come from the model card stored in the ONNX
  metadata entry :data:`steelkd.card.ONNX_CARD_KEY`.

Both expose ``card`` (a :class:`~steelkd.card.ModelCard`: class names, mean, std on the 0..1
scale) and ``name`` (e.g. ``"torch-bf16-cpu"``); anything else with those two attributes and a
``__call__`` is a backend too (see :class:`Backend`).

Example:
    >>> from steelkd.predict import load_backend
    >>> backend = load_backend("model.onnx")  # doctest: +SKIP
    >>> backend.card.class_names  # doctest: +SKIP
    ['background', 'pitting', 'crazing', 'scratches', 'patches']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from steelkd.card import ONNX_CARD_KEY, ModelCard

__all__ = ["Backend", "OnnxBackend", "TorchBackend", "load_backend"]


class Backend(Protocol):
    """``logits = backend(batch)``: float32 ``N x 3 x H x W`` normalised batch to ``N x C x H x W``.

    Attributes:
        card: the model card (class names, normalisation).
        name: a short label for logs and reports.
    """

    card: ModelCard
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch backend: a saved steelkd model, fp32 or bf16 autocast.

    Args:
        model_path: model directory / ``.safetensors`` / engine ``.ckpt`` (see :mod:`steelkd.models.saved`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available), resolved by
            :func:`steelkd.runtime.resolve_device` (ValueError when unknown or unavailable).
        bf16: run under ``torch.autocast(dtype=torch.bfloat16)`` (CPU or CUDA).

    Example:
        >>> backend = TorchBackend("runs/x/model", bf16=True)  # doctest: +SKIP
        >>> logits = backend(batch)  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", bf16: bool = False) -> None:
        # imported here, not at module level: the onnxruntime backend must not import model code
        import torch

        from steelkd.models.saved import load_model
        from steelkd.runtime import autocast_context, resolve_device

        self.device = resolve_device(device)
        model, card = load_model(model_path, map_location="cpu")
        self.model = model.to(self.device).eval()
        self.card = ModelCard.from_dict(card, str(model_path))
        self.bf16 = bf16
        self.name = f"torch-{'bf16' if bf16 else 'fp32'}-{self.device.type}"
        self._torch = torch
        self._autocast = autocast_context

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode(), self._autocast(self.device, "bf16-mixed" if self.bf16 else "32"):
            out = self.model(x)
        if isinstance(out, dict):
            out = out["logits"]
        return out.float().cpu().numpy()


def _ort_providers(device: str, available: list[str]) -> tuple[str, list[Any]]:
    """``(device, providers)`` for onnxruntime: ``auto`` picks CUDA when the installed build has it."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"device: {device!r} requested but onnxruntime has no CUDAExecutionProvider")
        dev_id = int(device.split(":")[1]) if ":" in device else 0
        return device, [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
    if device == "cpu":
        return device, ["CPUExecutionProvider"]
    raise ValueError(f"device: expected cpu, cuda[:N] or auto for onnxruntime, got {device!r}")


class OnnxBackend:
    """ONNX Runtime backend: runs ``model.onnx`` written by ``steelkd export`` (no PyTorch model code).

    Args:
        model_path: the ``.onnx`` file; its model-card metadata gives classes and normalisation.
        device: ``"cpu"``, ``"cuda[:N]"`` (CUDAExecutionProvider, when the installed onnxruntime has it)
            or ``"auto"``.
        threads: intra-op threads (0 = ONNX Runtime's default).

    Example:
        >>> backend = OnnxBackend("model.onnx")  # doctest: +SKIP
        >>> backend.card.class_names  # doctest: +SKIP
        ['background', 'pitting', 'crazing', 'scratches', 'patches']
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found")
        device, providers = _ort_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: cannot load ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_CARD_KEY not in meta:
            raise ValueError(f"{path}: no {ONNX_CARD_KEY!r} metadata (export it with `steelkd export`)")
        try:
            card = json.loads(meta[ONNX_CARD_KEY])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: {ONNX_CARD_KEY!r} metadata is not valid JSON ({exc})") from exc
        self.card = ModelCard.from_dict(card, str(path))
        self.input_name = self.session.get_inputs()[0].name
        self.name = f"onnxruntime-{device.split(':')[0]}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)


def load_backend(
    model_path: str | Path, backend: str = "auto", device: str = "cpu", bf16: bool = False
) -> TorchBackend | OnnxBackend:
    """Open a model with the named backend (``"auto"``: ``onnxruntime`` for ``.onnx`` files, else ``torch``).

    Raises:
        FileNotFoundError: the model path does not exist.
        ValueError: an unknown backend, bf16 with onnxruntime, or a model that cannot be loaded.

    Example:
        >>> load_backend("runs/x/model", device="auto").name  # doctest: +SKIP
        'torch-fp32-cuda'
    """
    path = Path(model_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if backend == "auto":
        backend = "onnxruntime" if path.suffix.lower() == ".onnx" else "torch"
    if backend == "onnxruntime":
        if bf16:
            raise ValueError("--bf16 applies to the torch backend only (the ONNX model runs in fp32)")
        return OnnxBackend(path, device=device)
    if backend == "torch":
        if path.suffix.lower() == ".onnx":
            raise ValueError(f"{path}: an ONNX file needs --backend onnxruntime")
        return TorchBackend(path, device=device, bf16=bf16)
    raise ValueError(f"backend: expected auto, torch or onnxruntime, got {backend!r}")
