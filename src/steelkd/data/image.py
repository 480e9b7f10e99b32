"""Images in: the one owner of image reading, image file extensions and input normalisation.

Training, evaluation, prediction and export all read files with :func:`read_image` and turn them into
network input with :func:`normalize`, so an image reaches the network as the identical tensor on every
path (``tests/test_image_paths.py`` checks it on real Severstal and NEU-Seg JPEGs).

One decoder, Pillow, for every path: it names truncated and corrupt files instead of returning a partly
grey image, and it reads 16-bit, palette, RGBA and grayscale files. Its JPEG decoding is bit-identical to
OpenCV's on the Severstal, NEU-Seg and synthetic images (checked when the decoders were unified); EXIF
orientation is applied, as OpenCV's reader did.

Example:
    >>> import numpy as np
    >>> from steelkd.data.image import normalize
    >>> normalize(np.zeros((4, 6, 3), dtype=np.uint8)).shape
    (3, 4, 6)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "IMAGE_EXTENSIONS",
    "MEAN",
    "MIN_SIDE",
    "STD",
    "check_image",
    "denormalize",
    "image_size",
    "normalize",
    "read_image",
]

#: File suffixes taken from a folder (a file named explicitly is always tried).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: ImageNet channel means (RGB, 0..1 scale): the normalisation of every steelkd model.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, 0..1 scale).
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB ``uint8`` ``H x W x 3``.

    Grayscale and palette images are expanded to RGB, alpha is dropped, 16-bit images are scaled to
    8 bits (``v * 255 / 65535``, rounded), EXIF orientation is applied.

    Raises:
        FileNotFoundError: ``"<path>: image file not found"``.
        ValueError: ``"<path>: cannot read image (<reason>)"`` for corrupt, truncated or non-image files.

    Example:
        >>> read_image("train_images/0002cc93b.jpg").shape  # doctest: +SKIP
        (256, 1600, 3)
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im) or im
            if im.mode in _SIXTEEN_BIT:
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max(initial=0)), 1.0)
                gray = np.clip(arr * 255.0 / top + 0.5, 0, 255).astype(np.uint8)
                rgb = np.repeat(gray[:, :, None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{p}: cannot read image ({exc})") from exc
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{p}: cannot read image (empty or unexpected shape {rgb.shape})")
    return rgb


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file as :func:`read_image` returns it, read from the header only.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_image`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{p}: cannot read image ({exc})") from exc
    return int(h), int(w)


#: The shortest image side a network takes whole (the encoder's total stride): validation images are checked
#: against it (prediction pads shorter images instead).
MIN_SIDE = 32


def check_image(path: str | Path, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """Decode the whole file cheaply to prove it readable; return ``(height, width)`` as :func:`image_size`.

    An image with a side shorter than ``min_side`` is refused too: the network cannot take it whole.

    A JPEG is decoded at 1/8 scale (libjpeg's DCT scaling still reads every byte of the stream, so a
    truncated or corrupt file fails; about 4x faster than :func:`read_image`), other formats fully.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_image`, naming the file.

    Example:
        >>> check_image("train_images/0002cc93b.jpg")  # doctest: +SKIP
        (256, 1600)
    """
    size = image_size(path)
    if min(size) < min_side:
        raise ValueError(
            f"{path}: image is {size[0]}x{size[1]}; the network needs at least {min_side} px a side"
        )
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("L", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc
    return size


def _scale_shift(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    m, s = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    if m.shape != (3,) or s.shape != (3,) or not (s > 0).all():
        raise ValueError(f"normalisation needs 3 means and 3 positive stds, got {list(mean)} / {list(std)}")
    return (1.0 / (255.0 * s)).reshape(3, 1, 1), (m / s).reshape(3, 1, 1)


def normalize(
    image: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> np.ndarray:
    """RGB ``uint8`` ``H x W x 3`` (or ``H x W``) image -> normalised ``float32`` ``3 x H x W`` array.

    ``(image / 255 - mean) / std`` per channel, ``mean``/``std`` on the 0..1 scale (a model card's
    ``normalization``). Computed as ``image * (1 / (255 std)) - mean / std`` in float32.

    Example:
        >>> x = normalize(np.full((2, 2, 3), 255, dtype=np.uint8))
        >>> round(float(x[0, 0, 0]), 4)
        2.2489
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"normalize expects an H x W x 3 image, got shape {img.shape}")
    scale, shift = _scale_shift(mean, std)
    chw = img.transpose(2, 0, 1).astype(np.float32)
    chw *= scale
    chw -= shift
    return np.ascontiguousarray(chw)


def denormalize(x: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> np.ndarray:
    """Invert :func:`normalize`: ``3 x H x W`` float array (or tensor) -> ``uint8`` ``H x W x 3``.

    Example:
        >>> img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        >>> bool((denormalize(normalize(img)) == img).all())
        True
    """
    arr = np.asarray(x.detach().cpu().float() if hasattr(x, "detach") else x, dtype=np.float32)
    scale, shift = _scale_shift(mean, std)
    arr = (arr + shift) / scale
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()
