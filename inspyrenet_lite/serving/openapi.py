"""The OpenAPI description of the POST routes, built from the tables the handlers check against.

The handlers read their fields themselves (query string, multipart, a raw body, JSON), so
FastAPI cannot see them. :func:`remove_operation` and :func:`removebg_operation` give each
route what to publish (``openapi_extra``: parameters and request body; ``responses``), made
from the same choices and limits the handlers enforce, passed in as :class:`RemoveChoices` /
:class:`RemoveBgChoices`: the schema and the checks cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
#: A form field's example: empty. Swagger UI's "Try it out" fills every field of a form from its
#: example, else with a made-up value (a threshold of 1, "string" as a URL); the handlers read an
#: empty field as one left out.
BLANK: dict[str, Any] = {"examples": [""]}


class ErrorDetail(BaseModel):
    """One refusal of the native API."""

    status: int = Field(description="the HTTP status, repeated")
    code: str = Field(description="a stable code, e.g. invalid_option, missing_image, busy")
    message: str = Field(description="what was wrong and what to do, in one line")
    field: str | None = Field(None, description="the request field at fault, if any")


class ServiceError(BaseModel):
    """The error body of ``/v1/...`` routes."""

    error: ErrorDetail


class RemoveBgErrorSource(BaseModel):
    parameter: str = Field(description="the request field at fault")


class RemoveBgErrorItem(BaseModel):
    title: str = Field(description="what was wrong and what to do")
    code: str = Field(description="a stable code, e.g. invalid_parameter, missing_source, auth_failed")
    source: RemoveBgErrorSource | None = None


class RemoveBgError(BaseModel):
    """The error body of the remove.bg-compatible routes (remove.bg's shape)."""

    errors: list[RemoveBgErrorItem]


class RemoveBgResultData(BaseModel):
    result_b64: str = Field(description="the result file, base64-encoded")
    foreground_top: int
    foreground_left: int
    foreground_width: int
    foreground_height: int


class RemoveBgResult(BaseModel):
    """remove.bg's JSON answer (asked for with ``Accept: application/json``)."""

    data: RemoveBgResultData


@dataclass(frozen=True)
class RemoveChoices:
    """What ``/v1/remove`` accepts: each option's choices or range, as its handler checks them."""

    types: tuple[str, ...]  # named output types; a colour matching colour_pattern is accepted too
    default_type: str
    colour_pattern: str
    formats: tuple[str, ...]
    default_format: str
    media_types: tuple[str, ...]  # of the formats' results
    resize: tuple[str, ...]
    unit: tuple[float, float]  # threshold, hr_blend
    quality: tuple[int, int]
    models: tuple[str, ...]  # the first is the default
    api_key: bool  # whether requests need the key (401 without)


@dataclass(frozen=True)
class RemoveBgChoices:
    """What the remove.bg-compatible routes accept, as their handler checks it (the first of
    sizes, formats and channels is the default)."""

    sizes: tuple[str, ...]
    formats: tuple[str, ...]
    media_types: tuple[str, ...]
    channels: tuple[str, ...]
    colour_names: tuple[str, ...]  # bg_color names; a hex colour matching bg_color_pattern too
    bg_color_pattern: str
    margin_max: tuple[int, float]  # crop_margin's largest value in px and in %
    ignored: tuple[str, ...]  # remove.bg's fields accepted without effect
    models: tuple[str, ...]
    api_key: bool


def remove_operation(choices: RemoveChoices) -> tuple[dict[str, Any], dict[int | str, Any]]:
    """(``openapi_extra``, ``responses``) of ``POST /v1/remove``."""
    c = choices
    unit = {"type": "number", "minimum": c.unit[0], "maximum": c.unit[1]}
    options: dict[str, dict[str, Any]] = {
        "type": {
            "anyOf": [{"type": "string", "enum": list(c.types)}, {"type": "string", "pattern": c.colour_pattern}],
            # No "default": a form that sends it back would clash with a background image.
            "description": f"the output (left out: {c.default_type}): " + ", ".join(c.types)
            + ", or a background colour #rrggbb; leave it out with a background image",
        },
        "format": {"type": "string", "enum": list(c.formats), "default": c.default_format,
                   "description": "the result's file format (jpg holds no transparency: pair it with a type "
                   "without alpha or a background)"},
        "threshold": {**unit, "description": "cut the map at this value (a hard mask); left out: a soft mask"},
        "hr_blend": {**unit, "description": "how much of a second pass at the image's own size to blend in "
                     "(0 or left out: none)"},
        "reverse": {"type": "boolean", "default": False, "description": "swap foreground and background"},
        "resize": {"type": "string", "enum": list(c.resize),
                   "description": "static: the network's base size; dynamic: the image's own size"},
        "quality": {"type": "integer", "minimum": c.quality[0], "maximum": c.quality[1],
                    "description": "encoder quality of jpg and webp"},
        "model": {"type": "string", "enum": list(c.models), "default": c.models[0],
                  "description": "which of the served models (GET /v1/models)"},
    }
    no_default = ("type", "threshold", "hr_blend", "resize", "quality")
    multipart = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {**BINARY, "description": "the image (PNG, JPEG, WebP, ...)"},
            "background": {**BINARY, "description": "an image to put behind the foreground (instead of type)"},
            **{name: {**schema, **BLANK} if name in no_default else schema for name, schema in options.items()},
        },
    }
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema,
         "description": f"{schema['description']} (here or as a multipart field of the same name)"}
        for name, schema in options.items()
    ]
    raw = {"schema": BINARY}
    extra = {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "description": "the image as multipart field `image`, or the raw image bytes as the body "
            "(options then go in the query string)",
            "content": {
                "multipart/form-data": {
                    "schema": multipart,
                    "encoding": {"image": {"contentType": "image/*"}, "background": {"contentType": "image/*"}},
                },
                "image/*": raw,
                "application/octet-stream": raw,
            },
        },
    }
    headers = {name: {"description": text, "schema": {"type": kind}} for name, kind, text in (
        ("X-Width", "integer", "the result's width"),
        ("X-Height", "integer", "the result's height"),
        ("X-Model", "string", "the model that ran"),
        ("X-Time-Ms", "number", "time spent on the request in the server"),
    )}
    errors = {
        400: "no image (missing_image), or a body that cannot be parsed (invalid_request)",
        408: "the body did not arrive in time (request_timeout)",
        413: "the upload or its pixel count is above the server's limit (file_too_large, too_many_pixels)",
        415: "not an image the server reads (unsupported_media)",
        422: "an option outside its choices or range, or an unknown option (invalid_option; `field` names it)",
        500: "the server failed on this request (internal_error, inference_failed)",
        503: "loading, busy or shutting down (not_ready, busy, shutting_down): retry after Retry-After",
        504: "the request took longer than the server's deadline (deadline_exceeded)",
    }
    if c.api_key:
        errors[401] = "API key missing or invalid (unauthorized)"
    responses: dict[int | str, Any] = {
        200: {"description": "the result image",
              "content": {media: {"schema": BINARY} for media in c.media_types}, "headers": headers},
        **{status: {"model": ServiceError, "description": text} for status, text in sorted(errors.items())},
    }
    return extra, responses


