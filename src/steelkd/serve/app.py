"""The inspection service's HTTP API and page (FastAPI): :func:`create_app`.

Routes (the OpenAPI schema at ``/openapi.json``; no ``/docs`` page, which would load scripts from a CDN):

- ``POST /v1/inspect`` (multipart: ``image`` file, optional ``coil_id``, ``position_m``) -> the inspection
- ``GET /v1/inspections`` (``limit``, ``coil_id``), ``GET /v1/inspections/{id}``,
  ``GET /v1/inspections/{id}/overlay.png`` (``reviewed=true``: the reviewed label map),
  ``GET /v1/inspections/{id}/image.png``
- ``POST /v1/inspections/{id}/defects/{n}/review`` (``{"action": "confirm"|"reject"|"relabel",
  "class": ...}``), ``POST /v1/inspections/{id}/boxes`` (``{"class": ..., "box": [x, y, w, h]}``)
- ``GET /v1/coils``, ``GET /v1/coils/{coil_id}`` (count and area per class per metre)
- ``GET /health``, ``GET /v1/model``, ``GET /metrics`` (Prometheus text), ``GET /`` (the page)

Every error is JSON ``{"error": "<one line>"}`` (with ``limit`` and ``value`` for a limit): 400 bad input,
404 unknown id, 413 body over ``max_bytes``. Handlers that touch the model or the database run in worker
threads, so the event loop (and every other client) never waits for them.

Example:
    >>> app = create_app("runs/x/model", "inspections.db")  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from steelkd.postprocess import palette
from steelkd.predict import Backend
from steelkd.serve.coils import coil_summary
from steelkd.serve.inspector import DEFAULT_TILE, Inspector, Limits, RequestError
from steelkd.serve.limits import BodyLimit
from steelkd.serve.metrics import CONTENT_TYPE, Metrics
from steelkd.serve.review import box_rle, overlay_png
from steelkd.serve.store import Inspection, Store, default_data_dir

__all__ = ["create_app", "inspection_json"]

_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


class ReviewBody(BaseModel):
    """A review of one defect: ``relabel`` needs ``class`` (a name or an id)."""

    action: Literal["confirm", "reject", "relabel"]
    class_: str | int | None = Field(None, alias="class")


class BoxBody(BaseModel):
    """A region the model missed, drawn by an operator: class and ``[x, y, w, h]`` in image pixels."""

    class_: str | int = Field(alias="class")
    box: list[int] = Field(min_length=4, max_length=4)


def inspection_json(insp: Inspection) -> dict[str, Any]:
    """The API's view of an inspection: defects, per class totals (final classes), model, latency, links."""
    totals = {name: {"count": 0, "area": 0} for name in insp.class_names[1:]}
    for d in insp.defects:
        c = d.final_class_id
        if c is not None and 0 < c < len(insp.class_names):
            totals[insp.class_names[c]]["count"] += 1
            totals[insp.class_names[c]]["area"] += d.area
    base = f"/v1/inspections/{insp.id}"
    return {
        "id": insp.id, "created_at": insp.created_at, "coil_id": insp.coil_id, "position_m": insp.position_m,
        "filename": insp.filename, "image": {"height": insp.height, "width": insp.width},
        "model": {"name": insp.model_name, "version": insp.model_version, "backend": insp.backend},
        "latency_ms": insp.latency_ms, "class_names": insp.class_names,
        "defects": [d.to_json(insp.class_names) for d in insp.defects], "totals": totals,
        "reviewed": insp.reviewed,
        "links": {"self": base, "overlay": f"{base}/overlay.png", "image": f"{base}/image.png"},
    }  # fmt: skip


def _class_id(value: str | int | None, class_names: list[str]) -> int | None:
    """A class given by name or id -> its id (validated by the store)."""
    if value is None or isinstance(value, int):
        return value
    if value in class_names[1:]:
        return class_names.index(value)
    if value.isdigit():
        return int(value)
    raise RequestError(f"class: expected one of {', '.join(class_names[1:])} (or an id), got {value!r:.60}")


