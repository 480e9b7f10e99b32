"""Batch inference: images in, label maps, overlays and a Kaggle submission out.

Two backends compute ``logits = f(batch)`` and nothing else:

- :class:`TorchBackend`: a model saved by :func:`steelkd.checkpoint.save_model` (or an engine ``.ckpt``),
  fp32 or bf16 autocast, on CPU or CUDA;
- :class:`OnnxBackend`: a model written by ``steelkd export``, run by ONNX Runtime without any PyTorch
  model code; the normalisation and class names come from the ``steelkd.model_card`` ONNX metadata.

Everything around that call is one numpy implementation shared by both (:class:`Predictor`): reading
(grayscale/RGB JPEG, PNG, BMP, TIFF of any size, replicated to RGB), optional down-scaling
(``max_side``), normalisation, padding to a multiple of 32, batching of same-sized images, flip TTA
(average of the softmax over identity, horizontal and vertical flips), softmax, per-class thresholds and
minimum areas (:class:`steelkd.postprocess.PostProcess`), RLE, PNG/overlay writing (atomic).

Example:
    >>> from steelkd.predict import Predictor
    >>> pred = Predictor.from_path("runs/x/model", tta=True)  # doctest: +SKIP
    >>> report = pred.predict_files("images/", out_dir="pred")  # doctest: +SKIP
    >>> report.results[0].class_areas  # doctest: +SKIP
    {'pitting': 0, 'crazing': 0, 'scratches': 5321, 'patches': 0}
"""

from __future__ import annotations

import csv
import glob
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from steelkd.data.rle import rle_encode
from steelkd.io import atomic_write_bytes, atomic_write_text
from steelkd.postprocess import PALETTE, PostProcess, overlay, palette, softmax

__all__ = [
    "CARD_METADATA_KEY",
    "IMAGE_EXTENSIONS",
    "PALETTE",
    "Failure",
    "ImageResult",
    "ModelInfo",
    "OnnxBackend",
    "PostProcess",
    "PredictionReport",
    "Predictor",
    "TorchBackend",
    "load_backend",
    "overlay",
    "palette",
    "predict_files",
    "read_image",
    "resolve_inputs",
    "write_submission",
]

#: ONNX metadata key holding the model card as a JSON string (written by ``steelkd export``).
CARD_METADATA_KEY = "steelkd.model_card"

#: File suffixes picked up from a directory (a file or glob given explicitly is always tried).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

