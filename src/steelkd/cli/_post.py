"""Options shared by ``predict``, ``evaluate`` and ``calibrate``: post-processing overrides and tiling.

A post-processing option left out keeps the model card's calibrated value (``steelkd calibrate``), else
the default; a given one replaces that field only (:func:`steelkd.postprocess.postprocess_from_card`).
"""

from __future__ import annotations

from typing import Any

import typer

from steelkd.tiling import Tiling

ThresholdOpt = typer.Option(
    None, "--threshold", help="Probability threshold per defect class: one value, one per class "
    "(0.5,0.5,0.6,0.5), or 'argmax' (no threshold). Default: the model card's calibrated values, else 0.5.")
MinAreaOpt = typer.Option(
    None, "--min-area", help="Minimum defect area per class in pixels of a 256x1600 image (scaled by image "
    "area): one value or one per class; 0 = off. Default: the model card's calibrated values, else "
    "500,500,800,2000 (Severstal).")
MinAreaModeOpt = typer.Option(
    None, "--min-area-mode", help="total: drop a class whose total area is too small; component: drop each "
    "too-small connected component. Default: the model card's, else total.")
TileOpt = typer.Option(
    None, "--tile", help="Tiled inference for large frames: tile size HxW (e.g. 256x512); logits of "
    "overlapping tiles are blended. Default: whole frames.")
TileOverlapOpt = typer.Option(
    None, "--tile-overlap", help="Pixels shared by neighbouring tiles [default: a quarter of the tile's "
    "smaller side].")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected a number or comma-separated numbers, got {text!r}") from None


def parse_threshold(text: str) -> float | list[float] | None:
    """``"0.5"`` -> 0.5, ``"0.5,0.6"`` -> [0.5, 0.6], ``"argmax"`` -> None."""
    if text.strip().lower() in ("argmax", "none"):
        return None
    values = _floats(text, "--threshold")
    if not values:
        raise ValueError("--threshold: expected a number, comma-separated numbers or 'argmax'")
    return values[0] if len(values) == 1 else values


def parse_min_area(text: str) -> float | list[float] | None:
    """``"0"`` -> 0.0, ``"500,800"`` -> [500.0, 800.0], ``"default"`` -> None (the built-in defaults)."""
    if not text.strip() or text.strip().lower() == "default":
        return None
    values = _floats(text, "--min-area")
    return values[0] if len(values) == 1 else values


def post_overrides(threshold: str | None, min_area: str | None, min_area_mode: str | None) -> dict[str, Any]:
    """The post-processing fields given on the command line (the others keep the card's values).

    Example:
        >>> post_overrides("argmax", None, "component")
        {'threshold': None, 'min_area_mode': 'component'}
    """
    out: dict[str, Any] = {}
    if threshold is not None:
        out["threshold"] = parse_threshold(threshold)
    if min_area is not None:
        out["min_area"] = parse_min_area(min_area)
    if min_area_mode is not None:
        out["min_area_mode"] = min_area_mode
    return out


def parse_tiling(tile: str | None, overlap: int | None, batch_size: int = 4) -> Tiling | None:
    """``--tile HxW [--tile-overlap N]`` -> a :class:`~steelkd.tiling.Tiling` (``None`` without ``--tile``).

    Example:
        >>> parse_tiling("256x512", None).describe()
        '256x512 tiles, overlap 64'
    """
    from steelkd.config import parse_size

    if tile is None:
        if overlap is not None:
            raise ValueError("--tile-overlap needs --tile HxW")
        return None
    return Tiling(parse_size(tile), overlap, tile_batch=batch_size)
