"""Loading weights safely (``weights_only``, one-line refusals) and checking a state dict against a module
before loading it, with messages that name the bad keys."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
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


_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL)\s+([\w.]+)")


def load_weights_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors that name the file.

    A pickle that needs anything beyond tensors and plain containers (a class, a function such as
    ``os.system``) is refused; the message names the object it asked for and never suggests loading the
    file with ``weights_only=False`` (PyTorch's own message does, and that would run the file's code).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: ``"<path>: refused: ..."`` for an unsafe pickle, ``"<path>: not a readable ..."`` else.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None:
            raise ValueError(f"{p}: not a readable PyTorch checkpoint (not a pickle of tensors)") from None
        raise ValueError(
            f"{p}: refused: the file asks for the Python object {found.group(1)}, which could run code when "
            "unpickled; steelkd loads only tensors and plain containers (save weights as safetensors or a "
            "plain state dict)"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, OSError, EOFError, zipfile errors ...
        raise ValueError(f"{p}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None


def load_safetensors(path: str | Path, device: str = "cpu") -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file (a format with no code in it).

    Raises:
        ValueError: one line naming the file when it is truncated or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
