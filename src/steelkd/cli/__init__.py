"""The ``steelkd`` command line: the only place that parses arguments and prints for people.

Each sub-module owns one group of commands and exposes ``register(app)``. Library functions raise
exceptions; the commands turn the expected ones into a one-line message on stderr and exit code 1
(:func:`steelkd.cli._common.user_errors`), and :func:`main` does the same for any other exception (a bug),
naming its type. ``steelkd --debug COMMAND ...`` shows the Python traceback instead.
"""

from __future__ import annotations

import sys

import typer

from steelkd.cli import (
    bench,
    calibrate,
    data,
    evaluate,
    experiment,
    export,
    models,
    predict,
    serve,
    train,
    tune,
)
from steelkd.cli._common import debug_enabled, one_line, print_error, set_debug

app = typer.Typer(
    name="steelkd",
    help="Steel-surface defect segmentation and channel-wise knowledge distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an error (bug reports)."),
) -> None:
    """Steel-surface defect segmentation and channel-wise knowledge distillation."""
    set_debug(debug)


for _module in (data, models, train, evaluate, calibrate, bench, tune, experiment, predict, export, serve):
    _module.register(app)


def main() -> None:
    """Entry point of the console script: an unexpected exception is one line and exit code 1 too."""
    try:
        app()
    except KeyboardInterrupt:
        print_error("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line naming it; the traceback with --debug
        if debug_enabled():
            raise
        name = type(exc).__name__
        print_error(f"internal error: {name}: {one_line(exc)} (rerun with --debug for the traceback)")
        sys.exit(1)