def create_app(
    model: str | Path | Backend | Inspector,
    db: str | Path = "inspections.db",
    data_dir: str | Path | None = None,
    *,
    backend: str = "auto",
    tile: tuple[int, int] | None = DEFAULT_TILE,
    limits: Limits | None = None,
) -> FastAPI:
    """The FastAPI app: the model opened once, the store, the limits.

    Args:
        model: a model path (opened with :func:`steelkd.predict.load_backend`), a ready backend, or an
            :class:`Inspector` (then ``db``, ``data_dir``, ``backend``, ``tile``, ``limits`` are its own).
        db: the SQLite file.
        data_dir: the folder of the images; default ``<db stem>-data`` beside the db.
        backend: ``auto`` (the tuned backend recorded beside the model) or a name of
            :data:`steelkd.predict.BACKENDS`.
        tile: frames larger than this ``(height, width)`` run tile by tile; ``None``: whole frames.
        limits: request limits (:class:`Limits`).

    Example:
        >>> from fastapi.testclient import TestClient
        >>> client = TestClient(create_app("model.onnx", tmp / "i.db"))  # doctest: +SKIP
        >>> client.get("/health").json()["status"]  # doctest: +SKIP
        'ok'
    """
    if isinstance(model, Inspector):
        inspector = model
    else:
        db = Path(db)
        store = Store(db, Path(data_dir) if data_dir is not None else default_data_dir(db))
        inspector = Inspector.from_path(model, store, backend=backend, tile=tile, limits=limits)
    # no /docs or /redoc: FastAPI serves them with scripts from a CDN; the schema is at /openapi.json
    app = FastAPI(title="steelkd inspection service", version="1", docs_url=None, redoc_url=None,
                  description="Defect segmentation of steel-strip images, stored results and their review.")
    app.state.inspector = inspector
    app.state.metrics = Metrics(inspector.class_names)
    app.add_middleware(BodyLimit, max_bytes=inspector.limits.max_bytes)
    _errors(app)
    _timing(app)
    _inspection_routes(app, inspector)
    _info_routes(app, inspector)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.payload(), status_code=exc.status)

    @app.exception_handler(KeyError)
    async def _not_found(request: Request, exc: KeyError) -> JSONResponse:
        return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, status_code=404)

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        message = str(exc).splitlines()[0] if str(exc) else "bad request"
        return JSONResponse({"error": message}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where or 'request'}: {first.get('msg', 'invalid')}"
        return JSONResponse({"error": message}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        payload = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        return JSONResponse(payload, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _timing(app: FastAPI) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        request.app.state.metrics.observe_request(request.method, route, response.status_code,
                                                  time.perf_counter() - start)
        return response


def _inspection_routes(app: FastAPI, inspector: Inspector) -> None:
    store = inspector.store

    def find(inspection_id: str) -> Inspection:
        insp = store.get(inspection_id)
        if insp is None:
            raise KeyError(f"no inspection {inspection_id!r:.80}")
        return insp

    @app.post("/v1/inspect", summary="Inspect one image", tags=["inspect"])
    async def inspect(
        request: Request,
        image: UploadFile = File(..., description="PNG, JPEG, BMP or TIFF"),
        coil_id: str | None = Form(None, description="the coil the frame belongs to"),
        position_m: float | None = Form(None, description="the frame's position along the coil, metres"),
    ) -> dict[str, Any]:
        data = await image.read()
        insp = await run_in_threadpool(inspector.inspect, data, filename=image.filename, coil_id=coil_id,
                                       position_m=position_m)
        classes = [d.class_id for d in insp.defects]
        request.app.state.metrics.observe_inspection(insp.latency_ms / 1000, classes)
        return inspection_json(insp)

    @app.get("/v1/inspections", summary="Recent inspections, newest first", tags=["inspect"])
    def recent(limit: int = Query(20, ge=1, le=200), coil_id: str | None = None) -> list[dict[str, Any]]:
        return [inspection_json(i) for i in store.recent(limit, coil_id)]

    @app.get("/v1/inspections/{inspection_id}", summary="One inspection", tags=["inspect"])
    def get_inspection(inspection_id: str) -> dict[str, Any]:
        return inspection_json(find(inspection_id))

    @app.get("/v1/inspections/{inspection_id}/overlay.png", summary="The defects drawn on the image",
             tags=["inspect"], response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def get_overlay(inspection_id: str, reviewed: bool = False) -> Response:
        return Response(overlay_png(store, find(inspection_id), reviewed=reviewed), media_type="image/png")

    @app.get("/v1/inspections/{inspection_id}/image.png", summary="The stored image", tags=["inspect"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def get_image(inspection_id: str) -> Response:
        return Response(store.image_path(find(inspection_id)).read_bytes(), media_type="image/png")

    @app.post("/v1/inspections/{inspection_id}/defects/{n}/review", summary="Confirm, reject or relabel",
              tags=["review"])
    def review(inspection_id: str, n: int, body: ReviewBody) -> dict[str, Any]:
        insp = find(inspection_id)
        store.review(inspection_id, n, body.action, _class_id(body.class_, insp.class_names))
        return inspection_json(find(inspection_id))

    @app.post("/v1/inspections/{inspection_id}/boxes", summary="Add a missed region as a box",
              tags=["review"])
    def add_box(inspection_id: str, body: BoxBody) -> dict[str, Any]:
        insp = find(inspection_id)
        rle, area = box_rle(body.box, (insp.height, insp.width))
        store.add_box(inspection_id, _class_id(body.class_, insp.class_names) or 0, body.box, rle, area)
        return inspection_json(find(inspection_id))

    @app.get("/v1/coils/{coil_id}", summary="Defects along a coil per metre", tags=["coils"])
    def coil(coil_id: str) -> dict[str, Any]:
        inspections = store.coil_inspections(coil_id)
        if not inspections:
            raise KeyError(f"no inspection of coil {coil_id!r:.80}")
        return coil_summary(coil_id, inspections)

    @app.get("/v1/coils", summary="Coils with inspections", tags=["coils"])
    def coils() -> list[dict[str, Any]]:
        return store.coils()


def _info_routes(app: FastAPI, inspector: Inspector) -> None:
    predictor = inspector.predictor

    @app.get("/health", summary="Liveness and the model served", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": inspector.model_name, "version": inspector.model_version,
                "inspections": inspector.store.count()}

    @app.get("/v1/model", summary="The model, its post-processing, tiling and the limits", tags=["service"])
    def model_info() -> dict[str, Any]:
        card = predictor.backend.card
        n = len(inspector.class_names)
        thresholds = predictor.post.thresholds(n)
        return {
            "name": inspector.model_name, "version": inspector.model_version,
            "backend": inspector.backend_name,
            "architecture": card.architecture, "class_names": inspector.class_names,
            "colors": palette(n).tolist(), "calibrated": card.postprocess is not None,
            "postprocess": {"threshold": None if thresholds is None else thresholds.tolist(),
                            "min_area_256x1600": predictor.post.min_areas(n, (256, 1600)).tolist(),
                            "min_area_mode": predictor.post.min_area_mode},
            "tile": None if predictor.tiling is None else list(predictor.tiling.tile),
            "limits": {"max_bytes": inspector.limits.max_bytes, "max_side": inspector.limits.max_side,
                       "max_pixels": inspector.limits.max_pixels, "max_text": inspector.limits.max_text},
        }  # fmt: skip

    @app.get("/metrics", summary="Prometheus text", tags=["service"], response_class=Response)
    def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in _STATIC:
            raise KeyError(f"no static file {name!r:.60}")
        return Response(_static(name), media_type=_STATIC[name])


def _static(name: str) -> str:
    return resources.files("steelkd.serve").joinpath("static", name).read_text()
