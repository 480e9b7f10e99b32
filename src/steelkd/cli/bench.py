"""``steelkd bench``: params, GMACs and speed of several models side by side in one run, in PyTorch or in
each inference backend, with the CPU's peak and each model's achieved fraction of it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from steelkd.bench import peak_kind
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
        precision: str = typer.Option("32", help="32, bf16-mixed or 16-mixed (PyTorch, without --backends)."),
        backends: str = typer.Option(
            None,
            "--backends",
            help="Measure these inference backends instead (CPU, batch 1), e.g. "
            "torch,torch-bf16,onnxruntime,openvino,openvino-bf16,openvino-int8.",
        ),
        calib_data: list[str] = typer.Option(None, "--calib-data", help="openvino-int8: calibration images."),
        num_classes: int = typer.Option(5, "--num-classes", help="Output classes of models built by name."),
        json_out: Path = typer.Option(None, "--json", help="Write the rows as JSON."),
        csv_out: Path = typer.Option(None, "--csv", help="Write the rows as CSV."),
    ) -> None:
        """Params, GMACs and FPS of several models, measured side by side in one run on this device."""
        from steelkd.bench import benchmark_models, cpu_peak
        from steelkd.io import atomic_write_text
        from steelkd.tables import write_records_csv

        with user_errors():
            names = [m.strip() for m in models.split(",") if m.strip()]
            if not names:
                raise ValueError("--models: give at least one model name or path")
            if repeats < 1:
                raise ValueError(f"--repeats must be >= 1, got {repeats}")
            nets = {name: _network(name, num_classes) for name in names}
            rows = benchmark_models(
                nets,
                size,
                repeats=repeats,
                warmup=warmup,
                device=device,
                precision=precision if not backends else "32",
                batch_size=batch_size,
            )
            peak = cpu_peak() if rows[0]["device"] == "cpu" else None
            if backends:
                rows = _backend_rows(names, nets, rows, backends, calib_data, repeats, warmup)
            _add_peak_fraction(rows, peak, precision)
            if json_out is not None:
                atomic_write_text(json_out, json.dumps(rows, indent=2) + "\n")
            if csv_out is not None:
                write_records_csv(rows, csv_out)
        _print(rows, peak, batch_size, precision, repeats)
        for p in (json_out, csv_out):
            if p is not None:
                console.print(f"written: {p}")


def _network(name: str, num_classes: int) -> Any:
    from steelkd.models import create_model, list_models, load_model

    if Path(name).exists():
        return load_model(name)[0]
    if name in set(list_models()):
        return create_model(name, num_classes=num_classes)
    raise ValueError(
        f"--models: {name!r} is neither a file nor a registered model (see `steelkd models list`)"
    )


def _backend_rows(
    names: list[str],
    nets: dict[str, Any],
    torch_rows: list[dict[str, Any]],
    backends: str,
    calib_data: list[str] | None,
    repeats: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """One row per model and backend (params and GMACs from the PyTorch rows)."""
    from steelkd.data.image import normalize, read_image
    from steelkd.models import make_card, save_model
    from steelkd.predict import resolve_inputs
    from steelkd.tune import benchmark_backends

    wanted = [b.strip() for b in backends.split(",") if b.strip()]
    calibration = [normalize(read_image(f)) for f in resolve_inputs(calib_data)[:100]] if calib_data else None
    out = []
    with tempfile.TemporaryDirectory(prefix="steelkd_bench_") as tmp:
        for name, base in zip(names, torch_rows, strict=True):
            folder = Path(name)
            if not (folder / "model.json").is_file():  # a name or a file: a temporary model folder
                net = nets[name].eval()
                classes = ["background", *[f"class{i}" for i in range(1, net.num_classes)]]
                folder = save_model(net, Path(tmp) / f"m{len(out)}", make_card(net, classes))
            h, w = base["height"], base["width"]
            for r in benchmark_backends(
                folder, wanted, (h, w), repeats=repeats, warmup=warmup, calibration=calibration
            ):
                out.append({**base, **r, "precision": r["backend"]})
    return out


def _add_peak_fraction(rows: list[dict[str, Any]], peak: dict[str, Any] | None, precision: str) -> None:
    for r in rows:
        r["gflops"] = 2 * r["gmacs"] * r["batch"] / (r["latency_ms"] / 1e3)
        kind = peak_kind(str(r.get("backend", precision)))
        r["of_peak"] = r["gflops"] / peak["theoretical_gflops"][kind] if peak else None


def _print(
    rows: list[dict[str, Any]], peak: dict[str, Any] | None, batch: int, precision: str, repeats: int
) -> None:
    first = rows[0]
    table = Table(
        title=f"{first['device_name']} — batch {batch}, {first['height']}x{first['width']}, "
        f"{'backends' if 'backend' in first else 'precision ' + precision}, median of {repeats}"
    )
    cols = [
        "model",
        *(["backend"] if "backend" in first else []),
        "params (M)",
        "GMACs",
        "latency (ms)",
        "FPS",
        "GFLOP/s",
        "of peak",
    ]
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for r in rows:
        cells = [r["model"], *([r["runs_as"]] if "backend" in first else [])]
        cells += [
            f"{r['params'] / 1e6:.2f}",
            f"{r['gmacs']:.2f}",
            f"{r['latency_ms']:.2f}",
            f"{r['fps']:.1f}",
            f"{r['gflops']:.0f}",
            f"{100 * r['of_peak']:.0f}%" if r["of_peak"] else "–",
        ]
        table.add_row(*cells)
    console.print(table)
    if peak:
        t, mm = peak["theoretical_gflops"], peak["matmul_gflops"]
        console.print(
            f"peak of this CPU from its flags: {t['fp32']:.0f} GFLOP/s fp32, {t['bf16']:.0f} bf16, "
            f"{t['int8']:.0f} int8 ({peak['cores']} cores x 2 FMA x {peak['fp32_lanes']} lanes x 2 x "
            f"{peak['ghz']:.2f} GHz); calibration matmul {mm['fp32']:.0f} fp32, {mm['bf16']:.0f} bf16",
            highlight=False,
        )
