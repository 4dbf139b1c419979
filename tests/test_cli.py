"""The inspyrenet-lite command: inputs, outputs that never clobber inputs, failures, resuming."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite.cli import collect_jobs, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _photo(path: Path, size: tuple[int, int], colour=(200, 60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    img.paste((20, 40, 220), (size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3))
    img.save(path)
    return path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class _FakeRemover:
    """Stands in for Remover where only the CLI's plumbing is under test."""

    instances: list[dict] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        _FakeRemover.instances.append(kwargs)
        self.calls: list[str] = []

    def process(self, source, type="rgba", threshold=None, hr_blend=0.0, reverse=False):
        from inspyrenet_lite.image_io import load_image

        self.calls.append(source)
        rgb = load_image(source).rgb
        return Image.new("RGBA", rgb.size, (1, 2, 3, 4))


@pytest.fixture
def fake_remover(monkeypatch: pytest.MonkeyPatch):
    _FakeRemover.instances = []
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
    args += ["--max-pixels", "5000", "--type", "white", "--format", "jpg", "--threshold", "0.5", "-q"]
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
    # pairs: (a, b) go through together; (c, d_broken) fails as a batch and is redone one by one
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
