"""``steelkd experiment``: train/reuse, distil, evaluate, benchmark and write the paper's report."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.table import Table

from steelkd.cli._common import SetOpt, console, user_errors


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
    """Add ``experiment``."""

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
        only: list[str] = typer.Option(
            [],
            "--only",
            help="Run and report only this experiment (repeatable): a stage of a long preset; "
            "its runs are reused when the whole preset runs later.",
        ),
    ) -> None:
        """Train/reuse teachers and students, distil, evaluate, benchmark and write OUT/report.md."""
        from steelkd.experiment import load_experiment_config, plan_experiment, run_experiment

        with user_errors():
            cfg = load_experiment_config(config, list(sets or []), list(only or []))
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
