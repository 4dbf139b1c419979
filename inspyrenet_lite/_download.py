"""Fetch a URL into a file safely, and check files against an md5.

Only the standard library does the HTTP (``urllib``), so proxies set through
the usual environment variables apply. A download is written to a temporary
name beside its destination, hashed while it streams, and renamed into place
only once its size and md5 are right: an interrupted or corrupt download never
leaves a file that looks finished.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from tqdm.auto import tqdm

from inspyrenet_lite import __version__

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough to stream 350 MiB
TIMEOUT_S = 60.0
#: How long a first connection to a host may take before it counts as unreachable.
PROBE_TIMEOUT_S = 5.0
USER_AGENT = f"inspyrenet-lite/{__version__} (+urllib)"


class DownloadError(OSError):
    """A download failed or its content did not verify."""


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the host of ``url`` cannot be reached (one TCP connection, no retry),
    or ``None`` if it can, or if a proxy applies (then the proxy is what counts).

    Lets a first run without network give up in seconds instead of waiting
    out the Hub client's retries (about 25 s of back-off per file).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc or type(exc).__name__}); not retried"


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest (md5 unless told) of a file, read in chunks so that memory use stays flat."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(
    url: str,
    dest: Path,
    *,
    expected_md5: str | None,
    progress: bool = True,
    desc: str | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically, checking size and md5.

    The body goes to a temporary file in ``dest``'s folder and is renamed to
    ``dest`` only when complete and (if ``expected_md5`` is given) matching.
    Raises :class:`DownloadError` with the reason otherwise; no file is left.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    # A unique name per download (concurrent runs never share one), opened
    # with the process umask so the finished file has normal permissions.
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.incomplete"
    try:
        with open(tmp, "xb") as out:
            got_md5, size = _stream(request, out, progress=progress, desc=desc or dest.name)
        if expected_md5 is not None and got_md5 != expected_md5.lower():
            raise DownloadError(
                f"downloaded {size} bytes with md5 {got_md5}, expected {expected_md5} "
                "(corrupt or different file; discarded)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Downloaded %s to %s", url, dest)
    return dest


def _stream(request: urllib.request.Request, out, *, progress: bool, desc: str) -> tuple[str, int]:
    """Copy the response body of ``request`` to ``out``; return (md5, size)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect: {exc.reason}") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"connection failed during download: {exc!r}") from exc
    if total is not None and size != total:
        raise DownloadError(f"connection ended after {size} of {total} bytes")
    return digest.hexdigest(), size


def _file_identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def marker_path(marker_dir: Path, path: Path) -> Path:
    """Where the verification record of ``path`` lives (one per real file)."""
    real = os.path.realpath(path)
    key = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return marker_dir / f"{key}.md5-ok"


def has_valid_marker(marker_dir: Path, path: Path, md5: str) -> bool:
    """True if ``path`` was verified against ``md5`` and has not changed since.

    The record holds the file's real path, size, mtime and inode at the time
    it was hashed; any change to the file invalidates it.
    """
    try:
        record = json.loads(marker_path(marker_dir, path).read_text(encoding="utf-8"))
        current = _file_identity(Path(os.path.realpath(path)))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("md5") == md5.lower()
        and record.get("path") == os.path.realpath(path)
        and all(record.get(k) == v for k, v in current.items())
    )


def write_marker(marker_dir: Path, path: Path, md5: str) -> None:
    """Record that ``path`` (as it is now) has md5 ``md5``; best effort."""
    real = Path(os.path.realpath(path))
    record = {"md5": md5.lower(), "path": str(real), **_file_identity(real)}
    target = marker_path(marker_dir, path)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        # A read-only cache only costs a re-hash at the next start.
        logger.debug("Could not record verification of %s: %s", path, exc)
    finally:
        tmp.unlink(missing_ok=True)


def remove_marker(marker_dir: Path, path: Path) -> None:
    """Forget any verification record of ``path``."""
    marker_path(marker_dir, path).unlink(missing_ok=True)
