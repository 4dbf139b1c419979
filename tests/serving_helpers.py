"""Helpers of the serving tests: a uvicorn server on a free loopback port, a scripted predictor."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app, wait_ready: bool = True, **options) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.
    ``options``: more uvicorn.Config options (e.g. ``slowclients.server_options(settings)``)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    if wait_ready:
        while httpx.get(f"{base}/v1/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not become ready")
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)


class BoxPredictor:
    """A stand-in Predictor: the map is 1 inside the central box (the middle half of each side),
    0 outside. ``gate`` (when set) holds every forward until it is opened; ``batches`` records
    the batch lengths."""

    name = "box"
    base_size = (64, 64)
    device = "cpu"
    precision = "fp32"
    resize = "static"
    hr_blend = 0.0

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.batches: list[int] = []
        self.entered = threading.Event()

    def warmup(self, sizes=None) -> None:
        pass

    def predict_maps(self, items, batch_size=4, errors="raise"):
        items = list(items)
        self.batches.append(len(items))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        maps = []
        for item in items:
            width, height = item.image.size
            pred = np.zeros((height, width), dtype=np.float32)
            pred[height // 4 : height - height // 4, width // 4 : width - width // 4] = 1.0
            maps.append(pred)
        return maps


# -- the real ``serve`` command in a subprocess
REPO_ROOT = Path(__file__).resolve().parents[1]


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspyrenet_lite", "serve", *args]


def serve_environment(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    # Nothing may be downloaded: point every cache at an empty folder and the Hub nowhere.
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), INSPYRENET_LITE_CACHE=str(tmp_path / "own"))
    return env


def start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(serve_command("--port", str(port), *args), env=serve_environment(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.stdout.read()}")
        try:
            if httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("serve did not become ready")
