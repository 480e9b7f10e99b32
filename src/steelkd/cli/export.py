"""``steelkd export``: a trained model to ONNX or OpenVINO IR (fp32 or int8), with its model card inside."""

from __future__ import annotations

from pathlib import Path

import typer

from steelkd.cli._common import console, user_errors

FORMATS = ("onnx", "openvino", "openvino-int8")


def register(app: typer.Typer) -> None:
    """Add ``export``."""

    @app.command()
    def export(
        model: Path = typer.Option(..., "--model", "-m", help="Model directory, .safetensors or .ckpt."),
        out: Path = typer.Option(..., "--out", "-o", help="Output .onnx (onnx) or .xml (openvino) file."),
        fmt: str = typer.Option("onnx", "--format", help="onnx, openvino (fp32 IR) or openvino-int8."),
        calib_data: list[str] = typer.Option(
            None, "--calib-data", help="openvino-int8: training images (file, folder or glob)."
        ),
        calib: int = typer.Option(
            100, "--calib", help="openvino-int8: at most this many calibration images."
        ),
        opset: int = typer.Option(17, help="ONNX opset."),
        sample_size: str = typer.Option("256x256", "--sample-size", help="HxW of the tracing input."),
        check: bool = typer.Option(
            False, "--check", help="onnx: compare onnxruntime with PyTorch on a random batch of another size."
        ),
        atol: float = typer.Option(1e-3, help="With --check: exit 1 if the max difference exceeds this."),
    ) -> None:
        """Export a model (dynamic batch, height, width) with its model card as metadata."""
        from steelkd.config import parse_size
        from steelkd.models.saved import load_model

        with user_errors():
            if not model.exists():
                raise FileNotFoundError(f"{model}: model not found")
            if fmt not in FORMATS:
                raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
            want = ".onnx" if fmt == "onnx" else ".xml"
            if out.suffix.lower() != want:
                raise ValueError(f"--out: a {fmt} export is a {want} file, got {out}")
            try:
                size = parse_size(sample_size)
            except ValueError as exc:
                raise ValueError(f"--sample-size: {exc}") from None
            net, card = load_model(model)
            if fmt == "onnx":
                path = _onnx(net, card, out, opset, size, check, atol)
            else:
                path = _openvino(
                    net, card, out, size, (calib_data or []) if fmt == "openvino-int8" else None, calib
                )
            classes = ", ".join(card.get("class_names", []))
            console.print(
                f"wrote {path} ({fmt}, {card.get('architecture', '?')}, classes: {classes})",
                highlight=False,
                soft_wrap=True,
            )


def _onnx(
    net: object, card: dict, out: Path, opset: int, size: tuple[int, int], check: bool, atol: float
) -> Path:
    import torch

    from steelkd.export import check_onnx, to_onnx

    path = to_onnx(net, out, opset=opset, sample_size=size, card=card)  # type: ignore[arg-type]
    console.print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, opset {opset}", highlight=False)
    if check:
        h, w = size[0] + 64, size[1] + 96  # a size other than the traced one: proves dynamic axes
        gen = torch.Generator().manual_seed(0)
        diff = check_onnx(net, path, torch.randn(2, 3, h, w, generator=gen))  # type: ignore[arg-type]
        console.print(
            f"check: max |onnxruntime - torch| = {diff:.3g} on a 2x3x{h}x{w} batch", highlight=False
        )
        if not diff <= atol:
            raise ValueError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (> --atol {atol})")
    return path


def _openvino(
    net: object, card: dict, out: Path, size: tuple[int, int], calib_data: list[str] | None, calib: int
) -> Path:
    from steelkd.data.image import normalize, read_image
    from steelkd.export import to_openvino
    from steelkd.predict import resolve_inputs

    calibration = None
    if calib_data is not None:
        if not calib_data:
            raise ValueError("--format openvino-int8 needs --calib-data: training images to calibrate on")
        files = resolve_inputs(calib_data)[: max(1, calib)]
        calibration = [normalize(read_image(f)) for f in files]
    return to_openvino(net, out, card, calibration=calibration, sample_size=size)  # type: ignore[arg-type]
