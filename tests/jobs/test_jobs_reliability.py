"""Folder runs that never lose or wrongly keep a result: one run per output folder, resumes that know
which model made an output, a torn or damaged manifest, outputs edited by their users, results of
other runs inside an input folder, and the order of rename, fsync and record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite import InSPyReNet, Remover
from inspyrenet_lite.cli import main
from inspyrenet_lite.compositing import parse_output_type
from inspyrenet_lite.jobs import ImageOutput, JobRunner, Manifest, collect_jobs
from inspyrenet_lite.jobs.lock import FolderBusy, FolderLock
from inspyrenet_lite.jobs.manifest import MANIFEST_NAME
from inspyrenet_lite.jobs.run import file_digest

REPO_ROOT = Path(__file__).resolve().parents[2]
MAP = ImageOutput(parse_output_type("map"))


def make_photos(folder: Path, count: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (48, 40 + i % 3 * 8, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def records(folder: Path) -> dict[str, dict]:
    """The last record of each output."""
    last = {}
    for line in (folder / MANIFEST_NAME).read_text().splitlines():
        record = json.loads(line)
        last[record["output"]] = record
    return last


def pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory, tiny_folder: Path) -> Path:
    """The session's tiny model with other random weights (same architecture, same config)."""
    path = tmp_path_factory.mktemp("other")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        config = json.loads((tiny_folder / "config.json").read_text())
        InSPyReNet(
            "swinb", depth=config["depth"], base_size=(64, 64), backbone_args=config["backbone_args"]
        ).eval().save_pretrained(path)
    return path


# ------------------------------------------------------------------ one run per output folder
def test_a_run_into_a_folder_another_run_holds_is_refused_and_writes_nothing(tiny_folder, tmp_path, capsys):
    photos, out = make_photos(tmp_path / "in", 2), tmp_path / "out"
    with FolderLock(out):
        assert main([str(photos), "-o", str(out), "--model", str(tiny_folder), "-q"]) == 2
    err = capsys.readouterr().err
    assert "another inspyrenet-lite run is writing into" in err and "another output folder" in err
    assert list(out.iterdir()) == []
    assert main([str(photos), "-o", str(out), "--model", str(tiny_folder), "-q"]) == 0  # released: runs
    assert pngs(out) == ["p00.png", "p01.png"]


def test_a_run_that_finds_nothing_leaves_no_new_folder_behind(tmp_path, capsys):
    assert main([str(tmp_path / "missing.png"), "-o", str(tmp_path / "new"), "-q"]) == 2
    assert not (tmp_path / "new").exists()


def test_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from inspyrenet_lite.jobs.lock import FolderLock
            FolderLock({str(out)!r}).acquire()
            print("held", flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match="wait for it to finish"):
            FolderLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with FolderLock(out):  # kill -9 left no stale lock
        pass


def test_two_runs_at_once_into_one_folder_lose_no_result(tiny_folder, tmp_path):
    """Two commands on overlapping inputs started together: each either runs to the end or is refused
    with the reason; every result a run reports is on disk and recorded done (before the lock: both
    runs said all done while up to half of the results were missing or recorded for the wrong input)."""
    first, second, out = make_photos(tmp_path / "a", 24), tmp_path / "b", tmp_path / "out"
    second.mkdir()
    for path in sorted(first.iterdir())[12:]:  # overlapping: the second run has half of the first's photos
        (second / path.name).write_bytes(path.read_bytes())
    make_photos(tmp_path / "b_extra", 6, seed=5)
    for path in (tmp_path / "b_extra").iterdir():
        path.rename(second / f"x{path.name}")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "inspyrenet_lite", "-o", str(out), "--model", str(tiny_folder), "-q"]
    runs = [
        subprocess.Popen([*command, str(folder)], env=env, stderr=subprocess.PIPE, text=True)
        for folder in (first, second)
    ]
    errs = [run.communicate(timeout=300)[1] for run in runs]
    codes = [run.returncode for run in runs]
    assert 0 in codes, errs
    done = records(out)
    for code, err, folder in zip(codes, errs, (first, second), strict=True):
        if code == 2:
            assert "another inspyrenet-lite run is writing into" in err, err
            continue
        assert code == 0, err
        for source in folder.iterdir():
            match = [r for r in done.values() if r["input"] == str(source.resolve())]
            assert len(match) == 1 and match[0]["status"] == "done", source
            with Image.open(out / match[0]["output"]) as written:
                assert written.size == Image.open(source).size  # its own result, not another input's
    assert sorted(done) == pngs(out)


