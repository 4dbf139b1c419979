"""The jobs module the CLI is built on: plan, run on a Remover, write, record (issue 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite import Remover
from inspyrenet_lite.compositing import parse_output_type
from inspyrenet_lite.jobs import ImageOutput, JobRunner, Manifest, collect_jobs

@pytest.fixture(scope="module")
def remover(tiny_folder: Path) -> Remover:
    return Remover(model=str(tiny_folder), device="cpu")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (80, 60)), ("sub/b.jpg", (70, 90)), ("c.png", (64, 64))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def statuses(manifest: Manifest) -> dict[str, str]:
    return {name: manifest.get(name).status for name in manifest.outputs()}


def test_a_folder_runs_into_named_outputs_with_the_removers_pixels(remover, photos, tmp_path):
    out = tmp_path / "out"
    manifest = Manifest.load(out)
    jobs = collect_jobs([str(photos)], out, ".png", manifest)
    counts = JobRunner(remover, manifest, ImageOutput(parse_output_type("rgba")), batch_size=2).run(jobs)
    assert (counts.done, counts.skipped, counts.failed) == (3, 0, 1)
    assert statuses(Manifest.load(out)) == {
        "a.png": "done", "c.png": "done", "sub/b.png": "done", "broken.png": "failed",
    }
    for name, source in (("a.png", "a.png"), ("sub/b.png", "sub/b.jpg"), ("c.png", "c.png")):
        with Image.open(out / name) as written:
            assert written.mode == "RGBA"
            want = remover.process(str(photos / source))
            assert np.abs(np.asarray(written, np.int16) - np.asarray(want, np.int16)).max() <= 1
    # A second run with skip_existing does nothing again, and fails the broken file again.
    manifest = Manifest.load(out)
    again = JobRunner(remover, manifest, ImageOutput(parse_output_type("rgba")), skip_existing=True)
    counts = again.run(collect_jobs([str(photos)], out, ".png", manifest))
    assert (counts.done, counts.skipped, counts.failed) == (0, 3, 1)


class _Interrupting:
    """A Remover whose second batch is interrupted (Ctrl-C while the network runs)."""

    def __init__(self, remover: Remover) -> None:
        self.remover, self.batches = remover, 0

    def process(self, *args, **kwargs):
        self.batches += 1
        if self.batches == 2:
            raise KeyboardInterrupt
        return self.remover.process(*args, **kwargs)


def test_an_interrupt_records_the_jobs_in_flight_and_keeps_the_counts(remover, photos, tmp_path):
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    manifest = Manifest.load(out)
    jobs = collect_jobs([str(photos)], out, ".png", manifest)
    runner = JobRunner(_Interrupting(remover), manifest, ImageOutput(parse_output_type("map")), batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(jobs)
    assert runner.counts.done == 2
    recorded = statuses(Manifest.load(out))
    assert sorted(recorded.values()) == ["done", "done", "interrupted"]
    interrupted = next(name for name, status in recorded.items() if status == "interrupted")
    assert not (out / interrupted).exists()


def test_bad_runner_options_are_refused(remover, tmp_path):
    manifest = Manifest.load(tmp_path / "out")
    for kwargs, field in (({"batch_size": 0}, "batch_size"), ({"batch_size": -1}, "batch_size"),
                          ({"skip_existing": "yes"}, "skip_existing")):
        with pytest.raises(ValueError, match=field):
            JobRunner(remover, manifest, ImageOutput(parse_output_type("map")), **kwargs)


def test_a_full_disk_stops_the_run_and_leaves_no_job_looking_like_a_crash(remover, photos, tmp_path, monkeypatch):
    import errno

    from inspyrenet_lite.jobs import DiskFull
    from inspyrenet_lite import image_io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_io, "save_image", full)
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    manifest = Manifest.load(out)
    runner = JobRunner(remover, manifest, ImageOutput(parse_output_type("map")), batch_size=3)
    with pytest.raises(DiskFull):
        runner.run(collect_jobs([str(photos)], out, ".png", manifest))
    assert sorted(statuses(Manifest.load(out)).values()) == ["failed", "interrupted", "interrupted"]


@pytest.fixture
def ctrl_c_interrupts():
    """Ctrl-C raises KeyboardInterrupt, as in a fresh interpreter, whatever a library loaded earlier
    in this process (a server, Ray) left installed; put back afterwards."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_right_after_a_result_is_renamed_leaves_file_and_record_agreeing(
    remover, photos, tmp_path, monkeypatch, stop, ctrl_c_interrupts
):
    """Ctrl-C (or SIGTERM made an interrupt, as the CLI does) landing between putting a file in place and
    recording it: the file is kept and recorded done, never recorded interrupted (a resume would redo it)."""
    import os
    import signal

    from inspyrenet_lite import _atomic

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    real_replace, renamed = _atomic._replace, []

    def replace_then_stop(tmp, path):
        real_replace(tmp, path)
        renamed.append(Path(path).name)
        os.kill(os.getpid(), getattr(signal, stop))  # handled at the next bytecode, unless held back

    monkeypatch.setattr(_atomic, "_replace", replace_then_stop)
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    manifest = Manifest.load(out)
    runner = JobRunner(remover, manifest, ImageOutput(parse_output_type("map")), batch_size=3)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(collect_jobs([str(photos)], out, ".png", manifest))
    finally:
        signal.signal(signal.SIGTERM, previous)
    recorded = statuses(Manifest.load(out))
    assert len(renamed) == 1 and recorded[renamed[0]] == "done" and (out / renamed[0]).exists()
    assert sorted(recorded.values()) == ["done", "interrupted", "interrupted"]
    assert runner.counts.done == 1


def test_deferred_interrupts_hold_a_stop_until_the_block_ends(ctrl_c_interrupts):
    import os
    import signal

    from inspyrenet_lite._interrupts import deferred_interrupts

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
