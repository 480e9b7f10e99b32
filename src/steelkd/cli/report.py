"""``steelkd evaluate``, ``steelkd bench``, ``steelkd experiment``: scores, speed and the paper's report."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from steelkd.cli._common import console, err_console, user_errors

SetOpt = typer.Option(None, "--set", help="Override any field: section.field=value (YAML value). Repeatable.")


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


def _setup_logging() -> None:
    logger = logging.getLogger("steelkd.experiment")
    if not any(getattr(h, "_steelkd", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._steelkd = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``bench`` and ``experiment``."""

    @app.command()
    def evaluate(
        model: Path = typer.Option(
            ..., "--model", "-m", help="Trained model (directory, .safetensors or .ckpt)."
        ),
        config: Path = typer.Option(None, "--config", "-c", help="YAML config whose data section to use."),
        data_root: Path = typer.Option(None, "--data-root", help="Data set root (instead of --config)."),
        kind: str = typer.Option("severstal", "--kind", help="With --data-root: severstal, folder or synth."),
        batch_size: int = typer.Option(1, "--batch-size", help="Images per forward pass (equal sizes only)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
        precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed."),
        num_workers: int = typer.Option(0, "--num-workers", help="Image-reading worker processes."),
        out: Path = typer.Option(
            None, "--out", "-o", help="JSON file [default: eval.json beside the model]."
        ),
        sets: list[str] = SetOpt,
    ) -> None:
        """Score a model on the val/test split at full resolution: Dice, IoU, mDice, mIoU, Kaggle Dice."""
        from steelkd.checkpoint import load_model
        from steelkd.config import apply_overrides, config_from_dict, load_config
        from steelkd.data import build_datasets
        from steelkd.evaluate import evaluate_model, save_metrics_json

        with user_errors():
            if (config is None) == (data_root is None):
                raise ValueError("give the data either as --config YAML or as --data-root DIR (with --kind)")
            net, card = load_model(model)
            if config is not None:
                cfg = load_config(config, list(sets or []))
            else:
                if not data_root.exists():
                    raise FileNotFoundError(f"{data_root}: data root not found")
                base = {"data": {"kind": kind, "root": str(data_root), "class_names": card["class_names"]}}
                cfg = config_from_dict(apply_overrides(base, list(sets or [])))
            _, val = build_datasets(cfg.data)
            if list(card.get("class_names", [])) not in ([], list(val.class_names)):
                err_console.print(
                    f"warning: model classes {card['class_names']} != data classes {list(val.class_names)}",
                    highlight=False,
                )
            res = evaluate_model(
                net, val, batch_size=batch_size, device=device, precision=precision, num_workers=num_workers
            )
            res["model"] = str(model)
            res["architecture"] = card.get("architecture")
            res["data"] = {"kind": cfg.data.kind, "root": cfg.data.root}
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
        console.print(f"metrics written to {target}")

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
        from steelkd.checkpoint import load_model
        from steelkd.evaluate import benchmark_models
        from steelkd.io import atomic_write_text
        from steelkd.models import create_model, list_models
        from steelkd.report import write_records_csv

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

    @app.command()
    def experiment(
        config: Path = typer.Option(
            ..., "--config", "-c", help="Experiment preset (configs/experiments/*.yaml)."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Output directory (runs/, tables/, figures/, report.md)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Only show which runs would be trained or reused."
        ),
        progress: bool = typer.Option(False, "--progress/--no-progress", help="Lightning progress bars."),
        sets: list[str] = SetOpt,
    ) -> None:
        """Train/reuse teachers and students, distil, evaluate, benchmark and write OUT/report.md."""
        from steelkd.experiment import load_experiment_config, plan_experiment, run_experiment

        with user_errors():
            cfg = load_experiment_config(config, list(sets or []))
            if dry_run:
                plan = plan_experiment(cfg, out)
                table = Table(title=f"{cfg.name}: {len(plan)} runs in {out / 'runs'}")
                for col in ("run", "model", "used as", "seed", "teacher", "status"):
                    table.add_column(col, overflow="fold")
                for p in plan:
                    table.add_row(
                        p.label,
                        p.config.model.name,
                        "/".join(p.uses),
                        str(p.seed),
                        p.teacher.label if p.teacher else "",
                        p.status,
                    )
                console.print(table)
                return
            _setup_logging()
            result = run_experiment(cfg, out, progress=progress)
        console.print(
            f"report: {result.report}  ({result.trained} runs trained, "
            f"{len(result.runs) - result.trained} reused; {len(result.figures)} figures, "
            f"{len(result.tables)} tables)"
        )
