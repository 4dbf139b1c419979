"""Fetching ``image_url`` without letting the server reach what it must not (SSRF).

Every hop (the URL and each redirect) is resolved first; if any address of the
host is not a public unicast address (loopback, private, link-local and so
the cloud metadata address 169.254.169.254, shared, reserved, multicast,
unspecified; the IPv4 address inside IPv4-mapped, 6to4, Teredo and NAT64
IPv6 addresses is checked too), the fetch is refused before any
connection. The connection then goes to the checked address itself (the
``Host`` header and TLS server name keep the name), so a second DNS answer
cannot swap it. Size and time are capped: the whole fetch (every lookup,
redirect and byte) has one deadline, and it runs on the event loop (names are
resolved on asyncio's default executor), never on the CPU pool, so a source that
drips its bytes holds no thread. ``allow_networks`` exempts CIDRs (an internal
image host the operator trusts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence

import httpx

from .errors import ServeError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (tests replace this function; nothing else resolves names here)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def refusal(address: str, allow_networks: Sequence[str] = ()) -> str | None:
    """Why ``address`` must not be contacted, or ``None`` when it may. An IPv6 address that carries
    an IPv4 one (6to4, Teredo, NAT64) is refused when that IPv4 address would be."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        why = _policy(embedded, allow_networks)
        if why is not None:
            return f"{why} ({embedded}, carried in {ip})"
    return _policy(ip, allow_networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 (2002::/16), Teredo (2001::/32: the client's) or NAT64 address
    leads to, or ``None``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


#: NAT64 prefixes whose last 32 bits are the IPv4 address (RFC 6052; RFC 8215's local-use /48 too).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _policy(ip: IPAddress, allow_networks: Sequence[str]) -> str | None:
    if any(ip in ipaddress.ip_network(net, strict=False) for net in allow_networks):
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


def _refused(url: str, why: str) -> ServeError:
    return ServeError(400, "invalid_image_url", f"image_url {url!r} is refused: {why}", "image_url")


async def _checked_address(url: httpx.URL, allow_networks: Sequence[str]) -> str:
    if url.scheme not in ("http", "https"):
        raise _refused(str(url), "only http and https URLs are fetched")
    if not url.host:
        raise _refused(str(url), "it has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        ipaddress.ip_address(url.host)
        addresses = [url.host]
    except ValueError:
        try:
            addresses = await asyncio.to_thread(resolve, url.host, port)
        except (OSError, UnicodeError):
            raise _refused(str(url), "its host name does not resolve") from None
    if not addresses:
        raise _refused(str(url), "its host name does not resolve")
    for address in addresses:
        why = refusal(address, allow_networks)
        if why is not None:
            raise _refused(str(url), f"{url.host} resolves to {why}")
    return addresses[0]


async def fetch_url(
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int = 5,
    allow_networks: Sequence[str] = (),
) -> bytes:
    """The body at ``url`` (ServeError 400 when refused, unreachable, not 2xx, or not complete
    within ``timeout_s`` in all; 413 above ``max_bytes``)."""
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _refused(url, "it is not a valid URL") from None
    try:
        return await asyncio.wait_for(_fetch(current, url, timeout_s, max_bytes, max_redirects, allow_networks),
                                      timeout_s)
    except asyncio.TimeoutError:
        raise ServeError(400, "failed_to_download", f"image_url did not arrive within {timeout_s:g} s",
                         "image_url") from None


async def _fetch(current: httpx.URL, url: str, timeout_s: float, max_bytes: int, max_redirects: int,
                 allow_networks: Sequence[str]) -> bytes:
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout_s) as client:
        for _ in range(max_redirects + 1):
            address = await _checked_address(current, allow_networks)
            response_url, body, location = await _get(client, current, address, max_bytes)
            if location is None:
                return body
            current = response_url.join(location)
    raise _refused(url, f"more than {max_redirects} redirects")


async def _get(
    client: httpx.AsyncClient, url: httpx.URL, address: str, max_bytes: int
) -> tuple[httpx.URL, bytes, str | None]:
    pinned = url.copy_with(host=address)
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    try:
        async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            if response.is_redirect and response.headers.get("location"):
                return url, b"", response.headers["location"]
            if response.status_code != 200:
                raise ServeError(400, "failed_to_download", f"image_url answered HTTP {response.status_code}",
                                 "image_url")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_big(max_bytes)
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(max_bytes)
                chunks.append(chunk)
            return url, b"".join(chunks), None
    except httpx.TimeoutException:
        raise ServeError(400, "failed_to_download", "image_url did not answer in time", "image_url") from None
    except httpx.HTTPError as exc:
        raise ServeError(400, "failed_to_download", f"image_url could not be fetched ({type(exc).__name__})",
                         "image_url") from None


def _too_big(max_bytes: int) -> ServeError:
    return ServeError(413, "file_too_large", f"the image at image_url is above {max_bytes} bytes", "image_url")
