"""ResUnet with a timm ConvNeXt encoder, and its registered variants."""

from steelkd.models.resunet.decoder import DecoderStage, ResUnetDecoder
from steelkd.models.resunet.model import ResUnet, load_encoder_state

__all__ = ["DecoderStage", "ResUnet", "ResUnetDecoder", "load_encoder_state"]
