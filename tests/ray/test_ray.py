"""Ray Data integration (issue 20): the map_batches callable, both actor-pool spellings, ``inspyrenet-lite ray``.

Ray must stay on loopback: its runtime-env agent binds the machine's external
address even when told 127.0.0.1. So every test that starts Ray runs its body
in a child process inside a network namespace that has only loopback
(``unshare -n`` as root, then ``ip link set lo up``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ray_helpers import in_loopback_namespace

from inspyrenet_lite import Remover
from inspyrenet_lite.integrations.ray import BackgroundRemover, actor_cpus, map_batches_options

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mixed sizes, one in a sub-folder, a corrupt PNG and a text file named like an image."""
    folder = tmp_path_factory.mktemp("photos") / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name, (w, h) in {"a.png": (90, 60), "b.jpg": (50, 130), "sub/c.png": (128, 96), "d.webp": (70, 70)}.items():
        small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.jpg").write_text("not an image at all")
    return folder


STORES = """
import logging, socket, sys
from pathlib import Path
import boto3
from gcp_storage_emulator.server import create_server
from moto.server import ThreadedMotoServer
from pyarrow import fs
logging.getLogger("werkzeug").setLevel(logging.ERROR)

def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port

s3_port, gs_port = free_port(), free_port()
s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
s3.start()
gs = create_server("127.0.0.1", gs_port, in_memory=True, default_bucket="photos")
gs.start()
client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1")
client.create_bucket(Bucket="photos")
gcs = fs.GcsFileSystem(anonymous=True, endpoint_override=f"127.0.0.1:{gs_port}", scheme="http")
folder = Path(sys.argv[1])
for file in sorted(p for p in folder.rglob("*") if p.is_file()):
    rel = file.relative_to(folder).as_posix()
    if rel in sys.argv[2:]:
        with gcs.open_output_stream("photos/in/" + rel) as out:
            out.write(file.read_bytes())
    else:
        client.put_object(Bucket="photos", Key="in/" + rel, Body=file.read_bytes())
print(s3_port, gs_port, flush=True)
sys.stdin.read()  # until the test closes stdin
gs.stop()
s3.stop()
"""

#: Dummy credentials, and nothing probes the cloud's metadata address.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
#: The photos the GCS emulator holds; the S3 server holds the others.
IN_GCS = ("d.webp", "sub/c.png")


