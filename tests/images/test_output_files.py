"""Output files: a folder in the way, temporaries left by a killed run, resume's input-to-output mapping.

The command line runs with a stand-in for the model (only the plumbing is
under test); the atomic writer is tested directly.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from PIL import Image

from inspyrenet_lite import _atomic
from inspyrenet_lite.cli import main
from inspyrenet_lite.jobs.manifest import MANIFEST_NAME


def _photo(path: Path, size: tuple[int, int] = (16, 12), colour=(200, 60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


class _StandIn:
    """Stands in for Remover: a result the size of the input, recording what it was given."""

    calls: list[str] = []

    def __init__(self, **kwargs) -> None:
        pass

    def process(self, source, type="rgba", threshold=None, hr_blend=0.0, reverse=False):
        _StandIn.calls.append(str(source))
        with Image.open(source) as img:
            return Image.new("RGBA", img.size, (1, 2, 3, 4))


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch):
    _StandIn.calls = []
    monkeypatch.setattr("inspyrenet_lite.remover.Remover", _StandIn)
    return _StandIn


# -- a folder where the output file goes (issue 18, item 12) ------------------------


@pytest.mark.parametrize("how", ["atomic_write", "atomic_open"])
def test_a_folder_in_place_of_the_destination_is_refused_before_writing(tmp_path: Path, how: str):
    dest = tmp_path / "photo.png"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    called = []
    with pytest.raises(IsADirectoryError) as info:
        if how == "atomic_write":
            _atomic.atomic_write(dest, lambda tmp: called.append(tmp))
        else:
            with _atomic.atomic_open(dest) as fh:
                called.append(fh)
    message = str(info.value)
    assert "Errno" not in message and "folder" in message and str(dest) in message
    assert "rename" in message  # says what to do
    assert called == []  # nothing was written
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt", "photo.png"]  # no temporary left


def test_atomic_link_replaces_the_destination_and_leaves_no_temporary(tmp_path: Path):
    source, dest = tmp_path / "last.pt", tmp_path / "epoch001.pt"
    source.write_bytes(b"state of epoch 1")
    dest.write_bytes(b"an older file of that name")
    for _ in range(2):  # the second call finds the link made already
        _atomic.atomic_link(source, dest)
        assert dest.samefile(source) and dest.read_bytes() == b"state of epoch 1"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch001.pt", "last.pt"]
    _atomic.atomic_write(source, lambda tmp: Path(tmp).write_bytes(b"state of epoch 2"))  # a new file, renamed
    assert dest.read_bytes() == b"state of epoch 1"
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        _atomic.atomic_link(source, tmp_path / "folder")


def test_the_cli_says_in_one_line_that_an_output_name_is_a_folder(tmp_path: Path, stand_in, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "a.png")
    (out / "a.png").mkdir(parents=True)
    (out / "a.png" / "keep.txt").write_text("mine")

    assert main([str(src), "-o", str(out), "--overwrite", "-q"]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "a.png" in line]
    assert "a folder of that name exists" in line and "Errno" not in err and "Traceback" not in err
    assert (out / "a.png" / "keep.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


# -- temporaries left by a killed run (issue 18, item 13) ----------------------------

_WRITER = """
import sys, time
from inspyrenet_lite._atomic import atomic_write

def write(tmp):
    with open(tmp, "wb") as fh:
        fh.write(b"half of a result")
        fh.flush()
        print("writing", flush=True)
        time.sleep(600)

atomic_write(sys.argv[1], write)
"""


def _start_writer(dest: Path):
    """A process in the middle of an atomic write of ``dest`` (its temporary exists once this returns)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(_atomic.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(dest)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".inspyrenet-*.part"))


