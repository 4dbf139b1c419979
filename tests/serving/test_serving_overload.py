"""The service under overload (issue 30 items 1-6): work stops at its deadline, admission by
expected wait, slow clients, per-request caps, SIGTERM."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, free_port, photo, png_bytes, running  # noqa: E402
from training_helpers import torch_threads  # noqa: E402

from inspyrenet_lite.predictor import MapRequest, Predictor  # noqa: E402
from inspyrenet_lite.serving import ServeSettings, app as app_module, create_app  # noqa: E402
from inspyrenet_lite.serving import deadline as deadlines  # noqa: E402
from inspyrenet_lite.serving.admission import NETWORK_UNITS, WorkLedger  # noqa: E402
from inspyrenet_lite.serving.batcher import MicroBatcher  # noqa: E402
from inspyrenet_lite.serving.slowclients import server_options  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_work_past_its_deadline_stops_at_the_next_stage_and_a_probe_gets_200(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_render, real_encode = app_module.road.render, app_module.encode
    encoded: list[int] = []
    render_done = threading.Event()

    def slow_render(rgb, *args):
        if rgb.width > 100:  # the big one: compositing outlives the deadline
            time.sleep(1.0)
            render_done.set()
        return real_render(rgb, *args)

    def counting_encode(image, *args):
        encoded.append(image.width)
        if image.width > 100:
            time.sleep(2.0)  # a long encode would hold the only CPU thread for nobody
        return real_encode(image, *args)

    monkeypatch.setattr(app_module.road, "render", slow_render)
    monkeypatch.setattr(app_module, "encode", counting_encode)
    app = create_app(BoxPredictor(), ServeSettings(timeout_s=0.5, cpu_workers=1, max_batch_size=1))
    with running(app) as base:
        late = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(400, 300)), timeout=10)
        assert render_done.wait(5)
        probe = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(40, 30)), timeout=10)
    assert late.status_code == 504
    assert probe.status_code == 200
    assert probe.elapsed.total_seconds() < 0.5
    assert 400 not in encoded  # the 504'd request was not encoded after its deadline



def test_compositing_past_its_deadline_stops_between_tiles_in_both_apis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The render stage itself stops at the next row tile once the deadline passed (a large composite
    is the longest CPU stage): both APIs hand the deadline check to the compositing."""
    from inspyrenet_lite import compositing

    tiles: list[int] = []
    real_rows = compositing.foreground_rows

    def counted_rows(*args, **kwargs):
        for row in real_rows(*args, tile_pixels=1 << 14, **kwargs):  # a small image in many tiles
            tiles.append(row[0])
            if len(tiles) == 1:
                deadlines.current().abandon()  # as a 504 answered mid-compositing does
            yield row

    monkeypatch.setattr(compositing, "foreground_rows", counted_rows)
    big = png_bytes(photo(256, 256))  # 4 tiles of 64 rows
    app = create_app(BoxPredictor(), ServeSettings())
    with running(app) as base:
        for path, files in (("/v1/remove", {"image": ("a.png", big)}),
                            ("/v1.0/removebg", {"image_file": ("a.png", big)})):
            tiles.clear()
            answer = httpx.post(f"{base}{path}", files=files, timeout=30)
            assert answer.status_code in (504, 499, 503, 408), (path, answer.status_code, answer.text[:200])
            assert len(tiles) == 1, (path, tiles)  # stopped before the second tile


