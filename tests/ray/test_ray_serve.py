"""The service on Ray Serve (issue 34): ``serve --ray`` on a two-node local cluster, a replica killed
under load, and joining a token-authentication cluster (``serve --ray`` and ``ray``).

Ray stays on loopback: each cluster test runs its body in a loopback-only network namespace
(:func:`ray_helpers.in_loopback_namespace`).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import torch

from ray_helpers import in_loopback_namespace
from serving_helpers import photo, png_bytes, running

from inspyrenet_lite.cli import ray as ray_cli
from inspyrenet_lite.cli import serve as serve_cli
from inspyrenet_lite.integrations.ray_serve import ServeLimits, parse_autoscale
from inspyrenet_lite.serving import ServeSettings, create_app

#: What every cluster script shares: free ports, a `ray start` node, the service's ready wait, the
#: replicas of this cluster (marked by an environment variable: /proc is the machine's, not the namespace's).
COMMON = """
import atexit, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, uuid
import httpx
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["MARK"] = mark = uuid.uuid4().hex
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
CLI = [sys.executable, "-m", "inspyrenet_lite"]

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

TEMP = tempfile.mkdtemp(prefix="/tmp/rs")  # this cluster's sessions (a short path: Ray's sockets live there)
# a home of its own: Ray >= 2.60 turns token authentication on for any head when ~/.ray/auth_token exists
os.environ["HOME"] = TEMP

def ray_start(*args):
    head = ["--include-dashboard", "false", "--temp-dir", TEMP] if "--head" in args else []
    run = subprocess.run([RAY, "start", "--node-ip-address", "127.0.0.1", *head, *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]

def stop_cluster():
    # only this cluster's processes (`ray stop` would end every Ray process of the machine)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            marked = f"MARK={mark}".encode() in open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if marked and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(TEMP, ignore_errors=True)

atexit.register(stop_cluster)

def wait_ready(base, server, limit=150):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(base + "/v1/ready", timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False

def replicas():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0]
            marked = f"MARK={mark}".encode() in open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if title.startswith(b"ray::ServeReplica") and b"InSPyReNetService" in title and marked:  # not the front
            found.append(int(pid))
    return sorted(found)
"""

CLUSTER = COMMON + """
import asyncio
model, bodies_file = sys.argv[1], sys.argv[2]
bodies = [bytes.fromhex(h) for h in json.load(open(bodies_file))]
head = free_port()
ray_start("--head", "--port", str(head), "--num-cpus", "1")
ray_start("--address", f"127.0.0.1:{head}", "--num-cpus", "1")  # the second node
port = free_port()
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([*CLI, "serve", "--ray", "--address", f"127.0.0.1:{head}", "--replicas", "2",
                           "--replica-cpus", "1", "--model", model, "--device", "cpu", "--max-batch-size", "1",
                           "--port", str(port), "--log-level", "warning"])
result = {"ready": wait_ready(base, server)}

async def load(count):
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=16)) as client:
        async def one(i):
            r = await client.post("/v1/remove", content=bodies[i % len(bodies)], params={"type": "map"})
            return r.status_code, r.content.hex() if r.status_code == 200 else r.text
        return await asyncio.gather(*(one(i) for i in range(count)))

async def killed_mid_load(count):
    task = asyncio.ensure_future(load(count))
    await asyncio.sleep(1.0)
    victim = replicas()[0]
    os.kill(victim, signal.SIGKILL)
    return victim, await task

if result["ready"]:
    result["replicas"] = replicas()
    result["answers"] = asyncio.run(load(16))
    victim, answers = asyncio.run(killed_mid_load(32))
    result["killed"], result["under_kill"] = victim, [status for status, _ in answers]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (len(replicas()) < 2 or victim in replicas()):
        time.sleep(1)
    result["replicas_after"] = replicas()
