"""Tiled (sliding-window) inference: run a network on tiles of a large frame and blend the logits.

One owner for every path that tiles: :class:`steelkd.predict.Predictor` (``tile=``), ``steelkd predict
--tile``, :func:`steelkd.evaluate.evaluate_model` (``tile=``), ``steelkd evaluate --tile`` and
``steelkd calibrate --tile``. Pure numpy around a callable ``logits = fn(batch)``, so the PyTorch and the
ONNX Runtime backends tile with the same code.

The grid: along each axis, tiles of the tile size start every ``tile - overlap`` pixels; the last tile is
shifted inward so that it ends at the frame border (never padded), so every tile has the same size and
the network sees only real pixels. A frame no larger than the tile along an axis gets one tile of the
frame's size there; a frame no larger than the tile in both axes runs whole, exactly as without tiling.

The blend: the logits of all tiles are summed with a separable weight window and divided by the summed
weight. The window is 1 inside the tile and falls off with a **raised-cosine ramp** (``0.5 - 0.5 cos``)
over the ``overlap`` pixels at each edge that faces another tile; edges on the frame border keep weight 1.
Why this window and not a Gaussian: two facing cosine ramps of width ``overlap`` sum to exactly 1 (a
partition of unity at the regular stride), so where tiles do not overlap a pixel's logits are the one
tile's, unchanged; the weights are smooth (no seam in the blended logits) and put the tile's centre,
which saw the most context, ahead of its edges; a Gaussian never reaches 1, also down-weights the frame
border where no other tile helps, and needs an arbitrary sigma.

Example:
    >>> import numpy as np
    >>> tile_starts(1000, 256, 64)
    [0, 192, 384, 576, 744]
    >>> fn = lambda b: np.repeat(b[:, :1], 2, axis=1)  # any pixel-wise "network"
    >>> frame = np.random.default_rng(0).random((1, 3, 64, 1000), dtype=np.float32)
    >>> bool(np.allclose(tiled_logits(fn, frame, (64, 256), 64), fn(frame), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Tiling", "blend_window", "tile_starts", "tiled_logits"]

#: ``logits (N x C x h x w) = fn(batch (N x 3 x h x w))``: a backend, or a wrapped torch model.
LogitsFn = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``0..length``, the last shifted inward.

    Args:
        length: the frame's size along the axis.
        tile: the tile size along the axis.
        overlap: pixels shared by neighbouring tiles (``0 <= overlap < tile`` when ``length > tile``).

    Example:
        >>> tile_starts(4096, 512, 64), tile_starts(200, 256, 64)
        ([0, 448, 896, 1344, 1792, 2240, 2688, 3136, 3584], [0])
    """
    if length < 1 or tile < 1:
        raise ValueError(f"tile_starts: expected length and tile >= 1, got {length} and {tile}")
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap: expected 0 <= overlap < the tile size {tile} (the frame is "
                         f"{length} pixels along this axis), got {overlap}")
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(size: int, overlap: int, *, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blending weights of one tile: 1 inside, raised-cosine ramps of ``overlap`` pixels at faced edges.

    Args:
        size: the tile size along the axis.
        overlap: the ramp width (the tiles' overlap); 0 gives a flat window.
        ramp_start / ramp_end: ramp at the start / end edge (the edge faces another tile, not the border).

    Example:
        >>> w = blend_window(8, 4, ramp_start=True, ramp_end=False)
        >>> [round(float(v), 3) for v in w]
        [0.038, 0.309, 0.691, 0.962, 1.0, 1.0, 1.0, 1.0]
    """
    w = np.ones(size, np.float32)
    n = min(overlap, size)
    if n <= 0:
        return w
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
    if ramp_start:
        w[:n] = np.minimum(w[:n], ramp)
    if ramp_end:
        w[size - n :] = np.minimum(w[size - n :], ramp[::-1])
    return w


def _axis_windows(length: int, tile: int, overlap: int) -> tuple[list[int], list[np.ndarray], int]:
    t = min(tile, length)
    starts = tile_starts(length, t, overlap)
    windows = [blend_window(t, overlap, ramp_start=s > 0, ramp_end=s + t < length) for s in starts]
    return starts, windows, t


def tiled_logits(
    fn: LogitsFn,
    batch: np.ndarray,
    tile: Sequence[int],
    overlap: int,
    *,
    tile_batch: int = 4,
) -> np.ndarray:
    """Logits of ``batch`` (N x 3 x H x W) computed tile by tile and blended (see the module docstring).

    Args:
        fn: ``logits = fn(tiles)``; called with at most ``tile_batch`` tiles of one size at a time.
        batch: network input, N x 3 x H x W float32.
        tile: ``(height, width)`` of a tile; a frame side no larger than the tile side is not cut.
        overlap: pixels shared by neighbouring tiles (``0 <= overlap <`` the tile side along every axis
            the frame is cut along).
        tile_batch: tiles per call of ``fn`` (bounds the memory of one call).

    Returns:
        float32 N x C x H x W logits; ``fn(batch)`` itself when one tile covers the frame.

    Example:
        >>> logits = tiled_logits(backend, x[None], (256, 512), 64)  # doctest: +SKIP
    """
    th, tw = int(tile[0]), int(tile[1])
    if th < 1 or tw < 1:
        raise ValueError(f"tile: expected a positive height and width, got {tuple(tile)}")
    if overlap < 0:
        raise ValueError(f"tile overlap: expected >= 0, got {overlap}")
    if tile_batch < 1:
        raise ValueError(f"tile_batch: expected >= 1, got {tile_batch}")
    n, _, h, w = batch.shape
    ys, wys, h_t = _axis_windows(h, th, overlap)
    xs, wxs, w_t = _axis_windows(w, tw, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return np.asarray(fn(batch), dtype=np.float32)
    boxes = [(i, yi, xi) for i in range(n) for yi in range(len(ys)) for xi in range(len(xs))]
    out: np.ndarray | None = None
    for k in range(0, len(boxes), tile_batch):
        chunk = boxes[k : k + tile_batch]
        tiles = np.stack([batch[i, :, ys[yi] : ys[yi] + h_t, xs[xi] : xs[xi] + w_t] for i, yi, xi in chunk])
        logits = np.asarray(fn(np.ascontiguousarray(tiles)), dtype=np.float32)
        if out is None:
            out = np.zeros((n, logits.shape[1], h, w), np.float32)
        for (i, yi, xi), lg in zip(chunk, logits, strict=True):
            y, x = ys[yi], xs[xi]
            out[i, :, y : y + h_t, x : x + w_t] += lg * (wys[yi][:, None] * wxs[xi][None, :])
    weight = np.zeros((h, w), np.float32)
    for y, wy in zip(ys, wys, strict=True):
        for x, wx in zip(xs, wxs, strict=True):
            weight[y : y + h_t, x : x + w_t] += wy[:, None] * wx[None, :]
    assert out is not None
    out /= np.maximum(weight, 1e-6)
    return out


@dataclass(frozen=True)
class Tiling:
    """A tile size and overlap, checked once; ``tiling(fn, batch)`` is :func:`tiled_logits`.

    Args:
        tile: ``(height, width)`` of a tile (e.g. the training crop, or a size that fits memory).
        overlap: pixels shared by neighbouring tiles; ``None`` = a quarter of the tile's smaller side.
            It must be smaller than the tile side along every axis a frame is cut along (checked then).
        tile_batch: tiles per network call.

    Example:
        >>> Tiling((256, 512)).overlap
        64
    """

    tile: tuple[int, int]
    overlap: int | None = None
    tile_batch: int = 4

    def __post_init__(self) -> None:
        th, tw = (int(v) for v in self.tile)
        if th < 1 or tw < 1:
            raise ValueError(f"tile: expected a positive height and width, got {tuple(self.tile)}")
        object.__setattr__(self, "tile", (th, tw))
        if self.overlap is None:
            object.__setattr__(self, "overlap", min(th, tw) // 4)
        if not 0 <= int(self.overlap) < max(th, tw):  # type: ignore[arg-type]
            raise ValueError(f"tile overlap: expected 0 <= overlap < {max(th, tw)} (the tile's larger side), "
                             f"got {self.overlap}")
        if self.tile_batch < 1:
            raise ValueError(f"tile_batch: expected >= 1, got {self.tile_batch}")

    def __call__(self, fn: LogitsFn, batch: np.ndarray) -> np.ndarray:
        return tiled_logits(fn, batch, self.tile, int(self.overlap or 0), tile_batch=self.tile_batch)

    def describe(self) -> str:
        """``"256x512 tiles, overlap 64"``."""
        return f"{self.tile[0]}x{self.tile[1]} tiles, overlap {self.overlap}"
