"""remove.bg-compatible routes: ``POST /v1.0/removebg`` (and ``/api/removebg``), ``GET /v1.0/account``.

Code written for remove.bg's API works with the base URL changed. Fields:
``image_file`` | ``image_file_b64`` | ``image_url`` (off unless enabled),
``size``, ``format`` (auto/png/jpg/zip), ``channels`` (rgba/alpha),
``bg_color``, ``bg_image_file``, ``crop``, ``crop_margin``. Fields that have
no meaning here (``type``, ``type_level``, ``scale``, ``position``, ``roi``,
``semitransparency``, ``add_shadow``, ``shadow_*``, ``bg_image_url``) are
accepted and ignored, and so are fields remove.bg does not know (as remove.bg
does, so that clients sending their SDK's extra fields keep working);
``bg_color`` with ``bg_image_file`` is a 400. Errors: ``{"errors": [{"title", "code"}]}`` with
remove.bg's status codes (400 bad input, 403 key, 413 too large, 429 busy).
``Accept: application/json`` gives remove.bg's JSON answer (``data.result_b64``
and the foreground box) instead of the image bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.datastructures import UploadFile

from ..compositing import NAMED_COLOURS, OutputSpec, alpha_to_uint8, composite, parse_colour
from ..image_io import carry_metadata
from ..predictor import MapRequest
from .. import pipeline as road
from ..options import OutputOptions
from .pipeline import FORMATS as IMAGE_FORMATS, decode, encode, parse_flag
import inspyrenet_lite.serving.deadline as deadlines  # the module, not the package (whose __init__ imports this one)
from .admission import NETWORK_UNITS, image_units
from .errors import ServeError
from .openapi import RemoveBgChoices, key_dependencies, removebg_operation
from .state import ServiceState

#: size -> most megapixels of the result (remove.bg's definitions); the input is scaled down to it.
#: In SIZES, FORMATS and CHANNELS the first is the default (remove.bg's).
SIZES = {
    "preview": 250_000,
    "small": 250_000,
    "regular": 250_000,
    "medium": 1_500_000,
    "hd": 4_000_000,
    "full": 25_000_000,
    "4k": 25_000_000,
    "auto": 25_000_000,
}
FORMATS = ("auto", "png", "jpg", "zip")
ZIP_MEDIA = "application/zip"
#: The Content-Types of the results (format auto gives png or jpg).
MEDIA_TYPES = (IMAGE_FORMATS["png"].media_type, IMAGE_FORMATS["jpg"].media_type, ZIP_MEDIA)
CHANNELS = ("rgba", "alpha")
#: The fields that are files; a file part of a text field is read as that field's text.
FILE_FIELDS = ("image_file", "bg_image_file")
TEXT_FIELDS = ("image_file_b64", "image_url", "size", "type", "type_level", "format", "roi", "crop", "crop_margin",
               "scale", "position", "channels", "add_shadow", "semitransparency", "bg_color", "bg_image_url",
               "shadow_type", "shadow_opacity", "model")
#: The text fields that are read (the other TEXT_FIELDS are remove.bg's, accepted and ignored).
READ_FIELDS = ("image_file_b64", "image_url", "size", "format", "channels", "bg_color", "crop", "crop_margin", "model")
#: bg_color as hex: rgb, rgba, rrggbb or rrggbbaa, ``#`` optional (a colour name is accepted too).
BG_COLOR_PATTERN = r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"
_BG_HEX_RE = re.compile(BG_COLOR_PATTERN)
_MARGIN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(px|%)?\s*$")
#: crop_margin's largest value in pixels and in percent.
MAX_MARGIN_PX, MAX_MARGIN_PCT = 500, 50.0
#: Credits reported by /v1.0/account: a self-hosted service does not count them.
UNLIMITED_CREDITS = 1_000_000


def _bad(field: str, message: str) -> ServeError:
    return ServeError(400, "invalid_parameter", message, field)


@dataclass(frozen=True)
class RemoveBgOptions:
    """The checked fields of a removebg request."""

    size: str
    format: str
    channels: str
    bg_color: tuple[int, int, int, int] | None  # r, g, b, a
    crop: bool
    margins: tuple[tuple[float, bool], ...]  # (value, is_percent) for top, right, bottom, left

    @classmethod
    def parse(cls, fields: dict[str, str]) -> RemoveBgOptions:
        size = (fields.get("size") or next(iter(SIZES))).strip().lower()
        if size not in SIZES:
            raise _bad("size", f"size must be one of {', '.join(SIZES)}, got {fields.get('size')!r}")
        fmt = (fields.get("format") or FORMATS[0]).strip().lower()
        fmt = "jpg" if fmt == "jpeg" else fmt
        if fmt not in FORMATS:
            raise _bad("format", f"format must be one of {', '.join(FORMATS)}, got {fields.get('format')!r}")
        channels = (fields.get("channels") or CHANNELS[0]).strip().lower()
        if channels not in CHANNELS:
            raise _bad("channels", f"channels must be rgba or alpha, got {fields.get('channels')!r}")
        return cls(size, fmt, channels, _parse_bg_color(fields.get("bg_color")),
                   parse_flag("crop", fields.get("crop")), _parse_margin(fields.get("crop_margin")))


def _parse_bg_color(text: str | None) -> tuple[int, int, int, int] | None:
    """remove.bg's ``bg_color``: hex ``rgb``, ``rrggbb`` or ``rrggbbaa`` (``#`` optional; ``aa`` a
    semi-transparent background), or a colour name; as (r, g, b, a)."""
    if text is None or not text.strip():
        return None
    match = _BG_HEX_RE.match(text.strip())
    if match:
        digits = match.group(1)
        digits = "".join(ch * 2 for ch in digits) if len(digits) in (3, 4) else digits
        if len(digits) == 6:
            digits += "ff"
        return tuple(int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    try:
        colour = parse_colour(text)
    except ValueError:
        colour = None
    if colour is None:
        raise _bad("bg_color", f"bg_color must be a hex colour such as 81d4fa, fff or 81d4fa80 (or a colour name), "
                   f"got {text!r}")
    return (*colour, 255)


def _parse_margin(text: str | None) -> tuple[tuple[float, bool], ...]:
    if text is None or not text.strip():
        return ((0.0, False),) * 4
    parts = [part for part in re.split(r"[\s,]+", text.strip()) if part]
    if len(parts) not in (1, 2, 4):
        raise _bad("crop_margin", f"crop_margin takes 1, 2 or 4 values (e.g. 30px or 10%), got {text!r}")
    values = []
    for part in parts:
        match = _MARGIN_RE.match(part)
        if match is None:
            raise _bad("crop_margin", f"crop_margin values are like 30px or 10%, got {part!r}")
        value, percent = float(match.group(1)), match.group(2) == "%"
        if value > (MAX_MARGIN_PCT if percent else MAX_MARGIN_PX):
            raise _bad("crop_margin",
                       f"crop_margin is at most {MAX_MARGIN_PX}px or {MAX_MARGIN_PCT:g}%, got {part!r}")
        values.append((value, percent))
    if len(values) == 1:
        values *= 4
    elif len(values) == 2:
        values *= 2
    return tuple(values)


def removebg_choices(state: ServiceState) -> RemoveBgChoices:
    """What the removebg routes accept, from the tables :class:`RemoveBgOptions` checks against (for the schema)."""
    return RemoveBgChoices(
        sizes=tuple(SIZES),
        formats=FORMATS,
        media_types=MEDIA_TYPES,
        channels=CHANNELS,
        colour_names=tuple(NAMED_COLOURS),
        bg_color_pattern=BG_COLOR_PATTERN,
        margin_max=(MAX_MARGIN_PX, MAX_MARGIN_PCT),
        ignored=tuple(name for name in TEXT_FIELDS if name not in READ_FIELDS),
        models=tuple(state.sources),
        api_key=state.settings.api_key is not None,
    )


def add_removebg_routes(app: FastAPI, state: ServiceState) -> None:
    """The remove.bg-compatible routes on ``app``."""
    keyed = key_dependencies(state.settings.api_key is not None)

    async def removebg(request: Request) -> Response:
        """remove.bg's ``POST /v1.0/removebg`` (see the module docstring)."""
        started = time.perf_counter()
        fields, files = await _read_fields(request, state)
        options = RemoveBgOptions.parse(fields)
        if options.bg_color is not None and "bg_image_file" in files:
            raise _bad("bg_color", "bg_color and bg_image_file conflict: give one background")
        batcher = state.batcher(fields.get("model") or None)

        async def work() -> tuple[bytes, str, dict[str, str]]:
            data = await _source_bytes(fields, files, state)
            limit = min(SIZES[options.size], state.settings.max_pixels)
            rgb = await state.cpu(_decode_scaled, data, state.settings.max_pixels, limit)
            bg_image = None
            if "bg_image_file" in files:
                bg_image = await state.cpu(decode, files["bg_image_file"], state.settings.max_pixels,
                                           "bg_image_file")
            pred = await state.predict(batcher, MapRequest(rgb))
            return await state.cpu(_build, rgb, pred, options, bg_image)

        limit = min(SIZES[options.size], state.settings.max_pixels)
        if "image_file" in files:
            units = image_units(files["image_file"], state.settings.max_pixels, scaled_to=limit)
        else:  # base64 or a URL: weighed at the size asked for
            units = limit + NETWORK_UNITS
        body, media_type, headers = await state.within_deadline(request.receive, work(), units)
        headers["X-Time-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
        if _wants_json(request.headers.get("accept", "")):
            return JSONResponse(_json_result(body, headers), headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    async def account() -> JSONResponse:
        """remove.bg's ``GET /v1.0/account``: credits are not counted here (a large constant)."""
        return JSONResponse({"data": {"attributes": {
            "credits": {"total": UNLIMITED_CREDITS, "subscription": 0, "payg": UNLIMITED_CREDITS, "enterprise": 0},
            "api": {"free_calls": UNLIMITED_CREDITS, "sizes": "all"},
        }}})

    extra, responses = removebg_operation(removebg_choices(state))
    for path in ("/v1.0/removebg", "/api/removebg"):
        app.add_api_route(path, removebg, methods=["POST"], tags=["remove.bg"], response_class=Response,
                          openapi_extra=extra, responses=responses, dependencies=keyed)
    app.add_api_route("/v1.0/account", account, methods=["GET"], tags=["remove.bg"], dependencies=keyed)


def _wants_json(accept: str) -> bool:
    """remove.bg answers ``Accept: application/json`` with the result base64-encoded in JSON."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in kinds and not any(kind.startswith("image/") for kind in kinds)


def _json_result(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """remove.bg's JSON shape: ``{"data": {"result_b64", "foreground_top/left/width/height"}}``."""
    return {"data": {
        "result_b64": base64.b64encode(body).decode("ascii"),
        **{f"foreground_{side}": int(headers[f"X-Foreground-{side.title()}"])
           for side in ("top", "left", "width", "height")},
    }}


async def _read_fields(request: Request, state: ServiceState) -> tuple[dict[str, str], dict[str, bytes]]:
    fields = dict(request.query_params)
    files: dict[str, bytes] = {}
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise _bad("body", "the JSON body cannot be parsed") from None
        except RecursionError:  # arrays nested thousands deep: no field of remove.bg's is nested
            raise _bad("body", "the JSON body is nested too deeply; send an object of fields") from None
        if not isinstance(payload, dict):
            raise _bad("body", "the JSON body must be an object of fields")
        fields.update({k: _as_text(v) for k, v in payload.items() if v is not None})
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_part_size=state.settings.max_upload_bytes)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) and key in FILE_FIELDS:
                data = await value.read()
                if data:  # empty: a form's file input left empty (as browsers and Swagger UI send it)
                    files[key] = data
            elif isinstance(value, UploadFile) and key in TEXT_FIELDS:  # `-F image_file_b64=@photo.b64`
                fields[key] = _part_text(key, await value.read())
            elif isinstance(value, UploadFile):  # an unknown field: ignored, as remove.bg ignores them
                await value.close()
            else:
                fields[key] = value
    elif content_type:
        raise ServeError(415, "unsupported_media", "send multipart/form-data, a urlencoded form or JSON "
                         "(as remove.bg's API takes)")
    return fields, files


