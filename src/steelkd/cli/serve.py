"""``steelkd serve``: the inspection service (HTTP API and operator page) on uvicorn. See docs/service.md."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from steelkd.cli._common import console, user_errors


def register(app: typer.Typer) -> None:
    """Add ``serve``."""

    @app.command()
    def serve(
        model: Path = typer.Option(..., "--model", "-m",
                                   help="Model directory/.safetensors/.ckpt, or a model.onnx / .xml."),
        backend: str = typer.Option(
            "auto", help="auto (the `steelkd tune` choice recorded beside the model; onnxruntime for .onnx, "
            "openvino for .xml; else torch) or a backend name (see `steelkd predict --help`)."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8000, help="Port to listen on."),
        db: Path = typer.Option(Path("inspections.db"), "--db", help="SQLite database of the inspections."),
        data_dir: Path = typer.Option(
            None, "--data-dir", help="Folder of the stored images (default: DB's stem + '-data' beside it)."),
        tile: str = typer.Option("256x1600", "--tile",
                                 help="Frames larger than HxW run tile by tile; 'none' = whole frames."),
        max_bytes: int = typer.Option(32 * 2**20, "--max-bytes", help="Largest request body (413 beyond)."),
        max_side: int = typer.Option(8192, "--max-side", help="Largest image width or height (400 beyond)."),
        max_pixels: int = typer.Option(40_000_000, "--max-pixels",
                                       help="Largest width x height (400 beyond)."),
    ) -> None:
        """Serve a model: POST /v1/inspect, stored results, review, the page at /, /metrics."""
        from steelkd.config import parse_size
        from steelkd.runtime import require_extra

        with user_errors():
            uvicorn = require_extra("uvicorn", "serve")
            require_extra("fastapi", "serve")
            require_extra("python_multipart", "serve")
            from steelkd.serve import Limits
            from steelkd.serve.app import create_app

            if not 0 < port < 65536:
                raise ValueError(f"--port: expected 1..65535, got {port}")
            _check_listen(host, port)  # before the model is loaded
            size = None if tile.strip().lower() == "none" else parse_size(tile)
            limits = Limits(max_bytes=max_bytes, max_side=max_side, max_pixels=max_pixels)
            app = create_app(model, db, data_dir, backend=backend, tile=size, limits=limits)
        inspector = app.state.inspector
        console.print(
            f"serving {inspector.model_name} ({inspector.model_version}, {inspector.backend_name}) on "
            f"http://{host}:{port}/ ; database {db}, images in {inspector.store.data_dir}",
            highlight=False, soft_wrap=True,
        )
        orphans = inspector.store.orphan_images()
        if orphans:
            console.print(f"note: {len(orphans)} image file(s) with no inspection row (an interrupted write)",
                          highlight=False)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)


def _check_listen(host: str, port: int) -> None:
    """ValueError naming the address when nothing can listen there (in use, not this machine's)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise ValueError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