def removebg_operation(choices: RemoveBgChoices) -> tuple[dict[str, Any], dict[int | str, Any]]:
    """(``openapi_extra``, ``responses``) of remove.bg's ``POST /v1.0/removebg`` (and ``/api/removebg``)."""
    c = choices
    fields: dict[str, dict[str, Any]] = {
        "image_file_b64": {"type": "string", "description": "the image, base64-encoded (a data: URL too)", **BLANK},
        "image_url": {"type": "string", "format": "uri", **BLANK,
                      "description": "the image's URL (refused unless the server runs with --allow-image-url)"},
        "size": {"type": "string", "enum": list(c.sizes), "default": c.sizes[0],
                 "description": "the result's largest size, as remove.bg defines it (the image is scaled down to it)"},
        "format": {"type": "string", "enum": list(c.formats), "default": c.formats[0],
                   "description": "auto: png with transparency, else jpg; zip: color.jpg and alpha.png"},
        "channels": {"type": "string", "enum": list(c.channels), "default": c.channels[0],
                     "description": "rgba: the cut-out; alpha: the mask alone"},
        "bg_color": {
            "anyOf": [{"type": "string", "pattern": c.bg_color_pattern},
                      {"type": "string", "enum": list(c.colour_names)}],
            "description": "a background colour: hex rgb, rrggbb or rrggbbaa (# optional), or a name",
            **BLANK,
        },
        "crop": {"type": "boolean", "default": False, "description": "crop to the foreground"},
        "crop_margin": {"type": "string", **BLANK,
                        "description": f"margin around the crop: 1, 2 or 4 values such as 30px or 10% "
                        f"(at most {c.margin_max[0]}px or {c.margin_max[1]:g}%)"},
        "model": {"type": "string", "enum": list(c.models), "default": c.models[0],
                  "description": "which of the served models (not remove.bg's)"},
        **{name: {"type": "string", "description": "remove.bg's; accepted and ignored here", **BLANK}
           for name in c.ignored},
    }
    one_of = "give exactly one of image_file, image_file_b64, image_url"
    form = {"type": "object", "properties": {
        "image_file": {**BINARY, "description": "the image"},
        **fields,
        "bg_image_file": {**BINARY, "description": "an image to put behind the foreground (not with bg_color)"},
    }}
    extra = {
        "description": f"remove.bg's API: code written for it works with the base URL changed; {one_of}. "
        "`Accept: application/json` answers remove.bg's JSON (result_b64 and the foreground box) "
        "instead of the file. Fields may also go in the query string.",
        "requestBody": {
            "required": True,
            "description": one_of,
            "content": {
                "multipart/form-data": {"schema": form, "encoding": {
                    "image_file": {"contentType": "image/*"}, "bg_image_file": {"contentType": "image/*"}}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": fields}},
                "application/json": {"schema": {"type": "object", "properties": fields}},
            },
        },
    }
    headers = {name: {"description": text, "schema": {"type": "integer"}} for name, text in (
        ("X-Width", "the result's width"),
        ("X-Height", "the result's height"),
        ("X-Foreground-Top", "the foreground's box in the result"),
        ("X-Foreground-Left", "the foreground's box in the result"),
        ("X-Foreground-Width", "the foreground's box in the result"),
        ("X-Foreground-Height", "the foreground's box in the result"),
        ("X-Credits-Charged", "always 0"),
        ("X-RateLimit-Limit", "requests the queue holds"),
        ("X-RateLimit-Remaining", "free places in the queue"),
        ("X-RateLimit-Reset", "seconds until a place is expected free"),
    )}
    errors = {
        400: "bad input: a field outside its choices, no or several image sources, an unreadable image, "
        "no foreground found (invalid_parameter, missing_source, invalid_file_type, unknown_foreground, ...)",
        408: "the body did not arrive in time (request_timeout)",
        413: "the upload or its pixel count is above the server's limit (file_too_large, too_many_pixels)",
        429: "the server is busy (busy): retry after Retry-After",
        500: "the server failed on this request (internal_error, inference_failed)",
        503: "loading or shutting down (not_ready, shutting_down): retry after Retry-After",
        504: "the request took longer than the server's deadline (deadline_exceeded)",
    }
    if c.api_key:
        errors[403] = "API key missing or invalid (auth_failed)"
    responses: dict[int | str, Any] = {
        200: {"description": "the result file, or remove.bg's JSON with `Accept: application/json`",
              "model": RemoveBgResult,
              "content": {media: {"schema": BINARY} for media in c.media_types}, "headers": headers},
        **{status: {"model": RemoveBgError, "description": text} for status, text in sorted(errors.items())},
    }
    return extra, responses


#: The header that carries the API key (what the service's guard reads).
API_KEY_HEADER = "X-Api-Key"


def key_dependencies(required: bool) -> list[Any]:
    """Route dependencies that publish the API-key header as the route's security scheme (checking
    the key stays with the service's guard, which answers in each API's error shape)."""
    if not required:
        return []
    from fastapi import Security
    from fastapi.security import APIKeyHeader

    return [Security(APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKey",
                                  description="the server's API key (`serve --api-key`)"))]
