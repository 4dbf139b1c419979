"""A local HTTP server on 127.0.0.1 that plays the Hugging Face Hub and the GitHub release.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.endpoint` and
``INSPYRENET_LITE_RELEASE_URL`` at :attr:`FakeHub.release_url` (see
:meth:`FakeHub.env`). Because ``huggingface_hub`` reads ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` when it is imported, run the code under test in a
subprocess with that environment (:func:`run_python`).

What it serves, per file and per source ("hub" or "release"), is set with
:meth:`FakeHub.serve`:

- ``"ok"``: the bytes given;
- ``"corrupt"``: the same number of bytes, a few of them flipped;
- ``"truncated"``: announces the full length, sends half, closes;
- an ``int``: that HTTP status (e.g. 404, 500) with no body.

Hub: ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` answer with the
headers ``hf_hub_download`` needs (``X-Repo-Commit``, ``ETag``,
``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length``); any other repo gets
the Hub's 401 ``RepoNotFound``. Release:
``GET /releases/download/{tag}/{filename}`` redirects (302) to
``/release-assets/{tag}/{filename}`` as GitHub does. Google Drive
(:meth:`FakeHub.serve_drive`): ``GET /uc?export=download&id=ID`` answers with
Drive's "can't scan for viruses" page in one of its two forms ("form": a
download form with ``confirm`` and ``uuid`` fields whose action is
``/drive-usercontent/download``; "cookie": a ``download_warning_*`` cookie
whose token must come back as ``&confirm=`` with the cookie); only the
confirmed request gets the file. Every request is recorded in
:attr:`FakeHub.requests`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

Behaviour = str | int  # "ok", "corrupt", "truncated" or an HTTP status code

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
RELEASE_TAG = "1.2.12"


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    source: str  # "hub", "release" or "other"
    method: str
    path: str


def corrupt(data: bytes) -> bytes:
    """``data`` with a few bytes flipped (same length); differs from ``data`` for any non-empty input."""
    buf = bytearray(data)
    for i in range(0, len(buf), max(1, len(buf) // 7)):
        buf[i] ^= 0xFF
    return bytes(buf)


class FakeHub:
    """Serve files as the Hub and as the GitHub release, on 127.0.0.1, on a free port.

    Use as a context manager (or call :meth:`start` / :meth:`stop`).
    """

    def __init__(self, repo_id: str = "plemeri/InSPyReNet", commit: str = FAKE_COMMIT):
        self.repo_id = repo_id
        self.commit = commit
        self._files: dict[str, bytes] = {}
        self._behaviour: dict[tuple[str, str], Behaviour] = {}
        self._requests: list[Request] = []
        self._drive: dict[str, tuple[bytes, str, Behaviour]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -----------------------------------------------------------------

    def serve(
        self, filename: str, data: bytes | Path | None = None, *, hub: Behaviour = "ok", release: Behaviour = "ok"
    ) -> None:
        """Serve ``filename`` (content ``data``, kept if already given) with these behaviours."""
        if data is not None:
            self._files[filename] = Path(data).read_bytes() if isinstance(data, Path) else bytes(data)
        elif filename not in self._files:
            raise ValueError(f"no content given yet for {filename!r}")
        for source, behaviour in (("hub", hub), ("release", release)):
            if not (behaviour in ("ok", "corrupt", "truncated") or isinstance(behaviour, int)):
                raise ValueError(f"unknown behaviour {behaviour!r}")
            self._behaviour[(source, filename)] = behaviour

    def serve_drive(self, file_id: str, data: bytes | Path, *, confirm: str = "form", behaviour: Behaviour = "ok") -> None:
        """Serve ``data`` as the Google Drive file ``file_id`` behind the ``confirm`` page variant."""
        if confirm not in ("form", "cookie"):
            raise ValueError(f"unknown confirmation variant {confirm!r}")
        self._drive[file_id] = (Path(data).read_bytes() if isinstance(data, Path) else bytes(data), confirm, behaviour)

    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Value for ``HF_ENDPOINT``."""
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def release_url(self) -> str:
        """Value for ``INSPYRENET_LITE_RELEASE_URL`` (the release folder, no file name)."""
        return f"{self.endpoint}/releases/download/{RELEASE_TAG}"

    def env(self) -> dict[str, str]:
        """Environment variables that send the Hub client and the release download here."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "INSPYRENET_LITE_RELEASE_URL": self.release_url,
            "INSPYRENET_LITE_GDRIVE_URL": f"{self.endpoint}/uc",
        }

    # -- what happened ---------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def count(self, source: str | None = None) -> int:
        """Number of requests received (from ``source`` only, if given)."""
        return sum(1 for r in self.requests if source is None or r.source == source)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- used by the handler ---------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _lookup(self, source: str, filename: str) -> tuple[bytes | None, Behaviour]:
        if filename not in self._files:
            return None, 404
        return self._files[filename], self._behaviour.get((source, filename), "ok")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in ("/uc", "/drive-usercontent/download"):
            self.hub._record(Request("drive", self.command, self.path))
            self._drive(path, send_body)
            return
        hub_prefix = f"/{self.hub.repo_id}/resolve/"
        release_prefix = f"/releases/download/{RELEASE_TAG}/"
        assets_prefix = f"/release-assets/{RELEASE_TAG}/"
        if path.startswith(hub_prefix) and "/" in path[len(hub_prefix) :]:
            self.hub._record(Request("hub", self.command, path))
            _revision, filename = path[len(hub_prefix) :].split("/", 1)
            self._send_file("hub", filename, send_body)
        elif path.startswith(release_prefix):
            self.hub._record(Request("release", self.command, path))
            filename = path[len(release_prefix) :]
            self.send_response(302)
            self.send_header("Location", f"{assets_prefix}{filename}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith(assets_prefix):
            self.hub._record(Request("release", self.command, path))
            self._send_file("release", path[len(assets_prefix) :], send_body)
        elif "/resolve/" in path:
            # Another repo: the Hub answers 401 RepositoryNotFound (it will not say whether a private one exists).
            self.hub._record(Request("hub", self.command, path))
            self.send_response(401)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("X-Error-Message", "Repository not found")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.hub._record(Request("other", self.command, path))
            self._send_status(404)

    def _drive(self, path: str, send_body: bool) -> None:
        query = dict(parse_qsl(urlsplit(self.path).query))
        found = self.hub._drive.get(query.get("id", ""))
        if found is None:
            self._send_status(404)
            return
        data, confirm, behaviour = found
        token = f"tok-{query['id'][:6]}"
        if confirm == "form":
            confirmed = path.startswith("/drive-usercontent/") and query.get("confirm") == "t" and query.get("uuid") == "u-1"
        else:
            cookie = self.headers.get("Cookie", "")
            confirmed = path == "/uc" and query.get("confirm") == token and f"download_warning_13={token}" in cookie
        if not confirmed:
            if confirm == "form":
                page = (
                    "<html><body><p>Google Drive can't scan this file for viruses.</p>"
                    f'<form id="download-form" action="http://{self.headers["Host"]}/drive-usercontent/download" method="get">'
                    '<input type="submit" value="Download anyway"/>'
                    f'<input type="hidden" name="id" value="{query["id"]}"><input type="hidden" name="export" value="download">'
                    '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1"></form>'
                    "</body></html>"
                ).encode()
            else:
                page = b"<html><body>Google Drive can't scan this file for viruses. <a href='#'>Download anyway</a></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            if confirm == "cookie":
                self.send_header("Set-Cookie", f"download_warning_13={token}; Domain=127.0.0.1; Path=/; HttpOnly")
                self.send_header("Set-Cookie", "NID=abc; Path=/")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if send_body:
                self.wfile.write(page)
            return
        if isinstance(behaviour, int):
            self._send_status(behaviour)
            return
        body = corrupt(data) if behaviour == "corrupt" else data
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Disposition", 'attachment; filename="latest.pth"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_status(self, code: int, source: str = "other") -> None:
        self.send_response(code)
        if source == "hub" and code == 404:
            # What the Hub sends for a missing file in an existing repo.
            self.send_header("X-Repo-Commit", self.hub.commit)
            self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file(self, source: str, filename: str, send_body: bool) -> None:
        data, behaviour = self.hub._lookup(source, filename)
        if isinstance(behaviour, int) or data is None:
            self._send_status(behaviour if isinstance(behaviour, int) else 404, source)
            return
        body = corrupt(data) if behaviour == "corrupt" else data
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if source == "hub":
            self.send_header("X-Repo-Commit", self.hub.commit)
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(len(body)))
        if behaviour == "truncated":
            self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        if behaviour == "truncated":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``env`` added to a clean copy of ours.

    Variables that would change where weights come from (``HF_*`` Hub settings,
    ``INSPYRENET_LITE_*``) are removed from the inherited environment first,
    so only ``env`` decides.
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if not (
            k.startswith("HF_")
            or k.startswith("INSPYRENET_LITE_")
            or k.startswith("HUGGINGFACE_")
            or k == "TRANSFORMERS_OFFLINE"
        )
    }
    base.update({"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=timeout, check=False
    )


def closed_endpoint() -> dict[str, str]:
    """HF_ENDPOINT of a server that has stopped: its port on 127.0.0.1 refuses connections."""
    hub = FakeHub().start()
    env = hub.env()
    hub.stop()
    return env
