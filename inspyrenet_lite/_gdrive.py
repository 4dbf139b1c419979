"""Google Drive downloads in plain ``urllib``: find the real download URL past the confirmation step.

A large public Drive file is not served at once: ``uc?export=download&id=ID``
answers with an HTML page ("can't scan this file for viruses") instead. Two
forms of that page exist:

* a form (``id="download-form"``) whose ``action`` and hidden inputs
  (``id``, ``export``, ``confirm``, ``uuid``) make the real download URL;
* the older one: a ``download_warning*`` cookie (or a ``confirm=`` token in
  a link) to send back as ``&confirm=TOKEN`` with that cookie.

:func:`drive_download_request` returns the URL and headers of the file itself;
:func:`inspyrenet_lite._download.download_url` then fetches it atomically.
"""

from __future__ import annotations

import html
import os
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

from ._download import TIMEOUT_S, USER_AGENT, DownloadError

ENV_GDRIVE_URL = "INSPYRENET_LITE_GDRIVE_URL"
DEFAULT_GDRIVE_URL = "https://drive.google.com/uc"
_MAX_PAGE = 1 << 20  # a confirmation page is a few KiB


def drive_url(file_id: str) -> str:
    """The first URL to ask for a Drive file (base overridable by ``$INSPYRENET_LITE_GDRIVE_URL``)."""
    base = os.environ.get(ENV_GDRIVE_URL, "").strip() or DEFAULT_GDRIVE_URL
    return f"{base}?{urlencode({'export': 'download', 'id': file_id})}"


class _FormParser(HTMLParser):
    """Collects the action and hidden inputs of the page's download form."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and (a.get("id") == "download-form" or "download" in a.get("action", "")):
            self._in_form = True
            self.action = a.get("action")
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def drive_download_request(file_id: str) -> tuple[str, dict[str, str]]:
    """(URL, extra headers) that download the Drive file ``file_id`` itself.

    Raises :class:`DownloadError` if Drive answers with an error or with a page
    that offers no way to the file (quota exceeded, file not public...).
    """
    url = drive_url(file_id)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            content_type = response.headers.get("Content-Type", "")
            if "text/html" not in content_type:
                return url, {}  # a small file: served at once
            cookies = response.headers.get_all("Set-Cookie") or []
            page = response.read(_MAX_PAGE).decode("utf-8", "replace")
            final_url = response.geturl()
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"Google Drive answered HTTP {exc.code} {exc.reason} for file {file_id}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect to Google Drive: {exc.reason}") from exc

    form = _FormParser()
    form.feed(page)
    if form.action and form.fields.get("confirm"):
        return f"{urljoin(final_url, html.unescape(form.action))}?{urlencode(form.fields)}", {}

    jar = [c.split(";", 1)[0].strip() for c in cookies]
    token = next((c.split("=", 1)[1] for c in jar if c.startswith("download_warning")), None)
    if token is None:
        match = re.search(r"confirm=([0-9A-Za-z_\-]+)", page)
        token = match.group(1) if match else None
    if token is None:
        raise DownloadError(
            f"Google Drive did not offer file {file_id} for download (no confirmation form or token in its page; "
            "the file may be over its download quota or no longer public)"
        )
    headers = {"Cookie": "; ".join(jar)} if jar else {}
    return f"{url}&{urlencode({'confirm': token})}", headers