class SizeRecorder(BoxPredictor):
    """A BoxPredictor that records the size of every image that reached the network."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(gate)
        self.sizes: list[tuple[int, int]] = []

    def predict_maps(self, items, batch_size=4, errors="raise"):
        items = list(items)
        self.sizes.extend(item.image.size for item in items)
        return super().predict_maps(items, batch_size, errors)


def test_a_request_whose_deadline_passed_in_the_queue_never_reaches_the_network() -> None:
    gate = threading.Event()
    predictor = SizeRecorder(gate)
    app = create_app(predictor, ServeSettings(timeout_s=0.5, max_batch_size=1, max_wait_ms=0, queue_size=4))
    answers: dict[str, httpx.Response] = {}

    def send(name: str, width: int) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({name: httpx.post(
            f"{base}/v1/remove", content=png_bytes(photo(width, 30)), timeout=10)}))
        thread.start()
        return thread

    with running(app) as base:
        running_one = send("running", 40)  # holds the only replica until the gate opens
        assert predictor.entered.wait(10)
        queued = send("queued", 50)  # waits behind it past its own deadline
        running_one.join(10)
        queued.join(10)
        gate.set()
        probe = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(60, 30)), timeout=10)
    assert answers["running"].status_code == 504 and answers["queued"].status_code == 504
    assert probe.status_code == 200
    assert predictor.sizes == [(40, 30), (60, 30)]  # the queued 504 cost no forward


def test_the_batcher_answers_an_expired_entry_without_a_forward() -> None:
    # Its waiter did not give up (the future is not cancelled): the batcher itself checks the deadline.
    gate = threading.Event()
    predictor = SizeRecorder(gate)

    async def scenario() -> tuple[object, object]:
        batcher = MicroBatcher(predictor, max_batch_size=1, max_wait_ms=0, queue_size=4)
        batcher.start()
        try:
            first = batcher.submit(MapRequest(photo(40, 30)))
            while not predictor.entered.is_set():
                await asyncio.sleep(0.01)
            token = deadlines.set_current(deadlines.Deadline(0.1))
            try:
                late = batcher.submit(MapRequest(photo(50, 30)))
            finally:
                deadlines.reset_current(token)
            await asyncio.sleep(0.3)  # its deadline passes while the replica is busy
            gate.set()
            return await asyncio.gather(first, late, return_exceptions=True)
        finally:
            await batcher.stop()

    first, late = asyncio.run(scenario())
    assert first.shape == (30, 40)
    assert isinstance(late, deadlines.DeadlineExceeded)
    assert predictor.sizes == [(40, 30)]


class SlowPredictor(BoxPredictor):
    """Each forward takes ``seconds`` (a server far below the load it is given)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def predict_maps(self, items, batch_size=4, errors="raise"):
        time.sleep(self.seconds)
        return super().predict_maps(items, batch_size, errors)


def test_above_capacity_requests_get_200_or_503_at_once_never_504() -> None:
    app = create_app(SlowPredictor(0.2), ServeSettings(timeout_s=2.0, max_batch_size=1, max_wait_ms=0, queue_size=64))
    data = png_bytes(photo(64, 48))
    with running(app) as base:
        assert httpx.post(f"{base}/v1/remove", content=data, timeout=10).status_code == 200  # one measurement
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(
            httpx.post(f"{base}/v1/remove", content=data, timeout=30))) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    statuses = sorted(response.status_code for response in results)
    assert set(statuses) == {200, 503}, statuses
    busy = [response for response in results if response.status_code == 503]
    assert all(int(response.headers["retry-after"]) >= 1 for response in busy)
    assert max(response.elapsed.total_seconds() for response in busy) < 1.0


class SlowBackend:
    """A backend whose every pass (warm-up included) takes ``seconds`` more: a slow device."""

    def __init__(self, backend, seconds: float) -> None:
        self.backend = backend
        self.name = backend.name
        self.seconds = seconds

    def predict(self, *args, **kwargs):
        time.sleep(self.seconds)
        return self.backend.predict(*args, **kwargs)

    def warmup(self, sizes) -> None:
        for size in sizes:
            time.sleep(self.seconds)
            self.backend.warmup([size])


#: Clients of a burst, in their own process: in the server's process their threads would take the
#: interpreter lock from it and add their own time to every answer.
_BURST = """
import json, sys, threading, httpx
base, clients, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()
answers = []
def send():
    response = httpx.post(base + "/v1/remove", content=data, timeout=60)
    answers.append([response.status_code, response.headers.get("retry-after")])
threads = [threading.Thread(target=send) for _ in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(answers))
"""


def burst(base: str, image: Path, clients: int) -> list[tuple[int, str | None]]:
    """(status, Retry-After) of ``clients`` requests of the file ``image`` sent at once."""
    done = subprocess.run([sys.executable, "-c", _BURST, base, str(clients), str(image)],
                          capture_output=True, text=True, timeout=120, check=True)
    return [(status, retry) for status, retry in json.loads(done.stdout)]


