"""``steelkd predict``: batch inference to masks, overlays and a Kaggle submission.

Exit codes of ``predict``: 0 = every image written; 1 = bad input (no model, no matching files, a bad
option: one ``error:`` line); 2 = some images could not be read (each named on stderr) while the others
were written.
"""

from __future__ import annotations

from pathlib import Path

import typer

from steelkd.cli._common import console, err_console, user_errors

#: Exit code of ``steelkd predict`` when some inputs failed and the rest were written.
EXIT_SOME_FAILED = 2


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected a number or comma-separated numbers, got {text!r}") from None


def _parse_threshold(text: str) -> float | list[float] | None:
    if text.strip().lower() in ("argmax", "none"):
        return None
    values = _floats(text, "--threshold")
    if not values:
        raise ValueError("--threshold: expected a number, comma-separated numbers or 'argmax'")
    return values[0] if len(values) == 1 else values


def _parse_min_area(text: str | None) -> float | list[float] | None:
    if text is None or not text.strip() or text.strip().lower() == "default":
        return None
    values = _floats(text, "--min-area")
    return values[0] if len(values) == 1 else values


def register(app: typer.Typer) -> None:
    """Add ``predict``."""

    @app.command()
    def predict(
        model: Path = typer.Option(..., "--model", "-m",
                                   help="Model directory/.safetensors/.ckpt, or a model.onnx."),
        inputs: list[str] = typer.Option(..., "--input", "-i",
                                         help="Image file, directory or glob (quote it). Repeatable."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
        backend: str = typer.Option("auto", help="torch, onnxruntime, or auto (onnxruntime for .onnx)."),
        device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
        batch_size: int = typer.Option(4, "--batch-size", "-b", help="Images per forward pass."),
        tta: bool = typer.Option(False, "--tta", help="Flip TTA: mean softmax of image, h-flip and v-flip."),
        bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (torch backend, CPU or CUDA)."),
        threshold: str = typer.Option(
            "0.5", help="Probability threshold per defect class: one value, one per class (0.5,0.5,0.6,0.5), "
            "or 'argmax' (no threshold)."),
        min_area: str = typer.Option(
            None, "--min-area", help="Minimum defect area per class in pixels of a 256x1600 image (scaled by "
            "image area): one value or one per class; 0 = off. Default 500,500,800,2000 (Severstal)."),
        min_area_mode: str = typer.Option("total", "--min-area-mode",
                                          help="total: drop a class whose total area is too small; "
                                          "component: drop each too-small connected component."),
        max_side: int = typer.Option(
            0, "--max-side", help="Down-scale images whose longer side exceeds this (0 = native size)."),
        overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write colour overlays."),
        overlay_format: str = typer.Option("png", "--overlay-format", help="png or jpg."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Predict defect masks: masks/*.png, overlays/*, and a Kaggle submission.csv in OUT."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from steelkd.predict import PostProcess, Predictor, resolve_inputs

        with user_errors():
            post = PostProcess(threshold=_parse_threshold(threshold), min_area=_parse_min_area(min_area),
                               min_area_mode=min_area_mode)
            files = resolve_inputs(inputs)  # fail fast (before loading the model) on an empty input
            predictor = Predictor.from_path(model, backend=backend, device=device, bf16=bf16, post=post,
                                            tta=tta, batch_size=batch_size, max_side=max_side)
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
                                                 on_progress=on_progress)
        n = len(report.results)
        console.print(
            f"{n} image(s) in {report.seconds:.1f} s ({report.images_per_second:.2f} img/s, "
            f"{predictor.backend.name}): {out / 'masks'}/, "
            + (f"{out / 'overlays'}/, " if overlays else "")
            + f"{report.submission_path} ({n * (len(report.class_names) - 1)} rows)",
            highlight=False, soft_wrap=True,
        )
        if report.failures:
            failed = ", ".join(str(f.path) for f in report.failures)
            err_console.print(f"[bold red]error:[/] {len(report.failures)} of {len(files)} image(s) failed: "
                              f"{failed}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=EXIT_SOME_FAILED)
