"""Images from an http(s) address and from open files: Remover.process, remove() and the CLI's stdin/stdout."""

from __future__ import annotations

import functools
import http.server
import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite import Remover
from inspyrenet_lite.image_io import ImageLoadError, fetch_url, load_image
from serving_helpers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A folder with photo.png and big.bin served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("site")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / "photo.png")
    (folder / "big.bin").write_bytes(b"\0" * 300_000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_address_is_fetched_and_decoded(site):
    loaded = load_image(f"{site}/photo.png")
    assert loaded.kind == "url" and loaded.rgb.size == (40, 30)


@pytest.mark.parametrize(
    "address, message",
    [
        ("/missing.png", "the server answered 404"),
        ("/big.bin", "above the limit of 100000"),
        (None, "cannot be fetched"),
    ],
)
def test_an_address_that_cannot_be_had_is_one_clear_error(site, address, message):
    url = f"{site}{address}" if address else f"http://127.0.0.1:{free_port()}/photo.png"  # nobody listens there
    with pytest.raises(ImageLoadError, match=message):
        fetch_url(url, max_bytes=100_000)


def test_open_files_and_byte_streams_are_read(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (12, 8), (1, 2, 3)).save(path)
    with open(path, "rb") as fh:
        assert load_image(fh).rgb.size == (12, 8)
    assert load_image(io.BytesIO(path.read_bytes())).rgb.size == (12, 8)
    with open(path, encoding="latin-1") as text, pytest.raises(ImageLoadError, match="binary mode"):
        load_image(text)


def test_remover_takes_an_address_and_a_byte_stream(tiny_folder, site):
    remover = Remover(str(tiny_folder), device="cpu")
    from_url = remover.process(f"{site}/photo.png", type="map")
    data = fetch_url(f"{site}/photo.png")
    from_stream = remover.process(io.BytesIO(data), type="map")
    assert isinstance(from_url, Image.Image) and isinstance(from_stream, Image.Image)
    assert np.array_equal(np.asarray(from_url), np.asarray(from_stream))
    assert np.array_equal(np.asarray(from_url), np.asarray(Image.open(io.BytesIO(remover.process(data, type="map")))))


def test_the_command_reads_stdin_and_writes_stdout(tiny_folder, tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(photo)
    run = subprocess.run(
        [sys.executable, "-m", "inspyrenet_lite", "-", "-o", "-", "--model", str(tiny_folder), "--type", "map",
         "--format", "jpg"],
        input=photo.read_bytes(), capture_output=True, timeout=300, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )
    assert run.returncode == 0, run.stderr.decode()
    with Image.open(io.BytesIO(run.stdout)) as out:
        assert out.format == "JPEG" and out.size == (40, 30)
    refused = subprocess.run(
        [sys.executable, "-m", "inspyrenet_lite", "-", str(photo), "-o", "-", "--model", str(tiny_folder)],
        capture_output=True, timeout=300, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )
    assert refused.returncode == 2 and b"-o - writes one result" in refused.stderr