# ------------------------------------------------------------------ resume knows the model
def test_a_resume_redoes_outputs_made_by_another_model_precision_resize_or_blend(tiny_folder, other_model, tmp_path):
    photos = make_photos(tmp_path / "in", 2)

    def run(remover: Remover, out: Path, output: ImageOutput = MAP) -> tuple[int, int]:
        manifest = Manifest.load(out)
        counts = JobRunner(remover, manifest, output, skip_existing=True).run(
            collect_jobs([str(photos)], out, ".png", manifest)
        )
        return counts.done, counts.skipped

    base = Remover(str(tiny_folder), device="cpu")
    bf16 = Remover(str(tiny_folder), device="cpu", precision="bf16")  # fp32 where the CPU has no native bf16
    with pytest.warns(UserWarning, match="resize='dynamic'"):
        dynamic = Remover(str(tiny_folder), device="cpu", resize="dynamic")
    changes = {
        "same": (Remover(str(tiny_folder), device="cpu"), MAP, (0, 2)),
        "model": (Remover(str(other_model), device="cpu"), MAP, (2, 0)),
        "precision": (bf16, MAP, (2, 0) if bf16.precision == "bf16" else (0, 2)),
        "resize": (dynamic, MAP, (2, 0)),
        "hr_blend": (base, ImageOutput(parse_output_type("map"), hr_blend=0.5), (2, 0)),
    }
    for what, (remover, output, expected) in changes.items():
        out = tmp_path / what
        assert run(base, out) == (2, 0)
        assert run(remover, out, output) == expected, what


def test_each_part_of_the_model_decides_whether_an_output_is_kept():
    from inspyrenet_lite.jobs.run import same_fingerprint

    base = {"name": "fast", "weights": "ab", "precision": "fp32", "resize": "static"}
    recorded = MAP.fingerprint(base)
    assert same_fingerprint(recorded, MAP.fingerprint(dict(base)))
    for key, other in (("name", "base"), ("weights", "cd"), ("precision", "bf16"), ("resize", "dynamic")):
        assert not same_fingerprint(recorded, MAP.fingerprint({**base, key: other})), key
    assert same_fingerprint(recorded, MAP.fingerprint({**base, "weights": None}))  # unknown: not compared
    assert not same_fingerprint(recorded, ImageOutput(parse_output_type("map"), hr_blend=1.0).fingerprint(base))


