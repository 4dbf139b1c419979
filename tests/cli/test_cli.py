"""The inspyrenet-lite command: inputs, outputs that never clobber inputs, failures, resuming."""

from __future__ import annotations

import types

import errno
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite.cli import collect_jobs, main
from inspyrenet_lite.jobs.manifest import MANIFEST_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]


def _photo(path: Path, size: tuple[int, int], colour=(200, 60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    img.paste((20, 40, 220), (size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3))
    img.save(path)
    return path


def _files(root: Path) -> list[str]:
    """Files under root, the output folder's manifest aside."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


class _FakeRemover:
    """Stands in for Remover where only the CLI's plumbing is under test."""

    instances: list[dict] = []
    made: list[_FakeRemover] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        _FakeRemover.instances.append(kwargs)
        _FakeRemover.made.append(self)
        self.calls: list[str] = []

    backend = types.SimpleNamespace(name="torch")

    def process(self, source, type="rgba", threshold=None, hr_blend=0.0, reverse=False, batch_size=1, errors="raise"):
        """As Remover.process: a list in, a list out (with errors="skip", an exception in a failed item's place)."""
        if isinstance(source, list):
            results = []
            for item in source:
                try:
                    results.append(self.process(item, type=type, threshold=threshold, hr_blend=hr_blend, reverse=reverse))
                except Exception as exc:
                    if errors != "skip":
                        raise
                    results.append(exc)
            return results
        from inspyrenet_lite.image_io import load_image

        self.calls.append(source)
        rgb = load_image(source).rgb
        return Image.new("RGBA", rgb.size, (1, 2, 3, 4))


@pytest.fixture
def fake_remover(monkeypatch: pytest.MonkeyPatch):
    _FakeRemover.instances = []
    _FakeRemover.made = []
    monkeypatch.setattr("inspyrenet_lite.remover.Remover", _FakeRemover)
    return _FakeRemover


# ------------------------------------------------------------- the command
def test_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from inspyrenet_lite.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    shown = subprocess.run(
        [sys.executable, "-m", "inspyrenet_lite", "--help"], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    for flag in ("--type", "--threshold", "--mode", "--hr-blend", "--device", "--format", "--skip-existing", "-o"):
        assert flag in shown.stdout


def test_the_console_script_points_at_main():
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "inspyrenet-lite"]
    assert script.load() is main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--type", "purple"], "unknown output type"),
        (["--format", "jpg"], "cannot store transparency"),
        (["--format", "bmp"], "cannot store transparency"),
        (["--threshold", "1.5"], "in [0, 1]"),
        (["--hr-blend", "-1"], "in [0, 1]"),
        (["--mode", "huge"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, tmp_path: Path, capsys, fake_remover):
    photo = _photo(tmp_path / "a.png", (40, 30))
    with pytest.raises(SystemExit) as info:
        main([str(photo), "-o", str(tmp_path / "out"), *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert fake_remover.instances == []


def test_an_output_that_looks_like_a_file_name_is_refused(tmp_path: Path, capsys, fake_remover):
    photo = _photo(tmp_path / "a.png", (40, 30))
    with pytest.raises(SystemExit) as info:
        main([str(photo), "-o", str(tmp_path / "cutout.png")])
    assert info.value.code == 2
    assert "-o takes a folder" in capsys.readouterr().err
    assert not (tmp_path / "cutout.png").exists()


def test_no_inputs_found_exits_2_before_loading_a_model(tmp_path: Path, capsys, fake_remover):
    assert main([str(tmp_path / "missing.jpg"), str(tmp_path / "*.png")]) == 2
    err = capsys.readouterr().err
    assert "missing.jpg: no such file" in err and "no input images found" in err
    assert fake_remover.instances == []


def test_a_model_that_cannot_be_loaded_exits_2(tmp_path: Path, capsys):
    photo = _photo(tmp_path / "a.png", (40, 30))
    assert main([str(photo), "-o", str(tmp_path / "out"), "--ckpt", str(tmp_path / "none.pth"), "-q"]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------- planning
def test_folders_are_searched_recursively_and_globs_expand(tmp_path: Path):
    src = tmp_path / "src"
    _photo(src / "a.jpg", (8, 8))
    _photo(src / "sub" / "b.png", (8, 8))
    (src / "notes.txt").write_text("not an image")
    _photo(src / ".hidden.png", (8, 8))
    _photo(tmp_path / "g1.png", (8, 8))
    _photo(tmp_path / "g2.webp", (8, 8))
    out = tmp_path / "out"
    jobs = collect_jobs([str(src), str(tmp_path / "g*.png"), str(src / "a.jpg")], out, ".png")
    assert [(j.source.relative_to(tmp_path).as_posix(), j.output.relative_to(out).as_posix()) for j in jobs] == [
        ("src/a.jpg", "a.png"),
        ("src/sub/b.png", "sub/b.png"),
        ("g1.png", "g1.png"),
    ]
    assert all(j.error is None for j in jobs)


def test_outputs_never_take_an_input_s_name_nor_each_other_s(tmp_path: Path):
    _photo(tmp_path / "cat.png", (8, 8))
    _photo(tmp_path / "cat.jpg", (8, 8))
    _photo(tmp_path / "dog.png", (8, 8))
    jobs = collect_jobs([str(tmp_path)], tmp_path, ".png")
    inputs = {j.source.resolve() for j in jobs}
    outputs = [j.output.resolve() for j in jobs]
    assert len(set(outputs)) == len(outputs) == 3
    assert not inputs & set(outputs)
    assert sorted(p.name for p in outputs) == ["cat_jpg.png", "cat_png.png", "dog_png.png"]


def test_an_output_folder_inside_the_input_folder_is_not_searched(tmp_path: Path):
    _photo(tmp_path / "a.png", (8, 8))
    _photo(tmp_path / "out" / "a.png", (8, 8))  # a previous run's result
    jobs = collect_jobs([str(tmp_path)], tmp_path / "out", ".png")
    assert [j.source.name for j in jobs] == ["a.png"]


def test_the_input_is_never_written_over(tmp_path: Path, fake_remover):
    photo = _photo(tmp_path / "a.png", (40, 30))
    before = photo.read_bytes()
    assert main([str(photo), "-o", str(tmp_path), "-q"]) == 0
    assert photo.read_bytes() == before
    assert _files(tmp_path) == ["a.png", "a_png.png"]


def test_an_interrupted_run_leaves_no_partial_file(tmp_path: Path, monkeypatch, fake_remover, capsys):
    _photo(tmp_path / "in" / "a.png", (40, 30))
    _photo(tmp_path / "in" / "b.png", (40, 30))
    real_save = Image.Image.save
    calls = []

    def save_then_interrupt(self, fp, format=None, **params):
        calls.append(fp)
        if len(calls) == 2:  # the user presses Ctrl-C while b.png is half written
            fp.write(b"\x89PNG half")
            raise KeyboardInterrupt
        return real_save(self, fp, format=format, **params)

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 130
    assert _files(tmp_path / "out") == ["a.png"]
    assert "interrupted" in capsys.readouterr().err


# ------------------------------------------------------------- end to end
def test_a_folder_with_bad_files_finishes_the_others_and_exits_1(
    tmp_path: Path, random_checkpoint: Path, capsys, monkeypatch, remover
):
    src = tmp_path / "photos"
    _photo(src / "one.png", (64, 48))
    _photo(src / "nested" / "two.jpg", (50, 70))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (src / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--ckpt", str(random_checkpoint), "--device", "cpu", "--type", "map", "-q"]

    assert main(args) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "empty.jpg" in err
    assert "2 done, 0 skipped, 2 failed" in err
    assert _files(out) == ["nested/two.png", "one.png"]  # no partial or temporary files
    for name, size in (("one.png", (64, 48)), ("nested/two.png", (50, 70))):
        with Image.open(out / name) as img:
            assert img.mode == "L" and img.size == size
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    # Resuming: finished outputs are skipped, the broken files still fail.
    monkeypatch.setattr("inspyrenet_lite.remover.Remover", lambda **kwargs: remover)
    assert main([*args, "--skip-existing"]) == 1
    assert "0 done, 2 skipped, 2 failed" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_flags_reach_the_remover(tmp_path: Path, monkeypatch, remover, capsys):
    photo = _photo(tmp_path / "a.png", (64, 48))
    seen = {}

    def spy(**kwargs):
        seen.update(kwargs)
        return remover

    monkeypatch.setattr("inspyrenet_lite.remover.Remover", spy)
    args = [str(photo), "-o", str(tmp_path / "out"), "--mode", "fast", "--device", "cpu", "--resize", "dynamic"]
    args += ["--max-pixels", "5000", "--type", "white", "--format", "jpg", "--threshold", "0.5", "--compile", "-q"]
    assert main(args) == 0
    assert seen == {
        "model": None,
        "mode": "fast",
        "base_size": None,
        "device": "cpu",
        "ckpt": None,
        "resize": "dynamic",
        "precision": "fp32",
        "max_pixels": 5000,
        "backend": "torch",
        "compile": True,
    }
    with Image.open(tmp_path / "out" / "a.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 48)


def test_batches_give_the_one_at_a_time_results_and_survive_a_bad_file(tmp_path: Path, monkeypatch, remover, capsys):
    src = tmp_path / "photos"
    _photo(src / "a.png", (64, 48))
    _photo(src / "b.png", (50, 70))
    _photo(src / "c.png", (33, 41))
    (src / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    monkeypatch.setattr("inspyrenet_lite.remover.Remover", lambda **kwargs: remover)
    batches = []
    real_process = remover.process

    def spy(image, **kwargs):
        if isinstance(image, list):
            batches.append(len(image))
        return real_process(image, **kwargs)

    monkeypatch.setattr(remover, "process", spy)
    base = [str(src), "--type", "map", "-q"]

    assert main([*base, "-o", str(tmp_path / "single")]) == 1
    assert batches == []
    # pairs: (a, b) go through together; in (c, d_broken) the Remover's errors="skip" isolates the bad file
    assert main([*base, "-o", str(tmp_path / "batched"), "--batch-size", "2"]) == 1
    assert batches == [2, 2]
    err = capsys.readouterr().err
    failures = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failures) == 2 and all("d_broken.png" in line for line in failures)
    assert err.count("3 done, 0 skipped, 1 failed") == 2
    assert _files(tmp_path / "batched") == ["a.png", "b.png", "c.png"]
    for name in ("a.png", "b.png", "c.png"):
        one = np.asarray(Image.open(tmp_path / "single" / name), dtype=np.int16)
        many = np.asarray(Image.open(tmp_path / "batched" / name), dtype=np.int16)
        assert one.shape == many.shape
        assert np.abs(one - many).max() <= 1


def test_batch_size_must_be_positive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["x.png", "--batch-size", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


# ------------------------------------------- hostile but realistic use (issue 9)
def _stamps(root: Path) -> dict[str, int]:
    return {name: (root / name).stat().st_mtime_ns for name in _files(root)}


def test_a_file_the_tool_did_not_write_is_never_replaced(tmp_path: Path, fake_remover, capsys):
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (40, 30))
    _photo(photos / "a.png", (20, 20), colour=(0, 255, 0))  # the user's own picture, not an input
    own = (photos / "a.png").read_bytes()

    assert main([str(photos / "*.jpg"), "-o", str(photos), "-q"]) == 0
    assert (photos / "a.png").read_bytes() == own
    assert _files(photos) == ["a.jpg", "a.png", "a_jpg.png"]

    # The tool's own result is replaced on a rerun; the user's file still is not.
    assert main([str(photos / "*.jpg"), "-o", str(photos), "-q"]) == 0
    assert (photos / "a.png").read_bytes() == own
    assert _files(photos) == ["a.jpg", "a.png", "a_jpg.png"]


def test_overwrite_replaces_other_files_but_never_an_input(tmp_path: Path, fake_remover):
    _photo(tmp_path / "in" / "a.jpg", (40, 30))
    _photo(tmp_path / "in" / "a.png", (20, 20))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"old")
    assert main([str(tmp_path / "in" / "a.jpg"), "-o", str(tmp_path / "out"), "--overwrite", "-q"]) == 0
    with Image.open(tmp_path / "out" / "a.png") as img:
        assert img.size == (40, 30)
    before = (tmp_path / "in" / "a.png").read_bytes()
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "in"), "--overwrite", "-q"]) == 0
    assert (tmp_path / "in" / "a.png").read_bytes() == before
    assert _files(tmp_path / "in") == ["a.jpg", "a.png", "a_jpg.png", "a_png.png"]


def test_on_a_case_insensitive_file_system_the_input_is_not_planned_as_output(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("inspyrenet_lite.jobs.plan.probe_folder", lambda folder: True)
    _photo(tmp_path / "Shot.PNG", (8, 8))
    (job,) = collect_jobs([str(tmp_path / "Shot.PNG")], tmp_path, ".png")
    assert job.output.name.lower() != "shot.png"


def test_resume_maps_each_input_to_its_own_output(tmp_path: Path, fake_remover, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "a.png", (40, 30))
    assert main([str(src), "-o", str(out), "-q"]) == 0
    assert _files(out) == ["a.png"]
    first = _stamps(out)

    _photo(src / "a.jpg", (30, 20))  # a new input whose natural name is taken
    capsys.readouterr()
    assert main([str(src), "-o", str(out), "--skip-existing", "-q"]) == 0
    assert "1 done, 1 skipped, 0 failed" in capsys.readouterr().err
    assert [Path(p).name for p in _FakeRemover.made[-1].calls] == ["a.jpg"]
    assert _files(out) == ["a.png", "a_jpg.png"]
    assert _stamps(out)["a.png"] == first["a.png"]  # a.png's result was not redone
    with Image.open(out / "a_jpg.png") as img:
        assert img.size == (30, 20)  # and the new photo's result is its own

    # An input changed since its result was made is done again, under the same name.
    _photo(src / "a.png", (50, 50))
    assert main([str(src), "-o", str(out), "--skip-existing", "-q"]) == 0
    assert "1 done, 1 skipped, 0 failed" in capsys.readouterr().err
    with Image.open(out / "a.png") as img:
        assert img.size == (50, 50)


def test_outputs_are_never_taken_for_inputs(tmp_path: Path, fake_remover, monkeypatch, capsys):
    _photo(tmp_path / "a.jpg", (40, 30))
    _photo(tmp_path / "b.jpg", (40, 30))
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--skip-existing"], []):
        assert main([".", *extra, "-q"]) == 0  # the default -o . on .
        assert main([str(tmp_path / "*"), "-o", str(tmp_path), *extra, "-q"]) == 0
        assert _files(tmp_path) == ["a.jpg", "a.png", "b.jpg", "b.png"]
    # Named explicitly, a result is still not an input.
    capsys.readouterr()
    assert main([str(tmp_path / "a.png"), "-o", str(tmp_path), "-q"]) == 2
    assert "a.png: a result of an earlier run into this output folder" in capsys.readouterr().err


class _Killed(BaseException):
    """What the kernel's OOM killer does to a process, as far as the CLI can tell."""


def test_an_input_that_killed_a_run_is_skipped_on_resume_unless_retried(
    tmp_path: Path, fake_remover, monkeypatch, capsys
):
    src, out = tmp_path / "src", tmp_path / "out"
    for name in ("a.png", "b_huge.png", "c.png"):
        _photo(src / name, (40, 30))
    real = _FakeRemover.process

    def killing(self, source, **kwargs):
        if "huge" in str(source):
            raise _Killed
        return real(self, source, **kwargs)

    monkeypatch.setattr(_FakeRemover, "process", killing)
    with pytest.raises(_Killed):
        main([str(src), "-o", str(out), "-q"])
    assert _files(out) == ["a.png"]

    capsys.readouterr()
    assert main([str(src), "-o", str(out), "--skip-existing", "-q"]) == 1
    err = capsys.readouterr().err
    assert "b_huge.png" in err and "earlier run stopped while processing it" in err
    assert "1 done, 1 skipped, 1 failed" in err
    assert _files(out) == ["a.png", "c.png"]

    monkeypatch.setattr(_FakeRemover, "process", real)
    assert main([str(src), "-o", str(out), "--skip-existing", "--retry-failed", "-q"]) == 0
    assert "1 done, 2 skipped, 0 failed" in capsys.readouterr().err
    assert _files(out) == ["a.png", "b_huge.png", "c.png"]


def test_symlink_loops_and_broken_links_are_reported_and_skipped(tmp_path: Path, fake_remover, capsys):
    src = tmp_path / "src"
    _photo(src / "good.png", (40, 30))
    (src / "self.jpg").symlink_to("self.jpg")
    (src / "dangling.png").symlink_to("missing.png")
    (src / "again").symlink_to(".")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")

    assert main([str(src), "-o", str(tmp_path / "loop"), "-q"]) == 2
    assert "cannot write into -o" in capsys.readouterr().err
    assert fake_remover.instances == []

    assert main([str(src), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "self.jpg: a broken or looping symbolic link" in err and "dangling.png" in err
    assert "1 done, 0 skipped, 2 failed" in err
    assert _files(tmp_path / "out") == ["good.png"]


def test_only_regular_files_are_inputs(tmp_path: Path, fake_remover, capsys):
    src = tmp_path / "src"
    _photo(src / "good.png", (40, 30))
    os.mkfifo(src / "pipe.jpg")  # opening it would wait for a writer forever
    jobs = {job.source.name: job for job in collect_jobs([str(src)], tmp_path / "out", ".png")}
    assert jobs["pipe.jpg"].output is None and "not a regular file" in jobs["pipe.jpg"].error
    assert main([str(src), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "1 done, 0 skipped, 1 failed" in capsys.readouterr().err


@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(tmp_path: Path, signame: str, code: int):
    _photo(tmp_path / "in" / "a.png", (40, 30))
    _photo(tmp_path / "in" / "b.png", (40, 30))
    script = f"""
import os, signal, sys, time
from PIL import Image
import inspyrenet_lite.remover
from inspyrenet_lite.cli import main

class Fake:
    def __init__(self, **kwargs): pass
    def process(self, source, **kwargs):
        return Image.new("RGBA", (40, 30), (1, 2, 3, 4))

inspyrenet_lite.remover.Remover = Fake
real_save, calls = Image.Image.save, []
def save(self, fp, format=None, **params):
    calls.append(fp)
    if len(calls) == 2:  # b.png is half written when the signal comes
        fp.write(b"half")
        os.kill(os.getpid(), signal.{signame})
        time.sleep(5)
    return real_save(self, fp, format=format, **params)
Image.Image.save = save
sys.exit(main([{str(tmp_path / "in")!r}, "-o", {str(tmp_path / "out")!r}, "-q"]))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == code, run.stderr
    assert "interrupted: 1 done" in run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != MANIFEST_NAME) == ["a.png"]


def test_a_full_disk_stops_the_run(tmp_path: Path, fake_remover, monkeypatch, capsys):
    for name in ("a.png", "b.png", "c.png"):
        _photo(tmp_path / "in" / name, (40, 30))
    attempts = []

    def full(img, path, format=None, quality=None, on_replaced=None):
        attempts.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("inspyrenet_lite.image_io.save_image", full)
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert len(attempts) == 1
    assert "No space left on device" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["meta", "no-such-device"])
def test_a_device_that_cannot_run_is_refused_before_loading_the_model(tmp_path: Path, fake_remover, capsys, device):
    photo = _photo(tmp_path / "a.png", (40, 30))
    assert main([str(photo), "-o", str(tmp_path / "out"), "--device", device, "-q"]) == 2
    assert f"--device {device!r}" in capsys.readouterr().err.replace("--device meta", "--device 'meta'")
    assert fake_remover.instances == []


def test_an_unwritable_output_folder_is_refused_before_loading_the_model(tmp_path: Path, fake_remover, capsys):
    photo = _photo(tmp_path / "a.png", (40, 30))
    (tmp_path / "notes.txt").write_text("a file, so nothing can be created under it")
    assert main([str(photo), "-o", str(tmp_path / "notes.txt" / "out"), "-q"]) == 2
    assert "cannot write into -o" in capsys.readouterr().err
    assert fake_remover.instances == []


def test_masks_and_cutouts_are_lossless_in_webp_unless_a_quality_is_asked(tmp_path: Path, fake_remover, monkeypatch):
    photo = _photo(tmp_path / "a.png", (64, 48))
    noise = np.random.default_rng(1).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    monkeypatch.setattr(_FakeRemover, "process", lambda self, source, **kw: Image.fromarray(noise, "RGBA"))
    assert main([str(photo), "-o", str(tmp_path / "lossless"), "--format", "webp", "-q"]) == 0
    with Image.open(tmp_path / "lossless" / "a.webp") as back:
        assert np.array_equal(np.asarray(back.convert("RGBA")), noise)
    assert main([str(photo), "-o", str(tmp_path / "lossy"), "--format", "webp", "--quality", "60", "-q"]) == 0
    with Image.open(tmp_path / "lossy" / "a.webp") as back:
        assert not np.array_equal(np.asarray(back.convert("RGBA")), noise)
    with pytest.raises(SystemExit):
        main([str(photo), "-o", str(tmp_path / "png"), "--quality", "60"])
