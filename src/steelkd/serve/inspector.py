"""One inspection: the upload checked and decoded, the model run (one call at a time), regions stored.

The model is opened once (:meth:`Inspector.from_path`: :func:`steelkd.predict.load_backend`, ``auto`` =
the backend ``steelkd tune`` recorded for this machine) and wrapped in a
:class:`~steelkd.predict.Predictor`: the model card's normalisation and calibrated post-processing apply,
and frames larger than the tile run tile by tile (:mod:`steelkd.tiling`). Backends are not promised to be
thread-safe, so the forward pass runs under a lock; decoding, region extraction, PNG encoding and the
database write run outside it, in the caller's worker thread. Everything of one request lives in that
call's local variables (its id is made here), so concurrent requests never share a result.

Example:
    >>> inspector = Inspector.from_path("runs/x/model", Store("i.db", "i-data"))  # doctest: +SKIP
    >>> data = open("frame.png", "rb").read()  # doctest: +SKIP
    >>> insp = inspector.inspect(data, coil_id="C1", position_m=12.5)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steelkd.data.image import image_size, read_image
from steelkd.predict import Backend, Predictor, load_backend
from steelkd.predict.results import encode_png, find_defects
from steelkd.serve.store import Defect, Inspection, Store, image_file, new_id, utc_now

__all__ = ["DEFAULT_TILE", "Inspector", "Limits", "RequestError", "model_version"]

#: Frames larger than this (height, width) run tile by tile: the Severstal frame a model is trained on.
DEFAULT_TILE: tuple[int, int] = (256, 1600)


class RequestError(ValueError):
    """A bad request: the HTTP ``status`` and, for a limit, its name and value (the JSON error names it)."""

    def __init__(self, message: str, status: int = 400, limit: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.status, self.limit, self.value = status, limit, value

    def payload(self) -> dict[str, Any]:
        """The JSON body: ``{"error": ..., "limit": ..., "value": ...}`` (limit fields when set)."""
        out: dict[str, Any] = {"error": str(self)}
        if self.limit is not None:
            out.update(limit=self.limit, value=self.value)
        return out


@dataclass(frozen=True)
class Limits:
    """What one request may hold.

    Args:
        max_bytes: request body size (HTTP 413 beyond it).
        max_side: image width and height in pixels (HTTP 400 beyond it).
        max_pixels: width x height (HTTP 400 beyond it).
        max_text: length of ``coil_id`` and of the file name.
    """

    max_bytes: int = 32 * 2**20
    max_side: int = 8192
    max_pixels: int = 40_000_000
    max_text: int = 128

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if int(value) < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")

    def check_size(self, height: int, width: int) -> None:
        """RequestError (400) naming the limit when the image is too large."""
        if max(height, width) > self.max_side:
            raise RequestError(f"image is {width}x{height} px; max_side is {self.max_side} px",
                               limit="max_side", value=self.max_side)
        if height * width > self.max_pixels:
            raise RequestError(f"image is {width}x{height} = {height * width} px; max_pixels is "
                               f"{self.max_pixels}", limit="max_pixels", value=self.max_pixels)


def model_version(path: str | Path) -> str:
    """The first 12 hex digits of the SHA-256 over the model's files (a folder: its files, sorted by name).

    Example:
        >>> model_version("runs/x/model")  # doctest: +SKIP
        '3f9a0c1b2d4e'
    """
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


class Inspector:
    """The served model, its store and the request limits.

    Args:
        predictor: the model wrapped with its post-processing and tiling.
        store: where inspections go.
        model_name / model_version: reported with every result (``GET /v1/model``).
        limits: the request limits.

    Example:
        >>> pred = Predictor(backend, tile=(256, 1600))  # doctest: +SKIP
        >>> insp = Inspector(pred, store, model_name="m", model_version="1")  # doctest: +SKIP
    """

    def __init__(self, predictor: Predictor, store: Store, *, model_name: str, model_version: str,
                 limits: Limits | None = None) -> None:
        self.predictor = predictor
        self.store = store
        self.model_name = model_name
        self.model_version = model_version
        self.limits = limits or Limits()
        self.class_names = list(predictor.class_names)
        self._lock = threading.Lock()
        self._uploads = store.data_dir / "uploads"
        self._uploads.mkdir(parents=True, exist_ok=True)
        for stale in self._uploads.glob("*.upload"):  # left by a killed process
            stale.unlink(missing_ok=True)

    @classmethod
    def from_path(cls, model: str | Path | Backend, store: Store, *, backend: str = "auto",
                  device: str = "cpu", tile: tuple[int, int] | None = DEFAULT_TILE, batch_size: int = 4,
                  limits: Limits | None = None) -> Inspector:
        """Open the model once (a path through :func:`load_backend`, or a ready backend) and wrap it.

        Example:
            >>> Inspector.from_path("runs/x/model", store, tile=None)  # doctest: +SKIP
        """
        if isinstance(model, str | Path):
            net = load_backend(model, backend=backend, device=device)
            name, version = Path(model).name, model_version(model)
        else:
            net, name, version = model, getattr(model, "name", "model"), "in-memory"
        predictor = Predictor(net, tile=tile, batch_size=batch_size)
        return cls(predictor, store, model_name=name, model_version=version, limits=limits)

    @property
    def backend_name(self) -> str:
        return str(self.predictor.backend.name)

    def decode(self, data: bytes) -> np.ndarray:
        """The upload as RGB ``uint8`` through :func:`steelkd.data.image.read_image`, size checked first.

        The bytes go to a temporary file under ``<data_dir>/uploads`` (removed at once); the header is read
        and the size limits applied before the pixels are decoded.

        Raises:
            RequestError: empty, not an image, or over a size limit (all 400).
        """
        if not data:
            raise RequestError("image: the upload is empty")
        with tempfile.NamedTemporaryFile(dir=self._uploads, suffix=".upload") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                height, width = image_size(tmp.name)
                self.limits.check_size(height, width)
                return read_image(tmp.name)
            except ValueError as exc:
                if isinstance(exc, RequestError):
                    raise
                if "decompression bomb" in str(exc):  # Pillow's own refusal of a huge header
                    raise RequestError(f"image: the header's size is over Pillow's decompression-bomb limit; "
                                       f"max_pixels is {self.limits.max_pixels}", limit="max_pixels",
                                       value=self.limits.max_pixels) from None
                reason = str(exc).split("cannot read image", 1)[-1].strip(" ()").replace(tmp.name, "upload")
                reason = reason or "unknown format"
                raise RequestError(f"image: the upload is not a readable image ({reason})") from None

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Label map, confidence and the seconds the model took (the forward pass under the lock)."""
        x, size = self.predictor.preprocess(image)
        with self._lock:
            start = time.perf_counter()
            label, confidence = self.predictor.label_batch([x], [size], [image.shape[:2]])[0]
            seconds = time.perf_counter() - start
        return label, confidence, seconds

    def inspect(self, data: bytes, *, filename: str | None = None, coil_id: str | None = None,
                position_m: float | None = None) -> Inspection:
        """Decode, predict, extract the regions (with their RLE) and store one inspection.

        Raises:
            RequestError: a bad image or field (400).
        """
        coil_id, filename = self._text("coil_id", coil_id), self._text("filename", filename)
        if position_m is not None and (not math.isfinite(position_m) or position_m < 0):
            raise RequestError(f"position_m: expected a finite number >= 0, got {position_m}")
        start = time.perf_counter()
        image = self.decode(data)
        label, confidence, _ = self.predict(image)
        regions = find_defects("", label, confidence, self.class_names, rle=True)
        defects = [Defect(n=i, source="model", class_id=r.class_id, area=r.area, x=r.x, y=r.y, w=r.w, h=r.h,
                          score=round(r.mean_prob, 4), max_score=round(r.max_prob, 4), rle=r.rle)
                   for i, r in enumerate(regions, start=1)]
        inspection_id = new_id()
        insp = Inspection(
            id=inspection_id, created_at=utc_now(), coil_id=coil_id, position_m=position_m,
            filename=filename, image_file=image_file(inspection_id), height=int(image.shape[0]),
            width=int(image.shape[1]), class_names=self.class_names, model_name=self.model_name,
            model_version=self.model_version, backend=self.backend_name,
            latency_ms=round(1000 * (time.perf_counter() - start), 2), n_defects=len(defects),
            defects=defects,
        )
        self.store.add(insp, encode_png(image))
        return insp

    def _text(self, what: str, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) > self.limits.max_text or not value.isprintable():
            raise RequestError(f"{what}: expected at most {self.limits.max_text} printable characters",
                               limit="max_text", value=self.limits.max_text)
        return value