def test_a_model_file_changed_in_place_is_another_model(tiny_folder, other_model, tmp_path):
    """The weights file's digest, not its path, names a local model: the same folder with new weights
    (a fine-tuned model saved over the old one) redoes the outputs; a moved copy does not."""
    photos, out, model = make_photos(tmp_path / "in", 2), tmp_path / "out", tmp_path / "model"
    model.mkdir()
    for path in tiny_folder.iterdir():
        (model / path.name).write_bytes(path.read_bytes())
    args = [str(photos), "-o", str(out), "--skip-existing", "-q"]
    assert main([*args, "--model", str(model)]) == 0
    moved = tmp_path / "moved"
    model.rename(moved)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert main([*args, "--model", str(moved)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps  # same weights: kept
    (moved / "model.safetensors").write_bytes((other_model / "model.safetensors").read_bytes())
    assert main([*args, "--model", str(moved)]) == 0
    assert all(p.stat().st_mtime_ns != stamps[p] for p in out.glob("*.png"))


def test_records_of_an_earlier_version_without_the_model_resume_as_before(tiny_folder, tmp_path):
    photos, out = make_photos(tmp_path / "in", 2), tmp_path / "out"
    remover = Remover(str(tiny_folder), device="cpu")
    manifest = Manifest.load(out)
    JobRunner(remover, manifest, MAP).run(collect_jobs([str(photos)], out, ".png", manifest))
    old = []
    for record in records(out).values():  # as the previous version wrote them: no model_* options, no out_*
        options = {k: v for k, v in json.loads(record["options"]).items() if not k.startswith("model_")}
        old.append({**record, "options": json.dumps(options, sort_keys=True), "out_size": None, "out_mtime_ns": None})
    (out / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in old))
    manifest = Manifest.load(out)
    counts = JobRunner(remover, manifest, MAP, skip_existing=True).run(collect_jobs([str(photos)], out, ".png", manifest))
    assert (counts.done, counts.skipped) == (0, 2)


# ------------------------------------------------------------------ the manifest as a crash leaves it
def test_a_torn_last_line_is_ignored_and_the_next_record_starts_on_its_own_line(tmp_path, caplog):
    good = {"output": "a.png", "input": "/x/a.png", "size": 1, "mtime_ns": 2, "status": "done"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(good) + "\n" + json.dumps({**good, "output": "b.png"})[:30])
    manifest = Manifest.load(tmp_path)
    assert manifest.outputs() == ["a.png"] and manifest.get("a.png").status == "done"
    assert "damaged" not in caplog.text  # a torn last line is what a crash leaves, not damage
    from inspyrenet_lite.jobs import Record

    manifest.record(Record("c.png", "/x/c.png", 1, 2, "done"))
    assert sorted(Manifest.load(tmp_path).outputs()) == ["a.png", "c.png"]


def test_damaged_lines_are_skipped_one_by_one_with_a_warning(tmp_path, caplog):
    good = {"output": "a.png", "input": "/x/a.png", "size": 1, "mtime_ns": 2, "status": "done"}
    lines = [
        json.dumps(good).encode(),
        json.dumps({**good, "output": "b.png"}).encode().replace(b"b.png", b"b\xff.png"),  # one bad byte
        json.dumps({**good, "output": "c.png", "input": None}).encode(),  # a null input
        json.dumps({**good, "output": "d.png", "status": "nonsense"}).encode(),
        json.dumps({**good, "output": "e.png"}).encode(),
    ]
    (tmp_path / MANIFEST_NAME).write_bytes(b"\n".join(lines) + b"\n")
    manifest = Manifest.load(tmp_path)
    assert sorted(manifest.outputs()) == ["a.png", "e.png"]
    assert "skipping 3 damaged line(s) (2, 3, 4)" in caplog.text


def test_a_result_is_recorded_done_only_after_its_fsync_and_rename(tiny_folder, tmp_path, monkeypatch):
    from inspyrenet_lite.jobs import manifest as manifest_module

    events: list[str] = []
    real_replace, real_fsync, real_record = os.replace, os.fsync, manifest_module.Manifest.record
    out = tmp_path / "out"

    def replace(src, dst):
        events.append(f"replace {Path(dst).name}")
        return real_replace(src, dst)

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else "?"
        events.append(f"fsync {Path(target).name}" if Path(target) != out else "fsync folder")
        return real_fsync(fd)

    def record(self, rec):
        events.append(f"{rec.status} {rec.output}")
        return real_record(self, rec)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(manifest_module.Manifest, "record", record)
    photos = make_photos(tmp_path / "in", 1)
    manifest = Manifest.load(out)
    JobRunner(Remover(str(tiny_folder), device="cpu"), manifest, MAP).run(collect_jobs([str(photos)], out, ".png", manifest))
    ours = [e for e in events if not e.startswith(f"fsync {MANIFEST_NAME}")]
    start = ours.index("started p00.png")
    temporary_fsync = next(i for i, e in enumerate(ours) if e.startswith("fsync .inspyrenet-"))
    assert start < temporary_fsync < ours.index("replace p00.png") < ours.index("fsync folder") < ours.index("done p00.png")


# ------------------------------------------------------------------ outputs edited since, inputs that are results
def test_an_output_edited_since_it_was_written_is_kept_unless_overwrite(tiny_folder, tmp_path, capsys):
    photos, out = make_photos(tmp_path / "in", 2), tmp_path / "out"
    args = [str(photos), "-o", str(out), "--model", str(tiny_folder), "-q"]
    assert main(args) == 0
    Image.new("RGBA", (5, 5), (1, 2, 3, 255)).save(out / "p00.png")  # the user retouched it
    edited = (out / "p00.png").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "p00.png was changed since this tool wrote it; kept (--overwrite replaces it)" in err
    assert "1 done, 1 skipped" in err and (out / "p00.png").read_bytes() == edited
    assert main([*args, "--overwrite"]) == 0
    with Image.open(out / "p00.png") as redone:
        assert redone.size == Image.open(photos / "p00.png").size


def test_results_of_another_run_inside_an_input_folder_are_not_inputs(tiny_folder, tmp_path, capsys):
    photos = make_photos(tmp_path / "in", 2)
    assert main([str(photos), "-o", str(photos / "results"), "--model", str(tiny_folder), "-q"]) == 0
    capsys.readouterr()
    assert main([str(photos), "-o", str(tmp_path / "out"), "--model", str(tiny_folder), "-q"]) == 0
    assert "2 done, 0 skipped, 0 failed" in capsys.readouterr().err
    assert pngs(tmp_path / "out") == ["p00.png", "p01.png"]


def test_a_symlinked_sub_folder_is_followed_once_and_a_loop_ends(tiny_folder, tmp_path, capsys):
    photos = make_photos(tmp_path / "in", 1)
    elsewhere = make_photos(tmp_path / "elsewhere", 2, seed=3)
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    (photos / "again").symlink_to(elsewhere, target_is_directory=True)  # the same folder twice: once
    (elsewhere / "loop").symlink_to(photos, target_is_directory=True)
    assert main([str(photos), "-o", str(tmp_path / "out"), "--model", str(tiny_folder), "-q"]) == 0
    assert "3 done" in capsys.readouterr().err
    assert pngs(tmp_path / "out") in (
        ["again/p00.png", "again/p01.png", "p00.png"], ["linked/p00.png", "linked/p01.png", "p00.png"]
    )


def test_a_read_only_file_system_is_not_called_a_full_disk(tiny_folder, tmp_path, monkeypatch, capsys):
    import errno

    from inspyrenet_lite import image_io

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(image_io, "save_image", read_only)
    photos = make_photos(tmp_path / "in", 2)
    assert main([str(photos), "-o", str(tmp_path / "out"), "--model", str(tiny_folder), "-q"]) == 1
    err = capsys.readouterr().err
    assert "became read-only" in err and "free some space" not in err


# ------------------------------------------------------------------ worker processes
class ThreadReporting:
    """A worker factory whose Removers write each batch's size and the worker's torch thread count."""

    def __init__(self, model: str, log: Path) -> None:
        self.model, self.log = model, log

    def __call__(self, device: str):
        return _Logged(Remover(self.model, device=device), self.log)


class _Logged:
    def __init__(self, remover: Remover, log: Path) -> None:
        self.remover, self.log = remover, log
        self.mode, self.checkpoint_path = remover.mode, remover.checkpoint_path
        self.precision, self.resize = remover.precision, remover.resize

    def process(self, image, **options):
        size = len(image) if isinstance(image, list) else 1
        with open(self.log, "a") as fh:
            fh.write(f"{size} {torch.get_num_threads()}\n")
        return self.remover.process(image, **options)


def test_workers_do_the_last_partial_batch_with_their_share_of_the_cores(tiny_folder, tmp_path, caplog, monkeypatch):
    """7 photos in batches of 3 on 5 requested CPU workers: 3 workers start (one per batch), each with
    its share of the cores whatever torch's default would be, the last partial batch is done, and each
    output's record names the model the workers loaded (its weights' digest)."""
    from inspyrenet_lite.jobs.parallel import ParallelJobRunner, cpu_threads_per_worker

    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # what a worker would take without its share
    photos, out, log = make_photos(tmp_path / "in", 7), tmp_path / "out", tmp_path / "log.txt"
    manifest = Manifest.load(out)
    runner = ParallelJobRunner(ThreadReporting(str(tiny_folder), log), ["cpu"] * 5, manifest, MAP, batch_size=3)
    counts = runner.run(collect_jobs([str(photos)], out, ".png", manifest))
    assert (counts.done, counts.failed) == (7, 0)
    assert "starting 3 worker processes, not 5: there are only 3 batches of work" in caplog.text
    batches = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(size) for size, _ in batches) == [1, 3, 3]  # the last, partial batch too
    assert {int(threads) for _, threads in batches} == {cpu_threads_per_worker(["cpu"] * 3)}
    assert pngs(out) == [f"p{i:02d}.png" for i in range(7)]
    options = json.loads(records(out)["p00.png"]["options"])
    assert options["model_weights"] == file_digest(tiny_folder / "model.safetensors") is not None


