"""Training precision ``auto``: bf16 only where it is measured faster; the measurement changes nothing."""

from __future__ import annotations

import pytest
import torch

from steelkd.config import Config
from steelkd.engine import train as engine_train
from steelkd.models import create_model


def _cfg(precision: str) -> Config:
    cfg = Config()
    cfg.train.precision, cfg.train.accelerator = precision, "cpu"
    cfg.data.crop, cfg.data.batch_size = [32, 32], 2
    return cfg


def test_explicit_precision_is_kept() -> None:
    assert engine_train.resolve_precision(_cfg("bf16-mixed"), torch.nn.Identity()) == "bf16-mixed"


def test_auto_is_fp32_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_train, "cpu_has_bf16", lambda: False)
    assert engine_train.resolve_precision(_cfg("auto"), torch.nn.Identity()) == "32"


@pytest.mark.parametrize(("bf16_s", "expected"), [(0.1, "bf16-mixed"), (0.3, "32")])
def test_auto_picks_the_faster_measured_step(
    monkeypatch: pytest.MonkeyPatch, bf16_s: float, expected: str
) -> None:
    monkeypatch.setattr(engine_train, "cpu_has_bf16", lambda: True)
    times = {"32": 0.2, "bf16-mixed": bf16_s}
    monkeypatch.setattr(engine_train, "_step_seconds", lambda net, x, p, r: times[p])
    assert engine_train.resolve_precision(_cfg("auto"), torch.nn.Identity()) == expected


def test_the_measurement_leaves_model_and_random_state_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_train, "cpu_has_bf16", lambda: True)
    model = create_model("resunet_convnext_atto", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    choice = engine_train.resolve_precision(_cfg("auto"), model, repeats=1)
    assert choice in ("32", "bf16-mixed")
    assert torch.equal(torch.rand(3), expected_next)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
