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

from steelkd.card import CARD_NAME, ONNX_CARD_KEY, OPENVINO_CARD_PATH, ModelCard, recorded_choice

__all__ = [
    "BACKENDS",
    "Backend",
    "OnnxBackend",
    "OpenVinoBackend",
    "TorchBackend",
    "as_module",
    "load_backend",
]


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
    """PyTorch backend: a saved steelkd model, eager or compiled, fp32 or bf16 autocast.

    Args:
        model_path: model directory / ``.safetensors`` / engine ``.ckpt`` (see :mod:`steelkd.models.saved`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available), resolved by
            :func:`steelkd.runtime.resolve_device` (ValueError when unknown or unavailable).
        bf16: run under ``torch.autocast(dtype=torch.bfloat16)`` (CPU or CUDA).
        compile: ``torch.compile`` with inductor, frozen weights and channels-last memory (compiles once
            per input size, on the first call of that size).

    Example:
        >>> backend = TorchBackend("runs/x/model", bf16=True)  # doctest: +SKIP
        >>> logits = backend(batch)  # doctest: +SKIP
    """

    def __init__(
        self, model_path: str | Path, device: str = "cpu", bf16: bool = False, compile: bool = False
    ) -> None:
        # imported here, not at module level: the onnxruntime backend must not import model code
        import torch

        from steelkd.models.saved import load_model
        from steelkd.runtime import autocast_context, resolve_device

        self.device = resolve_device(device)
        model, card = load_model(model_path, map_location="cpu")
        self.model = model.to(self.device).eval()
        self.card = ModelCard.from_dict(card, str(model_path))
        self.bf16 = bf16
        self.channels_last = compile
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # weights become constants: folded and pre-packed
            self.model = self.model.to(memory_format=torch.channels_last)
            self.model = torch.compile(self.model, backend="inductor", dynamic=False)
        kind = "torch-compile" if compile else "torch"
        self.name = f"{kind}-{'bf16' if bf16 else 'fp32'}-{self.device.type}"
        self._torch = torch
        self._autocast = autocast_context

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
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


class OpenVinoBackend:
    """OpenVINO backend (Intel's CPU runtime): an IR from ``steelkd export --format openvino[-int8]``, an
    ``.onnx`` file, or a saved model folder (converted in memory through ONNX).

    The compute precision is set explicitly (``INFERENCE_PRECISION_HINT``): left alone, the CPU plugin
    silently runs bf16 on CPUs that have it. An int8 IR runs its quantised layers in int8 whatever the hint.

    Args:
        model_path: ``.xml`` (card in its ``rt_info``), ``.onnx`` (card in its metadata) or a model folder.
        bf16: compute in bf16 (needs a CPU with AVX-512 BF16 or AMX: ValueError otherwise).
        threads: inference threads (0: OpenVINO's default, all cores).

    Raises:
        ValueError: openvino is not installed (``pip install 'steelkd[openvino]'``), a file it cannot read,
            or bf16 on a CPU without native bf16.
    """

    def __init__(self, model_path: str | Path, bf16: bool = False, threads: int = 0) -> None:
        from steelkd.runtime import cpu_has_bf16, require_extra

        ov = require_extra("openvino", "openvino")
        path = Path(model_path)
        if bf16 and not cpu_has_bf16():
            raise ValueError("openvino bf16 needs a CPU with AVX-512 BF16 or AMX; this one has neither")
        self._core = ov.Core()
        self._model, card = _read_openvino(self._core, path)
        self._path = path
        self.card = ModelCard.from_dict(card, str(path))
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._requests: dict[tuple[int, ...], Any] = {}
        int8 = any(op.get_type_name() == "FakeQuantize" for op in self._model.get_ops())
        self.name = f"openvino-{'int8-' if int8 else ''}{'bf16' if bf16 else 'fp32'}-cpu"

    def _request(self, shape: tuple[int, ...]) -> Any:
        """An infer request compiled for exactly this input shape (static shapes run faster than dynamic
        ones in the CPU plugin); the last 8 shapes are kept."""
        if shape not in self._requests:
            model = self._model.clone()
            model.reshape(list(shape))
            try:
                compiled = self._core.compile_model(model, "CPU", self._config)
            except RuntimeError as exc:
                raise ValueError(f"{self._path}: OpenVINO cannot compile the model ({exc})") from exc
            if len(self._requests) >= 8:
                self._requests.pop(next(iter(self._requests)))
            self._requests[shape] = compiled.create_infer_request()
        return self._requests[shape]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        out = self._request(tuple(x.shape)).infer({0: x})[0]
        return np.array(out, dtype=np.float32)


