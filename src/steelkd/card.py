"""The model card: the one owner of what a saved or exported model says about itself.

A card (``model.json`` beside the weights, or the ``steelkd.model_card`` metadata of an ONNX file) names the
registered architecture, the classes, the input normalisation, the training config and the metrics. It is
written by :func:`steelkd.models.make_card` and read back, validated, by :meth:`ModelCard.from_dict` on every
inference path. This module imports no model code, so the ONNX Runtime path reads cards without PyTorch
models or timm.

Example:
    >>> card = ModelCard.from_dict({"class_names": ["background", "defect"]}, "model.json")
    >>> card.num_classes, card.mean
    (2, (0.485, 0.456, 0.406))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steelkd.data.image import MEAN, STD
from steelkd.postprocess import CARD_FIELDS, PostProcess

__all__ = [
    "BEST_METRICS_KEY",
    "CARD_FORMAT",
    "CARD_NAME",
    "ONNX_CARD_KEY",
    "OPENVINO_CARD_PATH",
    "TUNING_NAME",
    "WEIGHTS_NAME",
    "ModelCard",
    "check_schema",
    "machine_key",
    "recorded_choice",
]

#: The card's format tag.
CARD_FORMAT = "steelkd-model/1"
#: File names inside a saved model folder.
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
#: ONNX metadata key holding the card as a JSON string (written by :func:`steelkd.export.to_onnx`).
ONNX_CARD_KEY = "steelkd.model_card"
#: Where an OpenVINO IR (``model.xml``) keeps the card: ``rt_info[steelkd][model_card]``.
OPENVINO_CARD_PATH: tuple[str, str] = ("steelkd", "model_card")
#: The tuning record beside a model folder: the backend ``steelkd tune`` measured fastest on a machine.
TUNING_NAME = "tuning.json"
#: Key of the best epoch's validation metrics inside an engine Lightning checkpoint.
BEST_METRICS_KEY = "steelkd_best_metrics"


@dataclass
class ModelCard:
    """What inference needs to know about a model, read from its card.

    Args:
        class_names: label-map value names, background first.
        mean / std: per-channel RGB normalisation on the 0..1 scale (:func:`steelkd.data.image.normalize`).
        architecture: registered model name (informational for ONNX models).
        postprocess: the calibrated post-processing (``threshold`` and ``min_area`` per defect class,
            ``min_area_mode``, a free-form ``calibration`` record) written by ``steelkd calibrate``;
            ``None`` when the model was never calibrated. Read it with
            :func:`steelkd.postprocess.postprocess_from_card`.
        raw: the whole card as written.
    """

    class_names: list[str]
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    architecture: str = ""
    postprocess: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, card: dict[str, Any], source: str) -> ModelCard:
        """Validate a card dict; raises ValueError naming ``source`` when a field is unusable.

        ``class_names`` falls back to ``background, class1..`` from ``num_classes``; ``normalization``
        defaults to ImageNet's and must be on the 0..1 scale with ``scale`` 255 (what :func:`make_card`
        writes). An optional ``postprocess`` section must hold one threshold in [0, 1] (or ``null``: argmax)
        and one minimum area >= 0 per defect class and a known ``min_area_mode``.
        """
        if not isinstance(card, dict):
            raise ValueError(f"{source}: model card is not a JSON object")
        check_schema(card, source)
        names = card.get("class_names")
        if not isinstance(names, list) or len(names) < 2:
            n = card.get("num_classes")
            if not isinstance(n, int) or n < 2:
                raise ValueError(f"{source}: model card has neither class_names nor num_classes >= 2")
            names = ["background", *[f"class{i}" for i in range(1, n)]]
        norm = card.get("normalization") or {}
        try:
            mean = tuple(float(m) for m in norm.get("mean", MEAN))
            std = tuple(float(s) for s in norm.get("std", STD))
            scale = float(norm.get("scale", 255.0))
        except (TypeError, ValueError):
            raise ValueError(f"{source}: model card normalization must hold numbers") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"{source}: model card normalization needs 3 means and 3 positive stds")
        if max(mean) > 1.0 or max(std) > 1.0 or scale != 255.0:
            raise ValueError(
                f"{source}: model card normalization must be on the 0..1 scale with scale 255 "
                f"(as steelkd writes it), got mean {list(mean)}, std {list(std)}, scale {scale:g}"
            )
        return cls(
            class_names=[str(n) for n in names],
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            architecture=str(card.get("architecture", "")),
            postprocess=_postprocess_section(card.get("postprocess"), source, len(names)),
            raw=card,
        )


#: The type of each card field steelkd reads (``None``: not checked); a card is checked before any use.
CARD_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "architecture": str,
    "num_classes": int,
    "class_names": list,
    "normalization": dict,
    "model_kwargs": dict,
    "config": dict,
    "metrics": dict,
}  # ``postprocess`` has its own, finer check (:func:`_postprocess_section`)


def check_schema(card: dict[str, Any], source: str) -> None:
    """Check the type of every known field of ``card`` and that the class list is consistent.

    ``class_names``: two or more distinct non-empty strings; ``num_classes``: an integer >= 2 equal to the
    length of ``class_names`` when both are given. Unknown fields are kept (newer writers may add some).

    Raises:
        ValueError: one line naming ``source``, the field and what it holds.
    """
    for key, tp in CARD_SCHEMA.items():
        if key in card and (not isinstance(card[key], tp) or isinstance(card[key], bool)):
            kinds = " or ".join(t.__name__ for t in (tp if isinstance(tp, tuple) else (tp,)))
            raise ValueError(f"{source}: model card field {key!r} must be {kinds}, got {card[key]!r:.80}")
    names = card.get("class_names")
    strings = names is not None and all(isinstance(n, str) and n for n in names)
    if names is not None and (not strings or len(names) < 2 or len(set(names)) != len(names)):
        got = f"{names!r:.80}"
        raise ValueError(f"{source}: model card class_names must be two or more distinct names, got {got}")
    n = card.get("num_classes")
    if n is not None and (n < 2 or (names is not None and n != len(names))):
        raise ValueError(
            f"{source}: model card num_classes {n} does not match its {len(names or [])} class_names"
            if names is not None else f"{source}: model card num_classes must be >= 2, got {n}"
        )


def _postprocess_section(section: Any, source: str, num_classes: int) -> dict[str, Any] | None:
    """The card's ``postprocess`` section checked against the class count (``None`` when absent)."""
    if section is None:
        return None
    if not isinstance(section, dict):
        kind = type(section).__name__
        raise ValueError(f"{source}: model card postprocess must be a JSON object, got {kind}")
    unknown = set(section) - {*CARD_FIELDS, "calibration"}
    if unknown:
        raise ValueError(f"{source}: model card postprocess has unknown field(s) {sorted(unknown)} "
                         f"(expected {', '.join(CARD_FIELDS)}, calibration)")
    try:
        post = PostProcess(**{k: section[k] for k in CARD_FIELDS if k in section})
        post.thresholds(num_classes)
        post.min_areas(num_classes, (256, 1600))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: model card postprocess: {exc}") from None
    return dict(section)


def machine_key() -> str:
    """What a tuning record is valid for: the CPU model, its core count and its bf16/int8 capabilities."""
    from steelkd.runtime import cpu_flags, device_name

    caps = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"})
    return f"{device_name('cpu')} [{' '.join(caps)}]"


def recorded_choice(model_dir: str | Path) -> tuple[Path, str] | None:
    """``(model file, backend)`` that ``steelkd tune`` recorded in ``model_dir/tuning.json`` for this
    machine, or ``None`` (no record, another machine, or a file that is gone).

    Raises:
        ValueError: a tuning record that is not valid JSON (naming the file).
    """
    record = Path(model_dir) / TUNING_NAME
    if not Path(model_dir).is_dir() or not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{record}: not valid JSON ({exc})") from exc
    choice = data.get("choice") or {}
    if data.get("machine") != machine_key() or not choice.get("backend"):
        return None
    target = Path(model_dir) / str(choice.get("file", "."))
    return (target, str(choice["backend"])) if target.exists() else None