@pytest.fixture(scope="module")
def buckets(photos: Path):
    """An S3 server (moto) and a GCS emulator holding ``photos`` under ``s3://photos/in/`` and
    ``gs://photos/in/`` (:data:`IN_GCS` in GCS, the rest in S3), alone in a loopback-only network
    namespace; yields (a command prefix that runs in that namespace, the S3 port, the GCS port)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
        pytest.fail("the bucket test needs root, unshare, nsenter and ip (iproute2) to stay on loopback")
    env = dict(os.environ, **S3_ENV)
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, "-c", STORES]
    server = subprocess.Popen(
        [*command, str(photos), *IN_GCS], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        ports = server.stdout.readline().split()  # "sh -c exec" keeps the pid: the namespace is the server's
        assert len(ports) == 2, "the S3 and GCS servers did not start"
        yield ["nsenter", f"--net=/proc/{server.pid}/ns/net"], int(ports[0]), int(ports[1])
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def in_namespace(prefix: list[str], argv: list[str], env: dict[str, str], timeout: float = 240):
    """Run ``argv`` after ``prefix`` (``nsenter`` into the S3 server's namespace) with ``env`` added."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RAY_USAGE_STATS_ENABLED="0", **env)
    return subprocess.run([*prefix, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def grey_levels_apart(a: Path | bytes, b: Path | bytes) -> int:
    x, y = (np.asarray(Image.open(io.BytesIO(v) if isinstance(v, bytes) else v), dtype=int) for v in (a, b))
    assert x.shape == y.shape
    return int(np.abs(x - y).max())


def test_the_callable_decodes_mixed_sizes_and_reports_bad_files_per_row(tiny_folder, photos):
    udf = BackgroundRemover(str(tiny_folder), device="cpu", type="map", format="png")
    names = ["a.png", "broken.png", "b.jpg", "notes.jpg", "sub/c.png"]
    batch = {
        "bytes": np.array([(photos / n).read_bytes() for n in names], dtype=object),
        "path": np.array(names, dtype=object),
    }
    out = udf(batch)
    assert list(out["path"]) == names and "bytes" not in out
    assert [bool(e) for e in out["error"]] == [False, True, False, True, False]
    assert "not an image" in out["error"][1] and "not an image" in out["error"][3]
    alone = Remover(model=str(tiny_folder), device="cpu")
    for name, result in zip(names, out["result"], strict=True):
        if name in ("broken.png", "notes.jpg"):
            assert result == b""
            continue
        expected = alone.process(str(photos / name), type="map")
        assert Image.open(io.BytesIO(result)).size == expected.size  # each at its own size
        buffer = io.BytesIO()
        expected.save(buffer, format="PNG")
        assert grey_levels_apart(result, buffer.getvalue()) <= 1

    arrays = BackgroundRemover(str(tiny_folder), device="cpu", returns="array")(batch)
    assert arrays["result"][0].shape == (60, 90, 4) and arrays["result"][4].shape == (96, 128, 4)


def test_the_actor_pool_is_spelled_as_the_installed_ray_wants():
    from ray.data import ActorPoolStrategy

    assert map_batches_options(3, ray_version="2.50.1") == {"concurrency": 3}
    new = map_batches_options(2, num_gpus=1, ray_version="2.60.0")
    assert isinstance(new["compute"], ActorPoolStrategy) and new["num_gpus"] == 1 and "concurrency" not in new
    assert map_batches_options(1, num_cpus=0.5, ray_version="2.60.0")["num_cpus"] == 0.5
    with pytest.raises(ValueError, match="at least 1"):
        map_batches_options(0)


def test_actors_leave_a_cpu_to_the_read_tasks():
    assert actor_cpus(2, 2.0) == 0.5  # two actors on two CPUs would starve the reads: the job never ends
    assert actor_cpus(1, 2.0) == 1.0 and actor_cpus(4, 16.0) == 1.0
    assert 0 < actor_cpus(1, 1.0) < 1


RECIPE = """
import json, sys, ray
from ray.data import ActorPoolStrategy
from inspyrenet_lite.integrations.ray import BackgroundRemover
ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2)
ray.data.DataContext.get_current().enable_progress_bars = False
folder, model = sys.argv[1], sys.argv[2]
found = {}
for name, pool in (("concurrency", {"concurrency": 1}), ("compute", {"compute": ActorPoolStrategy(size=1)})):
    ds = ray.data.read_binary_files(folder, include_paths=True)
    ds = ds.map_batches(BackgroundRemover, fn_constructor_kwargs={"model": model, "device": "cpu"},
                        batch_size=3, batch_format="numpy", **pool)
    found[name] = {row["path"]: [row["result"].hex(), row["error"]] for row in ds.iter_rows()}
print("RESULT" + json.dumps(found))
"""


@pytest.mark.slow
def test_the_recipe_runs_with_both_actor_pool_spellings(tiny_folder, photos):
    run = in_loopback_namespace([sys.executable, "-c", textwrap.dedent(RECIPE), str(photos), str(tiny_folder)])
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.split("RESULT", 1)[1])
    alone = Remover(model=str(tiny_folder), device="cpu")
    for spelling in ("concurrency", "compute"):
        rows = {Path(path).name: value for path, value in found[spelling].items()}
        assert sorted(rows) == ["a.png", "b.jpg", "broken.png", "c.png", "d.webp", "notes.jpg"]  # the job went on
        assert rows["broken.png"][1] and rows["notes.jpg"][1]
        for name, sub in (("a.png", ""), ("c.png", "sub/"), ("d.webp", "")):
            result, error = rows[name]
            assert error == ""
            buffer = io.BytesIO()
            alone.process(str(photos / sub / name)).save(buffer, format="PNG")
            assert grey_levels_apart(bytes.fromhex(result), buffer.getvalue()) <= 1


def test_quiet_silences_what_native_code_writes_to_stderr_but_not_python():
    script = """
import logging, os, sys
from inspyrenet_lite.cli.ray import native_stderr_silenced
logging.basicConfig(format="%(levelname)s %(message)s")
with native_stderr_silenced():
    os.write(2, b"[C++] a core worker line\\n")
    print("failed: a.png: not an image", file=sys.stderr)
    logging.warning("a warning of ours")
os.write(2, b"after\\n")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == ["failed: a.png: not an image", "WARNING a warning of ours", "after"]


@pytest.mark.slow
def test_the_ray_command_writes_what_the_default_command_writes(tiny_folder, photos, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    common = [str(photos), "--model", str(tiny_folder), "--type", "white", "-q"]
    cli = [sys.executable, "-m", "inspyrenet_lite"]
    one = subprocess.run([*cli, *common, "-o", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    ray_run = in_loopback_namespace([*cli, "ray", *common, "-o", str(tmp_path / "ray"), "--batch-size", "2"])
    assert one.returncode == ray_run.returncode == 1, ray_run.stderr[-3000:]  # the two bad files
    assert "4 done, 0 skipped, 2 failed" in ray_run.stderr
    assert "broken.png" in ray_run.stderr and "notes.jpg" in ray_run.stderr and "Traceback" not in ray_run.stderr
    ours = ("failed: ", "inspyrenet-lite: ")  # -q: none of Ray's own lines (its C++ core wrote a few)
    assert all(line.startswith(ours) for line in ray_run.stderr.splitlines()), ray_run.stderr[-3000:]
    names = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*.png"))
    assert names == sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray").rglob("*.png"))
    assert names == ["a.png", "b.png", "d.png", "sub/c.png"]
    for name in names:  # batched on the actor, one at a time on the CLI: float rounding only
        assert grey_levels_apart(tmp_path / "one" / name, tmp_path / "ray" / name) <= 1
    again = in_loopback_namespace([*cli, "ray", *common, "-o", str(tmp_path / "ray"), "--skip-existing"])
    assert "0 done, 4 skipped, 2 failed" in again.stderr, again.stderr[-3000:]


@pytest.mark.slow
def test_the_ray_command_reads_buckets_and_a_file_uri_as_it_reads_the_folder(tiny_folder, photos, tmp_path, buckets):
    """s3:// (moto) and gs:// (a GCS emulator), endpoints in the URIs, plus a file:// URI, in one run:
    the names and results the default command gives for the folder (that the ray command gives them for
    the folder itself is the test above); a missing bucket (endpoint from AWS_ENDPOINT_URL) is a clear exit 2."""
    prefix, s3_port, gs_port = buckets
    # Two actors: on a 2-CPU machine they must leave a CPU to the read tasks, or the job waits for ever.
    cli = [sys.executable, "-m", "inspyrenet_lite", "ray", "--model", str(tiny_folder), "-q", "--batch-size", "2"]
    cli += ["--actors", "2"]
    default = [sys.executable, "-m", "inspyrenet_lite", str(photos), "--model", str(tiny_folder), "-q"]
    plain_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    local = subprocess.run([*default, "-o", str(tmp_path / "local")], env=plain_env, capture_output=True, text=True,
                           timeout=240)
    uris = [
        f"s3://photos/in?endpoint_override=127.0.0.1:{s3_port}&scheme=http",  # a.png, b.jpg and the two bad files
        f"gs://anonymous@photos/in?endpoint_override=127.0.0.1:{gs_port}&scheme=http",  # d.webp, sub/c.png
        (photos / "sub").as_uri(),  # c.png again, named as in its own folder
    ]
    uri = in_namespace(prefix, [*cli, *uris, "-o", str(tmp_path / "uri")], S3_ENV)
    assert local.returncode == 1, local.stderr[-3000:]
    assert uri.returncode == 1, uri.stderr[-3000:]
    assert "failed: s3://photos/in/broken.png: " in uri.stderr and "failed: s3://photos/in/notes.jpg: " in uri.stderr
    assert "5 done, 0 skipped, 2 failed" in uri.stderr and "Traceback" not in uri.stderr
    names = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*.png"))
    assert names == ["a.png", "b.png", "d.png", "sub/c.png"]
    got = sorted(p.relative_to(tmp_path / "uri").as_posix() for p in (tmp_path / "uri").rglob("*.png"))
    assert got == ["a.png", "b.png", "c.png", "d.png", "sub/c.png"]
    for name in names:  # batched on the actors, one at a time in the default command: float rounding only
        assert grey_levels_apart(tmp_path / "uri" / name, tmp_path / "local" / name) <= 1
    assert grey_levels_apart(tmp_path / "uri" / "c.png", tmp_path / "local" / "sub" / "c.png") <= 1

    env = dict(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}")
    missing = in_namespace(prefix, [*cli, "s3://no-such-bucket/in", "-o", str(tmp_path / "none")], env, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr[-3000:]
    assert "s3://no-such-bucket/in: no such file or folder; check the bucket name" in missing.stderr


def test_a_uri_the_command_cannot_use_is_a_clear_exit_2(tmp_path, capsys):
    from inspyrenet_lite.cli import ray as ray_cli

    assert ray_cli.main(["foo://bucket/photos", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot list foo://bucket/photos: Unrecognized filesystem type" in err and "s3://, gs:// or file://" in err
    assert ray_cli.main([str(tmp_path), "-o", "s3://bucket/out"]) == 2
    assert "-o must be a local folder, not 's3://bucket/out'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not Path("s3:").exists()  # nothing created for either
