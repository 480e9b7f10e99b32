"""Synthetic steel-surface defect data in the exact Severstal layout.

``generate(out_dir, n, seed)`` writes ``train_images/<id>.jpg`` (RGB JPEG, grayscale-looking, 1600 wide x
256 high by default) and ``train.csv`` (``ImageId,ClassId,EncodedPixels``, Kaggle RLE). The background is
a rolled-steel texture (grain, streaks along the strip, uneven lighting); the four defect classes are
drawn procedurally with distinct shapes and strong contrast so a small model learns them quickly:

1. pitting: clusters of small dark round spots;
2. crazing/cracks: thin dark branching lines (random walks with side branches);
3. scratches: long thin straight bright lines;
4. patches: large irregular regions of brighter, mottled texture.

Masks are exactly the drawn pixels (classes never overlap: a later defect does not repaint pixels an
earlier one owns), thin structures are at least 3 px wide, about 10% of the images are defect-free and
some carry several classes. Every image depends only on ``(seed, index, height, width)``, so the same
seed gives the same bytes, and ``train.csv`` is written last (a directory with ``train.csv`` is
complete).

Example:
    >>> from steelkd.data.synth import generate
    >>> root = generate("/tmp/steelkd_synth_doc", n=4, seed=0, height=64, width=256)  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
    ['train.csv', 'train_images']
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np

from steelkd.data.rle import rle_encode
from steelkd.io import atomic_write_bytes, atomic_write_text

__all__ = ["CLASS_NAMES", "generate", "image_id", "render"]

#: Names of the synthetic classes 1..4 (the Severstal names the paper uses).
CLASS_NAMES: tuple[str, ...] = ("pitting", "crazing", "scratches", "patches")

_DEFECT_FREE = 0.10
_N_CLASSES_P = (0.62, 0.28, 0.10)  # one, two or three classes in a defective image


def image_id(seed: int, index: int) -> str:
    """Severstal-like file name (9 hex digits + ``.jpg``) of synthetic image ``index`` for ``seed``."""
    return hashlib.sha1(f"steelkd-synth/{seed}/{index}".encode()).hexdigest()[:9] + ".jpg"


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D noise smoothed with a Gaussian of ``sigma`` samples, unit standard deviation."""
    x = rng.standard_normal(n + 8 * int(sigma) + 2).astype(np.float32)
    k = max(1, int(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-k, k + 1) / max(sigma, 1e-3)) ** 2).astype(np.float32)
    y = np.convolve(x, g / g.sum(), mode="same")[: n + 0]
    return y / (y.std() + 1e-6)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Rolled-steel texture: uneven lighting, streaks along the strip, fine grain (float32, ~90..160)."""
    base = 115.0 + 25.0 * rng.random()
    rows = _smooth_noise(rng, h, 2.0 + 6.0 * rng.random())[:, None] * (3.0 + 3.0 * rng.random())
    cols = _smooth_noise(rng, w, 20.0 + 40.0 * rng.random())[None, :] * (4.0 + 4.0 * rng.random())
    ramp = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :] * (8.0 * rng.standard_normal())
    grain = rng.standard_normal((h, w), dtype=np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=1.5, sigmaY=0.7) * 9.0
    return (base + rows + cols + ramp + grain).astype(np.float32)


def _draw_pitting(rng: np.random.Generator, canvas: np.ndarray, s: float) -> None:
    h, w = canvas.shape
    for _ in range(int(rng.integers(2, 6))):
        radius = max(8.0, (15.0 + 25.0 * rng.random()) * s)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        for _ in range(int(rng.integers(8, 20))):
            a, d = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random())
            r = max(2, round((3.0 + 3.0 * rng.random()) * s))
            cv2.circle(canvas, (round(cx + d * math.cos(a)), round(cy + d * math.sin(a))), r, 1, -1)


def _walk(
    rng: np.random.Generator, x: float, y: float, theta: float, steps: int, step: float
) -> list[tuple[float, float]]:
    pts = [(x, y)]
    for _ in range(steps):
        theta += rng.normal(0.0, 0.35)
        x, y = x + step * math.cos(theta), y + step * math.sin(theta)
        pts.append((x, y))
    return pts


def _draw_cracks(rng: np.random.Generator, canvas: np.ndarray, s: float) -> None:
    h, w = canvas.shape
    thick = max(3, round(5 * s))
    step = max(5.0, 12.0 * s)
    for _ in range(int(rng.integers(2, 5))):
        theta = rng.uniform(0, 2 * math.pi)
        pts = _walk(rng, rng.uniform(0, w), rng.uniform(0, h), theta, int(rng.integers(15, 35)), step)
        lines = [pts]
        for _ in range(int(rng.integers(2, 5))):
            bx, by = pts[int(rng.integers(1, len(pts)))]
            side = rng.choice((-1.0, 1.0))
            lines.append(
                _walk(rng, bx, by, theta + side * rng.uniform(0.5, 1.2), int(rng.integers(4, 12)), step)
            )
        polys = [np.round(np.asarray(p)).astype(np.int32) for p in lines]
        cv2.polylines(canvas, polys, isClosed=False, color=1, thickness=thick, lineType=cv2.LINE_8)


def _draw_scratches(rng: np.random.Generator, canvas: np.ndarray, s: float) -> None:
    h, w = canvas.shape
    thick = max(3, round(6 * s))
    for _ in range(int(rng.integers(1, 4))):
        length = rng.uniform(0.25, 0.8) * w
        theta = math.radians(rng.uniform(-20.0, 20.0)) + (math.pi if rng.random() < 0.5 else 0.0)
        dx, dy = length * math.cos(theta), length * math.sin(theta)
        # keep the whole line inside the image where its length allows
        x0 = rng.uniform(max(0.0, -dx), max(0.0, -dx) + max(1.0, w - abs(dx)))
        y0 = rng.uniform(max(0.05 * h, -dy), max(0.05 * h, -dy) + max(1.0, 0.9 * h - abs(dy)))
        x1, y1 = x0 + dx, y0 + dy
        cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), 1, thick, cv2.LINE_8)


def _draw_patches(rng: np.random.Generator, canvas: np.ndarray, s: float) -> None:
    h, w = canvas.shape
    for _ in range(int(rng.integers(1, 3))):
        radius = max(10.0, (40.0 + 60.0 * rng.random()) * s)
        stretch = rng.uniform(1.0, 2.5)  # wider than high, like patches on a strip
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        k = int(rng.integers(10, 18))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = radius * rng.uniform(0.55, 1.25, k)
        pts = np.stack([cx + stretch * rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)


_DRAW = {1: _draw_pitting, 2: _draw_cracks, 3: _draw_scratches, 4: _draw_patches}


def _paint(rng: np.random.Generator, img: np.ndarray, m: np.ndarray, cls: int) -> None:
    """Change the image where ``m`` is set, in the style of class ``cls`` (in place)."""
    if cls == 1:  # near-black pits
        img[m] = img[m] * 0.22 + rng.uniform(0.0, 6.0)
    elif cls == 2:  # mid-dark cracks: clearly lighter than pits, clearly darker than the steel
        img[m] = img[m] * 0.58 + rng.uniform(0.0, 6.0)
    elif cls == 3:
        img[m] = np.minimum(img[m] + 75.0 + rng.uniform(0.0, 20.0), 250.0)
    else:
        h, w = img.shape
        mottle = cv2.resize(
            rng.standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32),
            (w, h),
            interpolation=cv2.INTER_LINEAR,
        )
        img[m] = img[m] + 55.0 + rng.uniform(0.0, 15.0) + 14.0 * mottle[m]


def render(
    seed: int, index: int, height: int = 256, width: int = 1600
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Draw synthetic image ``index`` of ``seed``.

    Args:
        seed: data set seed.
        index: image number.
        height, width: image size in pixels.

    Returns:
        ``(image, masks)``: the ``uint8`` ``H x W`` grayscale image and ``{class_id: bool H x W mask}`` for
        the classes present (empty dict for a defect-free image). Masks are disjoint.

    Example:
        >>> img, masks = render(0, 3, height=64, width=256)
        >>> img.shape, img.dtype.name
        ((64, 256), 'uint8')
    """
    if height < 8 or width < 8:
        raise ValueError(f"synthetic images must be at least 8x8 pixels, got {height}x{width}")
    rng = np.random.default_rng([int(seed), int(index), int(height), int(width)])
    s = height / 256.0
    img = _background(rng, height, width)
    masks: dict[int, np.ndarray] = {}
    if rng.random() >= _DEFECT_FREE:
        n_classes = 1 + int(rng.choice(3, p=_N_CLASSES_P))
        classes = sorted(int(c) for c in rng.choice([1, 2, 3, 4], size=n_classes, replace=False))
        occupied = np.zeros((height, width), dtype=bool)
        for cls in rng.permutation(classes):
            canvas = np.zeros((height, width), dtype=np.uint8)
            _DRAW[int(cls)](rng, canvas, s)
            m = (canvas > 0) & ~occupied
            if not m.any():
                continue
            _paint(rng, img, m, int(cls))
            occupied |= m
            masks[int(cls)] = m
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, dict(sorted(masks.items()))


