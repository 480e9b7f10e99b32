"""The array-level predictor: pre-processing, batching, flip TTA and post-processing around a backend.

One numpy implementation shared by every backend: optional down-scaling (``max_side``), normalisation
with the model card's mean/std through :func:`steelkd.data.image.normalize` (the function the datasets
use, so an image reaches the network as the identical tensor in evaluation and prediction), optional
padding, batching of same-sized images, optional tiling of large frames (:mod:`steelkd.tiling`: tiles with
overlap, logits blended), flip TTA (average of the softmax over identity, horizontal and vertical flips),
softmax, per-class thresholds and minimum areas (:class:`steelkd.postprocess.PostProcess`; by default
the model card's calibrated values, see ``steelkd calibrate``).
Files are handled by :mod:`steelkd.predict.pipeline` (:meth:`Predictor.predict_files`).

Example:
    >>> from steelkd.predict import Predictor
    >>> pred = Predictor.from_path("runs/x/model", tta=True)  # doctest: +SKIP
    >>> label_map = pred.predict_image(image)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from steelkd.data.batching import equal_size_batches
from steelkd.data.image import MIN_SIDE, normalize
from steelkd.postprocess import PostProcess, postprocess_from_card, softmax
from steelkd.predict.backends import Backend, load_backend
from steelkd.predict.pipeline import FilePipeline, OutputOptions
from steelkd.predict.results import PredictionReport
from steelkd.tiling import Tiling

__all__ = ["Predictor", "predict_files"]


class Predictor:
    """Pre-processing, batching, TTA and post-processing around a backend's ``logits = f(batch)``.

    Args:
        backend: a :class:`~steelkd.predict.TorchBackend`, :class:`~steelkd.predict.OnnxBackend` or any
            callable with a ``card`` and a ``name`` (see :class:`~steelkd.predict.backends.Backend`).
        post: the post-processing rule (thresholds, minimum areas); default: the model card's calibrated
            ``postprocess`` section (``steelkd calibrate``), else :class:`PostProcess` defaults.
        tta: average the softmax of the image and its horizontal and vertical flips.
        batch_size: images per backend call (images of different sizes never share a batch).
        max_side: when > 0, images whose longer side exceeds it are down-scaled (aspect kept) for the
            network and the probabilities are resized back, so outputs always have the input's size.
            0 (default) runs at native size.
        pad_multiple: pad the network input (edge replication) to a multiple of this and crop the logits
            back. Default 1: no padding, the image goes in at its native size exactly as in training and
            `steelkd evaluate` (the decoder resizes to each skip feature's size, so any size works, also
            in ONNX); 32 (the encoder's total stride) is available for runtimes that need it.
        tile: ``(height, width)``: run frames larger than this tile by tile (sliding window, the last tile
            shifted inward, logits blended with raised-cosine ramps: :mod:`steelkd.tiling`), at most
            ``batch_size`` tiles per backend call. ``None`` (default): whole frames.
        tile_overlap: pixels shared by neighbouring tiles; ``None`` = a quarter of the tile's smaller side.

    Example:
        >>> from steelkd.data.image import read_image
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
        tile: tuple[int, int] | None = None,
        tile_overlap: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if max_side < 0:
            raise ValueError(f"max_side: expected >= 0 (0 = native size), got {max_side}")
        if max_side and max_side < 32:
            raise ValueError(f"max_side: expected 0 or >= 32, got {max_side}")
        self.backend = backend
        self.post = post if post is not None else postprocess_from_card(backend.card.postprocess)
        self.tiling = None if tile is None else Tiling(tuple(tile), tile_overlap, tile_batch=batch_size)
        self.tta = tta
        self.batch_size = batch_size
        self.max_side = max_side
        self.pad_multiple = max(1, pad_multiple)
        card = backend.card
        self.class_names = list(card.class_names)
        self._mean = tuple(card.mean)
        self._std = tuple(card.std)
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
        """Open ``model_path`` with :func:`load_backend` and wrap it; ``kwargs`` go to the constructor.

        Example:
            >>> Predictor.from_path("runs/x/model", device="auto", tta=True)  # doctest: +SKIP
        """
        return cls(load_backend(model_path, backend=backend, device=device, bf16=bf16), **kwargs)

    # ----------------------------------------------------------------------------- array level
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Normalised, resized, padded ``3 x h' x w'`` float32 array of an RGB image, and its ``(h, w)``.

        Without ``max_side`` and padding this is exactly
        ``steelkd.data.image.normalize(image, card.mean, card.std)``, the datasets' input. A side shorter than
        :data:`MIN_SIDE` (a 1x1 image, a thin strip) is padded up to it by edge replication, and the
        padding is cropped off the result: such an image is predicted, not refused.
        """
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        h, w = image.shape[:2]
        if self.max_side and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            h, w = nh, nw
        x = normalize(image, self._mean, self._std)
        m = self.pad_multiple
        ph, pw = max((-h) % m, MIN_SIDE - h), max((-w) % m, MIN_SIDE - w)
        if ph or pw:
            x = np.ascontiguousarray(np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="edge"))
        return x, (h, w)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        """The backend's logits of a batch, tile by tile when tiling is on."""
        return self.backend(batch) if self.tiling is None else self.tiling(self.backend, batch)

    def _probs(self, batch: np.ndarray) -> np.ndarray:
        probs = softmax(self._logits(batch), axis=1)
        if self.tta:
            probs += softmax(self._logits(batch[..., ::-1].copy()), axis=1)[..., ::-1]
            probs += softmax(self._logits(batch[..., ::-1, :].copy()), axis=1)[..., ::-1, :]
            probs /= 3.0
        return probs

    def _label(
        self, probs: np.ndarray, size: tuple[int, int], shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop padding, resize back to the original ``shape`` if needed, post-process; label + confidence."""
        p = probs[:, : size[0], : size[1]]
        if size != shape:
            hwc = cv2.resize(np.ascontiguousarray(p.transpose(1, 2, 0)), (shape[1], shape[0]),
                             interpolation=cv2.INTER_LINEAR)
            p = hwc.reshape(shape[0], shape[1], -1).transpose(2, 0, 1)
        label = self.post(p)
        confidence = np.take_along_axis(p, label[None].astype(np.intp), axis=0)[0]
        return label, confidence

    def label_batch(
        self,
        inputs: Sequence[np.ndarray],
        sizes: Sequence[tuple[int, int]],
        shapes: Sequence[tuple[int, int]],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(label map, confidence)`` of preprocessed inputs of one shape (one backend call, 3 with TTA).

        The confidence is float32 H x W: at each pixel the probability of the class the label map gives
        it (what ``defects.csv`` averages over a region).

        Args:
            inputs: :meth:`preprocess` outputs, all of the same shape.
            sizes: their ``(h, w)`` before padding (the second value :meth:`preprocess` returns).
            shapes: the original images' ``(H, W)``: the label maps' sizes.
        """
        probs = self._probs(np.stack(inputs))
        return [self._label(p, size, shape) for p, size, shape in zip(probs, sizes, shapes, strict=True)]

    def predict_batch(
        self,
        inputs: Sequence[np.ndarray],
        sizes: Sequence[tuple[int, int]],
        shapes: Sequence[tuple[int, int]],
    ) -> list[np.ndarray]:
        """Label maps of preprocessed inputs of one shape (see :meth:`label_batch`)."""
        return [label for label, _ in self.label_batch(inputs, sizes, shapes)]

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """Label map (``uint8`` H x W) of one RGB (or grayscale) ``uint8`` image."""
        return self.predict_arrays([image])[0]

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps of in-memory images (any sizes; same-sized ones are batched together)."""
        prepared = [self.preprocess(img) for img in images]
        out: list[np.ndarray | None] = [None] * len(images)
        for group in equal_size_batches([x.shape for x, _ in prepared], self.batch_size):
            labels = self.predict_batch([prepared[i][0] for i in group], [prepared[i][1] for i in group],
                                        [images[i].shape[:2] for i in group])
            for i, label in zip(group, labels, strict=True):
                out[i] = label
        return out  # type: ignore[return-value]

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
        defects: bool = True,
        keep_label_maps: bool | None = None,
        on_progress: Callable[[Path, str | None], None] | None = None,
        io_threads: int = 2,
    ) -> PredictionReport:
        """Predict every image in ``inputs`` (files, directories, globs) and write the outputs.

        Unreadable files are skipped and listed in ``report.failures``; the rest are written. Outputs
        (each written atomically) under ``out_dir``: ``masks/<stem>.png`` (label map, values = class
        index), ``overlays/<stem>.<overlay_format>`` (colour overlay with legend), ``submission.csv``
        (Kaggle layout, images in input order, failed images left out) and ``defects.csv`` /
        ``defects.jsonl`` (one row per connected defect region, images in input order). See
        :class:`~steelkd.predict.pipeline.FilePipeline`.

        Args:
            inputs: image files, directories or glob patterns (see :func:`resolve_inputs`).
            out_dir: where to write; ``None`` writes nothing (results only).
            masks / overlays / submission / defects: which outputs to write (``report.results[i].defects``
                holds the regions either way).
            overlay_format: ``"png"`` or ``"jpg"``.
            keep_label_maps: keep each label map in memory in the results (default: when ``out_dir`` is
                None).
            on_progress: called once per input with ``(path, error or None)``.
            io_threads: threads that read and write files while the backend computes.

        Raises:
            ValueError: no input matched, two inputs share a file stem (outputs would collide), or a bad
                option.

        Example:
            >>> report = pred.predict_files("images/", out_dir="pred")  # doctest: +SKIP
            >>> report.results[0].class_areas  # doctest: +SKIP
            {'pitting': 0, 'crazing': 0, 'scratches': 5321, 'patches': 0}
        """
        options = OutputOptions.make(out_dir, masks=masks, overlays=overlays, overlay_format=overlay_format,
                                     submission=submission, defects=defects,
                                     keep_label_maps=keep_label_maps)
        pipeline = FilePipeline(self, options, on_progress=on_progress, io_threads=io_threads)
        return pipeline.run(inputs)


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
    tile: tuple[int, int] | None = None,
    tile_overlap: int | None = None,
    **kwargs: Any,
) -> PredictionReport:
    """One-call form of :meth:`Predictor.predict_files`: open the model, predict, write.

    Example:
        >>> report = predict_files("runs/x/model", "images/*.jpg", "pred", tta=True)  # doctest: +SKIP
        >>> len(report.results), [f.path for f in report.failures]  # doctest: +SKIP
        (24, [PosixPath('images/broken.jpg')])
    """
    predictor = Predictor.from_path(model_path, backend=backend, device=device, bf16=bf16, post=post, tta=tta,
                                    batch_size=batch_size, max_side=max_side, tile=tile,
                                    tile_overlap=tile_overlap)
    return predictor.predict_files(inputs, out_dir, **kwargs)
