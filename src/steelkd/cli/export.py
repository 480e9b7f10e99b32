"""``steelkd export``: a trained model to ONNX, with its model card as metadata."""

from __future__ import annotations

from pathlib import Path

import typer

from steelkd.cli._common import console, user_errors
from steelkd.config import parse_size


def register(app: typer.Typer) -> None:
    """Add ``export``."""

    @app.command()
    def export(
        model: Path = typer.Option(..., "--model", "-m", help="Model directory, .safetensors or .ckpt."),
        out: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
        opset: int = typer.Option(17, help="ONNX opset."),
        sample_size: str = typer.Option("256x256", "--sample-size", help="HxW of the tracing input."),
        check: bool = typer.Option(
            False, "--check", help="Compare onnxruntime with PyTorch on a random batch of another size."),
        atol: float = typer.Option(1e-3, help="With --check: exit 1 if the max difference exceeds this."),
    ) -> None:
        """Export a model to ONNX (dynamic batch, height, width) with its model card as metadata."""
        import torch

        from steelkd.export import check_onnx, to_onnx
        from steelkd.models.saved import load_model

        with user_errors():
            if not model.exists():
                raise FileNotFoundError(f"{model}: model not found")
            if out.suffix.lower() != ".onnx":
                raise ValueError(f"--out: expected a .onnx file name, got {out}")
            try:
                size = parse_size(sample_size)
            except ValueError as exc:
                raise ValueError(f"--sample-size: {exc}") from None
            net, card = load_model(model)
            path = to_onnx(net, out, opset=opset, sample_size=size, card=card)
            classes = ", ".join(card.get("class_names", []))
            console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {opset}, "
                          f"{card.get('architecture', '?')}, classes: {classes})",
                          highlight=False, soft_wrap=True)
            if check:
                h, w = size[0] + 64, size[1] + 96  # a size other than the traced one: proves dynamic axes
                gen = torch.Generator().manual_seed(0)
                diff = check_onnx(net, path, torch.randn(2, 3, h, w, generator=gen))
                console.print(f"check: max |onnxruntime - torch| = {diff:.3g} on a 2x3x{h}x{w} batch",
                              highlight=False)
                if not diff <= atol:
                    raise ValueError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} "
                                     f"(> --atol {atol})")
