"""Shared pytest fixtures: small synthetic data, tiny models, and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: The real data shared beside the repository (CI has it; a user's clone may not).
SHARED_DATA = Path(
    os.environ.get("STEELKD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def require_shared(*parts: str) -> Path:
    """Return ``SHARED_DATA/parts`` or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set STEELKD_SHARED_DATA to ../shared/data)")
    return path
