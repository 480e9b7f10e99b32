"""Segmentation models: ResUnet with timm ConvNeXt encoders, GC and FF (see docs/models.md).

Example:
    >>> from steelkd.models import create_model, list_models, load_model, save_model
    >>> model = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
"""

from steelkd.models.base import SegmentationModel, count_params
from steelkd.models.blocks import ConvBNReLU, FeatureFusion, GlobalContextBlock, ResidualUnit
from steelkd.models.registry import count_parameters, create_model, list_models, register
from steelkd.models.resunet import ResUnet, ResUnetDecoder, load_encoder_state  # registers the ResUnets
from steelkd.models.saved import load_model, make_card, save_model

__all__ = [
    "ConvBNReLU",
    "FeatureFusion",
    "GlobalContextBlock",
    "ResUnet",
    "ResUnetDecoder",
    "ResidualUnit",
    "SegmentationModel",
    "count_parameters",
    "count_params",
    "create_model",
    "list_models",
    "load_encoder_state",
    "load_model",
    "make_card",
    "register",
    "save_model",
]