def test_workers_start_no_more_than_free_memory_holds_and_share_the_cores_among_those(
    tiny_folder, tmp_path, caplog, monkeypatch
):
    """4 CPU workers asked for, free memory for one more beside the first at what the first holds
    once loaded: 2 processes start, with one line saying so, and each takes half of the (12) cores,
    the first worker included though it started while 4 were planned."""
    from inspyrenet_lite.jobs import parallel

    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    measured: list[int] = []
    real_accept, real_stop = parallel.ParallelJobRunner._accept, parallel.ParallelJobRunner._stop_pool
    started: list[int] = []

    def accept(self, problem, identity, peak_rss, pid):
        measured.append(peak_rss)
        return real_accept(self, problem, identity, peak_rss, pid)

    def stop_pool(pool, wait):
        started.append(len(pool._processes))
        return real_stop(pool, wait)

    monkeypatch.setattr(parallel.ParallelJobRunner, "_accept", accept)
    monkeypatch.setattr(parallel.ParallelJobRunner, "_stop_pool", staticmethod(stop_pool))
    monkeypatch.setattr(parallel, "available_bytes", lambda: int(measured[0] * 1.5))
    photos, out, log = make_photos(tmp_path / "in", 6), tmp_path / "out", tmp_path / "log.txt"
    manifest = Manifest.load(out)
    runner = parallel.ParallelJobRunner(ThreadReporting(str(tiny_folder), log), ["cpu"] * 4, manifest, MAP)
    assert runner.threads == 3
    counts = runner.run(collect_jobs([str(photos)], out, ".png", manifest))
    assert (counts.done, counts.failed) == (6, 0)
    assert measured[0] > 100e6  # a worker with torch and a model holds more than 100 MB
    assert "starting 2 worker processes, not 4: each holds about" in caplog.text
    assert len(runner.devices) == 2 and started == [2]
    assert {int(line.split()[1]) for line in log.read_text().splitlines()} == {6}
    assert pngs(out) == [f"p{i:02d}.png" for i in range(6)]


