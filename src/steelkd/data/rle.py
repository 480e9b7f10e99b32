"""Run-length encoding of binary masks in the Kaggle (Severstal) convention.

A mask is written as ``"start length start length ..."``: 1-based pixel numbers counted in column-major
order (top to bottom, then left to right), one pair per run of ones. Both directions are vectorised with
numpy (no Python loop over runs); see ``benchmarks/rle.py`` for the speed against the usual Kaggle code.

Example:
    >>> import numpy as np
    >>> from steelkd.data.rle import rle_decode, rle_encode
    >>> m = rle_decode("2 3 7 1", shape=(4, 2))
    >>> m.tolist()
    [[0, 0], [1, 0], [1, 1], [1, 0]]
    >>> rle_encode(m)
    '2 3 7 1'
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

__all__ = ["SEVERSTAL_SHAPE", "is_empty_rle", "rle_decode", "rle_encode", "rle_runs"]

#: Height and width of a Severstal image.
SEVERSTAL_SHAPE: tuple[int, int] = (256, 1600)

_MAX_TOKEN = 2**52  # far beyond any image; keeps start + length free of int64 overflow
_DIGITS = b"0123456789 "
_INT_TOKEN = re.compile(r"[+-]?[0-9]+")
# 0, 1, 0, 1, ... : the values np.repeat expands into a mask (grown on demand).
_ALTERNATING = np.tile(np.array([0, 1], dtype=np.uint8), 4096)


def is_empty_rle(rle: Any) -> bool:
    """True for the encodings of an empty mask: ``None``, NaN, ``""`` (or only whitespace)."""
    if rle is None:
        return True
    if isinstance(rle, float):
        return math.isnan(rle)
    return isinstance(rle, str) and not rle.strip()


def _parse_slow(rle: str) -> np.ndarray:
    """Parse tokens one by one, naming the first one that is not an integer."""
    tokens = rle.split()
    for i, tok in enumerate(tokens):
        if not _INT_TOKEN.fullmatch(tok):
            raise ValueError(f"RLE token {tok!r} (token {i + 1}) is not an integer")
    values = [int(t) for t in tokens]
    for i, v in enumerate(values):
        if abs(v) > _MAX_TOKEN:
            raise ValueError(f"RLE token {i + 1} is too large (over {_MAX_TOKEN} pixels)")
    return np.array(values, dtype=np.int64)


def _parse(rle: Any) -> np.ndarray:
    """Return the integer tokens of an RLE string (empty array for an empty mask)."""
    if is_empty_rle(rle):
        return np.empty(0, dtype=np.int64)
    if not isinstance(rle, str):
        raise ValueError(f"RLE must be a string, got {type(rle).__name__}: {rle!r:.60}")
    # Fast path: only ASCII digits and spaces, which np.fromstring parses completely.
    try:
        raw = rle.encode("ascii")
    except UnicodeEncodeError:
        return _parse_slow(rle)
    if raw[:1].isdigit() and not raw.translate(None, _DIGITS):
        return np.fromstring(raw, dtype=np.int64, sep=" ")
    return _parse_slow(rle)


def _explain(values: np.ndarray, n_pixels: int | None, shape: tuple[int, int] | None) -> None:
    """Raise the ValueError that names the first problem of start/length pairs (1-based starts)."""
    big = np.flatnonzero(np.abs(values) > _MAX_TOKEN)
    if big.size:
        raise ValueError(f"RLE token {int(big[0]) + 1} is too large (over {_MAX_TOKEN} pixels)")
    if len(values) % 2:
        raise ValueError(f"RLE has an odd number of tokens ({len(values)}); expected start/length pairs")
    starts, lengths = values[0::2], values[1::2]
    bad = np.flatnonzero(starts < 1)
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"RLE run {k + 1} starts at {int(starts[k])}; starts are 1-based and must be >= 1")
    bad = np.flatnonzero(lengths < 1)
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"RLE run {k + 1} has length {int(lengths[k])}; lengths must be >= 1")
    ends = starts + lengths  # 1-based, exclusive
    bad = np.flatnonzero(starts[1:] < ends[:-1])
    if bad.size:
        k = int(bad[0]) + 1
        raise ValueError(
            f"RLE run {k + 1} starts at {int(starts[k])}, before run {k} ends ({int(ends[k - 1]) - 1}): "
            "runs must be sorted and must not overlap"
        )
    if n_pixels is not None and ends.size and int(ends[-1]) - 1 > n_pixels:
        where = f"the {shape[0]}x{shape[1]} image" if shape else "the image"
        raise ValueError(
            f"RLE run {len(ends)} ({int(starts[-1])} {int(lengths[-1])}) ends at pixel {int(ends[-1]) - 1}, "
            f"past {where} ({n_pixels} pixels)"
        )


def rle_runs(rle: Any, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate an RLE string into 0-based run starts and run lengths.

    Args:
        rle: the encoded mask; ``""``, ``None`` or NaN is an empty mask.
        shape: ``(H, W)`` of the image; when given, runs past ``H*W`` pixels are an error.

    Returns:
        ``(starts, lengths)``, two int64 arrays (0-based column-major pixel index, run length).

    Raises:
        ValueError: naming the problem (non-integer token, odd token count, start below 1, length
            below 1, unsorted or overlapping runs, run past the image).

    Example:
        >>> rle_runs("1 3 10 2")
        (array([0, 9]), array([3, 2]))
    """
    values = _parse(rle)
    n_pixels = None if shape is None else int(shape[0]) * int(shape[1])
    if len(values) % 2 == 0 and values.size:
        starts, lengths = values[0::2], values[1::2]
        gaps_ok = values.size == 2 or bool((starts[1:] - (starts[:-1] + lengths[:-1]) >= 0).all())
        if (
            int(starts[0]) >= 1
            and int(lengths.min()) >= 1
            and gaps_ok
            and int(values.max()) <= _MAX_TOKEN
            and (n_pixels is None or int(starts[-1]) + int(lengths[-1]) - 1 <= n_pixels)
        ):
            return starts - 1, lengths.copy()
    elif values.size == 0:
        return values, values.copy()
    _explain(values, n_pixels, None if shape is None else (int(shape[0]), int(shape[1])))
    raise AssertionError("unreachable")  # pragma: no cover


