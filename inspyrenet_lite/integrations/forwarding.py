"""An HTTP request carried to an ASGI app in another process and answered there, whole.

Ray Serve's front deployment (:mod:`inspyrenet_lite.integrations.ray_serve`) reads each request,
sends it to a service replica as a :class:`ForwardedRequest`, and gets a :class:`ForwardedResponse`
back; the replica answers it with :func:`call_asgi` on the service's own app, so its routes,
limits, key and answers are the ones of the one-process service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ForwardedRequest:
    """What the app needs of an HTTP request: the ASGI scope's parts and the body read so far."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None = None
    scheme: str = "http"

    @classmethod
    async def read(cls, request: Any, max_body: int) -> ForwardedRequest:
        """A Starlette request with at most ``max_body`` + 1 bytes of its body (more is the app's 413
        to answer: it sees the body is too large without the front holding all of it)."""
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body:
                break
        body = b"".join(chunks)[: max_body + 1]
        scope = request.scope
        client = tuple(scope["client"]) if scope.get("client") else None
        return cls(
            method=scope["method"], path=scope["path"], query_string=scope.get("query_string", b""),
            headers=list(scope["headers"]), body=body, client=client, scheme=scope.get("scheme", "http"),
        )


@dataclass
class ForwardedResponse:
    """An app's whole answer."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def to_starlette(self) -> Any:
        from starlette.responses import Response

        response = Response(content=self.body, status_code=self.status)
        response.raw_headers = [(k, v) for k, v in self.headers]
        return response


async def call_asgi(app: Any, request: ForwardedRequest) -> ForwardedResponse:
    """``request`` answered by the ASGI ``app`` in this process (its lifespan already started)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode("utf-8", "surrogateescape"),
        "query_string": request.query_string,
        "root_path": "",
        "headers": request.headers,
        "client": request.client,
        "server": None,
        "state": {},
    }
    sent_body = False
    never = asyncio.Event()  # the client stays: a disconnect is the front's to see (it cancels this call)

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    response = ForwardedResponse()
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    response.body = b"".join(chunks)
    return response
