"""The Space's image URL field: a photo fetched from an address a visitor pastes.

The fetch is the service's own SSRF-safe one (``inspyrenet_lite.serving.urlfetch``):
every hop is resolved and refused unless public, the connection goes to the
checked address, and size and time are capped. A Space without network access
turns the field off with ``INSPYRENET_SPACE_IMAGE_URL=0``;
``INSPYRENET_SPACE_URL_ALLOW_NETWORKS`` (comma-separated CIDRs) exempts an
internal image host the operator trusts, as ``serve``'s ``url_allow_networks`` does.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image

from inspyrenet_lite.serving.errors import ServeError
from inspyrenet_lite.serving.urlfetch import fetch_url

logger = logging.getLogger("inspyrenet_space")

ENABLE_ENV = "INSPYRENET_SPACE_IMAGE_URL"
ALLOW_NETWORKS_ENV = "INSPYRENET_SPACE_URL_ALLOW_NETWORKS"
URL_TIMEOUT_S = 15.0
URL_MAX_BYTES = 20 * 1024 * 1024  # the page's upload limit
URL_MAX_REDIRECTS = 5


class UrlRefused(ValueError):
    """The address cannot give a photo; ``str()`` says why and what to do."""


def url_input_enabled() -> bool:
    """Whether the page offers the URL field (``INSPYRENET_SPACE_IMAGE_URL``, on unless 0/false/no/off)."""
    value = os.environ.get(ENABLE_ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENABLE_ENV}={value!r} is not understood: set it to 1 (on) or 0 (off)")


def allowed_networks() -> tuple[str, ...]:
    """The CIDRs of ``INSPYRENET_SPACE_URL_ALLOW_NETWORKS`` (none by default)."""
    import ipaddress

    text = os.environ.get(ALLOW_NETWORKS_ENV, "")
    networks = tuple(part.strip() for part in text.split(",") if part.strip())
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as err:
            raise ValueError(f"{ALLOW_NETWORKS_ENV}: {net!r} is not a network such as 10.0.0.0/8 ({err})") from None
    return networks


def file_stem(url: str) -> str:
    """A safe file stem from the address's last path segment (``image`` when it has none)."""
    name = Path(unquote(urlsplit(url).path)).stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:64]
    return stem or "image"


def image_suffix(body: bytes) -> str:
    """The usual file suffix of the image format ``body`` starts with ('' when Pillow knows none)."""
    try:
        with Image.open(io.BytesIO(body)) as image:  # reads the header only
            found = image.format
    except Exception:  # not an image: the page's decoder says so with its own message
        return ""
    preferred = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif", "BMP": ".bmp"}
    if found in preferred:
        return preferred[found]
    suffixes = [ext for ext, fmt in Image.registered_extensions().items() if fmt == found]
    return suffixes[0] if suffixes else ""


async def fetch_to_file(url: str | None, folder: Path) -> Path:
    """Fetch the image at ``url`` into a fresh folder under ``folder``; ``UrlRefused`` when it cannot be."""
    address = (url or "").strip()
    if not address:
        raise UrlRefused("No address given: paste an image address starting with https:// or http://.")
    try:
        body = await fetch_url(
            address,
            timeout_s=URL_TIMEOUT_S,
            max_bytes=URL_MAX_BYTES,
            max_redirects=URL_MAX_REDIRECTS,
            allow_networks=allowed_networks(),
        )
    except ServeError as err:
        logger.info("rejected: image URL: %s", err.message)
        raise UrlRefused(
            f"The image address did not give an image: {err.message}. "
            "Give the address of a public image, or upload the file."
        ) from err
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=folder)) / (file_stem(address) + image_suffix(body))
    path.write_bytes(body)
    return path
