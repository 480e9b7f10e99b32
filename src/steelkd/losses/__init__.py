"""Losses: channel-wise distillation (CWD) and the distillation losses built on it, weighted cross-entropy
with data-derived class weights, Dice.

See ``docs/losses_and_metrics.md`` for the formulas and the choices made.
"""

from steelkd.losses.cwd import VARIANTS, ChannelWiseDivergence, CWDFeatureAdapter, channel_wise_divergence
from steelkd.losses.dice import DiceLoss
from steelkd.losses.distill import FeatureCWD, LogitCWD, LowResLogitCWD, build_distill_loss
from steelkd.losses.weighted_ce import METHODS, WeightedCrossEntropy, class_weights

__all__ = [
    "METHODS",
    "VARIANTS",
    "CWDFeatureAdapter",
    "ChannelWiseDivergence",
    "DiceLoss",
    "FeatureCWD",
    "LogitCWD",
    "LowResLogitCWD",
    "WeightedCrossEntropy",
    "build_distill_loss",
    "channel_wise_divergence",
    "class_weights",
]
