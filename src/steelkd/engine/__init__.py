"""Training and distillation on Lightning: one module per job, one ``fit`` that runs either."""

from steelkd.engine.distiller import DistillerModule
from steelkd.engine.segmenter import SegmenterModule
from steelkd.engine.train import EpochSeededSampler, TrainResult, build_trainer, fit

__all__ = ["DistillerModule", "EpochSeededSampler", "SegmenterModule", "TrainResult", "build_trainer", "fit"]
