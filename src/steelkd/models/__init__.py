"""Segmentation models: ResUnet with timm ConvNeXt encoders, GC and FF (see docs/models.md).

Example:
    >>> from steelkd.models import create_model, list_models
    >>> model = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
"""

from steelkd.models.blocks import ConvBNReLU, FeatureFusion, GlobalContextBlock, ResidualUnit
from steelkd.models.registry import (
    SegmentationModel,
    count_parameters,
    create_model,
    list_models,
    register,
)
from steelkd.models.resunet import ResUnet, ResUnetDecoder, load_encoder_state

__all__ = [
    "ConvBNReLU",
    "FeatureFusion",
    "GlobalContextBlock",
    "ResUnet",
    "ResUnetDecoder",
    "ResidualUnit",
    "SegmentationModel",
    "count_parameters",
    "create_model",
    "list_models",
    "load_encoder_state",
    "register",
]
