"""Output files: a folder in the way, temporaries left by a killed run, resume's input-to-output mapping.

The command line runs with a stand-in for the model (only the plumbing is
under test); the atomic writer is tested directly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from inspyrenet_lite import _atomic
from inspyrenet_lite.cli import main
from inspyrenet_lite.cli.manifest import MANIFEST_NAME


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
