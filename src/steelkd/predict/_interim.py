"""TEMPORARY stand-ins for the foundation modules (steelkd.data.image, steelkd.data.batching,
steelkd.models.card) until they land; deleted then."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steelkd.data.image import MEAN, STD

ONNX_CARD_KEY = "steelkd.model_card"


@dataclass
class ModelCard:
    class_names: list[str]
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    architecture: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, card: dict[str, Any], source: str) -> ModelCard:
        names = card.get("class_names")
        if not isinstance(names, list) or len(names) < 2:
            n = card.get("num_classes")
            if not isinstance(n, int) or n < 2:
                raise ValueError(f"{source}: model card has neither class_names nor num_classes >= 2")
            names = ["background", *[f"class{i}" for i in range(1, n)]]
        norm = card.get("normalization") or {}
        mean = norm.get("mean", MEAN)
        std = norm.get("std", STD)
        return cls([str(n) for n in names], tuple(mean), tuple(std), str(card.get("architecture", "")), card)