_DEFAULT_MEAN = (0.485, 0.456, 0.406)
_DEFAULT_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------- inputs
def resolve_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of files.

    A directory contributes its files (not recursive) whose suffix is in :data:`IMAGE_EXTENSIONS`; a
    pattern containing ``*``, ``?`` or ``[`` is expanded with :func:`glob.glob` (``**`` recurses); a file
    is taken as is. Order: directories and patterns sorted by name, items in the order given.

    Raises:
        FileNotFoundError: a path that is neither a file, a directory nor a pattern.
        ValueError: nothing matched at all.

    Example:
        >>> resolve_inputs("data/train_images")  # doctest: +SKIP
        [PosixPath('data/train_images/0002cc93b.jpg'), ...]
    """
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not items:
        raise ValueError("no input given: pass an image file, a directory or a glob pattern")
    files: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        elif any(ch in text for ch in "*?["):
            files += sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        else:
            raise FileNotFoundError(f"{text}: no such file or directory")
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise ValueError(
            f"no image files found in {', '.join(str(i) for i in items)} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return unique


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``H x W x 3`` (grayscale replicated; 16-bit scaled to 8-bit).

    Raises:
        ValueError: the file cannot be decoded (corrupt, truncated, not an image), naming it.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max(initial=0)), 1.0)
                gray = np.clip(arr * 255.0 / top + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            rgb = im.convert("RGB")
            arr8 = np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{p}: cannot read image ({exc})") from exc
    if arr8.ndim != 3 or arr8.shape[0] == 0 or arr8.shape[1] == 0:
        raise ValueError(f"{p}: cannot read image (empty or unexpected shape {arr8.shape})")
    return arr8


# ------------------------------------------------------------------------------------------- backends
@dataclass
class ModelInfo:
    """What inference needs to know about a model, from its model card.

    Args:
        class_names: label-map value names, background first.
        mean / std: per-channel RGB normalisation on the 0..1 scale.
        architecture: registered model name (informational).
        card: the whole model card.
    """

    class_names: list[str]
    mean: tuple[float, float, float] = _DEFAULT_MEAN
    std: tuple[float, float, float] = _DEFAULT_STD
    architecture: str = ""
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_card(cls, card: dict[str, Any], source: str) -> ModelInfo:
        """Build from a model card; raises ValueError naming ``source`` when a field is unusable."""
        names = card.get("class_names")
        if not isinstance(names, list) or len(names) < 2:
            n = card.get("num_classes")
            if not isinstance(n, int) or n < 2:
                raise ValueError(f"{source}: model card has neither class_names nor num_classes >= 2")
            names = ["background", *[f"class{i}" for i in range(1, n)]]
        norm = card.get("normalization") or {}
        mean = norm.get("mean", _DEFAULT_MEAN)
        std = norm.get("std", _DEFAULT_STD)
        scale = float(norm.get("scale", 255.0))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"{source}: model card normalization needs 3 means and 3 positive stds")
        if max(mean) > 1.0 or scale != 255.0:  # given on the pixel scale: bring to the 0..1 scale
            factor = 255.0 if max(mean) > 1.0 else 255.0 / scale
            mean = [m / factor for m in mean]
            std = [s / factor for s in std]
        return cls(
            class_names=[str(n) for n in names],
            mean=tuple(float(m) for m in mean),  # type: ignore[arg-type]
            std=tuple(float(s) for s in std),  # type: ignore[arg-type]
            architecture=str(card.get("architecture", "")),
            card=card,
        )


class Backend(Protocol):
    """``logits = backend(batch)``: float32 ``N x 3 x H x W`` normalised batch to ``N x C x H x W``."""

    info: ModelInfo
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch backend: a saved steelkd model, fp32 or bf16 autocast.

    Args:
        model_path: model directory / ``.safetensors`` / engine ``.ckpt`` (see :mod:`steelkd.checkpoint`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available).
        bf16: run under ``torch.autocast(dtype=torch.bfloat16)`` (CPU or CUDA).

    Example:
        >>> backend = TorchBackend("runs/x/model", bf16=True)  # doctest: +SKIP
        >>> logits = backend(batch)  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", bf16: bool = False) -> None:
        import torch

        from steelkd.checkpoint import load_model

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device: {device!r} is not a torch device ({exc})") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available")
        model, card = load_model(model_path, map_location="cpu")
        self.model = model.to(self.device).eval()
        self.info = ModelInfo.from_card(card, str(model_path))
        self.bf16 = bf16
        self.name = f"torch-{'bf16' if bf16 else 'fp32'}-{self.device.type}"
        self._torch = torch

    @classmethod
    def from_model(cls, model: Any, info: ModelInfo, device: str = "cpu", bf16: bool = False) -> TorchBackend:
        """Wrap an in-memory model (no file), e.g. for benchmarks or notebooks."""
        import torch

        self = cls.__new__(cls)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.bf16 = bf16
        self.name = f"torch-{'bf16' if bf16 else 'fp32'}-{self.device.type}"
        self._torch = torch
        return self

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            out = self.model(x)
        if isinstance(out, dict):
            out = out["logits"]
        return out.float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime backend: runs ``model.onnx`` written by ``steelkd export`` (no PyTorch model code).

    Args:
        model_path: the ``.onnx`` file; its ``steelkd.model_card`` metadata gives classes and normalisation.
        device: ``"cpu"`` or ``"cuda"`` (CUDAExecutionProvider, when the installed onnxruntime has it).
        threads: intra-op threads (0 = ONNX Runtime's default).

    Example:
        >>> backend = OnnxBackend("model.onnx")  # doctest: +SKIP
        >>> backend.info.class_names  # doctest: +SKIP
        ['background', 'pitting', 'crazing', 'scratches', 'patches']
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found")
        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ValueError(f"device: {device!r} requested but onnxruntime has no CUDAExecutionProvider")
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"device: expected cpu, cuda[:N] or auto for onnxruntime, got {device!r}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: cannot load ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if CARD_METADATA_KEY not in meta:
            raise ValueError(f"{path}: no {CARD_METADATA_KEY!r} metadata (export it with `steelkd export`)")
        try:
            card = json.loads(meta[CARD_METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: {CARD_METADATA_KEY!r} metadata is not valid JSON ({exc})") from exc
        self.info = ModelInfo.from_card(card, str(path))
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


# -------------------------------------------------------------------------------------------- results
@dataclass
class ImageResult:
    """The prediction for one image.

    Attributes:
        path: the input file.
        image_id: the file name (``ImageId`` in the submission).
        shape: ``(H, W)`` of the input image.
        rles: Kaggle RLE per defect class 1..K-1 (empty string: no defect).
        class_areas: predicted pixels per defect class name.
        label_map: ``uint8`` H x W label map (``None`` when not kept, see ``keep_label_maps``).
        mask_path / overlay_path: written files, if any.
    """

    path: Path
    image_id: str
    shape: tuple[int, int]
    rles: list[str]
    class_areas: dict[str, int]
    label_map: np.ndarray | None = None
    mask_path: Path | None = None
    overlay_path: Path | None = None


@dataclass
class Failure:
    """An input that could not be processed: the file and a one-line reason."""

    path: Path
    error: str


@dataclass
class PredictionReport:
    """What :meth:`Predictor.predict_files` did: results in input order, failures, the submission file."""

    results: list[ImageResult]
    failures: list[Failure]
    class_names: list[str]
    submission_path: Path | None = None
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else float("nan")


def write_submission(results: Iterable[ImageResult], path: str | Path, num_classes: int) -> Path:
    """Write a Kaggle ``ImageId,EncodedPixels,ClassId`` CSV: one row per image and defect class 1..K-1.

    EncodedPixels is empty where the class is absent (the layout of the competition's sample_submission).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ImageId", "EncodedPixels", "ClassId"])
    for r in results:
        for c in range(1, num_classes):
            writer.writerow([r.image_id, r.rles[c - 1], c])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _encode_png(array: np.ndarray) -> bytes:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def _encode_jpg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


# ------------------------------------------------------------------------------------------ predictor
@dataclass
class _Item:
    index: int
    path: Path
    image: np.ndarray  # RGB uint8, original size
    x: np.ndarray  # float32 3 x h x w, normalised, resized, padded
    size: tuple[int, int]  # (h, w) before padding (after max_side resizing)


class Predictor:
    """Pre-processing, batching, TTA and post-processing around a backend's ``logits = f(batch)``.

    Args:
        backend: a :class:`TorchBackend`, :class:`OnnxBackend` or any callable with an ``info``.
        post: the post-processing rule (thresholds, minimum areas); default :class:`PostProcess`.
        tta: average the softmax of the image and its horizontal and vertical flips.
        batch_size: images per backend call (images of different sizes never share a batch).
        max_side: when > 0, images whose longer side exceeds it are down-scaled (aspect kept) for the
            network and the probabilities are resized back, so outputs always have the input's size.
            0 (default) runs at native size.
        pad_multiple: pad the network input (edge replication) to a multiple of this and crop the logits
            back. Default 1: no padding, the image goes in at its native size exactly as in training and
            `steelkd evaluate` (the decoder resizes to each skip feature's size, so any size works, also
            in ONNX); 32 (the encoder's total stride) is available for runtimes that need it.

    Example:
        >>> pred = Predictor.from_path("model.onnx", post=PostProcess(threshold=0.6))  # doctest: +SKIP
        >>> label_map = pred.predict_image(read_image("img.jpg"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backend: Backend,
        post: PostProcess | None = None,
        *,
        tta: bool = False,
        batch_size: int = 4,
        max_side: int = 0,
        pad_multiple: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if max_side < 0:
            raise ValueError(f"max_side: expected >= 0 (0 = native size), got {max_side}")
        if max_side and max_side < 32:
            raise ValueError(f"max_side: expected 0 or >= 32, got {max_side}")
        self.backend = backend
        self.post = post or PostProcess()
        self.tta = tta
        self.batch_size = batch_size
        self.max_side = max_side
        self.pad_multiple = max(1, pad_multiple)
        info = backend.info
        self.class_names = list(info.class_names)
        self._mean = np.asarray(info.mean, np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(info.std, np.float32) * 255.0)
        # validate the post-processing settings against the class count now, not on the first image
        self.post.thresholds(len(self.class_names))
        self.post.min_areas(len(self.class_names), (256, 1600))

    @classmethod
    def from_path(
        cls,
        model_path: str | Path,
        *,
        backend: str = "auto",
        device: str = "cpu",
        bf16: bool = False,
        **kwargs: Any,
    ) -> Predictor:
        """Open ``model_path`` with :func:`load_backend` and wrap it; ``kwargs`` go to the constructor."""
        return cls(load_backend(model_path, backend=backend, device=device, bf16=bf16), **kwargs)

    # ----------------------------------------------------------------------------- array level
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Normalised, resized, padded ``3 x h' x w'`` float32 array of an RGB image, and its ``(h, w)``."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        h, w = image.shape[:2]
        if self.max_side and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            h, w = nh, nw
        x = (image.astype(np.float32) - self._mean) * self._inv_std
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return np.ascontiguousarray(x.transpose(2, 0, 1)), (h, w)

    def _probs(self, batch: np.ndarray) -> np.ndarray:
        probs = softmax(self.backend(batch), axis=1)
        if self.tta:
            probs += softmax(self.backend(batch[..., ::-1].copy()), axis=1)[..., ::-1]
            probs += softmax(self.backend(batch[..., ::-1, :].copy()), axis=1)[..., ::-1, :]
            probs /= 3.0
        return probs

    def _label(self, probs: np.ndarray, size: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
        """Crop padding, resize back to the original ``shape`` if needed, post-process."""
        p = probs[:, : size[0], : size[1]]
        if size != shape:
            hwc = cv2.resize(np.ascontiguousarray(p.transpose(1, 2, 0)), (shape[1], shape[0]),
                             interpolation=cv2.INTER_LINEAR)
            p = hwc.reshape(shape[0], shape[1], -1).transpose(2, 0, 1)
        return self.post(p)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """Label map (``uint8`` H x W) of one RGB (or grayscale) ``uint8`` image."""
        return self.predict_arrays([image])[0]

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps of in-memory images (any sizes; same-sized ones are batched together)."""
        items = []
        for i, img in enumerate(images):
            x, size = self.preprocess(img)
            items.append(_Item(i, Path(f"<array {i}>"), img, x, size))
        out: dict[int, np.ndarray] = {}
        for group in _batches(items, self.batch_size):
            for item, label in self._run(group):
                out[item.index] = label
        return [out[i] for i in range(len(images))]

    def _run(self, items: list[_Item]) -> list[tuple[_Item, np.ndarray]]:
        probs = self._probs(np.stack([it.x for it in items]))
        return [(it, self._label(p, it.size, it.image.shape[:2])) for it, p in zip(items, probs, strict=True)]

    # ------------------------------------------------------------------------------ file level
    def predict_files(
        self,
        inputs: str | Path | Sequence[str | Path],
        out_dir: str | Path | None = None,
        *,
        masks: bool = True,
        overlays: bool = True,
        overlay_format: str = "png",
        submission: bool = True,
        keep_label_maps: bool | None = None,
        on_progress: Callable[[Path, str | None], None] | None = None,
        io_threads: int = 2,
    ) -> PredictionReport:
        """Predict every image in ``inputs`` (files, directories, globs) and write the outputs.

        Unreadable files are skipped and listed in ``report.failures``; the rest are written. Outputs
        (each written atomically) under ``out_dir``: ``masks/<stem>.png`` (label map, values = class
        index), ``overlays/<stem>.<overlay_format>`` (colour overlay with legend) and ``submission.csv``
        (Kaggle layout, images in input order, failed images left out).

        Args:
            inputs: image files, directories or glob patterns (see :func:`resolve_inputs`).
            out_dir: where to write; ``None`` writes nothing (results only).
            masks / overlays / submission: which outputs to write.
            overlay_format: ``"png"`` or ``"jpg"``.
            keep_label_maps: keep each label map in memory in the results (default: when ``out_dir`` is
                None).
            on_progress: called once per input with ``(path, error or None)``.
            io_threads: threads that read and write files while the backend computes.

        Raises:
            ValueError: no input matched, two inputs share a file stem (outputs would collide), or a bad
                option.
        """
        if overlay_format not in ("png", "jpg"):
            raise ValueError(f"overlay_format: expected png or jpg, got {overlay_format!r}")
        files = resolve_inputs(inputs)
        if out_dir is not None and (masks or overlays):
            stems: dict[str, Path] = {}
            for f in files:
                if f.stem in stems:
                    raise ValueError(f"{stems[f.stem]} and {f} share the name {f.stem!r}: their outputs "
                                     "would collide; predict them in separate runs")
                stems[f.stem] = f
        keep = out_dir is None if keep_label_maps is None else keep_label_maps
        out = Path(out_dir) if out_dir is not None else None
        t0 = time.perf_counter()
        results: dict[int, ImageResult] = {}
        failures: list[Failure] = []
        writes: list[tuple[int, Future[ImageResult]]] = []

        def finish(item: _Item, label: np.ndarray) -> ImageResult:
            names = self.class_names[1:]
            counts = np.bincount(label.ravel(), minlength=len(self.class_names))
            rles = [rle_encode((label == c).astype(np.uint8)) if counts[c] else ""
                    for c in range(1, len(self.class_names))]
            res = ImageResult(
                path=item.path, image_id=item.path.name, shape=label.shape[:2], rles=rles,
                class_areas={n: int(counts[c]) for c, n in enumerate(names, start=1)},
                label_map=label if keep else None,
            )
            if out is not None and masks:
                res.mask_path = out / "masks" / f"{item.path.stem}.png"
                atomic_write_bytes(res.mask_path, _encode_png(label))
            if out is not None and overlays:
                res.overlay_path = out / "overlays" / f"{item.path.stem}.{overlay_format}"
                drawn = overlay(item.image, label, self.class_names)
                data = _encode_png(drawn) if overlay_format == "png" else _encode_jpg(drawn)
                atomic_write_bytes(res.overlay_path, data)
            return res

        def load(index_path: tuple[int, Path]) -> _Item | Failure:
            index, path = index_path
            try:
                image = read_image(path)
                x, size = self.preprocess(image)
            except (ValueError, OSError) as exc:
                return Failure(path, str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            return _Item(index, path, image, x, size)

        def report_done(path: Path, error: str | None) -> None:
            if on_progress is not None:
                on_progress(path, error)

        def collect(block: bool) -> None:
            while writes and (block or writes[0][1].done()):
                index, fut = writes.pop(0)
                try:
                    results[index] = fut.result()
                    report_done(results[index].path, None)
                except (ValueError, OSError) as exc:
                    path = files[index]
                    failures.append(Failure(path, f"{path}: cannot write outputs ({exc})"))
                    report_done(path, failures[-1].error)

        pending: dict[tuple[int, ...], list[_Item]] = {}
        with ThreadPoolExecutor(max_workers=max(1, io_threads)) as pool:

            def flush(key: tuple[int, ...]) -> None:
                group = pending.pop(key)
                for item, label in self._run(group):
                    writes.append((item.index, pool.submit(finish, item, label)))
                    item.x = np.empty(0, np.float32)  # free the network input early
                collect(block=False)

            # read ahead a bounded number of images while the backend works
            lookahead = max(2 * self.batch_size, 4)
            queue: list[Future[_Item | Failure]] = []
            source = iter(enumerate(files))
            for pair in source:
                queue.append(pool.submit(load, pair))
                if len(queue) >= lookahead:
                    break
            while queue:
                loaded = queue.pop(0).result()
                nxt = next(source, None)
                if nxt is not None:
                    queue.append(pool.submit(load, nxt))
                if isinstance(loaded, Failure):
                    failures.append(loaded)
                    report_done(loaded.path, loaded.error)
                    continue
                key = tuple(loaded.x.shape)
                pending.setdefault(key, []).append(loaded)
                if len(pending[key]) >= self.batch_size:
                    flush(key)
                if len(writes) > 4 * self.batch_size:  # bound memory held by unwritten outputs
                    writes[0][1].result()
                    collect(block=False)
            for key in list(pending):
                flush(key)
            collect(block=True)

        ordered = [results[i] for i in sorted(results)]
        sub_path = None
        if out is not None and submission:
            sub_path = write_submission(ordered, out / "submission.csv", len(self.class_names))
        position = {f: i for i, f in enumerate(files)}
        failures.sort(key=lambda f: position.get(f.path, len(files)))
        return PredictionReport(ordered, failures, self.class_names, sub_path, time.perf_counter() - t0)


def _batches(items: list[_Item], batch_size: int) -> Iterable[list[_Item]]:
    """Group items by network-input shape, then cut each group into batches (input order kept inside)."""
    groups: dict[tuple[int, ...], list[_Item]] = {}
    for it in items:
        groups.setdefault(tuple(it.x.shape), []).append(it)
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


def predict_files(
    model_path: str | Path,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    backend: str = "auto",
    device: str = "cpu",
    bf16: bool = False,
    post: PostProcess | None = None,
    tta: bool = False,
    batch_size: int = 4,
    max_side: int = 0,
    **kwargs: Any,
) -> PredictionReport:
    """One-call form of :meth:`Predictor.predict_files`: open the model, predict, write.

    Example:
        >>> report = predict_files("runs/x/model", "images/*.jpg", "pred", tta=True)  # doctest: +SKIP
        >>> len(report.results), [f.path for f in report.failures]  # doctest: +SKIP
        (24, [PosixPath('images/broken.jpg')])
    """
    predictor = Predictor.from_path(model_path, backend=backend, device=device, bf16=bf16, post=post, tta=tta,
                                    batch_size=batch_size, max_side=max_side)
    return predictor.predict_files(inputs, out_dir, **kwargs)
