"""Helpers shared by the CLI modules: turning library errors into one-line messages."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

#: Exceptions the library raises for bad input; they become one line on stderr and exit code 1.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, OSError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report expected errors as ``error: <message>`` and exit non-zero, without a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        sys.stdout.flush()
        raise typer.Exit(code=1) from None


#: The ``--set section.field=value`` option shared by every command that reads a config.
SetOpt = typer.Option(None, "--set", help="Override any field: section.field=value (YAML value). Repeatable.")

#: The data options of the commands that score a model on a data set (evaluate, calibrate, tune): the data
#: comes either from a config's data section or from a root and a kind (see ``cli.evaluate.validation_data``).
DataConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config whose data section (val split) to use."
)
DataRootOpt = typer.Option(None, "--data-root", help="Data set root (instead of --config).")
KindOpt = typer.Option("severstal", "--kind", help="With --data-root: severstal, folder or synth.")
