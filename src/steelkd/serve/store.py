"""The inspection store: SQLite rows (``schema.sql``) and one PNG per inspection under the data folder.

Layout: ``<db>`` (SQLite, WAL journal) and ``<data_dir>/images/<id>.png``. Ids are server-made UUIDs; a
path is only ever built from a valid UUID (:func:`image_file`), so no request names a file.

Crash safety: :meth:`Store.add` writes the image atomically (temp file, rename) **before** it commits the
inspection and all its defects in one transaction. A process killed at any point leaves either the
committed inspection with its image and every defect, or nothing in the database and at most an orphan
image file that no row references (:meth:`Store.orphan_images` lists them). Reviews are single-row
transactions.

Example:
    >>> store = Store("inspections.db", "inspections-data")  # doctest: +SKIP
    >>> store.get(inspection_id).defects[0].status  # doctest: +SKIP
    'pending'
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from steelkd.io import atomic_write_bytes

__all__ = [
    "REVIEW_ACTIONS",
    "Defect",
    "Inspection",
    "Store",
    "default_data_dir",
    "image_file",
    "new_id",
    "utc_now",
    "valid_id",
]

#: Review actions of ``POST .../defects/{n}/review`` and the status each one sets.
REVIEW_ACTIONS: dict[str, str] = {"confirm": "confirmed", "reject": "rejected", "relabel": "relabelled"}

_INSPECTION_COLUMNS = (
    "id", "created_at", "coil_id", "position_m", "filename", "image_file", "height", "width",
    "class_names", "model_name", "model_version", "backend", "latency_ms", "n_defects",
)  # fmt: skip
_DEFECT_COLUMNS = (
    "inspection_id", "n", "source", "class_id", "area", "x", "y", "w", "h", "score", "max_score", "rle",
    "status", "reviewed_class_id", "reviewed_at",
)  # fmt: skip


def new_id() -> str:
    """A fresh inspection id (UUID4, canonical text)."""
    return str(uuid.uuid4())


def valid_id(text: str) -> bool:
    """Whether ``text`` is a canonical UUID (the only form an id, and so a file name, can take)."""
    try:
        return str(uuid.UUID(text)) == text
    except (ValueError, AttributeError, TypeError):
        return False


def default_data_dir(db: str | Path) -> Path:
    """The data folder beside a database: ``inspections.db`` -> ``inspections-data``."""
    db = Path(db)
    return db.with_name(f"{db.stem}-data")


def image_file(inspection_id: str) -> str:
    """The image's path relative to the data folder, ``images/<id>.png``; ValueError for a non-UUID."""
    if not valid_id(inspection_id):
        raise ValueError(f"inspection id: expected a UUID, got {inspection_id!r:.80}")
    return f"images/{inspection_id}.png"


