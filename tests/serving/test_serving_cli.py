"""``inspyrenet-lite serve`` (issue 19): the real command on a free loopback port; SIGTERM drains."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import photo, png_bytes, serve_command, serve_environment, start_serve  # noqa: E402


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path, tiny_folder: Path) -> None:
    # A long batching wait keeps the request in flight when SIGTERM arrives.
    process, base = start_serve(tmp_path, "--model", str(tiny_folder), "--device", "cpu", "--max-wait-ms", "2000",
                          "--max-batch-size", "8")
    try:
        result: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{base}/v1/remove", content=png_bytes(photo(60, 40)), timeout=60)))
        sender.start()
        while not re.search(r'^inspyrenet_queue_depth\{model="[^"]*"\} 1$', httpx.get(f"{base}/metrics").text,
                            re.MULTILINE):
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        sender.join(60)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    assert result["r"].status_code == 200
    assert Image.open(io.BytesIO(result["r"].content)).size == (60, 40)
    assert code == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/v1/health", timeout=2)


def test_bad_arguments_and_unloadable_model_give_one_line_errors(tmp_path: Path) -> None:
    bad = subprocess.run(serve_command("--max-batch-size", "0"), env=serve_environment(tmp_path), capture_output=True, text=True,
                         timeout=120)
    missing = subprocess.run(serve_command("--model", str(tmp_path / "no-such-model"), "--device", "cpu"),
                             env=serve_environment(tmp_path), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "max_batch_size must be" in bad.stderr
    assert missing.returncode == 1 and "cannot load the model" in missing.stderr
    for run in (bad, missing):
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_serve_full_size_random_checkpoint_matches_remover(tmp_path: Path, random_checkpoint: Path, remover) -> None:
    image = photo(160, 120, 3)
    data = png_bytes(image)
    process, base = start_serve(tmp_path, "--model", "fast", "--ckpt", str(random_checkpoint), "--device", "cpu",
                          "--max-wait-ms", "0")
    try:
        responses = {}
        for kind in ("rgba", "map", "white"):
            responses[kind, "multipart"] = httpx.post(f"{base}/v1/remove", files={"image": ("a.png", data)},
                                                      data={"type": kind}, timeout=120)
            responses[kind, "raw"] = httpx.post(f"{base}/v1/remove", params={"type": kind}, content=data,
                                                headers={"Content-Type": "image/png"}, timeout=120)
        removebg = httpx.post(f"{base}/v1.0/removebg", files={"image_file": ("a.png", data)},
                              data={"size": "full", "channels": "alpha"}, timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    for (kind, how), response in responses.items():
        assert response.status_code == 200, (kind, how, response.text)
        got = np.asarray(Image.open(io.BytesIO(response.content))).astype(np.int16)
        expected = np.asarray(remover.process(image, type=kind)).astype(np.int16)
        assert np.abs(got - expected).max() <= 1, (kind, how)
    expected_map = np.asarray(remover.process(image, type="map")).astype(np.int16)
    got_map = np.asarray(Image.open(io.BytesIO(removebg.content))).astype(np.int16)
    assert removebg.status_code == 200 and np.abs(got_map - expected_map).max() <= 1


def test_sigterm_under_load_exits_within_the_graceful_limit_every_request_200_or_503(
    tmp_path: Path, tiny_folder: Path
) -> None:
    process, base = start_serve(tmp_path, "--model", str(tiny_folder), "--device", "cpu", "--cpu-workers", "1",
                          "--max-batch-size", "1", "--graceful-timeout", "3")
    data = png_bytes(photo(2000, 1500))
    answers: list[object] = []

    def send() -> None:
        try:
            answers.append(httpx.post(f"{base}/v1/remove", content=data, timeout=60).status_code)
        except httpx.TransportError as exc:  # a connection cut without an answer
            answers.append(type(exc).__name__)

    senders = [threading.Thread(target=send) for _ in range(12)]
    try:
        for sender in senders:
            sender.start()
        time.sleep(1.5)  # all sent, the first being computed
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = process.wait(60)
        exited_s = time.monotonic() - signalled
        for sender in senders:
            sender.join(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert exited_s < 3 + 2, f"exited {exited_s:.1f} s after SIGTERM"
    assert len(answers) == 12 and set(answers) <= {200, 503}, answers
    assert 503 in answers  # the work outlasted the limit: what was not done was answered 503
