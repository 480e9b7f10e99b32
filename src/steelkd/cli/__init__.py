"""The ``steelkd`` command line: the only place that parses arguments and prints for people.

Each sub-module owns one group of commands and exposes ``register(app)``. Library functions raise
exceptions; :func:`main` turns the expected ones into a one-line message on stderr and exit code 1.
"""

from __future__ import annotations

import typer

from steelkd.cli import bench, calibrate, data, evaluate, experiment, export, models, predict, train, tune

app = typer.Typer(
    name="steelkd",
    help="Steel-surface defect segmentation and channel-wise knowledge distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (data, models, train, evaluate, calibrate, bench, tune, experiment, predict, export):
    _module.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()
