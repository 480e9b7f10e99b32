"""Batch inference: images in, label maps, overlays and a Kaggle submission out.

Three layers, each importing only the ones before it:

- :mod:`~steelkd.predict.backends`: ``logits = backend(batch)`` (:class:`TorchBackend`,
  :class:`OnnxBackend`, :func:`load_backend`) and the model card each one reads;
- :mod:`~steelkd.predict.predictor`: the array-level :class:`Predictor` (normalisation with the card's
  mean/std, optional down-scaling and padding, batching of same-sized images, flip TTA, softmax,
  post-processing with :class:`~steelkd.postprocess.PostProcess`);
- :mod:`~steelkd.predict.pipeline` and :mod:`~steelkd.predict.results`: files in (:func:`resolve_inputs`,
  read -> infer -> write on I/O threads), results out (:class:`ImageResult`, :class:`Failure`,
  :class:`PredictionReport`, masks, overlays, :func:`write_submission`).

Example:
    >>> from steelkd.predict import Predictor
    >>> pred = Predictor.from_path("runs/x/model", tta=True)  # doctest: +SKIP
    >>> report = pred.predict_files("images/", out_dir="pred")  # doctest: +SKIP
    >>> report.results[0].class_areas  # doctest: +SKIP
    {'pitting': 0, 'crazing': 0, 'scratches': 5321, 'patches': 0}
"""

from __future__ import annotations

from steelkd.postprocess import PostProcess
from steelkd.predict.backends import (
    BACKENDS,
    Backend,
    OnnxBackend,
    OpenVinoBackend,
    TorchBackend,
    load_backend,
)
from steelkd.predict.pipeline import FilePipeline, OutputOptions, resolve_inputs
from steelkd.predict.predictor import Predictor, predict_files
from steelkd.predict.results import (
    DefectRegion,
    Failure,
    ImageResult,
    PredictionReport,
    write_defects,
    write_submission,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "DefectRegion",
    "Failure",
    "FilePipeline",
    "ImageResult",
    "OnnxBackend",
    "OpenVinoBackend",
    "OutputOptions",
    "PostProcess",
    "PredictionReport",
    "Predictor",
    "TorchBackend",
    "load_backend",
    "predict_files",
    "resolve_inputs",
    "write_defects",
    "write_submission",
]
