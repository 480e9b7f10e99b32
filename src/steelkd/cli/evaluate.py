"""``steelkd evaluate``: score a trained model on the val/test split at full resolution.

By default the argmax of the logits is scored (the training-time validation metric, comparable across
runs and with the paper). ``--postprocess`` scores the label maps ``steelkd predict`` writes instead: the
model card's calibrated thresholds and minimum areas (``steelkd calibrate``), else predict's defaults;
``--threshold`` / ``--min-area`` / ``--min-area-mode`` override single fields and imply ``--postprocess``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from steelkd.cli._common import (
    DataConfigOpt,
    DataRootOpt,
    KindOpt,
    SetOpt,
    console,
    err_console,
    user_errors,
)
from steelkd.cli._post import (
    MinAreaModeOpt,
    MinAreaOpt,
    ThresholdOpt,
    TileOpt,
    TileOverlapOpt,
    parse_tiling,
    post_overrides,
)


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _eval_table(res: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("Dice", justify="right")
    table.add_column("IoU", justify="right")
    table.add_column("Kaggle Dice", justify="right")
    kaggle = res.get("kaggle_dice_per_class", {})
    for cls, dice in res["dice"].items():
        table.add_row(cls, _num(dice), _num(res["iou"].get(cls)), _num(kaggle.get(cls)))
    table.add_section()
    table.add_row("[bold]mean (defects)[/]", _num(res["mdice"]), _num(res["miou"]), _num(res["kaggle_dice"]))
    table.add_row("mean incl. background", "", _num(res["miou_bg"]), "")
    return table


def validation_data(
    config: Path | None,
    data_root: Path | None,
    kind: str,
    sets: list[str] | None,
    card: dict[str, Any],
    split: str = "val",
) -> tuple[Any, Any]:
    """``(config, dataset of split)`` from ``--config`` or ``--data-root``/``--kind`` (one of the two).

    ``split``: ``"val"`` (carved from the training images, ``data.val_fraction``: for calibration and
    tuning, which choose) or ``"test"`` (for the one final score). Shared by ``evaluate``, ``calibrate`` and
    ``tune``; warns when the model's classes differ from the data's.
    """
    from steelkd.config import apply_overrides, config_from_dict, load_config
    from steelkd.data import build_datasets

    if (config is None) == (data_root is None):
        raise ValueError("give the data either as --config YAML or as --data-root DIR (with --kind)")
    if config is not None:
        cfg = load_config(config, list(sets or []))
    else:
        if not data_root.exists():  # type: ignore[union-attr]
            raise FileNotFoundError(f"{data_root}: data root not found")
        base = {"data": {"kind": kind, "root": str(data_root), "class_names": card["class_names"]}}
        cfg = config_from_dict(apply_overrides(base, list(sets or [])))
    if split not in ("val", "test"):
        raise ValueError(f"--split: expected val or test, got {split!r}")
    val = getattr(build_datasets(cfg.data), split)
    if list(card.get("class_names", [])) not in ([], list(val.class_names)):
        err_console.print(
            f"warning: model classes {card['class_names']} != data classes {list(val.class_names)}",
            highlight=False,
        )
    return cfg, val


def _network(model: Path, backend: str, device: str, precision: str) -> tuple[Any, dict[str, Any], str, str]:
    """``(network, card, device, precision)`` that ``evaluate`` scores: the PyTorch model (``torch``, or
    ``auto`` on a model folder without a tuning record for this machine), else the backend as a module (on
    the CPU, in the backend's own precision; ``.onnx`` and ``.xml`` files run in their runtime)."""
    from steelkd.card import recorded_choice
    from steelkd.models import load_model
    from steelkd.predict.backends import as_module, load_backend

    exported = model.suffix.lower() in (".onnx", ".xml")
    if not exported and (backend == "torch" or (backend == "auto" and recorded_choice(model) is None)):
        net, card = load_model(model)
        return net, card, device, precision
    chosen = load_backend(model, backend)
    err_console.print(f"backend: {chosen.name}", highlight=False)
    return as_module(chosen), chosen.card.raw, "cpu", "32"


def register(app: typer.Typer) -> None:
    """Add ``evaluate``."""

    @app.command()
    def evaluate(
        model: Path = typer.Option(
            ..., "--model", "-m", help="Trained model (directory, .safetensors, .ckpt; .onnx or .xml)."
        ),
        config: Path = DataConfigOpt,
        data_root: Path = DataRootOpt,
        kind: str = KindOpt,
        batch_size: int = typer.Option(1, "--batch-size", help="Images per forward pass (equal sizes only)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ... (the torch backend)."),
        precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed (the torch backend)."),
        backend: str = typer.Option(
            "auto", help="auto (the `steelkd tune` choice for this machine, else torch with --device and "
            "--precision), torch, or an inference backend: torch-compile, onnxruntime, openvino, "
            "openvino-bf16 ... (CPU)."),
        num_workers: int = typer.Option(0, "--num-workers", help="Image-reading worker processes."),
        split: str = typer.Option(
            "test", "--split", help="test (the held-out split: the final score) or val (the validation "
            "split carved from the training images by data.val_fraction)."),
        out: Path = typer.Option(
            None, "--out", "-o", help="JSON file [default: eval.json beside the model]."
        ),
        postprocess: bool = typer.Option(
            False, "--postprocess/--argmax", help="Score post-processed label maps (the card's calibrated "
            "thresholds and minimum areas, else predict's defaults) instead of the argmax [default: "
            "argmax]; --threshold/--min-area/--min-area-mode imply it."),
        threshold: str = ThresholdOpt,
        min_area: str = MinAreaOpt,
        min_area_mode: str = MinAreaModeOpt,
        tile: str = TileOpt,
        tile_overlap: int = TileOverlapOpt,
        sets: list[str] = SetOpt,
    ) -> None:
        """Score a model on the test (or validation) split at full resolution: Dice, IoU, mDice, mIoU,
        Kaggle Dice."""
        from steelkd.card import ModelCard
        from steelkd.evaluate import evaluate_model, save_metrics_json
        from steelkd.postprocess import PostProcess, postprocess_from_card
        from steelkd.trivial import result_warnings

        with user_errors():
            if (config is None) == (data_root is None):
                raise ValueError("give the data either as --config YAML or as --data-root DIR (with --kind)")
            overrides = post_overrides(threshold, min_area, min_area_mode)
            PostProcess(**overrides)  # a bad value fails before the model is loaded
            tiling = parse_tiling(tile, tile_overlap, batch_size)
            net, card, device, precision = _network(model, backend, device, precision)
            post = None
            if postprocess or overrides:
                post = postprocess_from_card(ModelCard.from_dict(card, str(model)).postprocess, **overrides)
            cfg, val = validation_data(config, data_root, kind, sets, card, split=split)
            res = evaluate_model(
                net, val, batch_size=batch_size, device=device, precision=precision, num_workers=num_workers,
                tile=tiling, post=post,
            )
            res["model"] = str(model)
            res["architecture"] = card.get("architecture")
            res["data"] = {"kind": cfg.data.kind, "root": cfg.data.root, "split": split}
            target = (
                out
                if out is not None
                else (model / "eval.json" if model.is_dir() else model.with_suffix(".eval.json"))
            )
            save_metrics_json(res, target)
        console.print(
            _eval_table(
                res, f"{model} on {res['num_images']} images ({res['device']}, {res['seconds']:.1f} s)"
            )
        )
        for line in result_warnings(res):
            console.print(f"[yellow]warning[/]: not learned: {line}", highlight=False)
        console.print(f"metrics written to {target}")
