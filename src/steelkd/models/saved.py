"""Saved models: a folder of weights (safetensors) and model card (JSON), loaded without unpickling.

A saved model is a directory holding ``model.safetensors`` and ``model.json`` (the model card, see
:mod:`steelkd.card`). :func:`load_model` also reads a Lightning ``.ckpt`` written by the engine
(``weights_only=True``).

Example:
    >>> from steelkd.models import create_model, load_model, make_card, save_model
    >>> model = create_model("resunet_convnext_atto", num_classes=5)  # doctest: +SKIP
    >>> save_model(model, "out/model", make_card(model, class_names=[...]))  # doctest: +SKIP
    >>> model, card = load_model("out/model")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from steelkd.card import BEST_METRICS_KEY, CARD_FORMAT, CARD_NAME, WEIGHTS_NAME, ModelCard
from steelkd.data.image import MEAN, STD
from steelkd.io import atomic_path, atomic_write_text
from steelkd.models.base import count_params
from steelkd.models.registry import create_model
from steelkd.models.weights import load_safetensors, load_weights_only, state_mismatch

__all__ = ["load_model", "load_state_checked", "make_card", "model_files", "save_model"]


def make_card(
    model: nn.Module,
    class_names: list[str],
    *,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON model card for ``model``.

    Args:
        model: a network built by :func:`steelkd.models.create_model` (it carries ``name``).
        class_names: names of the output channels, background first.
        config: the training config (``Config.to_dict()``), recorded for provenance.
        metrics: validation metrics of the saved weights.
        model_kwargs: extra keyword arguments the architecture was built with.
    """
    from steelkd import __version__

    num_classes = int(getattr(model, "num_classes", len(class_names)))
    if num_classes != len(class_names):
        raise ValueError(f"model has {num_classes} output classes but {len(class_names)} class names")
    return {
        "format": CARD_FORMAT,
        "architecture": model.name,
        "num_classes": num_classes,
        "class_names": list(class_names),
        "model_kwargs": dict(model_kwargs or {}),
        "normalization": {"mean": list(MEAN), "std": list(STD), "scale": 255.0, "channels": "RGB"},
        "params": count_params(model),
        "config": config or {},
        "metrics": metrics or {},
        "steelkd_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

def save_model(model: nn.Module, path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into directory ``path`` (each atomically).

    Returns:
        The directory.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": CARD_FORMAT, "architecture": card["architecture"]})
    atomic_write_text(out / CARD_NAME, json.dumps(card, indent=2, default=str))
    return out


def model_files(path: Path) -> tuple[Path, Path]:
    """``(weights, card)`` files of a saved model given as a folder, a ``.safetensors`` or a ``.json``."""
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CARD_NAME
    if path.suffix == ".safetensors":
        card = path.with_suffix(".json")
        return path, card if card.exists() else path.parent / CARD_NAME
    if path.suffix == ".json":
        return path.parent / WEIGHTS_NAME, path
    raise ValueError(f"{path}: expected a model directory, a .safetensors file, a model.json or a .ckpt")


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises ValueError naming the bad keys."""
    problems = state_mismatch(model.state_dict(), state)
    if problems:
        raise ValueError(
            f"{source}: weights do not fit {getattr(model, 'name', type(model).__name__)}: "
            + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def _load_lightning_ckpt(path: Path, map_location: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    ckpt = load_weights_only(path)
    hp = ckpt.get("hyper_parameters", {})
    cfg = hp.get("cfg")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a steelkd Lightning checkpoint (no 'cfg' hyper-parameter)")
    model_cfg = cfg["model"]
    class_names = cfg["data"]["class_names"]
    model = create_model(model_cfg["name"], num_classes=len(class_names), **model_cfg.get("kwargs", {}))
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    load_state_checked(model, state, str(path))
    card = make_card(
        model,
        class_names,
        config=cfg,
        metrics=ckpt.get(BEST_METRICS_KEY, {}),
        model_kwargs=model_cfg.get("kwargs", {}),
    )
    return model, card


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a saved directory, ``.safetensors`` (+ ``.json``) or a steelkd ``.ckpt``.

    Nothing is unpickled: safetensors, JSON, or ``torch.load(weights_only=True)``. The architecture named in
    the card is built and the weights are loaded strictly.

    Returns:
        ``(model in eval mode, model card dict)``.

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: the card or the weights do not fit (the bad keys are named).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: model not found")
    if p.suffix == ".ckpt":
        model, card = _load_lightning_ckpt(p, map_location)
        return model.eval(), card
    weights, card_path = model_files(p)
    for f in (weights, card_path):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing (a saved model needs {WEIGHTS_NAME} and {CARD_NAME})")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{card_path}: not valid JSON ({exc})") from None
    ModelCard.from_dict(card, str(card_path))  # the schema, before anything is built from the card
    for key in ("architecture", "num_classes", "class_names"):
        if key not in card:
            raise ValueError(f"{card_path}: model card lacks '{key}'")
    model = create_model(
        card["architecture"], num_classes=int(card["num_classes"]), **card.get("model_kwargs", {})
    )
    state = load_safetensors(weights, device=str(map_location))
    load_state_checked(model, state, str(weights))
    return model.eval(), card
