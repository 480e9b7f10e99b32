"""``steelkd tune``: measure the inference backends on this machine and record the fastest good one."""

from __future__ import annotations

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
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add ``tune``."""

    @app.command()
    def tune(
        model: Path = typer.Option(
            ..., "--model", "-m", help="Saved model folder (the record goes beside it)."
        ),
        config: Path = DataConfigOpt,
        data_root: Path = DataRootOpt,
        kind: str = KindOpt,
        images: int = typer.Option(50, "--images", help="Validation images scored per backend (mDice)."),
        calib: int = typer.Option(100, "--calib", help="Training images for int8 calibration (0: no int8)."),
        size: str = typer.Option("256x1600", "--size", help="HxW of the latency input (the line's tile)."),
        repeats: int = typer.Option(10, help="Timed calls per backend (median reported)."),
        warmup: int = typer.Option(2, help="Untimed calls first (compiles torch-compile)."),
        tolerance: float = typer.Option(0.005, help="Largest mDice loss vs fp32 eager (non-int8)."),
        int8_tolerance: float = typer.Option(0.01, "--int8-tolerance", help="Largest mDice loss for int8."),
        backends: str = typer.Option(
            None, "--backends", help="Comma-separated subset (default: all available)."
        ),
        sets: list[str] = SetOpt,
    ) -> None:
        """Measure every backend (latency, mDice vs fp32 eager), choose the fastest within tolerance,
        write MODEL/tuning.json; `predict --backend auto` then uses the choice on this machine."""

        from steelkd.cli.evaluate import validation_data
        from steelkd.config import parse_size
        from steelkd.data import build_datasets, normalize
        from steelkd.models import load_model
        from steelkd.tune import available_backends
        from steelkd.tune import tune as run_tune

        with user_errors():
            if not (model / "model.json").is_file():
                raise FileNotFoundError(f"{model}: not a saved model folder (model.json missing)")
            h, w = parse_size(size, minimum=32)
            _, card = load_model(model)
            cfg, val = validation_data(config, data_root, kind, sets, card, split="val")
            n = min(images, len(val))
            val_images = [val.read_image(i) for i in range(n)]
            val_masks = [val.read_mask(i) for i in range(n)]
            calibration = None
            if calib > 0:
                train = build_datasets(cfg.data).train
                calibration = [normalize(train.read_image(i)) for i in range(min(calib, len(train)))]
            names = [b.strip() for b in backends.split(",")] if backends else None
            for name, why in available_backends():
                if why and (names is None or name in names):
                    console.print(f"skipped {name}: {why}", highlight=False)
            res = run_tune(
                model,
                val_images,
                val_masks,
                size=(h, w),
                repeats=repeats,
                warmup=warmup,
                tolerance=tolerance,
                int8_tolerance=int8_tolerance,
                calibration=calibration,
                backends=names,
            )
        _print_result(res, model, (h, w), repeats, n)


def _print_result(res: Any, model: Path, size: tuple[int, int], repeats: int, n: int) -> None:
    h, w = size
    table = Table(
        title=f"{model} — {res.meta['machine']}, 1x3x{h}x{w}, median of {repeats}; "
        f"mDice on {n} validation images"
    )
    for col in ("backend", "runs as", "latency (ms)", "speed-up", "mDice", "vs fp32 eager", "eligible"):
        table.add_column(col, justify="left" if col in ("backend", "runs as") else "right")
    ref = next(r for r in res.rows if r["backend"] == "torch")["latency_ms"]
    for r in res.rows:
        chosen = r["file"] == res.choice["file"] and r["backend"].startswith(res.choice["backend"])
        table.add_row(
            ("* " if chosen else "") + r["backend"],
            r["runs_as"],
            f"{r['latency_ms']:.1f}",
            f"{ref / r['latency_ms']:.2f}x",
            f"{r['mdice']:.4f}",
            f"{r['mdice_cost']:+.4f}",
            "yes" if r["eligible"] else "no",
        )
    console.print(table)
    console.print(
        f"chosen: {res.choice['backend']} ({res.choice['file']}); recorded in {res.record}",
        highlight=False,
    )