def _read_openvino(core: Any, path: Path) -> tuple[Any, dict[str, Any]]:
    """The OpenVINO model at ``path`` and its model card."""
    if path.suffix.lower() == ".xml":
        try:
            model = core.read_model(str(path))
            card = json.loads(model.get_rt_info(list(OPENVINO_CARD_PATH)).astype(str))
        except (RuntimeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a steelkd OpenVINO model ({exc})") from exc
        return model, card
    if path.suffix.lower() == ".onnx":
        probe = OnnxBackend(path)  # reads and checks the card; the graph is then read by OpenVINO
        return core.read_model(str(path)), probe.card.raw
    import tempfile

    from steelkd.export import to_onnx
    from steelkd.models.saved import load_model

    net, card = load_model(path)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = to_onnx(net, Path(tmp) / "model.onnx")
        return core.read_model(str(onnx_path)), card


#: The backends ``load_backend`` knows, by name (``auto`` is resolved from the file or the tuning record).
BACKENDS: tuple[str, ...] = (
    "torch",
    "torch-bf16",
    "torch-compile",
    "torch-compile-bf16",
    "onnxruntime",
    "openvino",
    "openvino-bf16",
)


def load_backend(
    model_path: str | Path, backend: str = "auto", device: str = "cpu", bf16: bool = False
) -> Backend:
    """Open a model with the named backend (one of :data:`BACKENDS`, or ``"auto"``).

    ``auto``: ``onnxruntime`` for ``.onnx`` files, ``openvino`` for ``.xml`` files; for a model folder the
    backend ``steelkd tune`` recorded beside it for this machine (:func:`steelkd.card.recorded_choice`),
    else ``torch``.
    ``bf16=True`` is the same as the backend's ``-bf16`` variant (ONNX Runtime runs fp32 only).

    Raises:
        FileNotFoundError: the model path does not exist.
        ValueError: an unknown backend, a backend that cannot open this file, or a model that cannot be
            loaded.

    Example:
        >>> load_backend("runs/x/model", "openvino-bf16").name  # doctest: +SKIP
        'openvino-bf16-cpu'
    """
    path = Path(model_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found")
    if backend == "auto":
        chosen, backend = _auto(path)
        if chosen != path:  # a file tune exported into the folder: the folder's model.json stays the card
            opened = load_backend(chosen, backend, device=device, bf16=bf16)
            opened.card = ModelCard.from_dict(json.loads((path / CARD_NAME).read_text()), str(path))
            return opened
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected auto or one of {', '.join(BACKENDS)}, got {backend!r}")
    kind = backend.removesuffix("-bf16")
    bf16 = bf16 or backend.endswith("-bf16")
    suffix = path.suffix.lower()
    if kind == "onnxruntime":
        if bf16:
            raise ValueError("--bf16 applies to the torch and openvino backends (ONNX Runtime runs fp32)")
        return OnnxBackend(path, device=device)
    if kind == "openvino":
        return OpenVinoBackend(path, bf16=bf16)
    if suffix in (".onnx", ".xml"):
        raise ValueError(f"{path}: a {suffix} file needs --backend onnxruntime or openvino")
    return TorchBackend(path, device=device, bf16=bf16, compile=kind == "torch-compile")


def _auto(path: Path) -> tuple[Path, str]:
    """The file and backend ``auto`` means for ``path``."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path, "onnxruntime"
    if suffix == ".xml":
        return path, "openvino"
    choice = recorded_choice(path)
    return (path, "torch") if choice is None else choice


def as_module(backend: Backend) -> Any:
    """A ``torch.nn.Module`` view of a backend (CPU tensors in, logits out), so code written for PyTorch
    models — :func:`steelkd.evaluate.evaluate_model`, tiling — scores any backend the same way.

    Example:
        >>> net = as_module(load_backend("runs/x/model", "openvino-bf16"))  # doctest: +SKIP
        >>> evaluate_model(net, val_ds)["mdice"]  # doctest: +SKIP
    """
    import torch

    class _BackendModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backend = backend
            self.num_classes = backend.card.num_classes
            self.name = backend.name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.backend(x.detach().float().cpu().numpy()))

    return _BackendModule()
