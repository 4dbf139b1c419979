"""``create_app``: the FastAPI application of ``inspyrenet-lite serve``.

Routes: ``POST /v1/remove``, ``GET /v1/health``, ``GET /v1/ready``,
``GET /v1/models``, ``GET /metrics`` and the remove.bg-compatible ones
(:mod:`.removebg`). See README "Serving" for the knobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import contextlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .. import pipeline as road
from ..checks import RESIZES, UNIT_RANGE
from ..compositing import BASIC_TYPES, NAMED_COLOURS
from ..options import QUALITY_RANGE, OutputOptions
from ..predictor import MapRequest
from ..transforms import DEFAULT_HR_SHORT_SIDE, own_size
from .deadline import check as check_deadline
from .admission import NETWORK_UNITS, image_units
from .pipeline import (
    FORMATS,
    OutputSpec,
    Rendered,
    decode,
    encode,
    parse_choice,
    parse_flag,
    parse_int,
    parse_type,
    parse_unit,
)
from .docs import OAUTH2_REDIRECT_PATH, REDOC_PATH, SWAGGER_PATH, add_docs_pages
from .errors import ServeError, bad_option
from .openapi import API_KEY_HEADER, RemoveChoices, key_dependencies, remove_operation
from .settings import ServeSettings
from .slowclients import slow_client_log
from .state import ModelSource, ServiceState

logger = logging.getLogger(__name__)

#: Routes open without the API key (probes, scraping and the API's description). The docs pages'
#: assets (under docs.ASSETS_PATH) are no service path: the guard lets them through as well.
OPEN_PATHS = frozenset({"/v1/health", "/v1/ready", "/metrics", "/openapi.json", SWAGGER_PATH, OAUTH2_REDIRECT_PATH,
                        REDOC_PATH})
#: Paths whose errors use remove.bg's shape.
REMOVEBG_PATHS = frozenset({"/v1.0/removebg", "/api/removebg", "/v1.0/account"})
#: A refused upload is still read (and dropped) up to this many times the limit, so that clients
#: which send the whole body before reading the answer get the 413 rather than a reset connection.
_DRAIN_FACTOR = 4
_IMAGE_MEDIA = ("image/", "application/octet-stream")
#: The status counted for a request whose client left before its answer (nginx's convention).
CLIENT_CLOSED = 499
#: ``type`` and ``format`` of /v1/remove when left out.
DEFAULT_TYPE, DEFAULT_FORMAT = "rgba", "png"
#: ``resize`` of /v1/remove.
RESIZE_CHOICES = RESIZES
#: A colour as ``type``: ``#rrggbb`` (``compositing.parse_colour`` reads more forms; this is the documented one).
COLOUR_PATTERN = "^#?[0-9a-fA-F]{6}$"


def create_app(model: ModelSource, settings: ServeSettings | None = None) -> FastAPI:
    """The service for ``model`` (a Predictor, a Remover, a function loading one, a list of these
    as replicas of one model on several devices, or a mapping name -> one of these; the first is
    the default). Models load and warm up in the background after startup; ``/v1/ready``
    answers 503 until every replica is warm."""
    settings = settings or ServeSettings()
    state = ServiceState(model, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    # version: the API's, never the library's (no response says which library version runs).
    app = FastAPI(title="inspyrenet-lite", summary="Background removal with InSPyReNet", version="v1",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serving = state
    add_docs_pages(app)  # served from this server: they must work without internet
    add_routes(app, state)
    return app


def remove_choices(state: ServiceState) -> RemoveChoices:
    """What /v1/remove accepts, from the tables its option parsing checks against (for its schema)."""
    return RemoveChoices(
        types=(*BASIC_TYPES, *NAMED_COLOURS),
        default_type=DEFAULT_TYPE,
        colour_pattern=COLOUR_PATTERN,
        formats=tuple(FORMATS),
        default_format=DEFAULT_FORMAT,
        media_types=tuple(dict.fromkeys(fmt.media_type for fmt in FORMATS.values())),
        resize=RESIZE_CHOICES,
        unit=UNIT_RANGE,
        quality=QUALITY_RANGE,
        models=tuple(state.sources),
        api_key=state.settings.api_key is not None,
    )


def add_routes(app: FastAPI, state: ServiceState) -> None:
    """Put the service's routes, middleware and error handlers on ``app`` (also used by the Space)."""
    from .removebg import add_removebg_routes

    settings = state.settings
    keyed = key_dependencies(settings.api_key is not None)
    app.add_exception_handler(ServeError, _serve_error_handler)
    app.add_exception_handler(HTTPException, _http_error_handler)
    app.add_middleware(_Guard, state=state)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["*"])

    # HEAD answers as GET does (load balancers probe with it), out of the schema: one operation per route there.
    @app.head("/v1/health", include_in_schema=False)
    @app.get("/v1/health", tags=["service"])
    async def health() -> dict[str, str]:
        """Alive (the process answers); says nothing about the model."""
        return {"status": "ok"}

    @app.head("/v1/ready", include_in_schema=False)
    @app.get("/v1/ready", tags=["service"])
    async def ready() -> JSONResponse:
        """200 once every model is loaded and warmed up, else 503."""
        if state.ready:
            return JSONResponse({"status": "ready", "models": list(state.batchers)})
        status = "failed" if state.failed else "loading"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/v1/models", tags=["service"], dependencies=keyed)
    async def models() -> dict[str, Any]:
        """The models served (the first is the default of ``model``)."""
        return {"default": state.default_model, "models": [_describe(name, state) for name in state.sources]}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    remove_extra, remove_responses = remove_operation(remove_choices(state))

    @app.post("/v1/remove", tags=["remove"], response_class=Response, openapi_extra=remove_extra,
              responses=remove_responses, dependencies=keyed)
    async def remove(request: Request) -> Response:
        """Remove the background of the image sent as multipart field ``image`` or as the raw body.

        Options (query or form fields): ``type`` (rgba, map, blur, overlay, green, white, #rrggbb),
        ``threshold``, ``hr_blend``, ``reverse``, ``resize`` (static/dynamic), ``model``,
        ``format`` (png/webp/jpg), ``quality`` (1-100); a multipart ``background`` image
        replaces the background. Returns the image; ``X-Width``, ``X-Height``, ``X-Time-Ms``.
        """
        started = time.perf_counter()
        fields, data, background = await read_upload(request, state)
        options = RemoveOptions.parse(fields, has_background=background is not None)
        batcher = state.batcher(options.model)

        async def work() -> Rendered:
            rgb = await state.cpu(decode, data, settings.max_pixels, "image")
            _check_network_pass(rgb.size, options, batcher.predictor, settings.max_network_pixels)
            output = options.output
            if background is not None:
                bg = await state.cpu(decode, background, settings.max_pixels, "background")
                output = dataclasses.replace(output, spec=OutputSpec("image", background=bg))
            pred = await state.predict(batcher, MapRequest(rgb, resize=options.resize, hr_blend=options.hr_blend))
            image = await state.cpu(road.render, rgb, pred, output, check_deadline)  # stops between tiles
            del rgb, pred  # a stage boundary: nothing left holds the full-size arrays but the image
            return await state.cpu(encode, image, output.format, output.quality)

        units = image_units(data, settings.max_pixels)
        if background is not None:
            units += image_units(background, settings.max_pixels) - NETWORK_UNITS
        rendered = await state.within_deadline(request.receive, work(), units)
        headers = {
            "X-Width": str(rendered.width),
            "X-Height": str(rendered.height),
            "X-Model": batcher.name,
            "X-Time-Ms": f"{(time.perf_counter() - started) * 1000:.1f}",
        }
        return Response(rendered.body, media_type=rendered.media_type, headers=headers)

    add_removebg_routes(app, state)


