"""What trivial predictors score, and the "not learned" check that compares a model with them.

A Dice means something only next to what a model that knows nothing gets: marking every pixel as the
class, or none. Plain Python (no torch), so reports and the CLI can judge stored results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["result_warnings", "trivial_dice", "unlearned_classes"]


def trivial_dice(pixel_counts: list[int]) -> list[float]:
    """The dataset-level Dice of each class for a model that marks every pixel as that class.

    With N pixels in all and G_c of class c, that Dice is ``2 G_c / (N + G_c)``; a model that marks no
    pixel as c scores 0. A learned class beats both. ``pixel_counts`` are the truth pixels per class,
    background first (``steelkd.metrics.SegMetrics.compute()["pixel_counts"]``); the result has one
    value per class.

    Example:
        >>> [round(d, 3) for d in trivial_dice([914, 86])]
        [0.955, 0.158]
    """
    total = sum(pixel_counts)
    return [2 * g / (total + g) if total else math.nan for g in pixel_counts]


def unlearned_classes(
    dice: list[float], pixel_counts: list[int], pred_counts: list[int], class_names: list[str]
) -> list[str]:
    """One line for each defect class the model has not learned, judged against trivial predictors.

    A defect class present in the truth is flagged when the model predicts it nowhere (Dice 0, as a
    model that never marks it) or when its Dice is no better than marking every pixel as it
    (:func:`trivial_dice`): such a score says nothing about the model, however high it looks next to
    other runs. Classes absent from the truth are not judged.

    Args:
        dice: Dice per defect class (classes 1..K-1), as ``steelkd.metrics.SegMetrics.compute()["dice"]``.
        pixel_counts: truth pixels per class, all K classes, background first.
        pred_counts: predicted pixels per class, all K classes.
        class_names: all K names, background first.

    Example:
        >>> unlearned_classes([0.13], [914, 86], [700, 300], ["background", "defect"])
        ['defect: Dice 0.130 is no better than marking every pixel defect (0.158)']
    """
    trivial = trivial_dice(pixel_counts)
    out = []
    for c in range(1, len(class_names)):
        name, d = class_names[c], dice[c - 1]
        if pixel_counts[c] == 0 or math.isnan(d):
            continue
        if pred_counts[c] == 0:
            out.append(f"{name}: predicted nowhere (Dice 0), as a model that never marks it")
        elif d <= trivial[c]:
            out.append(
                f"{name}: Dice {d:.3f} is no better than marking every pixel {name} ({trivial[c]:.3f})"
            )
    return out


def result_warnings(result: Mapping[str, Any]) -> list[str]:
    """:func:`unlearned_classes` of a :func:`steelkd.evaluate.evaluate_model` result: one line per defect
    class no better than a trivial predictor; empty for a result without pixel counts (older files)."""
    counts, preds = result.get("pixel_counts"), result.get("pred_counts")
    if not isinstance(counts, Mapping) or not isinstance(preds, Mapping):
        return []
    names = list(counts)
    dice = [result["dice"][n] for n in names[1:]]
    return unlearned_classes(dice, list(counts.values()), [preds[n] for n in names], names)
