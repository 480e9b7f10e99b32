"""Small file helpers shared by every layer: atomic writes so nothing is ever half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (single-threaded): setting the umask to read it is process-wide, so doing it per
# write could leak a wrong umask into another thread's files (the service writes from worker threads).
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask, e.g.
    0644), or keeps those of the file it replaces, not the private 0600 of a temporary file.

    Example:
        >>> with atomic_path("out/mask.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp, format="PNG")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():  # the block may have replaced the file at tmp: set the mode last
            mode = target.stat().st_mode & 0o7777 if target.is_file() else 0o666 & ~_UMASK
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` when its process was killed mid-write
    (``.<name>.<random>.tmp``); return how many. Call it only where no other process writes at the time.
    """
    d = Path(folder)
    if not d.is_dir():
        return 0
    stale = [p for p in d.iterdir() if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def safe_name(name: str, what: str = "name") -> str:
    """``name`` when it is a plain file name, so that ``folder / name`` stays inside ``folder``.

    The one check of a name that comes from data or a config (an experiment name, an image id, an imported
    item) and becomes part of an output path: non-empty, printable, no ``/`` or ``\\``, not ``.`` or
    ``..``, not starting with ``.``(no hidden or parent entries).

    Raises:
        ValueError: naming ``what`` and the value.

    Example:
        >>> safe_name("exp1")
        'exp1'
    """
    if (
        not isinstance(name, str)
        or not name
        or not name.isprintable()
        or "/" in name
        or "\\" in name
        or name.startswith(".")
    ):
        raise ValueError(f"{what} {name!r}: not a plain file name (no '/', '\\', leading '.' or '..')")
    return name


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
