"""Fixtures of the Space's tests: one `python space/app.py` per session, shared by every module here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from space_helpers import (
    APP,
    PHOTOS,
    START_TIMEOUT_S,
    SpaceServer,
    free_port,
    offline_env,
    stop,
    wait_until_serving,
)


@pytest.fixture(scope="session")
def space_server(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path):
    """`python space/app.py` serving on a free loopback port; killed at the end."""
    work_dir = tmp_path_factory.mktemp("space-server")
    port = free_port()
    log_path = work_dir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(APP)],
            cwd=work_dir,
            env=offline_env(work_dir, random_checkpoint, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = SpaceServer(f"http://127.0.0.1:{port}/", process, log_path, work_dir)
    try:
        wait_until_serving(server, START_TIMEOUT_S)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small photo whose sides are not multiples of 32."""
    path = tmp_path_factory.mktemp("space-inputs") / "cat_small.png"
    with Image.open(PHOTOS / "cat.png") as cat:
        cat.convert("RGB").resize((227, 151), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def client(space_server: SpaceServer):
    return space_server.client()