def _part_text(key: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(key, f"{key} is a text field: send it as text (its file part is not UTF-8)") from None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


async def _source_bytes(fields: dict[str, str], files: dict[str, bytes], state: ServiceState) -> bytes:
    given = [name for name in ("image_file", "image_file_b64", "image_url") if name in files or fields.get(name)]
    if len(given) != 1:
        raise ServeError(400, "missing_source" if not given else "multiple_sources",
                         "give exactly one of image_file, image_file_b64, image_url"
                         + (f" (got {', '.join(given)})" if given else ""))
    source = given[0]
    if source == "image_file":
        if "image_file" not in files:
            raise _bad("image_file", "image_file must be a file part (multipart/form-data)")
        return files["image_file"]
    if source == "image_file_b64":
        return _decode_b64(fields["image_file_b64"])
    settings = state.settings
    if not settings.allow_image_url:
        raise _bad("image_url", "image_url is disabled on this server (start it with --allow-image-url); "
                   "send the image as image_file or image_file_b64")
    from .urlfetch import fetch_url

    return await fetch_url(fields["image_url"], timeout_s=settings.url_timeout_s, max_bytes=settings.url_max_bytes,
                           max_redirects=settings.url_max_redirects, allow_networks=settings.url_allow_networks)


def _decode_b64(text: str) -> bytes:
    """Base64 as clients send it: a ``data:`` URL or not, line-wrapped, URL-safe, unpadded."""
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("image_file_b64", "image_file_b64 is not valid base64") from None


def _decode_scaled(data: bytes, max_pixels: int, limit: int) -> Image.Image:
    """Decode, then scale down (never up) to at most ``limit`` pixels, as remove.bg's ``size`` does."""
    try:
        rgb = decode(data, max_pixels, "image_file")
    except ServeError as exc:
        raise ServeError(400 if exc.status == 415 else exc.status, "invalid_file_type" if exc.status == 415
                         else exc.code, exc.message, exc.field) from None
    width, height = rgb.size
    if width * height <= limit:
        return rgb
    scale = math.sqrt(limit / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return carry_metadata(rgb, rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def _build(
    rgb: Image.Image, pred: np.ndarray, options: RemoveBgOptions, bg_image: Image.Image | None
) -> tuple[bytes, str, dict[str, str]]:
    alpha_u8 = alpha_to_uint8(pred)
    rows, cols = np.nonzero(alpha_u8)
    if rows.size == 0:
        raise ServeError(400, "unknown_foreground", "Could not identify foreground in image.")
    top, left, bottom, right = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    if options.crop:
        box = _margin_box(options.margins, int(top), int(left), int(bottom), int(right))
        rgb, pred = rgb.crop(box), _crop_array(pred, box)
        top, left, bottom, right = top - box[1], left - box[0], bottom - box[1], right - box[0]
    headers = {
        "X-Type": "other",
        "X-Width": str(rgb.width),
        "X-Height": str(rgb.height),
        "X-Foreground-Top": str(int(top)),
        "X-Foreground-Left": str(int(left)),
        "X-Foreground-Width": str(int(right - left)),
        "X-Foreground-Height": str(int(bottom - top)),
        "X-Credits-Charged": "0",
    }
    body, media_type = _encode(rgb, pred, options, bg_image)
    return body, media_type, headers


def _margin_box(margins: tuple[tuple[float, bool], ...], top: int, left: int, bottom: int, right: int) -> tuple:
    height, width = bottom - top, right - left

    def px(index: int, extent: int) -> int:
        value, percent = margins[index]
        return round(value * extent / 100.0) if percent else round(value)

    return (left - px(3, width), top - px(0, height), right + px(1, width), bottom + px(2, height))


def _crop_array(pred: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``pred`` cut to ``box`` (left, top, right, bottom); outside the image is 0 (transparent)."""
    left, top, right, bottom = box
    out = np.zeros((bottom - top, right - left), dtype=pred.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(bottom, pred.shape[0]), min(right, pred.shape[1])
    inside = pred[src_top:src_bottom, src_left:src_right]
    out[src_top - top : src_bottom - top, src_left - left : src_right - left] = inside
    return out


def _encode(
    rgb: Image.Image, pred: np.ndarray, options: RemoveBgOptions, bg_image: Image.Image | None
) -> tuple[bytes, str]:
    if bg_image is not None:
        coloured = OutputSpec("image", background=bg_image)
    elif options.bg_color is not None:
        coloured = OutputSpec("colour", colour=options.bg_color[:3])
    else:
        coloured = OutputSpec("rgba")
    spec = OutputSpec("map") if options.channels == "alpha" else coloured  # alpha: the mask, whatever background
    if options.format == "zip":
        colour = composite(rgb, pred, coloured, deadlines.check).convert("RGB")
        alpha = composite(rgb, pred, OutputSpec("map"))
        deadlines.check()  # a stage boundary between compositing and encoding
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("color.jpg", encode(colour, "jpg").body)
            archive.writestr("alpha.png", encode(alpha, "png").body)
        return buffer.getvalue(), ZIP_MEDIA
    if spec.kind == "colour" and options.bg_color is not None and options.bg_color[3] < 255:
        image = carry_metadata(rgb, _over_translucent(rgb, pred, options.bg_color))
    else:
        image = road.render(rgb, pred, OutputOptions(spec=spec), deadlines.check)
    fmt = options.format
    if fmt == "auto":
        fmt = "png" if image.mode in ("RGBA", "L") else "jpg"
    if fmt == "jpg" and image.mode == "RGBA":
        image = road.render(rgb, pred, OutputOptions(spec=OutputSpec("colour", colour=(255, 255, 255))), deadlines.check)
    deadlines.check()  # a stage boundary between compositing and encoding
    rendered = encode(image, fmt)
    return rendered.body, rendered.media_type


def _over_translucent(rgb: Image.Image, pred: np.ndarray, colour: tuple[int, int, int, int]) -> Image.Image:
    """The foreground over a semi-transparent ``colour`` ("over" compositing): an RGBA image."""
    alpha = alpha_to_uint8(pred).astype(np.float32)[..., None] / 255.0
    below = colour[3] / 255.0 * (1.0 - alpha)
    out_alpha = alpha + below
    fg = np.asarray(rgb.convert("RGB"), dtype=np.float32)
    out = (fg * alpha + np.asarray(colour[:3], dtype=np.float32) * below) / np.maximum(out_alpha, 1e-6)
    pixels = np.concatenate([out, out_alpha * 255.0], axis=2)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGBA")