class RemoveOptions:
    """The options of ``/v1/remove``, checked (422 naming the field)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    FIELDS = ("type", "format", "threshold", "hr_blend", "reverse", "resize", "quality", "model")

    @classmethod
    def parse(cls, fields: dict[str, str], has_background: bool = False) -> RemoveOptions:
        unknown = sorted(set(fields) - set(cls.FIELDS))
        if unknown:  # a misspelt option must not silently give a different picture
            raise ServeError(422, "invalid_option", f"unknown option {unknown[0]!r}; the options are "
                             f"{', '.join(cls.FIELDS)}", unknown[0])
        if has_background and (fields.get("type") or "").strip():
            raise ServeError(422, "invalid_option", "type and a background image conflict: the background image "
                             "replaces the background; leave type out or the background image", "type")
        # With a background image the result has none of the type's alpha (the image replaces it).
        spec = OutputSpec("image") if has_background else parse_type(fields.get("type") or DEFAULT_TYPE)
        try:
            output = OutputOptions(
                spec=spec,
                threshold=parse_unit("threshold", fields.get("threshold")),
                reverse=parse_flag("reverse", fields.get("reverse")),
                format=parse_choice("format", fields.get("format"), tuple(FORMATS)) or DEFAULT_FORMAT,
                quality=parse_int("quality", fields.get("quality"), *QUALITY_RANGE),
            )
        except ValueError as exc:  # the library's words; the field is the one the message starts with
            field = str(exc).split(" ", 1)[0]
            raise bad_option(field if field in cls.FIELDS else "format", str(exc)) from None
        return cls(
            output=output,
            hr_blend=parse_unit("hr_blend", fields.get("hr_blend")),
            resize=parse_choice("resize", fields.get("resize"), RESIZE_CHOICES),
            model=(fields.get("model") or None),
        )


def _check_network_pass(size: tuple[int, int], options: RemoveOptions, predictor: Any, cap: int) -> None:
    """422 when the request asks for a network pass at the image's own size (resize=dynamic,
    hr_blend) above the server's ``max_network_pixels``: one client must not take the device's memory."""
    if options.resize != "dynamic" and not options.hr_blend:
        return
    pass_h, pass_w = own_size(*size, getattr(predictor, "hr_short_side", DEFAULT_HR_SHORT_SIDE))
    if pass_h * pass_w > cap:
        field = "resize" if options.resize == "dynamic" else "hr_blend"
        raise ServeError(422, "invalid_option", f"{field} on a {size[0]}x{size[1]} image needs a {pass_w}x{pass_h} "
                         f"network pass ({pass_h * pass_w} pixels), above this server's limit of {cap} "
                         "(--max-network-pixels); send a smaller image or leave resize and hr_blend out", field)


async def read_upload(
    request: Request, state: ServiceState, file_field: str = "image", extra_file: str | None = "background"
) -> tuple[dict[str, str], bytes, bytes | None]:
    """(fields from query and form, the image bytes, an optional second image) of a request that
    carries the image as multipart field ``file_field`` or as the raw body."""
    fields = dict(request.query_params)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/x-www-form-urlencoded"):
        body = await request.body()
        if _looks_binary(body):  # `curl --data-binary @photo.jpg` labels the image this way
            return fields, body, None
        fields.update(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True))
        raise ServeError(400, "missing_image", f"a urlencoded form carries no image: send it as multipart "
                         f"-F {file_field}=@photo.jpg, or as the raw body", file_field)
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=state.settings.max_upload_bytes)
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = await _read_part(key, value)
            else:
                fields[key] = value
        if extra_file in files and not files[extra_file]:  # a form's file input left empty: not sent
            del files[extra_file]
        if file_field not in files:
            raise ServeError(400, "missing_image", f"no multipart field {file_field!r}: send the image as "
                             f"-F {file_field}=@photo.jpg, or as the raw request body", file_field)
        unknown = sorted(set(files) - {file_field, extra_file})
        if unknown:  # a misspelt `background` must not silently give a transparent result
            raise ServeError(422, "invalid_option", f"unknown file field {unknown[0]!r}; the image goes in "
                             f"{file_field!r}" + (f", a background image in {extra_file!r}" if extra_file else ""),
                             unknown[0])
        return fields, files[file_field], files.get(extra_file) if extra_file else None
    if content_type and not content_type.startswith(_IMAGE_MEDIA):
        raise ServeError(415, "unsupported_media", f"Content-Type {content_type.split(';')[0]!r} is not an image: "
                         "send the image bytes (image/* or application/octet-stream) or multipart", file_field)
    return fields, await request.body(), None


def _looks_binary(body: bytes) -> bool:
    """Whether ``body`` is no urlencoded text (every image format has control or high bytes up front)."""
    return any(byte < 0x20 or byte > 0x7E for byte in body[:64])


async def _read_part(key: str, upload: UploadFile) -> bytes:
    media = (upload.content_type or "").lower()
    if media and not media.startswith(_IMAGE_MEDIA):
        raise ServeError(415, "unsupported_media", f"the {key!r} part is {media!r}, not an image", key)
    return await upload.read()


def _describe(name: str, state: ServiceState) -> dict[str, Any]:
    batcher = state.batchers.get(name)
    info: dict[str, Any] = {"name": name, "ready": batcher is not None}
    if batcher is not None:
        predictor = batcher.predictor
        base = getattr(predictor, "base_size", None)
        info.update(
            base_size=list(base) if base is not None else None,
            device=str(getattr(predictor, "device", "")),
            devices=batcher.devices,
            precision=getattr(predictor, "precision", None),
            backend=getattr(getattr(predictor, "backend", None), "name", None),
            resize=getattr(predictor, "resize", None),
            hr_blend=getattr(predictor, "hr_blend", None),
        )
    return info


def is_removebg_path(path: str) -> bool:
    """Whether ``path`` is one of remove.bg's (its routes, or a path under its ``/v1.0/``)."""
    return path in REMOVEBG_PATHS or path.startswith("/v1.0/")


