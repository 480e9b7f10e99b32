"""The request-size limit as ASGI middleware: a body over ``max_bytes`` is refused with 413 and JSON.

It checks ``Content-Length`` before anything is read, and counts the bytes of a body that arrives without
one (chunked), so no upload larger than the limit is ever held in memory or parsed. The error names the
limit: ``{"error": "request body is over max_bytes (... bytes)", "limit": "max_bytes", "value": N}``.

Example:
    >>> app.add_middleware(BodyLimit, max_bytes=32 * 2**20)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so FastAPI's form parsing lets it through."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=_payload(max_bytes))


def _payload(max_bytes: int) -> dict[str, Any]:
    return {"error": f"request body is over max_bytes ({max_bytes} bytes)", "limit": "max_bytes",
            "value": max_bytes}


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(_payload(self.max_bytes)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
