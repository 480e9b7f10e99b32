"""The train/test split of a data set: seeded, stratified by the classes present, stored as JSON.

:func:`make_split` groups images by the set of classes they contain and splits each group with one seeded
shuffle, so rare class combinations land on both sides; :func:`load_or_create_split` writes the split file
on first use and reuses it after, so every later run (and every seed of an experiment) scores the same
images.

Example:
    >>> split = make_split({"a.jpg": (1,), "b.jpg": (1,), "c.jpg": (3,), "d.jpg": (3,)}, test_fraction=0.5)
    >>> sorted(split["train"] + split["test"])
    ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steelkd.io import atomic_write_text

__all__ = ["SPLIT_FORMAT", "load_or_create_split", "load_split", "make_split", "save_split"]

#: Format tag of a split file.
SPLIT_FORMAT = "steelkd-split/1"


def _group_key(classes: Sequence[int]) -> str:
    return "+".join(str(c) for c in sorted(classes)) or "none"


def make_split(
    image_classes: Mapping[str, Sequence[int]], seed: int = 0, test_fraction: float = 0.2
) -> dict[str, Any]:
    """Split images into train and test, stratified by the set of classes each image contains.

    Images are grouped by class set (e.g. ``"1+3"``); each group gives ``test_fraction`` of its images
    to the test split (largest-remainder rounding, so the test split has exactly
    ``round(n * test_fraction)`` images). Deterministic for a given ``seed`` and set of images.

    Args:
        image_classes: ``{ImageId: classes present}`` (see :func:`image_classes`).
        seed: seed of the shuffle.
        test_fraction: share of images in the test split, strictly between 0 and 1.

    Returns:
        A dict with ``format``, ``seed``, ``test_fraction``, ``stratify``, ``sizes``, ``train`` and
        ``test`` (sorted ids), ready for :func:`save_split`.

    Example:
        >>> s = make_split({f"{i}.jpg": (1 + i % 2,) for i in range(10)}, seed=0)
        >>> len(s["train"]), len(s["test"])
        (8, 2)
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if not image_classes:
        raise ValueError("cannot split an empty set of images")
    groups: dict[str, list[str]] = {}
    for image_id in sorted(image_classes):
        groups.setdefault(_group_key(image_classes[image_id]), []).append(image_id)
    keys = sorted(groups)
    total = sum(len(v) for v in groups.values())
    target = round(total * float(test_fraction))
    exact = {k: len(groups[k]) * float(test_fraction) for k in keys}
    quota = {k: int(np.floor(exact[k])) for k in keys}
    rest = target - sum(quota.values())
    for k in sorted(keys, key=lambda k: (-(exact[k] - quota[k]), k))[: max(rest, 0)]:
        quota[k] += 1
    rng = np.random.default_rng(int(seed))
    train: list[str] = []
    test: list[str] = []
    for k in keys:
        ids = groups[k]
        order = rng.permutation(len(ids))
        test.extend(ids[j] for j in order[: quota[k]])
        train.extend(ids[j] for j in order[quota[k] :])
    return {
        "format": SPLIT_FORMAT,
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "stratify": "set of classes present",
        "sizes": {"train": len(train), "test": len(test)},
        "groups": {k: {"train": len(groups[k]) - quota[k], "test": quota[k]} for k in keys},
        "train": sorted(train),
        "test": sorted(test),
    }


def save_split(split: Mapping[str, Any], path: str | Path) -> Path:
    """Write a split as JSON (atomically) and return the path."""
    p = Path(path)
    atomic_write_text(p, json.dumps(dict(split), indent=1) + "\n")
    return p


def load_split(path: str | Path) -> dict[str, Any]:
    """Read and check a split file written by :func:`save_split`.

    Raises:
        FileNotFoundError: if it does not exist.
        ValueError: if it is not a valid split (naming the file and the problem).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: split file not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("train"), list)
        or not isinstance(data.get("test"), list)
    ):
        raise ValueError(f"{p}: not a steelkd split file (expected 'train' and 'test' lists)")
    for part in ("train", "test"):
        bad = [i for i in data[part] if not isinstance(i, str) or not i]
        if bad:
            raise ValueError(f"{p}: {part} holds {len(bad)} entries that are not image names: {bad[0]!r}")
    both = set(data["train"]) & set(data["test"])
    if both:
        raise ValueError(f"{p}: {len(both)} image(s) are in both train and test, e.g. {sorted(both)[0]}")
    return data


def load_or_create_split(
    path: str | Path,
    image_classes: Mapping[str, Sequence[int]],
    seed: int = 0,
    test_fraction: float = 0.2,
) -> dict[str, Any]:
    """Reuse the split at ``path``, or make one with :func:`make_split` and save it there.

    An existing file always wins (its seed and fraction are kept), so every run sees the same images;
    delete it or point to another file for a new split.

    Raises:
        ValueError: if an existing split names images that are not in ``image_classes``.
    """
    p = Path(path)
    if p.is_file():
        split = load_split(p)
        unknown = sorted((set(split["train"]) | set(split["test"])) - set(image_classes))
        if unknown:
            raise ValueError(
                f"{p}: split names {len(unknown)} image(s) that are not in the data set "
                f"(first: {', '.join(unknown[:3])}); delete the file to make a new split"
            )
        return split
    split = make_split(image_classes, seed=seed, test_fraction=test_fraction)
    save_split(split, p)
    return split


# ------------------------------------------------------------------------------------------- dataset
