"""Bench helpers: parameter and MAC counts checked by hand; latency dict shape (no timing assertions)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steelkd.bench import count_gmacs, measure_latency
from steelkd.models import count_params
from steelkd.runtime import device_name


def test_count_params_conv_and_trainable_only() -> None:
    conv = nn.Conv2d(3, 8, 3)  # 8*3*3*3 weights + 8 biases
    assert count_params(conv) == 224
    conv.bias.requires_grad_(False)
    assert count_params(conv, trainable_only=True) == 216
    assert count_params(conv) == 224


def test_count_gmacs_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # every output element: 3*3*3 MACs; 8 x 10 x 12 outputs per image, batch 2
    assert count_gmacs(conv, (2, 3, 10, 12)) * 1e9 == pytest.approx(2 * 8 * 10 * 12 * 27)
    strided = nn.Conv2d(4, 6, 4, stride=4)  # 16 x 16 -> 4 x 4
    assert count_gmacs(strided, (1, 4, 16, 16)) * 1e9 == pytest.approx(6 * 4 * 4 * 4 * 16)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert count_gmacs(lin, (3, 12)) * 1e9 == pytest.approx(3 * 12 * 5)


def test_count_gmacs_restores_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    count_gmacs(model, (1, 3, 8, 8))
    assert model.training


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_measure_latency_returns_consistent_stats(dtype: torch.dtype | None) -> None:
    model = nn.Conv2d(3, 4, 3).train()
    stats = measure_latency(model, torch.zeros(2, 3, 16, 16), repeats=5, warmup=1, dtype=dtype)
    assert set(stats) == {"median_s", "p10_s", "p90_s", "fps", "repeats", "batch", "dtype", "device"}
    assert 0 < stats["p10_s"] <= stats["median_s"] <= stats["p90_s"]
    assert stats["fps"] == pytest.approx(2 / stats["median_s"])
    assert stats["dtype"] == ("bfloat16" if dtype else "float32")
    assert model.training
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, torch.zeros(1, 3, 8, 8), repeats=0)


def test_device_name_cpu() -> None:
    name = device_name("cpu")
    assert isinstance(name, str) and "cores" in name and len(name) > 8
