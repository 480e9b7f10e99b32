"""``steelkd bench``: params, GMACs and speed of several models side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from steelkd.cli._common import console, user_errors


def register(app: typer.Typer) -> None:
    """Add ``bench``."""

    @app.command()
    def bench(
        models: str = typer.Option(..., "--models", help="Comma-separated model names or paths."),
        size: str = typer.Option(
            "256x1600", "--size", help="Input HEIGHTxWIDTH (the data set's native size)."
        ),
        repeats: int = typer.Option(20, help="Timed forward passes per model (median reported)."),
        warmup: int = typer.Option(5, help="Untimed passes first."),
        batch_size: int = typer.Option(1, "--batch-size", help="Images per pass (1: the paper's FPS)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
        precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed."),
        num_classes: int = typer.Option(5, "--num-classes", help="Output classes of models built by name."),
        json_out: Path = typer.Option(None, "--json", help="Write the rows as JSON."),
        csv_out: Path = typer.Option(None, "--csv", help="Write the rows as CSV."),
    ) -> None:
        """Params, GMACs and FPS of several models, measured side by side in one run on this device."""
        from steelkd.bench import benchmark_models
        from steelkd.io import atomic_write_text
        from steelkd.models import create_model, list_models, load_model
        from steelkd.tables import write_records_csv

        with user_errors():
            names = [m.strip() for m in models.split(",") if m.strip()]
            if not names:
                raise ValueError("--models: give at least one model name or path")
            if repeats < 1:
                raise ValueError(f"--repeats must be >= 1, got {repeats}")
            registered = set(list_models())
            nets = {}
            for name in names:
                if Path(name).exists():
                    nets[name] = load_model(name)[0]
                elif name in registered:
                    nets[name] = create_model(name, num_classes=num_classes)
                else:
                    raise ValueError(
                        f"--models: {name!r} is neither a file nor a registered model "
                        "(see `steelkd models list`)"
                    )
            rows = benchmark_models(
                nets,
                size,
                repeats=repeats,
                warmup=warmup,
                device=device,
                precision=precision,
                batch_size=batch_size,
            )
            if json_out is not None:
                atomic_write_text(json_out, json.dumps(rows, indent=2) + "\n")
            if csv_out is not None:
                write_records_csv(rows, csv_out)
        first = rows[0]
        table = Table(
            title=f"{first['device_name']} — batch {batch_size}, {first['height']}x{first['width']}, "
            f"precision {precision}, median of {repeats}"
        )
        for col in ("model", "params (M)", "GMACs", "latency (ms)", "FPS"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in rows:
            table.add_row(
                r["model"],
                f"{r['params'] / 1e6:.2f}",
                f"{r['gmacs']:.2f}",
                f"{r['latency_ms']:.2f}",
                f"{r['fps']:.1f}",
            )
        console.print(table)
        for p in (json_out, csv_out):
            if p is not None:
                console.print(f"written: {p}")