#: A run whose worker stops half-way through sending its result (as a worker ended mid-send by a
#: Ctrl-C does), then the Ctrl-C: the run must stop and its process exit. The pool's thread reading
#: results waited for the rest of that message for ever, so the interpreter never exited.
_STOPPED_MID_SEND = """
import os, signal, struct, sys, threading, time
from pathlib import Path
from inspyrenet_lite.compositing import parse_output_type
from inspyrenet_lite.jobs import ImageOutput, Manifest, collect_jobs
from inspyrenet_lite.jobs.parallel import ParallelJobRunner

class HalfSent:
    def __init__(self, flag):
        self.flag = flag
        self.mode, self.checkpoint_path, self.precision, self.resize = "tiny", None, "fp32", "static"

    def __call__(self, device):
        return self

    def process(self, image, **options):
        frame = sys._getframe()
        while frame.f_code.co_name != "_process_worker":  # concurrent.futures' worker loop
            frame = frame.f_back
        pipe = frame.f_locals["result_queue"]._writer
        os.write(pipe.fileno(), struct.pack("!i", 1 << 20) + b"the first bytes of a result")
        Path(self.flag).touch()
        time.sleep(600)

def ctrl_c_once_half_sent(flag):
    while not Path(flag).exists():
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGINT)

if __name__ == "__main__":
    photos, out, flag = sys.argv[1:4]
    manifest = Manifest.load(Path(out))
    runner = ParallelJobRunner(HalfSent(flag), ["cpu"], manifest, ImageOutput(parse_output_type("map")))
    threading.Thread(target=ctrl_c_once_half_sent, args=(flag,), daemon=True).start()
    try:
        runner.run(collect_jobs([photos], Path(out), ".png", manifest))
    except KeyboardInterrupt:
        print("interrupted:", runner.counts, flush=True)
"""