def error_body(path: str, exc: ServeError) -> dict[str, Any]:
    """The JSON of an error: remove.bg's shape on its routes, ``{"error": {...}}`` on ours."""
    if is_removebg_path(path):
        error = {"title": exc.message, "code": exc.code}
        if exc.field:
            error["source"] = {"parameter": exc.field}
        return {"errors": [error]}
    return {"error": {"status": exc.status, "code": exc.code, "message": exc.message, "field": exc.field}}


def error_status(path: str, exc: ServeError) -> int:
    """The status of ``exc`` on ``path``: remove.bg's routes answer bad input with 400 and a full queue with 429."""
    if is_removebg_path(path):
        if exc.status in (415, 422):
            return 400
        if exc.code == "busy":
            return 429
    return exc.status


async def _serve_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServeError)
    if exc.status == CLIENT_CLOSED:
        return JSONResponse({}, status_code=CLIENT_CLOSED)
    path = request.url.path
    return JSONResponse(error_body(path, exc), status_code=error_status(path, exc), headers=exc.headers)


#: ``code`` of the errors Starlette raises itself (routing, multipart parsing).
_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method, a multipart body it cannot parse, too
    many fields) in the service's error shape: remove.bg's on its paths, ours on ``/v1/``."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if not _is_service_path(path) and not is_removebg_path(path):
        return await http_exception_handler(request, exc)
    message = str(exc.detail).splitlines()[0] if exc.detail else "bad request"
    err = ServeError(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), message,
                     headers=dict(exc.headers or {}))
    return JSONResponse(error_body(path, err), status_code=exc.status_code, headers=err.headers)