def generate(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    height: int = 256,
    width: int = 1600,
    quality: int = 95,
) -> Path:
    """Write ``n`` synthetic images and their ``train.csv`` in the Severstal layout.

    Args:
        out_dir: destination; ``train_images/`` and ``train.csv`` are created inside (existing files of
            the same names are replaced).
        n: number of images.
        seed: seed; the same seed and size give byte-identical files.
        height, width: image size (Severstal: 256 x 1600).
        quality: JPEG quality.

    Returns:
        ``out_dir`` as a ``Path``.

    Example:
        >>> root = generate("/tmp/steelkd_synth_doc", n=4, seed=0, height=64, width=256)  # doctest: +SKIP
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    root = Path(out_dir)
    img_dir = root / "train_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int, str]] = []
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    for i in range(int(n)):
        name = image_id(seed, i)
        img, masks = render(seed, i, height, width)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), params)
        if not ok:  # pragma: no cover - cv2 failure
            raise OSError(f"could not encode {name} as JPEG")
        atomic_write_bytes(img_dir / name, buf.tobytes())
        rows.extend((name, cls, rle_encode(m)) for cls, m in masks.items())
    rows.sort()
    text = "ImageId,ClassId,EncodedPixels\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
    atomic_write_text(root / "train.csv", text)
    return root
