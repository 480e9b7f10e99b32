"""``steelkd models``: list the registered networks with their sizes, describe one."""

from __future__ import annotations

import typer
from rich.table import Table

from steelkd.cli._common import console, user_errors
from steelkd.config import parse_size
from steelkd.paper import PAPER_PARAMS_M


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group."""
    models_app = typer.Typer(help="Registered segmentation networks.", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @models_app.command("list")
    def list_(
        pattern: str = typer.Option(None, "--pattern", "-p", help="Shell wildcard, e.g. '*tiny*'."),
        num_classes: int = typer.Option(5, "--num-classes", help="Output classes used for the counts."),
    ) -> None:
        """Print every registered model with its parameter count (built on the meta device: instant)."""
        from steelkd.models import count_parameters, list_models

        with user_errors():
            if num_classes < 1:
                raise ValueError(f"--num-classes must be >= 1, got {num_classes}")
            names = list_models(pattern)
            if not names:
                raise ValueError(f"no model matches {pattern!r}")
            table = Table(title=f"steelkd models ({num_classes} classes)")
            table.add_column("name", no_wrap=True)
            table.add_column("GC", justify="center")
            table.add_column("FF", justify="center")
            table.add_column("params (M)", justify="right")
            table.add_column("paper (M)", justify="right")
            for name in names:
                params = count_parameters(name, num_classes=num_classes) / 1e6
                paper = PAPER_PARAMS_M.get(name) if num_classes == 5 else None
                table.add_row(
                    name,
                    "yes" if "_gc" in name else "",
                    "yes" if name.endswith("_ff") else "",
                    f"{params:.2f}",
                    f"{paper:.2f}" if paper else "",
                )
        console.print(table)

    @models_app.command("info")
    def info(
        name: str = typer.Argument(..., help="Registered model name."),
        num_classes: int = typer.Option(5, "--num-classes", help="Output classes."),
        size: str = typer.Option("256x1600", "--size", help="Input HxW for the GMACs figure."),
    ) -> None:
        """Describe one model: channels, parameters, GMACs at --size."""
        import torch

        from steelkd.bench import count_gmacs
        from steelkd.models import count_params, create_model

        with user_errors():
            h, w = parse_size(size, minimum=32)
            torch.manual_seed(0)
            model = create_model(name, num_classes=num_classes)
            gmacs = count_gmacs(model, (1, 3, h, w))
        table = Table(title=name, show_header=False)
        table.add_column("field")
        table.add_column("value")
        table.add_row("encoder", str(getattr(model, "encoder_name", "")))
        table.add_row("encoder channels", str(getattr(model, "encoder_channels", "")))
        table.add_row("decoder channels", str(model.decoder_channels))
        table.add_row("GC / FF", f"{getattr(model, 'gc', False)} / {getattr(model, 'ff', False)}")
        table.add_row("params (M)", f"{count_params(model) / 1e6:.2f}")
        table.add_row(f"GMACs @ {h}x{w}", f"{gmacs:.1f}")
        console.print(table)
