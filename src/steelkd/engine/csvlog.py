"""``logs/metrics.csv`` that survives a resume: Lightning's CSV logger, keeping the rows of the part before.

Lightning's CSV writer deletes an existing ``metrics.csv`` when a run writes into the same folder again, so a
run resumed from ``last.ckpt`` would lose the rows of every epoch before it. :class:`ResumableCSVLogger`
keeps the file. At its first save the writer drops the old rows from the epoch of its first new row on:
those the resumed run logs again (after a kill in epoch k, a resume from the checkpoint of epoch k - 1 redoes
epoch k, and rows of epoch k from before the kill would appear twice). A fresh run into the same folder
starts at epoch 0 and so drops every old row, as Lightning does. New rows without an ``epoch`` (a metric
logged with its own ``step``) keep every old row. The file is rewritten atomically (temporary file, then
``os.replace``), also when Lightning rewrites it for new columns; as in Lightning the columns are sorted,
and the header keeps the old columns that have a value in a kept row.

Example:
    >>> logger = ResumableCSVLogger(save_dir="out", name="logs", version="")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from steelkd.io import atomic_path

__all__ = ["ResumableCSVLogger", "ResumableExperimentWriter"]


class ResumableExperimentWriter(ExperimentWriter):
    """Lightning's ``ExperimentWriter`` keeping an existing ``metrics.csv`` (see the module docstring)."""

    def __init__(self, log_dir: str) -> None:
        self._pruned = False
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep the existing metrics file (Lightning deletes it here); the first :meth:`save` prunes it."""

    def save(self) -> None:
        """Write the recorded rows, after dropping the old rows they replace (first call only)."""
        if self.metrics and not self._pruned:
            self._prune(_first_epoch(self.metrics))
        super().save()

    def _prune(self, start: float | None) -> None:
        """Keep the old rows of epochs before ``start`` (all when it is None) and the columns they use."""
        self._pruned = True
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        rows = [r for r in self._read_rows() if start is None or _epoch(r) < start]
        if not rows:
            path.unlink()
            return
        self.metrics_keys = sorted({k for r in rows for k, v in r.items() if k is not None and v})
        self._write_rows(rows, self.metrics_keys)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Lightning's rewrite for new columns, made atomic."""
        self._write_rows(self._read_rows(), fieldnames)

    def _read_rows(self) -> list[dict[str, Any]]:
        with open(self.metrics_file_path, newline="") as fh:
            return list(csv.DictReader(fh))

    def _write_rows(self, rows: list[dict[str, Any]], fieldnames: list[str]) -> None:
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _epoch(row: dict[str, Any]) -> float:
    """A row's ``epoch``; infinity where it has none (such a row is dropped with the redone epochs)."""
    try:
        return float(row.get("epoch"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.inf


def _first_epoch(metrics: list[dict[str, Any]]) -> float | None:
    """The smallest ``epoch`` of the new rows; None when none has one."""
    epochs = [float(m["epoch"]) for m in metrics if "epoch" in m]
    return min(epochs) if epochs else None


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` writing through :class:`ResumableExperimentWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ResumableExperimentWriter:
        """The writer, made on first use (as in Lightning)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableExperimentWriter(log_dir=self.log_dir)
        assert isinstance(self._experiment, ResumableExperimentWriter)
        return self._experiment
