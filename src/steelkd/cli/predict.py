"""``steelkd predict``: batch inference to masks, overlays, a Kaggle submission and defect records.

Exit codes of ``predict``: 0 = every image written; 1 = bad input (no model, no matching files, a bad
option: one ``error:`` line); 2 = some images could not be read (each named on stderr) while the others
were written.
"""

from __future__ import annotations

from pathlib import Path

import typer

from steelkd.cli._common import console, err_console, user_errors
from steelkd.cli._post import (
    MinAreaModeOpt,
    MinAreaOpt,
    ThresholdOpt,
    TileOpt,
    TileOverlapOpt,
    parse_tiling,
    post_overrides,
)

#: Exit code of ``steelkd predict`` when some inputs failed and the rest were written.
EXIT_SOME_FAILED = 2


def register(app: typer.Typer) -> None:
    """Add ``predict``."""

    @app.command()
    def predict(
        model: Path = typer.Option(..., "--model", "-m",
                                   help="Model directory/.safetensors/.ckpt, or a model.onnx."),
        inputs: list[str] = typer.Option(..., "--input", "-i",
                                         help="Image file, directory or glob (quote it). Repeatable."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
        backend: str = typer.Option(
            "auto",
            help="auto (the `steelkd tune` choice for this machine; onnxruntime for .onnx, openvino for "
            ".xml; else torch), torch, torch-bf16, torch-compile, torch-compile-bf16, onnxruntime, "
            "openvino, openvino-bf16.",
        ),
        device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
        batch_size: int = typer.Option(4, "--batch-size", "-b", help="Images per forward pass."),
        tta: bool = typer.Option(False, "--tta", help="Flip TTA: mean softmax of image, h-flip and v-flip."),
        bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (torch backend, CPU or CUDA)."),
        threshold: str = ThresholdOpt,
        min_area: str = MinAreaOpt,
        min_area_mode: str = MinAreaModeOpt,
        max_side: int = typer.Option(
            0, "--max-side", help="Down-scale images whose longer side exceeds this (0 = native size)."),
        tile: str = TileOpt,
        tile_overlap: int = TileOverlapOpt,
        defects: bool = typer.Option(True, "--defects/--no-defects",
                                     help="Write defects.csv and defects.jsonl (one row per defect region)."),
        overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write colour overlays."),
        overlay_format: str = typer.Option("png", "--overlay-format", help="png or jpg."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Predict defect masks: masks/*.png, overlays/*, submission.csv and defects.csv/.jsonl in OUT."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from steelkd.postprocess import PostProcess, postprocess_from_card
        from steelkd.predict import Predictor, load_backend, resolve_inputs

        with user_errors():
            overrides = post_overrides(threshold, min_area, min_area_mode)
            PostProcess(**overrides)  # fail fast on a bad value, before loading the model
            tiling = parse_tiling(tile, tile_overlap, batch_size)
            files = resolve_inputs(inputs)  # fail fast (before loading the model) on an empty input
            net = load_backend(model, backend=backend, device=device, bf16=bf16)
            post = postprocess_from_card(net.card.postprocess, **overrides)
            predictor = Predictor(net, post, tta=tta, batch_size=batch_size, max_side=max_side,
                                  tile=None if tiling is None else tiling.tile,
                                  tile_overlap=None if tiling is None else tiling.overlap)
            bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                           MofNCompleteColumn(), TimeRemainingColumn(), console=err_console,
                           disable=not progress, transient=True)
            with bar:
                task = bar.add_task(f"predict ({predictor.backend.name})", total=len(files))

                def on_progress(path: Path, error: str | None) -> None:
                    bar.advance(task)
                    if error is not None:
                        err_console.print(f"[bold red]skipped:[/] {error}", highlight=False, soft_wrap=True)

                report = predictor.predict_files(files, out, overlays=overlays, overlay_format=overlay_format,
                                                 defects=defects, on_progress=on_progress)
        n = len(report.results)
        console.print(
            f"{n} image(s) in {report.seconds:.1f} s ({report.images_per_second:.2f} img/s, "
            f"{predictor.backend.name}): {out / 'masks'}/, "
            + (f"{out / 'overlays'}/, " if overlays else "")
            + f"{report.submission_path} ({n * (len(report.class_names) - 1)} rows)"
            + (f", {report.defects_paths[0]} ({sum(len(r.defects) for r in report.results)} defect regions)"
               if report.defects_paths else ""),
            highlight=False, soft_wrap=True,
        )
        if report.failures:
            failed = ", ".join(str(f.path) for f in report.failures)
            err_console.print(f"[bold red]error:[/] {len(report.failures)} of {len(files)} image(s) failed: "
                              f"{failed}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=EXIT_SOME_FAILED)