def test_a_burst_right_after_ready_gets_200_or_503_never_504(tiny_folder: Path, tmp_path: Path) -> None:
    # A real (small, random-weight) model on a device where a pass takes 1 s. Nothing was answered
    # yet: only the warm-up's timing can tell admission that 16 queued requests take 16 s, not the
    # 0.5 s the prior guesses. One torch thread keeps the small network's own time steady.
    predictor = Predictor.from_pretrained(str(tiny_folder), device="cpu")
    predictor.backend = SlowBackend(predictor.backend, 1.0)
    settings = ServeSettings(timeout_s=5.0, max_batch_size=1, max_wait_ms=0, queue_size=16)
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(photo(64, 48)))
    with torch_threads(1), running(create_app(predictor, settings)) as base:
        answers = burst(base, image, 3 * settings.queue_size)
    statuses = sorted(status for status, _ in answers)
    assert len(statuses) == 48 and 504 not in statuses, {code: statuses.count(code) for code in set(statuses)}
    assert set(statuses) == {200, 503}, statuses
    assert all(retry is not None and int(retry) >= 1 for status, retry in answers if status == 503)


def test_a_dynamic_pass_above_the_servers_cap_is_refused_422_naming_it() -> None:
    app = create_app(BoxPredictor(), ServeSettings(max_network_pixels=200_000))
    data = png_bytes(photo(1200, 900))
    with running(app) as base:
        dynamic = httpx.post(f"{base}/v1/remove", params={"resize": "dynamic"}, content=data, timeout=30)
        blended = httpx.post(f"{base}/v1/remove", params={"hr_blend": "0.5"}, content=data, timeout=30)
        static = httpx.post(f"{base}/v1/remove", content=data, timeout=30)
        small = httpx.post(f"{base}/v1/remove", params={"resize": "dynamic"}, content=png_bytes(photo(300, 200)),
                           timeout=30)
    assert dynamic.status_code == 422 and dynamic.json()["error"]["field"] == "resize"
    assert "200000" in dynamic.json()["error"]["message"]
    assert blended.status_code == 422 and blended.json()["error"]["field"] == "hr_blend"
    assert static.status_code == 200 and small.status_code == 200


