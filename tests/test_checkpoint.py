"""Deployable model artefacts: safetensors + model card, strict and safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steelkd.config import SEVERSTAL_CLASSES
from steelkd.models import create_model, load_model, make_card, save_model


def test_round_trip_keeps_weights_and_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto_gc_ff", num_classes=5).eval()
    card = make_card(model, SEVERSTAL_CLASSES, metrics={"mdice": 0.5})
    out = save_model(model, tmp_path / "m", card)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    loaded, card2 = load_model(out)
    assert card2["architecture"] == "resunet_convnext_atto_gc_ff" and card2["metrics"] == {"mdice": 0.5}
    assert card2["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    # the weights file and the card can also be named directly
    assert load_model(out / "model.safetensors")[1]["architecture"] == card["architecture"]
    assert load_model(out / "model.json")[1]["architecture"] == card["architecture"]


def test_wrong_architecture_names_the_bad_keys(tmp_path: Path) -> None:
    model = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
    out = save_model(model, tmp_path / "m", make_card(model, SEVERSTAL_CLASSES))
    card = json.loads((out / "model.json").read_text())
    card["architecture"] = "resunet_convnext_atto"
    (out / "model.json").write_text(json.dumps(card))
    bad = r"unexpected \d+ keys \(first: decoder\.fusion.*shape mismatches \(first: head\.weight"
    with pytest.raises(ValueError, match=bad):
        load_model(out)


def test_class_count_mismatch_and_missing_files(tmp_path: Path) -> None:
    model = create_model("resunet_convnext_atto", num_classes=4)
    with pytest.raises(ValueError, match="4 output classes but 5 class names"):
        make_card(model, SEVERSTAL_CLASSES)
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors: missing"):
        load_model(tmp_path / "half")
