"""The inspection service: ``steelkd serve`` (HTTP API, an operator page, stored results, review loop).

store -> inspector -> review, coils, metrics, limits -> app. See ``docs/service.md``.

Example:
    >>> from steelkd.serve import create_app
    >>> app = create_app("runs/x/model", "inspections.db")  # doctest: +SKIP
"""

from __future__ import annotations

from steelkd.serve.inspector import DEFAULT_TILE, Inspector, Limits, RequestError, model_version
from steelkd.serve.review import export_reviewed, label_map
from steelkd.serve.store import Defect, Inspection, Store

__all__ = [
    "DEFAULT_TILE",
    "Defect",
    "Inspection",
    "Inspector",
    "Limits",
    "RequestError",
    "Store",
    "create_app",
    "export_reviewed",
    "label_map",
    "model_version",
]


def __getattr__(name: str) -> object:
    """``create_app`` imports FastAPI (the ``serve`` extra) only when asked for."""
    if name == "create_app":
        from steelkd.runtime import require_extra

        require_extra("fastapi", "serve")
        require_extra("python_multipart", "serve")
        from steelkd.serve.app import create_app

        return create_app
    raise AttributeError(name)
