"""The generated-fixture cache: made once when several test processes ask at once, never half-written."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from fixtures.store import ENV, ensure_files, ensure_groups, fixtures_root


def _slow_make(folder: Path) -> None:
    with open(folder.parent / "calls.log", "a") as log:  # one line per time the files were made
        log.write("made\n")
    time.sleep(0.5)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "b.bin").write_bytes(b"b")


def _ask(folder: str) -> None:
    ensure_files(Path(folder), ["a.bin", "b.bin"], _slow_make)


def test_processes_asking_at_once_make_the_files_once(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_ask, args=(str(tmp_path),)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert (tmp_path / "calls.log").read_text() == "made\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["a.bin", "b.bin", "calls.log"]


def test_a_failed_make_leaves_nothing_and_the_next_call_makes_them(tmp_path: Path):
    def broken(folder: Path) -> None:
        (folder / "a.bin").write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        ensure_files(tmp_path, ["a.bin", "b.bin"], broken)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    ensure_groups(tmp_path, [(["a.bin", "b.bin"], _slow_make)])
    assert (tmp_path / "a.bin").read_bytes() == b"a" and (tmp_path / "b.bin").read_bytes() == b"b"


def test_the_environment_chooses_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert fixtures_root() == tmp_path / "mine"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = fixtures_root()
    assert root.parent == tmp_path / "cache" / "inspyrenet-lite" / "test-fixtures" and len(root.name) == 16


def test_made_files_get_the_users_umask_permissions(tmp_path: Path, current_umask: int):
    def private(folder: Path) -> None:
        (folder / "a.bin").write_bytes(b"a")
        os.chmod(folder / "a.bin", 0o600)  # as safetensors' save_file leaves them

    ensure_files(tmp_path, ["a.bin"], private)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~current_umask