def test_a_stop_while_a_worker_is_half_way_through_sending_a_result_still_exits(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_STOPPED_MID_SEND)
    photos = make_photos(tmp_path / "in", 2)
    run = subprocess.run(
        [sys.executable, str(script), str(photos), str(tmp_path / "out"), str(tmp_path / "half-sent")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "interrupted: 0 done" in run.stdout
    assert sorted(records(tmp_path / "out")) == ["p00.png", "p01.png"]
    assert {r["status"] for r in records(tmp_path / "out").values()} == {"interrupted"}


# ------------------------------------------------------------------ the ray command's URIs
def test_uri_inputs_never_take_a_local_input_s_output_name_nor_duplicate_it(tmp_path):
    """``ray X file://$PWD/Y`` with the same names in X and Y: before, Y's results took X's names (10 files
    for 20 inputs, all said done); a file given as a path and as ``file://`` is one job."""
    pytest.importorskip("pyarrow")
    from inspyrenet_lite.cli.ray import plan_uris

    local, remote, out = make_photos(tmp_path / "x", 3), make_photos(tmp_path / "y", 3, seed=1), tmp_path / "out"
    manifest = Manifest.load(out)
    jobs = collect_jobs([str(local)], out, ".png", manifest)
    uri_jobs, _ = plan_uris([f"file://{remote}", f"file://{local / 'p00.png'}"], out, ".png", manifest, False, jobs)
    names = [job.output_name for job in jobs + uri_jobs]
    assert len(uri_jobs) == 3 and len(names) == len(set(names)) == 6
    assert {job.key for job in uri_jobs} == {f"file://{remote / name}" for name in ("p00.png", "p01.png", "p02.png")}


def test_an_input_named_at_the_length_limit_gets_a_shortened_output_name(tmp_path, capsys):
    from inspyrenet_lite.jobs.plan import NAME_MAX

    photos, out = tmp_path / "in", tmp_path / "out"
    photos.mkdir()
    long_jpg = photos / ("é" * 40 + "x" * (NAME_MAX - 80 - 4) + ".jpg")  # 255 bytes; its .png sibling exists
    Image.new("RGB", (8, 8)).save(long_jpg)
    Image.new("RGB", (8, 8)).save(long_jpg.with_suffix(".png"))
    manifest = Manifest.load(out)
    jobs = collect_jobs([str(photos)], out, ".png", manifest)
    names = sorted(job.output_name for job in jobs)
    assert len(set(names)) == 2 and all(len(os.fsencode(name)) <= NAME_MAX for name in names)
    counts = JobRunner(_Plain(), manifest, MAP).run(jobs)
    assert (counts.done, counts.failed) == (2, 0)


class _Plain:
    """Returns a grey image for any input (the plumbing is under test, not the network)."""

    def process(self, source, **options):
        return Image.new("L", (8, 8), 128)


def test_inputs_ray_cannot_read_are_named_before_the_dataset_starts(tmp_path):
    from inspyrenet_lite.integrations.ray import unreadable_by_ray

    good = tmp_path / "a.png"
    good.write_bytes(b"x")
    assert unreadable_by_ray(str(good)) is None
    assert "removed or moved" in unreadable_by_ray(str(tmp_path / "gone.png"))
    assert "newline or TAB" in unreadable_by_ray(str(tmp_path / "a\tb.png"))
    assert "not valid UTF-8" in unreadable_by_ray(os.fsdecode(bytes(tmp_path) + b"/\xff.png"))
    assert unreadable_by_ray("s3://bucket/a.png") is None