def rle_decode(rle: Any, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """Decode a Kaggle RLE string into a binary mask.

    Args:
        rle: ``"start length ..."`` with 1-based starts in column-major order; ``""``, ``None`` or NaN
            decode to an empty mask.
        shape: ``(H, W)`` of the mask (Severstal: ``(256, 1600)``).

    Returns:
        ``uint8`` array of shape ``(H, W)`` with values 0/1 (Fortran-ordered, as the pixels are stored).

    Raises:
        ValueError: for a non-integer token, an odd number of tokens, a start below 1, a length below 1,
            unsorted or overlapping runs, or a run past ``H*W``; the message names the problem.

    Example:
        >>> rle_decode("1 2", shape=(2, 2)).tolist()
        [[1, 0], [1, 0]]
    """
    h, w = int(shape[0]), int(shape[1])
    n = h * w
    values = None
    if type(rle) is str:  # fast path: ASCII digits and spaces only, which np.fromstring parses completely
        try:
            raw = rle.encode("ascii")
        except UnicodeEncodeError:
            raw = b""
        if raw[:1].isdigit() and not raw.translate(None, _DIGITS):
            values = np.fromstring(raw, dtype=np.int64, sep=" ")
            positive = np.count_nonzero(values) == values.size  # tokens are >= 0 here
    if values is None:
        values = _parse(rle)
        positive = values.size == 0 or int(values.min()) >= 1
    m = values.size
    if m == 0:
        return np.zeros((h, w), dtype=np.uint8, order="F")
    # Tokens in 1..n: starts and lengths >= 1, and no int64 overflow below (np.repeat would crash on
    # counts whose sum overflows). The other rules (sorted, no overlap, inside the image) all read
    # "every gap >= 0", which np.repeat checks itself.
    if m % 2 == 0 and positive and np.maximum.reduce(values) <= n:
        # counts = [gap0, len1, gap1, len2, ..., gap_last]
        values[1::2] += values[0::2]  # in place (our own array): 1-based exclusive run ends
        counts = np.empty(m + 1, dtype=np.int64)
        counts[0] = values[0] - 1
        np.subtract(values[1:], values[:-1], out=counts[1:-1])
        counts[-1] = n + 1 - values[-1]
        alt = _ALTERNATING
        if m + 1 > alt.size:
            alt = np.tile(np.array([0, 1], dtype=np.uint8), m // 2 + 1)
        try:  # a negative gap raises here
            return np.repeat(alt[: m + 1], counts).reshape((h, w), order="F")
        except ValueError:
            values[1::2] -= values[0::2]  # back to lengths for the error message
    _explain(values, n, (h, w))
    raise AssertionError("unreachable")  # pragma: no cover


def _format_runs(bounds: np.ndarray) -> str:
    """Turn sorted 0-based run boundaries ``[s0, e0, s1, e1, ...]`` into ``"s0+1 len0 s1+1 len1 ..."``."""
    if bounds.size == 0:
        return ""
    out = bounds.copy()
    out[1::2] -= bounds[0::2]
    out[0::2] += 1
    return (b"%d " * out.size % tuple(out.tolist()))[:-1].decode("ascii")


def _bounds_flat(flat: np.ndarray) -> np.ndarray:
    """Run boundaries of a contiguous 1-D byte array (non-zero = 1).

    Neighbouring bytes are compared eight at a time: the array against itself shifted by one byte,
    both viewed as uint64 words; only the words that differ are looked at byte by byte.
    """
    n = flat.size
    nw = (n - 1) // 8
    parts: list[np.ndarray] = []
    if nw >= 4:
        lo = flat[: nw * 8].view(np.uint64)  # bytes p-1 ...
        hi = flat[1 : nw * 8 + 1].view(np.uint64)  # ... against bytes p (an unaligned view, no copy)
        k = np.flatnonzero(lo != hi)
        if k.size:
            a = lo[k].view(np.uint8).reshape(-1, 8)
            b = hi[k].view(np.uint8).reshape(-1, 8)
            kk, j = np.nonzero((a != 0) != (b != 0))
            parts.append(k[kk] * 8 + j + 1)
        tail = flat[nw * 8 :] != 0
        parts.append(np.flatnonzero(tail[1:] != tail[:-1]) + nw * 8 + 1)
    else:
        nz = flat != 0
        parts.append(np.flatnonzero(nz[1:] != nz[:-1]) + 1)
    if flat[0]:
        parts.insert(0, np.zeros(1, dtype=np.int64))
    if flat[-1]:
        parts.append(np.full(1, n, dtype=np.int64))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@functools.lru_cache(maxsize=8)
def _word_positions(h: int, w8: int) -> np.ndarray:
    """Column-major index of the first pixel of each word of rows 1..h-1 (word k: row k // w8 + 1,
    columns 8 (k % w8) ... 8 (k % w8) + 7)."""
    k = np.arange((h - 1) * w8, dtype=np.int64)
    r, cw = np.divmod(k, w8)
    return cw * (8 * h) + r + 1


@functools.lru_cache(maxsize=8)
def _byte_offsets(h: int, n: int = 8) -> np.ndarray:
    """``[0, h, 2h, ..., (n-1)h]``: column-major index of the top pixel of columns 0..n-1."""
    return np.arange(n, dtype=np.int64) * h


def _bounds_c(m: np.ndarray) -> np.ndarray:
    """Run boundaries (column-major pixel indices) of a C-contiguous 0/1 byte mask, without a transpose.

    Transitions along a column are row-to-row changes; rows are compared eight pixels at a time as
    uint64 words, and only the words that differ are looked at byte by byte.
    """
    h, w = m.shape
    parts: list[np.ndarray] = []
    if m[0, 0]:
        parts.append(np.zeros(1, dtype=np.int64))
    if h > 1:
        if w % 8 == 0:
            w8 = w // 8
            words = m.view(np.uint64).reshape(-1)
            k = np.flatnonzero(words[w8:] != words[:-w8])
            if k.size:
                below = words[w8:][k].view(np.uint8)
                above = words[k].view(np.uint8)
                idx = np.flatnonzero((below != 0) != (above != 0))  # byte 8 k + j: column 8 cw + j
                pos = _word_positions(h, w8)[k][:, None] + _byte_offsets(h)  # (K, 8) column-major indices
                parts.append(pos.reshape(-1)[idx])
        else:
            k = np.flatnonzero(m[1:] != m[:-1])
            parts.append((k % w) * h + k // w + 1)
    if w > 1:  # bottom of column c-1 -> top of column c
        cb = np.flatnonzero((m[0, 1:] != 0) != (m[-1, :-1] != 0))
        if cb.size:
            parts.append(_byte_offsets(h, w)[cb + 1])
    if m[-1, -1]:
        parts.append(np.full(1, h * w, dtype=np.int64))
    if not parts:
        return np.empty(0, dtype=np.int64)
    b = np.concatenate(parts) if len(parts) > 1 else parts[0]  # a fresh array either way
    b.sort()
    return b


def rle_encode(mask: np.ndarray) -> str:
    """Encode a binary mask as a Kaggle RLE string (canonical: sorted, maximal runs, single spaces).

    Args:
        mask: ``(H, W)`` array; every non-zero pixel belongs to the mask (bool, uint8 or any numeric
            dtype, C- or Fortran-ordered).

    Returns:
        ``"start length ..."`` with 1-based starts in column-major order; ``""`` for an empty mask.

    Raises:
        ValueError: if ``mask`` is not two-dimensional.

    Example:
        >>> import numpy as np
        >>> rle_encode(np.array([[1, 0], [1, 1]], dtype=np.uint8))
        '1 2 4 1'
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D (H, W) mask, got shape {m.shape}")
    if m.size == 0:
        return ""
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    elif m.dtype == np.uint8 and m.flags.c_contiguous and m.shape[1] % 8 == 0:
        return _format_runs(_bounds_c(m))  # this path treats any non-zero byte as 1 by itself
    elif m.dtype != np.uint8 or m.max(initial=0) > 1:
        m = (m != 0).view(np.uint8)
    if m.flags.c_contiguous:
        return _format_runs(_bounds_c(m))
    if m.flags.f_contiguous:
        return _format_runs(_bounds_flat(m.T.reshape(-1)))  # already column-major: no copy
    return _format_runs(_bounds_c(np.ascontiguousarray(m)))
