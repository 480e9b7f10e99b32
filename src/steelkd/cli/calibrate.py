"""``steelkd calibrate``: choose per-class thresholds and minimum areas on validation images.

Writes them into the model card (``model.json``, section ``postprocess``), which ``steelkd predict``
(and ``steelkd evaluate --postprocess``) then use unless an option overrides them; prints the chosen
values and the trade-off per class, and writes ``calibration.csv`` (every candidate) and
``calibration.png`` (precision/recall per class, the chosen point marked) beside the card.
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
from steelkd.cli._post import TileOpt, TileOverlapOpt, parse_tiling


def _pct(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.3f}"


def _chosen_table(cal: Any) -> Table:
    table = Table(title=f"calibrated on {cal.num_images} images, target {cal.target}"
                  + (f" {cal.value:g}" if cal.value is not None else ""))
    table.add_column("class", no_wrap=True)
    for name in ("images", "thr", "min area", "Dice", "kDice", "img recall", "img FA"):
        table.add_column(name, justify="right")
    for c in cal.classes:
        m = c.at_choice()
        name = c.name if c.calibrated else f"{c.name} (default)"
        table.add_row(name, str(c.positives), f"{c.threshold:g}", f"{c.min_area:g}", _pct(m["dice"]),
                      _pct(m["kaggle_dice"]), _pct(m["image_recall"]), _pct(m["false_alarm"]))
    table.caption = ("Dice: dataset-level; kDice: mean per-image Dice; img recall / img FA: share of the "
                     "images with / without the class where it is predicted")
    return table


def _tradeoff_table(cal: Any, c: Any) -> Table:
    """One class: every threshold at the chosen minimum area."""
    j = c.index[1] if c.index is not None else 0
    table = Table(title=f"{c.name}: trade-off at min area {cal.min_areas[j]:g}")
    for name in ("thr", "Dice", "kDice", "precision", "recall", "img recall", "img FA"):
        table.add_column(name, justify="right")
    for i, t in enumerate(cal.thresholds):
        cells = [_pct(float(c.curves[k][i, j])) for k in ("dice", "kaggle_dice", "precision", "recall",
                                                           "image_recall", "false_alarm")]
        mark = "[bold]*[/] " if c.index == (i, j) else ""
        table.add_row(f"{mark}{t:g}", *cells)
    return table


def register(app: typer.Typer) -> None:
    """Add ``calibrate``."""

    @app.command()
    def calibrate(
        model: Path = typer.Option(..., "--model", "-m", help="Saved model (directory or .safetensors)."),
        config: Path = DataConfigOpt,
        data_root: Path = DataRootOpt,
        kind: str = KindOpt,
        target: str = typer.Option("dice", help="dice (dataset Dice), kaggle-dice (mean per-image Dice), "
                                   "recall or false-alarm (per-image rates; give --value)."),
        value: float = typer.Option(None, help="Per-image recall to reach / false-alarm rate to stay under."),
        min_area_mode: str = typer.Option("total", "--min-area-mode", help="total or component."),
        batch_size: int = typer.Option(1, "--batch-size", help="Images (or tiles) per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
        precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed."),
        num_workers: int = typer.Option(0, "--num-workers", help="Image-reading worker processes."),
        tile: str = TileOpt,
        tile_overlap: int = TileOverlapOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print and plot; leave the card unchanged."),
        sets: list[str] = SetOpt,
    ) -> None:
        """Choose per-class thresholds and minimum areas on the val split and write them into model.json."""
        from steelkd.calibrate import (
            calibrate_model,
            card_path,
            check_target,
            write_calibration,
            write_table,
        )
        from steelkd.card import ModelCard
        from steelkd.cli.evaluate import validation_data
        from steelkd.figures import plot_calibration
        from steelkd.models import load_model
        from steelkd.postprocess import postprocess_from_card

        with user_errors():
            check_target(target, value)
            tiling = parse_tiling(tile, tile_overlap, batch_size)
            card_file = card_path(model)
            net, card = load_model(model)
            cfg, val = validation_data(config, data_root, kind, sets, card, split="val")
            base = postprocess_from_card(ModelCard.from_dict(card, str(card_file)).postprocess)
            cal = calibrate_model(net, val, target=target, value=value, min_area_mode=min_area_mode,
                                  base=base, batch_size=batch_size, device=device, precision=precision,
                                  num_workers=num_workers, tile=tiling)
            cal.extra = {"data": {"kind": cfg.data.kind, "root": cfg.data.root, "split": "val"},
                         "tiling": None if tiling is None else tiling.describe()}
            csv_path = write_table(cal, card_file.parent / "calibration.csv")
            png_path = plot_calibration(cal, card_file.parent / "calibration.png")
            if not dry_run:
                write_calibration(model, cal)
        for c in cal.classes:
            console.print(_tradeoff_table(cal, c))
        console.print(_chosen_table(cal))
        for line in cal.warnings:
            err_console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
        post = cal.postprocess()
        thr = ",".join(f"{t:g}" for t in post.threshold)  # type: ignore[union-attr]
        areas = ",".join(f"{a:g}" for a in post.min_area)  # type: ignore[union-attr]
        console.print(f"--threshold {thr} --min-area {areas} --min-area-mode {cal.min_area_mode}",
                      highlight=False, soft_wrap=True)
        where = "not written (--dry-run)" if dry_run else f"written to {card_file}"
        console.print(f"postprocess {where}; table {csv_path}; figure {png_path}", highlight=False,
                      soft_wrap=True)