def utc_now() -> str:
    """Now in UTC, ISO 8601 with microseconds (the store's timestamps; they order the recent list)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Defect:
    """One defect row: the model's region (or an operator's box) and its review.

    ``class_id`` is what the model (or the operator's box) said; :attr:`final_class_id` is the class after
    review (``None`` when rejected, the model's while pending).
    """

    n: int
    source: str
    class_id: int
    area: int
    x: int
    y: int
    w: int
    h: int
    score: float | None
    max_score: float | None
    rle: str
    status: str = "pending"
    reviewed_class_id: int | None = None
    reviewed_at: str | None = None

    @property
    def final_class_id(self) -> int | None:
        if self.status == "rejected":
            return None
        return self.reviewed_class_id if self.status == "relabelled" else self.class_id

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        """The API's view: names next to ids, the box as ``[x, y, w, h]``."""
        name = lambda c: None if c is None else class_names[c] if c < len(class_names) else f"class{c}"  # noqa: E731
        final = self.final_class_id
        return {
            "n": self.n, "source": self.source, "class_id": self.class_id, "class": name(self.class_id),
            "area": self.area, "box": [self.x, self.y, self.w, self.h], "score": self.score,
            "max_score": self.max_score, "rle": self.rle, "status": self.status,
            "reviewed_class_id": self.reviewed_class_id, "reviewed_class": name(self.reviewed_class_id),
            "final_class": name(final), "reviewed_at": self.reviewed_at,
        }  # fmt: skip


@dataclass
class Inspection:
    """One inspection row and its defects (``image_file`` relative to the store's data folder)."""

    id: str
    created_at: str
    coil_id: str | None
    position_m: float | None
    filename: str | None
    image_file: str
    height: int
    width: int
    class_names: list[str]
    model_name: str
    model_version: str
    backend: str
    latency_ms: float
    n_defects: int
    defects: list[Defect] = field(default_factory=list)

    @property
    def reviewed(self) -> bool:
        """Reviewed: at least one review action or operator box, and no model defect left pending."""
        touched = any(d.status != "pending" for d in self.defects)
        return touched and all(d.status != "pending" for d in self.defects)


class Store:
    """SQLite rows and image files of the inspection service; safe to share between threads.

    Args:
        db: the SQLite file (created with :data:`schema.sql` when new).
        data_dir: the folder of the image files (``images/<id>.png``); created when missing.

    Example:
        >>> store = Store(tmp / "inspections.db", tmp / "data")  # doctest: +SKIP
        >>> store.add(inspection, png_bytes); store.count()  # doctest: +SKIP
        1
    """

    def __init__(self, db: str | Path, data_dir: str | Path) -> None:
        self.db = Path(db)
        self.data_dir = Path(data_dir)
        self.db.parent.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "images").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.db, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(resources.files("steelkd.serve").joinpath("schema.sql").read_text())
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.db}: cannot open the inspection database ({exc})") from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # ----------------------------------------------------------------------------------- writing
    def add(self, inspection: Inspection, png: bytes) -> None:
        """Store an inspection: its image file first (atomically), then all rows in one transaction.

        Raises:
            ValueError: the id is not a UUID or is already stored.
        """
        rel = image_file(inspection.id)
        if inspection.image_file != rel:
            raise ValueError(f"image_file: expected {rel}, got {inspection.image_file!r}")
        atomic_write_bytes(self.data_dir / rel, png)
        row = asdict(inspection)
        row["class_names"] = json.dumps(inspection.class_names)
        defects = [(inspection.id, *(asdict(d)[c] for c in _DEFECT_COLUMNS[1:])) for d in inspection.defects]
        with self._transaction() as cur:
            try:
                values = [row[c] for c in _INSPECTION_COLUMNS]
                cur.execute(_insert("inspections", _INSPECTION_COLUMNS), values)
            except sqlite3.IntegrityError:
                raise ValueError(f"inspection {inspection.id} is already stored") from None
            cur.executemany(_insert("defects", _DEFECT_COLUMNS), defects)

    def review(self, inspection_id: str, n: int, action: str, class_id: int | None = None) -> Defect:
        """Confirm, reject or relabel defect ``n`` of an inspection (a review can be changed later).

        Raises:
            KeyError: no such inspection or defect.
            ValueError: an unknown action, relabel without a valid new class, or a class on another action.
        """
        if action not in REVIEW_ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(REVIEW_ACTIONS)}, got {action!r}")
        insp = self._require(inspection_id)
        defect = next((d for d in insp.defects if d.n == n), None)
        if defect is None:
            raise KeyError(f"inspection {inspection_id} has no defect {n}")
        if action == "relabel":
            _check_class(class_id, insp.class_names)
            if class_id == defect.class_id:
                raise ValueError(f"class: relabel needs a class other than the defect's own ({class_id})")
        elif class_id is not None:
            raise ValueError(f"class: only relabel takes a class, not {action}")
        if defect.source == "operator" and action != "reject":
            raise ValueError("an operator's box can only be rejected (withdrawn)")
        status = REVIEW_ACTIONS[action]
        with self._transaction() as cur:
            cur.execute("UPDATE defects SET status = ?, reviewed_class_id = ?, reviewed_at = ? "
                        "WHERE inspection_id = ? AND n = ?", (status, class_id, utc_now(), inspection_id, n))
        return self._defect(inspection_id, n)

    def add_box(self, inspection_id: str, class_id: int, box: Sequence[int], rle: str, area: int) -> Defect:
        """Add an operator's box (a region the model missed) as defect ``max(n) + 1`` with status ``added``.

        Raises:
            KeyError: no such inspection.
            ValueError: an unknown class or a box outside the image.
        """
        insp = self._require(inspection_id)
        _check_class(class_id, insp.class_names)
        x, y, w, h = (int(v) for v in box)
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > insp.width or y + h > insp.height:
            raise ValueError(f"box: [{x}, {y}, {w}, {h}] is not inside the {insp.width}x{insp.height} image")
        with self._transaction() as cur:
            n = cur.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM defects WHERE inspection_id = ?",
                            (inspection_id,)).fetchone()[0]
            cur.execute(_insert("defects", _DEFECT_COLUMNS),
                        (inspection_id, n, "operator", class_id, area, x, y, w, h, None, None, rle, "added",
                         None, utc_now()))
        return self._defect(inspection_id, n)

    # ----------------------------------------------------------------------------------- reading
    def get(self, inspection_id: str) -> Inspection | None:
        """The inspection with its defects (in ``n`` order), or ``None`` (also for a non-UUID)."""
        if not valid_id(inspection_id):
            return None
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_INSPECTION_COLUMNS)} FROM inspections WHERE id = ?",
                                     (inspection_id,)).fetchone()
            if row is None:
                return None
            rows = self._conn.execute(f"SELECT {', '.join(_DEFECT_COLUMNS[1:])} FROM defects "
                                      "WHERE inspection_id = ? ORDER BY n", (inspection_id,)).fetchall()
        return _inspection(row, rows)

    def recent(self, limit: int = 20, coil_id: str | None = None) -> list[Inspection]:
        """The newest inspections first (optionally of one coil), with their defects."""
        where, args = ("WHERE coil_id = ?", [coil_id]) if coil_id is not None else ("", [])
        with self._lock:
            ids = [r[0] for r in self._conn.execute(
                f"SELECT id FROM inspections {where} ORDER BY created_at DESC, id LIMIT ?", [*args, limit])]
        return [i for i in (self.get(x) for x in ids) if i is not None]

    def coil_inspections(self, coil_id: str) -> list[Inspection]:
        """Every inspection of a coil, by position along it."""
        with self._lock:
            ids = [r[0] for r in self._conn.execute(
                "SELECT id FROM inspections WHERE coil_id = ? ORDER BY position_m, created_at", (coil_id,))]
        return [i for i in (self.get(x) for x in ids) if i is not None]

    def coils(self) -> list[dict[str, Any]]:
        """Every coil id with its inspection count and last inspection time, the newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT coil_id, COUNT(*), MAX(created_at) FROM inspections WHERE coil_id IS NOT NULL "
                "GROUP BY coil_id ORDER BY MAX(created_at) DESC").fetchall()
        return [{"coil_id": c, "inspections": n, "last": t} for c, n, t in rows]

    def iter_all(self) -> Iterator[Inspection]:
        """Every inspection, oldest first (one at a time)."""
        with self._lock:
            ids = [r[0] for r in self._conn.execute("SELECT id FROM inspections ORDER BY created_at, id")]
        for x in ids:
            insp = self.get(x)
            if insp is not None:
                yield insp

    def count(self) -> int:
        """Number of stored inspections."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])

    def image_path(self, inspection: Inspection) -> Path:
        """The stored image file of an inspection."""
        return self.data_dir / image_file(inspection.id)

    def orphan_images(self) -> list[Path]:
        """Image files no row references (left by a process killed between file and commit)."""
        with self._lock:
            known = {r[0] for r in self._conn.execute("SELECT image_file FROM inspections")}
        return sorted(p for p in (self.data_dir / "images").glob("*.png")
                      if f"images/{p.name}" not in known)

    # ----------------------------------------------------------------------------------- helpers
    def _require(self, inspection_id: str) -> Inspection:
        insp = self.get(inspection_id)
        if insp is None:
            raise KeyError(f"no inspection {inspection_id!r:.80}")
        return insp

    def _defect(self, inspection_id: str, n: int) -> Defect:
        return next(d for d in self._require(inspection_id).defects if d.n == n)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)


class _Transaction:
    """``with`` block: the store's lock, ``BEGIN IMMEDIATE``, then ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Cursor:
        self.lock.acquire()
        try:
            self.cur = self.conn.cursor()
            self.cur.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.cur

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.cur.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def _check_class(class_id: int | None, class_names: Sequence[str]) -> None:
    if class_id is None or not 1 <= class_id < len(class_names):
        raise ValueError(f"class: expected a defect class 1..{len(class_names) - 1} "
                         f"({', '.join(class_names[1:])}), got {class_id!r}")


def _inspection(row: Sequence[Any], defect_rows: Sequence[Sequence[Any]]) -> Inspection:
    values = dict(zip(_INSPECTION_COLUMNS, row, strict=True))
    values["class_names"] = json.loads(values["class_names"])
    defects = [Defect(**dict(zip(_DEFECT_COLUMNS[1:], r, strict=True))) for r in defect_rows]
    return Inspection(**values, defects=defects)
