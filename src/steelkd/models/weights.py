"""Checking a state dict against a module before loading it, with messages that name the bad keys."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor


def state_mismatch(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor], unexpected: list[str] | None = None
) -> list[str]:
    """What stops ``state`` from loading strictly into a module whose state dict is ``own``.

    Args:
        own: the module's ``state_dict()``.
        state: the weights to load.
        unexpected: keys already found not to belong (default: the keys of ``state`` not in ``own``).

    Returns:
        One phrase per kind of problem (missing keys, unexpected keys, shape mismatches), each naming
        the first three keys, in the module's own order; empty when the weights fit.

    Example:
        >>> import torch
        >>> state_mismatch({"w": torch.zeros(2)}, {"w": torch.zeros(3), "b": torch.zeros(1)})
        ['unexpected 1 keys (first: b)', '1 shape mismatches (first: w (3,) != (2,))']
    """
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own] if unexpected is None else unexpected
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys (first: {', '.join(missing[:3])})")
    if extra:
        problems.append(f"unexpected {len(extra)} keys (first: {', '.join(extra[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:3])})")
    return problems
