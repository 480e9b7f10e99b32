"""Losses: the distillation losses (channel-wise divergence (CWD), pixel KD, DIST) and the objects built on
them, weighted cross-entropy with data-derived class weights, Dice.

See ``docs/losses_and_metrics.md`` for the formulas and the choices made.
"""

from steelkd.losses.cwd import VARIANTS, ChannelWiseDivergence, CWDFeatureAdapter, channel_wise_divergence
from steelkd.losses.dice import DiceLoss
from steelkd.losses.dist import DISTLoss, dist_terms
from steelkd.losses.distill import (
    LOGIT_METHODS,
    FeatureDistill,
    LogitDistill,
    LowResLogitDistill,
    build_distill_loss,
)
from steelkd.losses.kd import PixelKD, pixel_kd
from steelkd.losses.weighted_ce import METHODS, WeightedCrossEntropy, class_weights

__all__ = [
    "LOGIT_METHODS",
    "METHODS",
    "VARIANTS",
    "CWDFeatureAdapter",
    "ChannelWiseDivergence",
    "DISTLoss",
    "DiceLoss",
    "FeatureDistill",
    "LogitDistill",
    "LowResLogitDistill",
    "PixelKD",
    "WeightedCrossEntropy",
    "build_distill_loss",
    "channel_wise_divergence",
    "class_weights",
    "dist_terms",
    "pixel_kd",
]