class _Guard:
    """ASGI middleware: the upload-size limit (413 before reading more than the limit), the API key,
    and the request metrics by route template."""

    def __init__(self, app: Any, state: ServiceState) -> None:
        self.app = app
        self.state = state
        key = state.settings.api_key
        self.key = key.encode() if key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_box: dict[str, Any] = {"status": 500}
        path = scope.get("path", "")

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
                status_box["sent"] = True
                if path in REMOVEBG_PATHS:
                    message = {**message, "headers": [*message.get("headers", []), *self._rate_headers()]}
            await send(message)

        if not _is_service_path(path):  # e.g. the Space's page and Gradio's own API: not ours to guard
            await self.app(scope, receive, send)
            return
        refusal = self._refuse(scope, path)
        try:
            if refusal is not None:
                await _drain(receive, _DRAIN_FACTOR * self.state.settings.max_upload_bytes)
                await JSONResponse(error_body(path, refusal), status_code=error_status(path, refusal),
                                   headers=refusal.headers)(scope, receive, send_wrapper)
            else:
                await self._answer(scope, self._limited(receive), send_wrapper, status_box)
        finally:
            route = _route_template(scope)
            self.state.metrics.request_done(scope.get("method", ""), route, status_box["status"],
                                            time.perf_counter() - started)

    async def _answer(self, scope: dict, receive: Any, send: Any, status_box: dict) -> None:
        """Run the app; an unexpected error becomes a JSON 500 sent here (Starlette's outer handler
        would re-raise it and the server would drop the keep-alive connection), and a client that
        leaves mid-request is logged in one line and counted as 499."""
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            logger.info("client disconnected during %s %s", scope.get("method", ""), scope.get("path", ""))
            status_box["status"] = CLIENT_CLOSED
        except Exception:
            if "sent" in status_box:
                raise  # the answer has begun: nothing else can be said on this connection
            logger.exception("unexpected error on %s", scope.get("path", ""))
            err = ServeError(500, "internal_error", "the server failed on this request; the details are in its log")
            path = scope.get("path", "")
            await JSONResponse(error_body(path, err), status_code=500)(scope, receive, send)

    def _rate_headers(self) -> list[tuple[bytes, bytes]]:
        """remove.bg's X-RateLimit headers from the admission state (queue capacity, free slots,
        seconds until a slot is expected free)."""
        values = zip(("limit", "remaining", "reset"), self.state.admission())
        return [(f"x-ratelimit-{name}".encode(), str(value).encode()) for name, value in values]

    def _refuse(self, scope: dict, path: str) -> ServeError | None:
        headers = dict(scope.get("headers") or [])
        if self.key is not None and path not in OPEN_PATHS and scope.get("method") != "OPTIONS":
            given = headers.get(API_KEY_HEADER.lower().encode(), b"")
            if not hmac.compare_digest(given, self.key):
                if path in REMOVEBG_PATHS:
                    return ServeError(403, "auth_failed", "API key missing or invalid (header X-Api-Key)")
                return ServeError(401, "unauthorized", "API key missing or invalid: send it in header X-Api-Key",
                                  headers={"WWW-Authenticate": "X-Api-Key"})
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.state.settings.max_upload_bytes:
            return _too_large(self.state.settings.max_upload_bytes)
        return None

    def _limited(self, receive: Any) -> Any:
        """``receive`` with the upload-size limit (413) and the body deadline (408)."""
        limit = self.state.settings.max_upload_bytes
        body_timeout = self.state.settings.body_timeout_s
        body_deadline = time.monotonic() + body_timeout
        seen = 0
        body_done = False

        async def limited_receive() -> dict:
            nonlocal seen, body_done
            if body_done:  # after the body: only the disconnect watcher reads, for as long as it likes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, body_deadline - time.monotonic()))
            except asyncio.TimeoutError:
                slow_client_log(f"answered 408 to request bodies not complete within {body_timeout:g} s")
                raise ServeError(408, "request_timeout", f"the request body did not arrive within {body_timeout:g} s; "
                                 "send it at once (the server's --body-timeout)") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await _drain(receive, _DRAIN_FACTOR * limit - seen)
                    raise _too_large(limit)
            return message

        return limited_receive


def _route_template(scope: dict) -> str:
    """The template of the route ``scope`` went to, or would have gone to when refused before
    routing (key, size): metrics count by route, never by raw path; "other" when none matches."""
    route = scope.get("route")
    if route is None and scope.get("app") is not None:
        route = next((r for r in scope["app"].router.routes if r.matches(scope)[0] != Match.NONE), None)
    return getattr(route, "path", None) or "other"


def _is_service_path(path: str) -> bool:
    return path.startswith("/v1/") or path in REMOVEBG_PATHS or path in OPEN_PATHS


async def _drain(receive: Any, budget: int) -> None:
    """Read and drop the rest of the request body, at most ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _too_large(limit: int) -> ServeError:
    return ServeError(413, "file_too_large", f"the request body is above the server's limit of {limit} bytes; "
                      "send a smaller file (or raise --max-upload-mb)")
