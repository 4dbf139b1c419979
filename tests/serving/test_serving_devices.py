"""``serve --devices`` (issue 20): one model replica per device in one process, each batch to a free one."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running, serve_command, serve_environment, start_serve  # noqa: E402

from inspyrenet_lite import Remover  # noqa: E402
from inspyrenet_lite.predictor import Predictor  # noqa: E402
from inspyrenet_lite.serving import ServeSettings, create_app  # noqa: E402


def batches_per_replica(metrics: str) -> dict[tuple[str, str], int]:
    """``{(replica, device): forwards}`` from the ``/metrics`` text."""
    found = re.findall(r'^inspyrenet_batches_total\{model="[^"]*",replica="(\d+)",device="([^"]*)"\} (\d+)$',
                       metrics, re.MULTILINE)
    return {(replica, device): int(count) for replica, device, count in found}


async def post_all(base: str, images: list[Image.Image], kinds: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        return await asyncio.gather(*(client.post("/v1/remove", content=png_bytes(image), params={"type": kind})
                                      for image, kind in zip(images, kinds)))


def assert_same_as_remover(responses: list[httpx.Response], images: list[Image.Image], kinds: list[str],
                           remover: Remover) -> None:
    for image, kind, response in zip(images, kinds, responses):
        assert response.status_code == 200, response.text
        got = np.asarray(Image.open(io.BytesIO(response.content))).astype(np.int16)
        expected = np.asarray(remover.process(image, type=kind)).astype(np.int16)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1, kind


def test_replicas_share_concurrent_requests_and_each_gets_its_own(tiny_folder: Path) -> None:
    replicas = [Predictor.from_pretrained(str(tiny_folder), device="cpu") for _ in range(2)]
    images = [photo(60 + 10 * i, 40 + 6 * i, seed=i) for i in range(8)]
    kinds = ["map", "rgba", "#ff8000", "white"] * 2
    app = create_app(replicas, ServeSettings(max_batch_size=2, max_wait_ms=20))
    with running(app) as base:
        responses = asyncio.run(post_all(base, images, kinds))
        metrics = httpx.get(f"{base}/metrics").text
        models = httpx.get(f"{base}/v1/models").json()
    assert_same_as_remover(responses, images, kinds, Remover(model=str(tiny_folder), device="cpu"))
    counts = batches_per_replica(metrics)
    assert set(counts) == {("0", "cpu"), ("1", "cpu")}, metrics
    assert all(count > 0 for count in counts.values()), counts  # both replicas did forwards
    assert re.search(r"^inspyrenet_batch_size_sum 8(\.0+)?$", metrics, re.MULTILINE), metrics  # each image once
    assert models["models"][0]["devices"] == ["cpu", "cpu"]


def test_a_busy_replica_does_not_hold_the_others_back() -> None:
    gate = threading.Event()
    slow, fast = BoxPredictor(gate), BoxPredictor()
    app = create_app([slow, fast], ServeSettings(max_batch_size=1, max_wait_ms=0))
    sizes = [(40, 30), (50, 36), (64, 48), (72, 20), (30, 70)]
    with running(app) as base:
        first: dict[str, httpx.Response] = {}
        held = threading.Thread(target=lambda: first.update(
            r=httpx.post(f"{base}/v1/remove", params={"type": "map"}, content=png_bytes(photo(*sizes[0])),
                         timeout=30)))
        held.start()
        assert slow.entered.wait(10)  # replica 0 holds the first request until the gate opens
        others = [httpx.post(f"{base}/v1/remove", params={"type": "map"}, content=png_bytes(photo(*size)),
                             timeout=30) for size in sizes[1:]]
        assert held.is_alive()  # the others were answered while replica 0 was still busy
        gate.set()
        held.join(30)
        metrics = httpx.get(f"{base}/metrics").text
    for size, response in zip(sizes, [first["r"], *others]):
        assert response.status_code == 200
        got = np.asarray(Image.open(io.BytesIO(response.content)))
        width, height = size
        expected = np.zeros((height, width), dtype=np.uint8)
        expected[height // 4 : height - height // 4, width // 4 : width - width // 4] = 255
        np.testing.assert_array_equal(got, expected)  # its own map, from its own image size
    assert (slow.batches, fast.batches) == ([1], [1, 1, 1, 1])
    assert batches_per_replica(metrics) == {("0", "cpu"): 1, ("1", "cpu"): 4}


def test_ready_waits_for_every_replica() -> None:
    gate = threading.Event()

    class SlowWarmup(BoxPredictor):
        def warmup(self, sizes=None) -> None:
            gate.wait(30)

    app = create_app([BoxPredictor(), SlowWarmup()], ServeSettings())
    with running(app, wait_ready=False) as base:
        before = httpx.get(f"{base}/v1/ready").status_code
        gate.set()
        while httpx.get(f"{base}/v1/ready").status_code != 200:
            pass
    assert before == 503


def test_serve_devices_cpu_cpu_runs_two_replicas(tmp_path: Path, tiny_folder: Path) -> None:
    images = [photo(70 + 8 * i, 50 + 4 * i, seed=10 + i) for i in range(6)]
    kinds = ["map", "rgba", "green"] * 2
    process, base = start_serve(tmp_path, "--model", str(tiny_folder), "--devices", "cpu,cpu", "--max-batch-size", "2",
                          "--max-wait-ms", "20")
    try:
        responses = asyncio.run(post_all(base, images, kinds))
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    assert_same_as_remover(responses, images, kinds, Remover(model=str(tiny_folder), device="cpu"))
    counts = batches_per_replica(metrics)
    assert set(counts) == {("0", "cpu"), ("1", "cpu")} and all(counts.values()), metrics


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "cpu,,cpu"], "empty name"),
        (["--devices", "nonsense:7"], "--devices 'nonsense:7' is not a torch device"),
        (["--devices", "cpu,cpu", "--device", "cpu"], "give --device or --devices, not both"),
        (["--devices", "cpu,cpu", "--workers", "2"], "does not combine with --workers"),
    ],
)
def test_bad_devices_exit_2_with_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    run = subprocess.run(serve_command(*flags), env=serve_environment(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
