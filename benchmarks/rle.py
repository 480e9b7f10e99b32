"""RLE codec speed: steelkd's vectorised codec against the common Kaggle-kernel version.

Both run on the same real Severstal rows (``../shared/data/severstal/train_subset.csv``, 2,845 masks of
256 x 1600) in one process; each timing is the median of several repeats over all rows, reported as
masks per second. Encode inputs are C-ordered ``uint8`` masks (what a model's prediction or an image
library gives); the Fortran-ordered masks that ``rle_decode`` returns are timed too.

Usage:
    .venv/bin/python benchmarks/rle.py [--csv PATH] [--repeats 7] [--limit N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelkd.data.rle import rle_decode, rle_encode

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal" / "train_subset.csv"


def kaggle_decode(mask_rle: str, shape: tuple[int, int] = (256, 1600)) -> np.ndarray:
    """The decoder found in most Severstal kernels (per-run slice loop)."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):  # noqa: B905 - verbatim kernel code
        img[lo:hi] = 1
    return img.reshape(shape, order="F")


def kaggle_encode(img: np.ndarray) -> str:
    """The encoder found in most Severstal kernels (transpose, flatten, pad, diff, join)."""
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def _time(fn: Callable[[Any], Any], items: Sequence[Any], repeats: int) -> float:
    """Median masks per second of ``fn`` over ``items`` (results are discarded as they come)."""
    rates = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        rates.append(len(items) / (time.perf_counter() - t0))
    return statistics.median(rates)


def _time_fresh(fn: Callable[[np.ndarray], Any], masks: Sequence[np.ndarray], repeats: int) -> float:
    """Median masks per second of ``fn`` on masks that were just written (in cache, as right after a
    prediction): each mask is copied, untimed, immediately before its timed call."""
    rates = []
    for _ in range(repeats):
        gc.collect()
        total = 0.0
        for m in masks:
            fresh = m.copy(order="K")
            t0 = time.perf_counter()
            fn(fresh)
            total += time.perf_counter() - t0
        rates.append(len(masks) / total)
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="Severstal train.csv-style file")
    ap.add_argument("--repeats", type=int, default=7, help="repeats per measurement (median taken)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N rows (0 = all)")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        print(
            f"error: {args.csv} not found (the real rows live in ../shared/data/severstal)", file=sys.stderr
        )
        return 1
    rles = pd.read_csv(args.csv)["EncodedPixels"].dropna().tolist()
    if args.limit:
        rles = rles[: args.limit]
    # identical results first: the comparison is only meaningful if both codecs agree
    masks_f = [rle_decode(r) for r in rles]
    masks_c = [np.ascontiguousarray(m) for m in masks_f]
    for r, m in zip(rles, masks_c, strict=True):
        if not np.array_equal(kaggle_decode(r), m) or kaggle_encode(m) != r or rle_encode(m) != r:
            print("error: the codecs disagree on a row", file=sys.stderr)
            return 1

    rows = [
        (
            "decode (str -> mask)",
            _time(kaggle_decode, rles, args.repeats),
            _time(rle_decode, rles, args.repeats),
        ),
        (
            "encode, C-ordered mask in cache",
            _time_fresh(kaggle_encode, masks_c, args.repeats),
            _time_fresh(rle_encode, masks_c, args.repeats),
        ),
        (
            "encode, F-ordered mask in cache",
            _time_fresh(kaggle_encode, masks_f, args.repeats),
            _time_fresh(rle_encode, masks_f, args.repeats),
        ),
        (
            "encode, C-ordered mask from RAM",
            _time(kaggle_encode, masks_c, args.repeats),
            _time(rle_encode, masks_c, args.repeats),
        ),
    ]
    runs = sum(len(r.split()) // 2 for r in rles)
    print(
        f"{len(rles)} real masks (256x1600, {runs / len(rles):.0f} runs per mask on average), "
        f"median of {args.repeats} repeats, numpy {np.__version__}, {os.cpu_count()} CPUs"
    )
    print()
    print("| operation | Kaggle kernel (masks/s) | steelkd (masks/s) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name, base, ours in rows:
        print(f"| {name} | {base:,.0f} | {ours:,.0f} | {ours / base:.1f}x |")
    if args.json:
        out = {"masks": len(rles), "repeats": args.repeats,
               "rows": [{"operation": n, "kaggle_per_s": b, "steelkd_per_s": o, "speedup": o / b}
                        for n, b, o in rows]}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
