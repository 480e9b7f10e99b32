"""Training and distillation on Lightning: one module per job, a data module, one ``fit`` for either."""

from steelkd.engine.datamodule import EpochSeededDataset, EpochSeededSampler, SegDataModule
from steelkd.engine.distiller import DistillerModule
from steelkd.engine.segmenter import SegmenterModule, build_model
from steelkd.engine.train import TrainResult, build_module, build_trainer, fit, load_teacher

__all__ = [
    "DistillerModule",
    "EpochSeededDataset",
    "EpochSeededSampler",
    "SegDataModule",
    "SegmenterModule",
    "TrainResult",
    "build_model",
    "build_module",
    "build_trainer",
    "fit",
    "load_teacher",
]
