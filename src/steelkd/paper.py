"""The paper's facts, one copy: its models, their sizes and speeds, its experiments, results and recipe.

Xue et al., *Knowledge Distillation Optimization of Semantic Segmentation Model for Steel Surface Defect
Recognition*, Computer Measurement & Control 33(12), 2025 (``shared/SPEC.md``). Read by ``steelkd models
list`` (the paper's parameter counts), the experiment report (Tables 1-5, the deviations from the recipe)
and ``benchmarks/models.py``. Every number here is the paper's, none is measured by steelkd.

Example:
    >>> from steelkd.paper import PAPER_MODELS, PAPER_PARAMS_M
    >>> PAPER_PARAMS_M["resunet_convnext_tiny"], PAPER_MODELS["resunet_convnext_base_gc_ff"].fps
    (33.91, 46.7)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PAPER_EXPERIMENTS",
    "PAPER_MODELS",
    "PAPER_PARAMS_M",
    "PAPER_RECIPE",
    "PAPER_RECIPE_NOTES",
    "PAPER_RESULTS",
    "PaperModel",
]


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's three networks: parameters (M, 5 output classes), FPS on an RTX 3090, mDice."""

    params_m: float
    fps: float
    mdice: float


#: The paper's networks by steelkd model name (the paper's Tables 1, 2 and 4).
PAPER_MODELS: dict[str, PaperModel] = {
    "resunet_convnext_tiny": PaperModel(33.91, 82.7, 0.7503),
    "resunet_convnext_tiny_gc_ff": PaperModel(36.02, 68.0, 0.7784),
    "resunet_convnext_base_gc_ff": PaperModel(100.98, 46.7, 0.7859),
}
#: The paper's parameter counts (M) with 5 output classes.
PAPER_PARAMS_M: dict[str, float] = {name: m.params_m for name, m in PAPER_MODELS.items()}

#: The paper's models of experiments 1-3: (teacher, student).
PAPER_EXPERIMENTS: list[tuple[str, str]] = [
    ("resunet_convnext_tiny_gc_ff", "resunet_convnext_tiny"),
    ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny_gc_ff"),
    ("resunet_convnext_base_gc_ff", "resunet_convnext_tiny"),
]

# Per experiment: the table numbers, the student's mDice after distillation, Dice per class before/after.
_TABLES: list[tuple[int, float, int | None, tuple[list[float], list[float]] | None]] = [
    (1, 0.7633, None, None),
    (2, 0.7835, 3, ([0.6484, 0.6692, 0.7876, 0.7998], [0.6477, 0.6904, 0.7919, 0.7999])),
    (4, 0.7711, 5, ([0.6135, 0.5829, 0.7710, 0.7986], [0.6467, 0.6486, 0.7762, 0.7976])),
]


def _result(k: int) -> dict[str, Any]:
    table, after, dice_table, dice = _TABLES[k]
    t, s = (PAPER_MODELS[n] for n in PAPER_EXPERIMENTS[k])
    return {
        "table": table,
        "teacher": t.mdice,
        "before": s.mdice,
        "after": after,
        "params": (t.params_m, s.params_m),
        "fps": (t.fps, s.fps),
        "dice_table": dice_table,
        "dice": dice,
    }


#: The paper's results of experiments 1-3 (Tables 1-5): teacher mDice, student before/after, params and
#: FPS of (teacher, student), the Dice-per-class table and its values before/after (None for experiment 1).
PAPER_RESULTS: list[dict[str, Any]] = [_result(k) for k in range(len(PAPER_EXPERIMENTS))]

#: The paper's recipe, compared field by field with a preset to list the deviations.
PAPER_RECIPE: dict[str, Any] = {
    "train.epochs": 80,
    "train.lr": 1e-4,
    "data.batch_size": 8,
    "train.scheduler": "none",
    "train.precision": "32",
    "train.dice_weight": 0.0,
    "train.max_minutes": 0.0,
    "train.limit_train_batches": 1.0,
    "data.max_train_images": 0,
    "data.max_val_images": 0,
    "data.defect_only": True,
    "data.test_fraction": 0.2,
}
#: Where the recipe above is an assumption rather than a stated fact.
PAPER_RECIPE_NOTES: dict[str, str] = {
    "train.precision": "fp32 assumed: not stated, PyTorch 1.13",
    "train.scheduler": "constant lr: none stated",
    "train.dice_weight": "L = L_KD + L_wCE only",
}
