"""What the Space's tests share: the app's paths, a running `python space/app.py`, one API call."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # gradio_client is imported where it is used: this module loads without the space extra
    from gradio_client import Client

REPO = Path(__file__).resolve().parents[1]  # tests/ is one below the repository
SPACE = REPO / "space"
APP = SPACE / "app.py"
PHOTOS = REPO / "tests" / "data" / "photos"
API = "/remove_background"
START_TIMEOUT_S = 180
CALL_TIMEOUT_S = 300


# --------------------------------------------------------------- the server
@dataclass
class SpaceServer:
    """A running `python space/app.py` and what a test needs to talk to it."""

    url: str
    process: subprocess.Popen
    log_path: Path
    work_dir: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def client(self) -> Client:
        from gradio_client import Client

        downloads = self.work_dir / "downloads"
        downloads.mkdir(exist_ok=True)
        return Client(self.url, verbose=False, download_files=str(downloads))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(work_dir: Path, ckpt: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        INSPYRENET_LITE_CKPT=str(ckpt),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SHARE="False",
        GRADIO_SSR_MODE="False",
        GRADIO_TEMP_DIR=str(work_dir / "gradio"),
        # The browser test's image server listens on loopback, which the URL field refuses otherwise.
        INSPYRENET_SPACE_URL_ALLOW_NETWORKS="127.0.0.1/32",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TMPDIR=str(work_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_until_serving(server: SpaceServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"space/app.py exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"space/app.py did not serve {server.url} in {timeout_s} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def call(client: Client, photo: Path, **options) -> tuple[str, str, tuple[str, str], str]:
    """(result PNG, mask PNG, (before, after) previews, status line) of one API call."""
    from gradio_client import handle_file

    job = client.submit(handle_file(str(photo)), api_name=API, **options)
    return job.result(timeout=CALL_TIMEOUT_S)


# ------------------------------------------------------- the app in-process
_app_module: list[ModuleType] = []


def load_app_module() -> ModuleType:
    """Import space/app.py (builds the page, loads no model)."""
    if not _app_module:
        spec = importlib.util.spec_from_file_location("inspyrenet_space_app", APP)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a module Gradio can find by name
        spec.loader.exec_module(module)
        _app_module.append(module)
    return _app_module[0]
