"""Several devices / CPU worker processes under the CLI and the library (issue 20).

The workers here are CPU processes running a tiny SwinB model saved with
``save_pretrained``. PyTorch's CPU kernels round differently with a different
number of threads (one grey level on a few pixels), so "the same bytes as the
one-process CLI" is checked against a one-process run with the workers' thread
count; against the default thread count the maps are within one grey level.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite.compositing import parse_output_type
from inspyrenet_lite.jobs import ImageOutput, Manifest, collect_jobs
from inspyrenet_lite.jobs.parallel import ParallelJobRunner, RemoverFactory, cpu_threads_per_worker, parse_devices

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_photos(folder: Path, count: int) -> Path:
    """``count`` photos of mixed sizes (a third in a sub-folder) and one corrupt file."""
    rng = np.random.default_rng(1)
    (folder / "sub").mkdir(parents=True)
    for i in range(count):
        w, h = int(rng.integers(40, 160)), int(rng.integers(40, 160))
        small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        name = f"sub/p{i:02d}.png" if i % 3 == 0 else f"p{i:02d}.png"
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos") / "in", 10)


def cli(*args: str, threads: int | None = None, wait: bool = True):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "inspyrenet_lite", *args, "-q"]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / ".inspyrenet-lite-manifest.jsonl").read_text().splitlines()]


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_workers_do_every_input_once_with_the_one_process_bytes(tiny_folder, photos, tmp_path):
    threads = cpu_threads_per_worker(["cpu", "cpu"])
    one = cli(str(photos), "-o", str(tmp_path / "one"), "--model", str(tiny_folder), threads=threads)
    two = cli(str(photos), "-o", str(tmp_path / "two"), "--model", str(tiny_folder), "--workers", "2")
    assert one.returncode == two.returncode == 1, two.stderr  # the corrupt file fails, the others do not
    assert "failed: " in two.stderr and "broken.png" in two.stderr and "10 done, 0 skipped, 1 failed" in two.stderr
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")  # same names, same bytes
    assert len(outputs(tmp_path / "two")) == 10
    records = lines(tmp_path / "two")
    for status, expected in (("started", 11), ("done", 10), ("failed", 1)):
        named = [r["output"] for r in records if r["status"] == status]
        assert len(named) == len(set(named)) == expected, status  # each input started (and finished) once


def test_workers_stay_within_one_grey_level_of_the_default_thread_count(tiny_folder, photos, tmp_path):
    one = cli(str(photos), "-o", str(tmp_path / "one"), "--model", str(tiny_folder), "--type", "map")
    two = cli(
        str(photos), "-o", str(tmp_path / "two"), "--model", str(tiny_folder), "--type", "map", "--devices", "cpu,cpu"
    )
    assert one.returncode == two.returncode == 1
    a, b = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 10
    for name in a:
        x = np.asarray(Image.open(tmp_path / "one" / name), dtype=int)
        y = np.asarray(Image.open(tmp_path / "two" / name), dtype=int)
        assert np.abs(x - y).max() <= 1, name


class TaggedFactory:
    """A worker factory for the devices ``cpu`` and ``slow`` (a CPU worker that sleeps before each
    batch); each worker logs which inputs it was given."""

    def __init__(self, model: str, log: Path) -> None:
        self.model, self.log = model, log

    def __call__(self, device: str):
        return Tagged(RemoverFactory(model=self.model)("cpu"), device, self.log)


class Tagged:
    def __init__(self, remover, device: str, log: Path) -> None:
        self.remover, self.device, self.log = remover, device, log

    def process(self, image, **options):
        if self.device == "slow":
            time.sleep(1.5)
        names = image if isinstance(image, list) else [image]
        with open(self.log / f"{self.device}-{os.getpid()}.txt", "a") as fh:
            fh.writelines(f"{name}\n" for name in names)
        return self.remover.process(image, **options)


def test_a_slow_device_takes_fewer_images_and_every_input_is_done_once(tiny_folder, tmp_path):
    photos = make_photos(tmp_path / "in", 12)
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    manifest = Manifest.load(out)
    jobs = collect_jobs([str(photos)], out, ".png", manifest)
    runner = ParallelJobRunner(
        TaggedFactory(str(tiny_folder), log), ["cpu", "slow"], manifest, ImageOutput(parse_output_type("rgba")),
        prefetch=1,
    )
    counts = runner.run(jobs)
    assert (counts.done, counts.failed, counts.skipped) == (12, 1, 0)
    given = {p.name.split("-")[0]: p.read_text().split() for p in log.iterdir()}
    assert sorted(given["cpu"] + given["slow"]) == sorted(str(j.source) for j in jobs)  # each input once
    assert len(given["slow"]) < len(given["cpu"])
    assert len(outputs(out)) == 12


def wait_for_done(folder: Path, count: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = folder / ".inspyrenet-lite-manifest.jsonl"
        if path.exists() and sum(r["status"] == "done" for r in lines(folder)) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    pytest.fail("the run did not get going")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_parallel_run_resumes_without_redoing_or_losing_files(tiny_folder, tmp_path, how):
    photos = make_photos(tmp_path / "in", 24)
    out = tmp_path / "out"
    run = cli(str(photos), "-o", str(out), "--model", str(tiny_folder), "--workers", "2", wait=False)
    wait_for_done(out, 3, run)
    run.send_signal(getattr(signal, how))
    run.communicate(timeout=60)
    assert run.returncode == (143 if how == "SIGTERM" else -signal.SIGKILL)
    first = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.png")}
    finished = {r["output"] for r in lines(out) if r["status"] == "done"}
    assert len(finished) >= 3 and len(first) < 24
    assert {p.relative_to(out).as_posix() for p in first} == finished  # no file the manifest does not know of
    if how == "SIGTERM":
        assert any(r["status"] == "interrupted" for r in lines(out))
    # A SIGKILL leaves the jobs in flight 'started' (an earlier run died on them): --retry-failed redoes them.
    retry = ["--retry-failed"] if how == "SIGKILL" else []
    again = cli(str(photos), "-o", str(out), "--model", str(tiny_folder), "--workers", "2", "--skip-existing", *retry)
    assert again.returncode == 1, again.stderr  # the corrupt file
    assert f"{24 - len(finished)} done, {len(finished)} skipped, 1 failed" in again.stderr
    for path, stamp in first.items():  # finished files were not written again
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
    assert len(outputs(out)) == 24
    assert not list(out.rglob(".inspyrenet-*.part"))


def test_devices_and_workers_parse_into_one_entry_per_worker():
    assert parse_devices(None, 3) == ["cpu", "cpu", "cpu"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices("cuda:0,cuda:1", 2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert parse_devices(None, 2, device="cuda:1") == ["cuda:1", "cuda:1"]
    if not torch.cuda.is_available():
        assert parse_devices("all") == ["cpu"]
    with pytest.raises(ValueError, match="empty name"):
        parse_devices("cpu,,cpu")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "nonsense:7"], "--devices 'nonsense:7' is not a torch device"),
        (["--devices", "cpu", "--device", "cpu"], "give --device or --devices, not both"),
        (["--workers", "0"], "expected a positive integer"),
        (["--workers", "2", "--backend", "onnxruntime"], "run the torch backend"),
        (["--workers", "2", "--precision", "int8"], "which has no int8; use --precision fp32 or bf16"),
    ],
)
def test_bad_device_flags_are_one_line_errors(tiny_folder, photos, tmp_path, flags, message):
    run = cli(str(photos), "-o", str(tmp_path / "out"), "--model", str(tiny_folder), *flags)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_a_model_the_workers_cannot_load_is_one_line_error(photos, tmp_path):
    (tmp_path / "empty").mkdir()
    run = cli(str(photos), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "empty"), "--workers", "2")
    assert run.returncode == 2, run.stderr
    assert "cannot load the model" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out" / ".inspyrenet-lite-manifest.jsonl").exists() or not any(
        r["status"] == "started" for r in lines(tmp_path / "out")
    )
