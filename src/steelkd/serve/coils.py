"""``GET /v1/coils/{coil_id}``: the defects along one coil, count and area per class per metre.

A frame's defects are counted at the metre of its ``position_m`` (``floor``), with their final class
after review (rejected ones left out, relabelled ones under the new class, operator boxes included);
frames without a position are counted under ``unpositioned``.

Example:
    >>> coil_summary("C1", [])["metres"]
    []
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from steelkd.serve.store import Inspection

__all__ = ["coil_summary"]


def _empty(class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    return {name: {"count": 0, "area": 0} for name in class_names[1:]}


def coil_summary(coil_id: str, inspections: Sequence[Inspection]) -> dict[str, Any]:
    """Per metre (ascending) and in total: inspections, and count and area of defects per class."""
    names = inspections[0].class_names if inspections else []
    metres: dict[int, dict[str, Any]] = {}
    total = _empty(names)
    unpositioned = 0
    for insp in inspections:
        if insp.position_m is None:
            unpositioned += 1
            row = None
        else:
            m = math.floor(insp.position_m)
            row = metres.setdefault(m, {"metre": m, "inspections": 0, "classes": _empty(names)})
            row["inspections"] += 1
        for d in insp.defects:
            c = d.final_class_id
            if c is None or not 0 < c < len(insp.class_names):
                continue
            name = insp.class_names[c]
            for bucket in (total, row["classes"] if row is not None else None):
                if bucket is not None:
                    cell = bucket.setdefault(name, {"count": 0, "area": 0})
                    cell["count"] += 1
                    cell["area"] += d.area
    return {"coil_id": coil_id, "inspections": len(inspections), "unpositioned": unpositioned,
            "class_names": names, "metres": [metres[m] for m in sorted(metres)], "totals": total}
