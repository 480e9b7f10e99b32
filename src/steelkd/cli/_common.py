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

#: ``--debug`` (the root option): errors are raised with their Python traceback instead of one line.
_DEBUG = False


def set_debug(on: bool) -> None:
    """Turn ``--debug`` on or off (the root callback of ``steelkd``)."""
    global _DEBUG
    _DEBUG = bool(on)


def debug_enabled() -> bool:
    """Whether ``--debug`` was given (also read from ``sys.argv``, for errors before the callback ran)."""
    return _DEBUG or "--debug" in sys.argv[1:2]


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line.

    An error re-raised from a DataLoader worker carries the worker's traceback in its message ("Caught
    ValueError in DataLoader worker process 0. Original Traceback ..."): its last line is the original
    message. Any other multi-line message is joined with ``" | "``.
    """
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = str(msg).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text and lines:
        last = lines[-1]
        head, sep, rest = last.partition(": ")
        return rest if sep and head.isidentifier() else last
    return " | ".join(lines) if lines else type(exc).__name__


def print_error(message: str) -> None:
    """Print ``error: <message>`` on stderr, on one line."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report expected errors as ``error: <message>`` and exit non-zero, without a traceback.

    With ``--debug`` the exception propagates with its traceback.
    """
    try:
        yield
    except USER_ERRORS as exc:
        if debug_enabled():
            raise
        sys.stdout.flush()
        print_error(_escape(one_line(exc)))
        raise typer.Exit(code=1) from None


def _escape(text: str) -> str:
    """``text`` with rich markup (``[...]``) escaped, so file names and values print as they are."""
    from rich.markup import escape

    return escape(text)


#: The ``--set section.field=value`` option shared by every command that reads a config.
SetOpt = typer.Option(None, "--set", help="Override any field: section.field=value (YAML value). Repeatable.")

#: The data options of the commands that score a model on a data set (evaluate, calibrate, tune): the data
#: comes either from a config's data section or from a root and a kind (see ``cli.evaluate.validation_data``).
DataConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config whose data section (val split) to use."
)
DataRootOpt = typer.Option(None, "--data-root", help="Data set root (instead of --config).")
KindOpt = typer.Option("severstal", "--kind", help="With --data-root: severstal, folder or synth.")