server.send_signal(signal.SIGTERM)
result["exit"] = server.wait(120)
stop_cluster()
print("RESULT" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def bodies() -> list[bytes]:
    return [png_bytes(photo(w, h, seed)) for seed, (w, h) in enumerate([(90, 60), (50, 130), (128, 96), (70, 70)])]


def one_process_answers(model: Path, bodies: list[bytes], threads: int) -> list[bytes]:
    """The one-process service's answers, its network run on ``threads`` torch threads as a replica's is
    (Ray gives an actor of ``num_cpus=1`` one thread; CPU kernels round by thread count)."""
    from inspyrenet_lite.predictor import Predictor

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        app = create_app(Predictor.from_pretrained(str(model), device="cpu"), ServeSettings(max_batch_size=1))
        with running(app) as base:
            return [httpx.post(f"{base}/v1/remove", content=b, params={"type": "map"}, timeout=60).content
                    for b in bodies]
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_two_replicas_on_a_two_node_cluster_answer_as_one_process_and_survive_a_killed_replica(
    tiny_folder, bodies, tmp_path
):
    (tmp_path / "bodies.json").write_text(json.dumps([b.hex() for b in bodies]))
    run = in_loopback_namespace([sys.executable, "-c", textwrap.dedent(CLUSTER), str(tiny_folder),
                                 str(tmp_path / "bodies.json")], timeout=400)
    assert "RESULT" in run.stdout, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert result["ready"], run.stderr[-3000:]
    assert len(result["replicas"]) == 2
    expected = one_process_answers(tiny_folder, bodies, threads=1)  # --replica-cpus 1
    for index, (status, body) in enumerate(result["answers"]):
        assert status == 200, body
        assert bytes.fromhex(body) == expected[index % len(bodies)], f"answer {index} differs from one process's"
    # The requests the killed replica was running go to the other one (Serve's proxy alone answered
    # them 500): every answer is 200 or 503.
    statuses = result["under_kill"]
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    assert len(result["replicas_after"]) == 2 and result["killed"] not in result["replicas_after"]
    assert result["exit"] == 0


TOKEN = COMMON + """
import pathlib
home, model, photos, out = sys.argv[1:5]
os.environ["HOME"] = home  # where the token goes
subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True)
head = free_port()
ray_start("--head", "--port", str(head), "--num-cpus", "2")  # defaults: a token exists, so token authentication
address = f"127.0.0.1:{head}"
result = {}
elsewhere = dict(os.environ, HOME=home + "/elsewhere")  # no token there
for name, env in (("without", elsewhere), ("with", dict(os.environ))):
    run = subprocess.run([*CLI, "ray", photos, "-o", f"{out}/{name}", "--model", model, "-q", "--address", address],
                         env=env, capture_output=True, text=True, timeout=240)
    result[name] = [run.returncode, run.stderr]
port = free_port()
server = subprocess.Popen([*CLI, "serve", "--ray", "--address", address, "--model", model, "--device", "cpu",
                           "--port", str(port), "--log-level", "warning"], env=elsewhere,
                          stderr=subprocess.PIPE, text=True)
server.wait(120)
result["serve_without"] = [server.returncode, server.stderr.read()]
stop_cluster()
print("RESULT" + json.dumps(result))
"""


@pytest.mark.slow
def test_a_token_authentication_cluster_is_joined_with_the_token_and_explained_without(tiny_folder, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    photo(64, 48).save(photos / "a.png")
    (tmp_path / "home" / "elsewhere").mkdir(parents=True)
    run = in_loopback_namespace([sys.executable, "-c", textwrap.dedent(TOKEN), str(tmp_path / "home"),
                                 str(tiny_folder), str(photos), str(tmp_path / "out")], timeout=400)
    assert "RESULT" in run.stdout, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    code, err = result["with"]
    assert code == 0 and (tmp_path / "out" / "with" / "a.png").is_file(), err[-2000:]
    for key in ("without", "serve_without"):
        code, err = result[key]
        assert code == 2 and "Traceback" not in err, err[-2000:]
        assert "token authentication" in err and "~/.ray/auth_token or RAY_AUTH_TOKEN" in err, err
        assert "RAY_AUTH_MODE=disabled" in err


def test_a_request_forwarded_to_a_replica_gets_the_answer_the_service_gives_directly():
    """What the front deployment does, without Ray: read the request (at most the upload limit + 1
    bytes), answer it with call_asgi on another copy of the service's app. Every answer (a cut-out,
    a bad option, too many bytes, remove.bg's route, a missing route) equals the direct one."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Route

    from inspyrenet_lite.integrations.forwarding import ForwardedRequest, call_asgi
    from serving_helpers import BoxPredictor

    settings = ServeSettings(max_upload_bytes=50_000, warmup=False)
    inner = create_app(BoxPredictor(), settings)

    @asynccontextmanager
    async def lifespan(app):
        async with inner.router.lifespan_context(inner):
            yield

    async def forward(request):
        return (await call_asgi(inner, await ForwardedRequest.read(request, settings.max_upload_bytes))).to_starlette()

    methods = ["GET", "POST"]
    front = Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
    image = png_bytes(photo(60, 40))
    asks = {
        "cut-out": dict(method="POST", url="/v1/remove", content=image, params={"type": "rgba"}),
        "multipart": dict(method="POST", url="/v1/remove", files={"image": ("a.png", image, "image/png")}),
        "bad option": dict(method="POST", url="/v1/remove", content=image, params={"type": "purple-ish"}),
        "too many bytes": dict(method="POST", url="/v1/remove", content=b"\0" * 60_000),
        "remove.bg": dict(method="POST", url="/v1.0/removebg", files={"image_file": ("a.png", image, "image/png")},
                          data={"size": "auto"}),
        "ready": dict(method="GET", url="/v1/ready"),
        "no route": dict(method="GET", url="/v1/nothing-here"),
    }
    with running(create_app(BoxPredictor(), settings)) as direct, running(front) as forwarded:
        for name, ask in asks.items():
            method, path = ask.pop("method"), ask.pop("url")
            want = httpx.request(method, direct + path, **ask)
            got = httpx.request(method, forwarded + path, **ask)
            assert (got.status_code, got.content) == (want.status_code, want.content), name
            assert got.headers.get("content-type") == want.headers.get("content-type"), name
            assert name != "cut-out" or got.status_code == 200


def test_the_ray_options_are_checked_in_one_line(capsys):
    for argv, message in (
        (["--replicas", "2"], "--replicas goes with --ray"),
        (["--ray", "--replicas", "2", "--autoscale", "1:3"], "not both"),
        (["--ray", "--autoscale", "3:1"], "MAX must be at least 1 and at least MIN"),
        (["--ray", "--autoscale", "two"], "MIN:MAX replicas such as 1:4"),
        (["--ray", "--devices", "cpu,cpu"], "use --replicas N"),
    ):
        assert serve_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_serve_limits_follow_the_batch_and_queue_sizes():
    limits = ServeLimits.from_settings(ServeSettings(max_batch_size=4, queue_size=32))
    assert (limits.max_ongoing_requests, limits.max_queued_requests, limits.target_ongoing_requests) == (8, 32, 4)
    assert parse_autoscale("0:4") == (0, 4)


def test_a_token_is_used_only_when_one_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert ray_cli.use_token_if_available() is None and "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 32)
    assert ray_cli.use_token_if_available() == "~/.ray/auth_token"
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's opt-out stays
    assert ray_cli.use_token_if_available() == "~/.ray/auth_token"
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_two_cpu_replicas_in_one_process_are_warned_about(caplog):
    threads = torch.get_num_threads()
    try:
        with caplog.at_level("WARNING"):
            serve_cli._share_cpu_cores(["cpu", "cpu"])
    finally:
        torch.set_num_threads(threads)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "use --ray --replicas N" in warned[0] and "--workers" in warned[0], warned
