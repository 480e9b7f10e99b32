"""The file pipeline: resolve inputs, then read -> infer -> write, with a report at the end.

Reading (:func:`steelkd.data.image.read_image`, the decoder of training and evaluation too) and writing
run on a small thread pool while the backend computes; the main thread groups the decoded images by
network-input shape (:class:`steelkd.data.batching.SizeBatcher`) and runs a batch as soon as one is
full. Memory stays bounded: at most ``max(2 * batch_size, 4)`` images are read ahead and at most
``4 * batch_size`` results wait to be written. A file that cannot be read or written becomes a
:class:`~steelkd.predict.results.Failure` and the run goes on.

Every file is written atomically (:mod:`steelkd.io`) and the CSVs only at the end, so a run killed half-way
leaves whole masks and the previous submission; run again into the same folder, it removes the temporary
files the killed run left, writes every output once more (replacing, never duplicating) and a complete
submission (``tests/test_predict_faults.py``). One run per output folder at a time.

Example:
    >>> from steelkd.predict import Predictor
    >>> from steelkd.predict.pipeline import FilePipeline, OutputOptions
    >>> pred = Predictor.from_path("runs/x/model")  # doctest: +SKIP
    >>> report = FilePipeline(pred, OutputOptions.make("pred")).run("images/")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from steelkd.data.batching import SizeBatcher
from steelkd.data.image import IMAGE_EXTENSIONS, read_image
from steelkd.io import atomic_write_bytes, remove_stale_temps, safe_name
from steelkd.postprocess import overlay
from steelkd.predict.results import (
    Failure,
    ImageResult,
    PredictionReport,
    encode_jpg,
    encode_png,
    find_defects,
    summarize,
    write_defects,
    write_submission,
)

__all__ = ["FilePipeline", "OutputOptions", "check_unique_stems", "resolve_inputs"]

#: ``on_progress(path, error or None)``, called once per input.
ProgressCallback = Callable[[Path, str | None], None]


def resolve_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of files.

    A directory contributes its files (not recursive) whose suffix is in
    :data:`steelkd.data.image.IMAGE_EXTENSIONS`; a pattern containing ``*``, ``?`` or ``[`` is expanded
    with :func:`glob.glob` (``**`` recurses); a file is taken as is. Order: directories and patterns
    sorted by name, items in the order given.

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


def check_unique_stems(files: Sequence[Path]) -> None:
    """Refuse two inputs with the same file stem: their ``masks/<stem>.png`` would collide.

    Raises:
        ValueError: naming both files and the stem.
    """
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ValueError(f"{stems[f.stem]} and {f} share the name {f.stem!r}: their outputs "
                             "would collide; predict them in separate runs")
        stems[f.stem] = f


@dataclass(frozen=True)
class OutputOptions:
    """What a run writes under ``out_dir`` (``None``: nothing) and what it keeps in memory.

    Build it with :meth:`make`, which checks the values and fills in the ``keep_label_maps`` default.
    """

    out_dir: Path | None
    masks: bool = True
    overlays: bool = True
    overlay_format: str = "png"
    submission: bool = True
    keep_label_maps: bool = False
    defects: bool = True

    @classmethod
    def make(
        cls,
        out_dir: str | Path | None,
        *,
        masks: bool = True,
        overlays: bool = True,
        overlay_format: str = "png",
        submission: bool = True,
        keep_label_maps: bool | None = None,
        defects: bool = True,
    ) -> OutputOptions:
        """Checked options; ``keep_label_maps=None`` keeps the label maps when nothing is written.

        Raises:
            ValueError: ``overlay_format`` is not ``png`` or ``jpg``.
        """
        if overlay_format not in ("png", "jpg"):
            raise ValueError(f"overlay_format: expected png or jpg, got {overlay_format!r}")
        keep = out_dir is None if keep_label_maps is None else keep_label_maps
        out = None if out_dir is None else Path(out_dir)
        return cls(out, masks, overlays, overlay_format, submission, keep, defects)

    @property
    def writes_images(self) -> bool:
        """Whether per-image files (masks or overlays) are written."""
        return self.out_dir is not None and (self.masks or self.overlays)


class ArrayPredictor(Protocol):
    """What the pipeline needs of a :class:`~steelkd.predict.Predictor`."""

    class_names: list[str]
    batch_size: int

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]: ...

    def label_batch(
        self,
        inputs: Sequence[np.ndarray],
        sizes: Sequence[tuple[int, int]],
        shapes: Sequence[tuple[int, int]],
    ) -> list[tuple[np.ndarray, np.ndarray]]: ...


@dataclass
class _Item:
    """One decoded input on its way through the pipeline."""

    index: int  # position in the input list
    path: Path
    image: np.ndarray  # RGB uint8, original size (for the overlay)
    x: np.ndarray  # float32 3 x h x w network input (freed once inferred)
    size: tuple[int, int]  # (h, w) before padding (after max_side resizing)


class FilePipeline:
    """Read -> infer -> write for a list of files, with explicit state.

    Args:
        predictor: the array-level predictor (``preprocess`` and ``label_batch``).
        options: what to write (see :class:`OutputOptions`).
        on_progress: called once per input with ``(path, error or None)``, in the order they finish.
        io_threads: threads that read and write files while the backend computes.

    State of a run (reset by :meth:`run`): ``files`` (the resolved inputs), ``results`` (by input
    index), ``failures`` (in the order they happened; the report sorts them into input order) and the
    queue of pending writes.

    Example:
        >>> report = FilePipeline(pred, OutputOptions.make(None)).run(["a.jpg", "b.png"])  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: ArrayPredictor,
        options: OutputOptions,
        *,
        on_progress: ProgressCallback | None = None,
        io_threads: int = 2,
    ) -> None:
        self.predictor = predictor
        self.options = options
        self.on_progress = on_progress
        self.io_threads = max(1, io_threads)
        self.files: list[Path] = []
        self.results: dict[int, ImageResult] = {}
        self.failures: list[Failure] = []
        self._writes: deque[tuple[int, Future[ImageResult]]] = deque()

    def run(self, inputs: str | Path | Sequence[str | Path]) -> PredictionReport:
        """Predict every image in ``inputs`` and write the outputs; see :meth:`Predictor.predict_files`.

        Raises:
            ValueError / FileNotFoundError: from :func:`resolve_inputs` and :func:`check_unique_stems`,
                before anything is read or written.
        """
        self.files = resolve_inputs(inputs)
        if self.options.writes_images:
            check_unique_stems(self.files)
        if self.options.out_dir is not None:  # a run killed mid-write left these; its outputs are redone
            for sub in ("", "masks", "overlays"):
                remove_stale_temps(self.options.out_dir / sub)
        self.results, self.failures, self._writes = {}, [], deque()
        t0 = time.perf_counter()
        batcher: SizeBatcher = SizeBatcher(self.predictor.batch_size)
        with ThreadPoolExecutor(max_workers=self.io_threads) as pool:
            for loaded in self._read_ahead(pool):
                if isinstance(loaded, Failure):
                    self._fail(loaded)
                    continue
                batch = batcher.add(tuple(loaded.x.shape), loaded)
                if batch is not None:
                    self._infer(batch, pool)
                self._bound_pending_writes()
            for batch in batcher.drain():
                self._infer(batch, pool)
            self._collect(block=True)
        return self._report(time.perf_counter() - t0)

    # -------------------------------------------------------------------------------- stages
    def _read_ahead(self, pool: ThreadPoolExecutor) -> Iterator[_Item | Failure]:
        """Decoded inputs in input order, a bounded number read ahead on the pool."""
        lookahead = max(2 * self.predictor.batch_size, 4)
        source = iter(enumerate(self.files))
        queue = deque(pool.submit(self._load, i, p) for i, p in itertools.islice(source, lookahead))
        while queue:
            loaded = queue.popleft().result()
            nxt = next(source, None)
            if nxt is not None:
                queue.append(pool.submit(self._load, *nxt))
            yield loaded

    def _load(self, index: int, path: Path) -> _Item | Failure:
        """Read and preprocess one file (runs on the pool)."""
        try:
            image = read_image(path)
            x, size = self.predictor.preprocess(image)
        except (ValueError, OSError) as exc:
            return Failure(path, str(exc) if str(path) in str(exc) else f"{path}: {exc}")
        return _Item(index, path, image, x, size)

    def _infer(self, batch: list[_Item], pool: ThreadPoolExecutor) -> None:
        """Run one equal-shape batch through the predictor and queue its writes."""
        labels = self.predictor.label_batch([it.x for it in batch], [it.size for it in batch],
                                            [it.image.shape[:2] for it in batch])
        for item, (label, confidence) in zip(batch, labels, strict=True):
            self._writes.append((item.index, pool.submit(self._write, item, label, confidence)))
            item.x = np.empty(0, np.float32)  # free the network input early
        self._collect(block=False)

    def _write(self, item: _Item, label: np.ndarray, confidence: np.ndarray) -> ImageResult:
        """Summarise a label map (areas, RLEs, defect regions), write its mask and overlay (on the pool)."""
        opts = self.options
        res = summarize(item.path, label, self.predictor.class_names, opts.keep_label_maps)
        res.defects = find_defects(res.image_id, label, confidence, self.predictor.class_names)
        stem = safe_name(item.path.stem, "image name")  # outputs stay under out_dir
        if opts.out_dir is not None and opts.masks:
            res.mask_path = opts.out_dir / "masks" / f"{stem}.png"
            atomic_write_bytes(res.mask_path, encode_png(label))
        if opts.out_dir is not None and opts.overlays:
            res.overlay_path = opts.out_dir / "overlays" / f"{stem}.{opts.overlay_format}"
            drawn = overlay(item.image, label, self.predictor.class_names)
            atomic_write_bytes(res.overlay_path, encode_png(drawn) if opts.overlay_format == "png"
                               else encode_jpg(drawn))
        return res

    # ------------------------------------------------------------------------------ bookkeeping
    def _bound_pending_writes(self) -> None:
        """Wait for the oldest write when too many results are held in memory."""
        if len(self._writes) > 4 * self.predictor.batch_size:
            self._writes[0][1].result()
            self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Move finished writes (all of them when ``block``) into ``results`` or ``failures``."""
        while self._writes and (block or self._writes[0][1].done()):
            index, fut = self._writes.popleft()
            try:
                self.results[index] = fut.result()
            except (ValueError, OSError) as exc:
                path = self.files[index]
                self._fail(Failure(path, f"{path}: cannot write outputs ({exc})"))
                continue
            self._progress(self.results[index].path, None)

    def _fail(self, failure: Failure) -> None:
        self.failures.append(failure)
        self._progress(failure.path, failure.error)

    def _progress(self, path: Path, error: str | None) -> None:
        if self.on_progress is not None:
            self.on_progress(path, error)

    def _report(self, seconds: float) -> PredictionReport:
        """Results in input order, the submission (when asked for), failures sorted into input order."""
        names = self.predictor.class_names
        ordered = [self.results[i] for i in sorted(self.results)]
        sub_path = None
        if self.options.out_dir is not None and self.options.submission:
            sub_path = write_submission(ordered, self.options.out_dir / "submission.csv", len(names))
        defects_paths = None
        if self.options.out_dir is not None and self.options.defects:
            defects_paths = write_defects(ordered, self.options.out_dir)
        position = {f: i for i, f in enumerate(self.files)}
        failures = sorted(self.failures, key=lambda f: position.get(f.path, len(self.files)))
        return PredictionReport(ordered, failures, list(names), sub_path, seconds, defects_paths)
