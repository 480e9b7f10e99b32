"""Tables for reports: markdown/CSV tables in the paper's layout, mean ± std cells and CSV records.

Everything here works on plain numbers, so it can be tested on fake inputs and used by any layer above
(``steelkd.experiment`` builds its report tables from these pieces). Files are written atomically.

Example:
    >>> from steelkd.tables import MeanStd, Table
    >>> t = Table("mDice", ["network", "before", "after"],
    ...           [["student", MeanStd.of([0.75, 0.77]), MeanStd.of([0.78])]])
    >>> print(t.to_markdown(digits=3).splitlines()[2])
    | student | 0.760 ± 0.014 | 0.780 |
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelkd.io import atomic_write_text


# --------------------------------------------------------------------------------------------- numbers
@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation of repeated runs (one value per seed).

    Args:
        mean: the mean (NaN when there are no values).
        std: the sample standard deviation (ddof=1; 0 for a single value).
        n: number of values.

    Example:
        >>> MeanStd.of([0.70, 0.72]).format(3)
        '0.710 ± 0.014'
        >>> MeanStd.of([0.70]).format(3)
        '0.700'
    """

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> MeanStd:
        vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not vals:
            return cls(float("nan"), float("nan"), 0)
        arr = np.asarray(vals, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        return cls(float(arr.mean()), std, len(arr))

    def format(self, digits: int = 4) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def format_cell(value: Any, digits: int = 4) -> str:
    """Format one table cell: floats with ``digits`` decimals, :class:`MeanStd` as ``m ± s``, None as ''."""
    if value is None:
        return ""
    if isinstance(value, MeanStd):
        return value.format(digits)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


@dataclass
class Table:
    """A titled table rendered to markdown (for reports) and CSV (for spreadsheets and scripts).

    Cells may be str, int, float, None or :class:`MeanStd`. In CSV a column holding MeanStd cells is
    expanded to ``<col>`` (mean), ``<col>_std`` and ``<col>_n``, so the numbers stay machine-readable.

    Args:
        title: caption printed above the markdown table.
        columns: column headers.
        rows: the rows, each as long as ``columns``.
        digits: decimals of floats in the markdown rendering (CSV keeps full precision).
        col_digits: per-column exceptions to ``digits``, e.g. ``{"params (M)": 2}``.

    Example:
        >>> t = Table("params", ["model", "params (M)"], [["atto", 3.5]], digits=2)
        >>> t.to_markdown().splitlines()[-1]
        '| atto | 3.50 |'
    """

    title: str
    columns: list[str]
    rows: list[list[Any]]
    digits: int = 4
    col_digits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {i} has {len(row)} cells, expected {len(self.columns)}"
                )

    def to_markdown(self, digits: int | None = None) -> str:
        d = self.digits if digits is None else digits
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        dj = [self.col_digits.get(c, d) for c in self.columns]
        for row in self.rows:
            lines.append(
                "| " + " | ".join(format_cell(c, dj[j]).replace("|", "\\|") for j, c in enumerate(row)) + " |"
            )
        return "\n".join(lines)

    def _csv_header_and_rows(self) -> tuple[list[str], list[list[Any]]]:
        ms_cols = {j for j in range(len(self.columns)) if any(isinstance(r[j], MeanStd) for r in self.rows)}
        header: list[str] = []
        for j, name in enumerate(self.columns):
            header += [name, f"{name}_std", f"{name}_n"] if j in ms_cols else [name]
        out: list[list[Any]] = []
        for row in self.rows:
            cells: list[Any] = []
            for j, value in enumerate(row):
                if j in ms_cols:
                    if isinstance(value, MeanStd):
                        cells += [_csv_num(value.mean), _csv_num(value.std), value.n]
                    elif isinstance(value, (int, float)) and not isinstance(value, bool):
                        cells += [_csv_num(float(value)), "", 1]
                    else:
                        cells += ["" if value is None else value, "", ""]
                else:
                    cells.append(
                        "" if value is None else (_csv_num(value) if isinstance(value, float) else value)
                    )
            out.append(cells)
        return header, out

    def to_csv_text(self) -> str:
        header, rows = self._csv_header_and_rows()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue()

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (atomically) and return the path."""
        atomic_write_text(path, self.to_csv_text())
        return Path(path)

    def to_dataframe(self) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(self.to_csv_text()))


def _csv_num(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def format_seconds(s: float | None) -> str:
    """A wall time for people: seconds below 90 s, minutes below 90 min, hours above; None/NaN: ``n/a``.

    Example:
        >>> format_seconds(12.34), format_seconds(600), format_seconds(7200), format_seconds(None)
        ('12.3 s', '10.0 min', '2.00 h', 'n/a')
    """
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    s = float(s)
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def write_records_csv(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write a list of flat dicts as CSV (atomically), columns in first-seen order."""
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: r.get(k, "") for k in cols})
    atomic_write_text(path, buf.getvalue())
    return Path(path)