def open_socket(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_slow_heads_are_closed_slow_bodies_get_408_and_health_answers_meanwhile() -> None:
    settings = ServeSettings(head_timeout_s=1.0, body_timeout_s=1.0)
    app = create_app(BoxPredictor(), settings)
    with running(app, **server_options(settings)) as base:
        heads = [open_socket(base) for _ in range(50)]
        for sock in heads:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        body = open_socket(base)
        body.sendall(b"POST /v1/remove HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b"\x89PNG" * 4)  # the rest never comes
        health = httpx.get(f"{base}/v1/health", timeout=5)
        started = time.monotonic()
        answer = body.recv(4096)
        body_s = time.monotonic() - started
        closed = [sock.recv(100) for sock in heads]  # b"": closed by the server
        heads_s = time.monotonic() - started
    assert health.status_code == 200
    assert answer.startswith(b"HTTP/1.1 408") and body_s < 3
    assert closed == [b""] * 50 and heads_s < 3


@pytest.fixture
def dripping_host():
    """An HTTP server on 127.0.0.1 that sends its answer's body one byte every 0.2 s, for a minute."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "300")
            self.end_headers()
            try:
                for _ in range(300):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_dripping_image_urls_hold_no_cpu_thread_and_stop_at_one_total_deadline(dripping_host: int) -> None:
    settings = ServeSettings(allow_image_url=True, url_allow_networks=("127.0.0.1/32",), url_timeout_s=2.0,
                             cpu_workers=2)
    with running(create_app(BoxPredictor(), settings)) as base:
        drips: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: drips.append(httpx.post(
            f"{base}/v1.0/removebg", data={"image_url": f"http://127.0.0.1:{dripping_host}/a.png"}, timeout=30)))
            for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both fetches are dripping now
        other = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(40, 30)), timeout=30)
        for thread in threads:
            thread.join(30)
    assert other.status_code == 200 and other.elapsed.total_seconds() < 1.0
    assert [response.status_code for response in drips] == [400, 400]
    assert all(response.elapsed.total_seconds() < 4.0 for response in drips)
    assert "within 2 s" in drips[0].json()["errors"][0]["title"]


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspyrenet_lite", "serve", *args]


def offline_env(tmp_path: Path) -> dict[str, str]:
    """This checkout on the path; nothing may be downloaded (caches in ``tmp_path``, the Hub offline)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}


def test_serve_workers_2_with_a_model_that_cannot_load_exits_1_saying_why(tmp_path: Path) -> None:
    # uvicorn restarts a worker that dies; one that cannot load its model must stop the server instead.
    done = subprocess.run(serve_command("--port", str(free_port()), "--model", str(tmp_path / "missing"),
                                        "--device", "cpu", "--workers", "2"),
                          env=offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot load the model" in done.stderr and "does not exist" in done.stderr
    assert "a worker could not start" in done.stderr


@pytest.mark.slow  # two worker processes each start Python, torch and the model
def test_sigterm_drains_every_worker_of_serve_workers_2(tiny_folder: Path, tmp_path: Path) -> None:
    # The real command with two worker processes: the request in flight when the supervisor gets
    # SIGTERM is answered 200, new connections are refused, and everything exits 0 within the limit.
    port = free_port()
    process = subprocess.Popen(
        serve_command("--port", str(port), "--model", str(tiny_folder), "--device", "cpu", "--workers", "2",
                      "--max-wait-ms", "2000", "--max-batch-size", "8", "--graceful-timeout", "10"),
        env=offline_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while sum("inspyrenet_lite.serving.state: ready" in line for line in list(lines)) < 2:  # both workers
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() - started < 240, "".join(lines)
            time.sleep(0.1)
        answer: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: answer.update(
            r=httpx.post(f"{base}/v1/remove", content=png_bytes(photo(60, 40)), timeout=60)))
        sender.start()
        while not re.search(r'^inspyrenet_queue_depth\{model="[^"]*"\} 1$', httpx.get(f"{base}/metrics").text,
                            re.MULTILINE):  # the metrics of whichever worker answers: until it is the busy one
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(1.0)  # the supervisor looks at its signals twice a second
        try:  # refused, or 503 from a worker that had not closed its listener yet; never held or reset
            late: httpx.Response | None = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(60, 40)), timeout=5)
        except httpx.ConnectError:
            late = None
        sender.join(60)
        code = process.wait(60)
        exited_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert answer["r"].status_code == 200, answer["r"].text
    assert Image.open(io.BytesIO(answer["r"].content)).size == (60, 40)
    assert late is None or late.status_code == 503, late.text
    assert code == 0 and exited_s < 10, (code, exited_s)


def test_a_workers_stop_signal_drains_its_service_before_it_stops_the_server() -> None:
    # What each --workers process does to the handlers uvicorn's server installed (a request past
    # the limit is then answered 503, not cut off as a 500).
    from inspyrenet_lite.cli.serve import drain_on_stop

    calls: list[str] = []
    saved = {stop: signal.getsignal(stop) for stop in (signal.SIGTERM, signal.SIGINT)}
    try:
        for stop in saved:
            signal.signal(stop, lambda signum, frame: calls.append(f"server stops on {signum}"))
        drain_on_stop(type("State", (), {"drain": staticmethod(lambda grace: calls.append(f"drain {grace:g}"))}), 7.0)
        signal.raise_signal(signal.SIGTERM)
    finally:
        for stop, handler in saved.items():
            signal.signal(stop, handler)
    assert calls == ["drain 7", f"server stops on {int(signal.SIGTERM)}"]


def test_the_ledger_weighs_by_the_slowest_warm_up_until_an_answer_replaces_it() -> None:
    ledger = WorkLedger()
    ledger.seed(0.5)  # one model's warm pass: half a second per network pass
    ledger.seed(2.0)  # a slower one: a request may go to either
    ledger.seed(1.0)
    assert ledger.expected_wait(NETWORK_UNITS) == pytest.approx(2.0)
    first = ledger.admit(NETWORK_UNITS, deadline_s=1.0)  # nothing ahead: always admitted
    assert first is not None
    assert ledger.admit(NETWORK_UNITS, deadline_s=4.0) is None  # 4 s expected, above 0.8 x 4 s
    ledger.done(first, 0.25, "answered")  # the first answer measures the whole request
    assert ledger.expected_wait(NETWORK_UNITS) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="seconds > 0"):
        ledger.seed(0.0)