def test_a_later_run_removes_the_temporary_of_a_killed_run_but_not_of_a_live_one(tmp_path: Path, stand_in, capsys):
    import signal

    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "a.png")
    out.mkdir()
    killed = _start_writer(out / "x.png")
    (left,) = _temporaries(out)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert left.exists()  # what kill -9 leaves behind
    live = _start_writer(out / "y.png")
    try:
        (busy,) = [p for p in _temporaries(out) if p != left]
        _age(busy, 3600)  # an hour untouched, but its writer is alive: it stays
        # The killed writer's is seconds old: it goes all the same (this machine's, and its writer is gone).
        assert main([str(src), "-o", str(out), "-q"]) == 0
        assert _temporaries(out) == [busy]
    finally:
        live.kill()
        live.wait()
    assert _files(out) == sorted(["a.png", busy.name])


def test_only_our_own_stale_temporaries_are_removed(tmp_path: Path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    here, elsewhere = _atomic.machine_tag(), "ffffffff" if _atomic.machine_tag() != "ffffffff" else "00000000"
    names = {
        f".inspyrenet-{dead}-{here}-0123abcd.part": "stale",  # dead writer of this machine, fresh
        f".inspyrenet-{os.getpid()}-{here}-0123abcd.part": "mine",  # a live writer of this machine, old
        f".inspyrenet-{dead}-{elsewhere}-0123abcd.part": "fresh",  # another machine's (a network folder), fresh
        f".inspyrenet-{dead}-{elsewhere}-4567abcd.part": "stale",  # another machine's, untouched for long
        f".inspyrenet-{dead}-0123abcd.part": "stale",  # dead writer, old
        ".inspyrenet-89abcdef.part": "stale",  # an earlier version's name (no pid), old
        f".inspyrenet-{dead}-00000000.part": "fresh",  # dead writer, but touched a minute ago
        f".inspyrenet-{os.getpid()}-11111111.part": "mine",  # a live writer (this process), old
        ".inspyrenet-lite-manifest.jsonl": "other",
        ".inspyrenet-probe-abc123": "other",
        ".inspyrenet-0123abcd.part.bak": "other",
        "inspyrenet-0123abcd.part": "other",
        ".inspyrenet-0123ABCD.part": "other",
        "photo.part": "other",
    }
    for name, kind in names.items():
        (tmp_path / name).write_bytes(b"x")
        fresh = kind == "fresh" or here in name and kind == "stale"
        _age(tmp_path / name, 60 if fresh else 2 * _atomic.STALE_AFTER_S)
    folder_named_so = tmp_path / ".inspyrenet-22222222.part"
    folder_named_so.mkdir()
    _age(folder_named_so, 2 * _atomic.STALE_AFTER_S)

    removed = _atomic.remove_stale_temporaries(tmp_path)

    assert sorted(p.name for p in removed) == sorted(n for n, kind in names.items() if kind == "stale")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {n for n, kind in names.items() if kind != "stale"} | {folder_named_so.name}


def test_a_killed_writers_temporary_folder_is_removed_and_nothing_else(tmp_path: Path, current_umask: int):
    """A PNG sequence is filled in a temporary folder; after kill -9 a later run removes it (it stayed
    forever before), never a live writer's, nor the folder that holds a previous result being replaced."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, here = int(gone.stdout), _atomic.machine_tag()
    made = _atomic.new_temporary_folder(tmp_path)
    assert _atomic._TEMPORARY.fullmatch(made.name) and made.name.startswith(f".inspyrenet-{os.getpid()}-{here}-")
    assert stat.S_IMODE(made.stat().st_mode) == 0o777 & ~current_umask
    folders = {
        f".inspyrenet-{dead}-{here}-0123abcd.tmp": "stale",  # a killed writer's frames
        made.name: "live",  # this process's, at work
        f".inspyrenet-{dead}-{here}-4567abcd.old": "previous",  # a previous result while it is replaced
        ".inspyrenet-89abcdef.tmp": "earlier",  # an earlier version's name: no pid to ask about
    }
    for name in folders:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "frame_000000.png").write_bytes(b"png")
    (tmp_path / f".inspyrenet-{dead}-{here}-89abcdef.tmp").write_bytes(b"a file named as a folder")

    removed = _atomic.remove_stale_temporaries(tmp_path)

    assert [p.name for p in removed] == [f".inspyrenet-{dead}-{here}-0123abcd.tmp"]
    assert {p.name for p in tmp_path.iterdir()} == {n for n, kind in folders.items() if kind != "stale"} | {
        f".inspyrenet-{dead}-{here}-89abcdef.tmp"
    }


# -- --skip-existing's input-to-output mapping: cases beside tests/cli/test_cli.py's (issue 18, item 16) --


def test_skip_existing_keeps_one_result_per_input_and_format(tmp_path: Path, stand_in, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "a.png", (40, 30))
    assert main([str(src), "-o", str(out), "-q"]) == 0
    capsys.readouterr()

    # Another format is another result: made, not skipped because a.png is done.
    assert main([str(src), "-o", str(out), "--skip-existing", "--format", "webp", "-q"]) == 0
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().err
    assert _files(out) == ["a.png", "a.webp"]
    with Image.open(out / "a.webp") as img:
        assert img.format == "WEBP" and img.size == (40, 30)
    # Each is now recorded as done under its own name: both formats resume to a skip.
    for fmt in ("png", "webp"):
        assert main([str(src), "-o", str(out), "--skip-existing", "--format", fmt, "-q"]) == 0
        assert "0 done, 1 skipped, 0 failed" in capsys.readouterr().err
    assert _files(out) == ["a.png", "a.webp"]


def test_skip_existing_redoes_an_output_made_with_other_options(tmp_path: Path, stand_in, capsys):
    """A resume with another --type (threshold, reverse, quality...) redoes the outputs instead of keeping
    the old kind under the same name; with the same options it skips them."""
    import json

    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "a.png", (40, 30))
    _photo(src / "b.png", (20, 10))
    assert main([str(src), "-o", str(out), "--type", "map", "-q"]) == 0
    capsys.readouterr()
    assert len(stand_in.calls) == 2
    for options, summary in (
        (["--type", "white"], "2 done, 0 skipped"),
        (["--type", "white"], "0 done, 2 skipped"),
        (["--type", "white", "--threshold", "0.5"], "2 done, 0 skipped"),
        (["--type", "white", "--threshold", "0.5"], "0 done, 2 skipped"),
    ):
        assert main([str(src), "-o", str(out), "--skip-existing", *options, "-q"]) == 0
        assert summary in capsys.readouterr().err, options
    assert len(stand_in.calls) == 6
    # A folder written by an earlier version (no options recorded) resumes as it did then: skipped.
    manifest = out / MANIFEST_NAME
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "options"}) + "\n" for r in lines))
    assert main([str(src), "-o", str(out), "--skip-existing", "--type", "green", "-q"]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().err


def test_skip_existing_tells_same_named_inputs_of_different_folders_apart(tmp_path: Path, stand_in, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _photo(src / "day" / "a.png", (40, 30))
    _photo(src / "night" / "a.png", (20, 10))
    assert main([str(src), "-o", str(out), "-q"]) == 0
    assert _files(out) == ["day/a.png", "night/a.png"]
    capsys.readouterr()

    _photo(src / "night" / "a.png", (24, 12))  # only night's input changes
    _StandIn.calls = []
    assert main([str(src), "-o", str(out), "--skip-existing", "-q"]) == 0
    assert "1 done, 1 skipped, 0 failed" in capsys.readouterr().err
    assert _StandIn.calls == [str(src / "night" / "a.png")]
    with Image.open(out / "night" / "a.png") as img:
        assert img.size == (24, 12)
    with Image.open(out / "day" / "a.png") as img:
        assert img.size == (40, 30)
    assert _files(out) == ["day/a.png", "night/a.png"]


def test_a_result_with_exif_too_long_for_jpeg_is_written_without_it(tmp_path):
    """A PNG may carry 100 KB of EXIF; JPEG holds at most 64 KB in its segment: the image is written
    (without the EXIF) instead of Pillow's 'EXIF data is too long'."""
    from PIL import Image

    from inspyrenet_lite.image_io import save_image

    img = Image.new("RGB", (16, 12), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010E] = "x" * 100_000  # ImageDescription
    img.info["exif"] = exif.tobytes()
    path = save_image(img, tmp_path / "out.jpg")
    with Image.open(path) as written:
        assert written.size == (16, 12) and "exif" not in written.info
