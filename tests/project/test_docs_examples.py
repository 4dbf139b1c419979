"""The documentation is tested: the command's help lists its sub-commands, and every example runs.

Every fenced ``python``, ``bash`` and ``shell`` block of README.md and docs/*.md is a test. It runs in a
fresh folder holding the files the examples name (``photo.jpg``, ``photos/``, ``clip.mp4``, ``my-data/``...),
with ``INSPYRENET_LITE_CKPT`` pointing at a tiny saved model (so ``Remover()``, ``--model base`` and the
like load it in milliseconds and nothing is downloaded) and ``HF_HUB_OFFLINE=1``. A block that needs the
network, a GPU, the authors' full checkpoints or a long run is marked in the markdown with
``<!-- docs-test: skip (why) -->`` on the line before it; then only its syntax is checked (``compile()``
for Python, ``bash -n`` for shell). A block marked ``<!-- docs-test: server -->`` (requests to a running
``inspyrenet-lite serve``) runs against the service's app on the tiny model, started on a free loopback port.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving_helpers import photo
from training_helpers import one_thread, soft_blob

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "bash": "shell", "shell": "shell", "sh": "shell"}
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->")
SERVER = re.compile(r"<!--\s*docs-test:\s*server\b")
#: Where the serving examples send their requests; the tests' server answers on a free port instead.
EXAMPLE_URL = "http://127.0.0.1:8000"
FENCE = re.compile(r"^(\s*)```+\s*([\w+-]*)")


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its kind (python or shell), its code, and why it only compiles."""

    path: Path
    line: int
    kind: str
    code: str
    skip: str | None
    server: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def collect(path: Path) -> list[Example]:
    """The python and shell blocks of one markdown file, with their skip markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, language = match.group(1), match.group(2).lower()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        skip = SKIP.search(previous)
        if language in LANGUAGES:
            code = "\n".join(line[len(indent):] for line in lines[i + 1 : end]) + "\n"
            reason = (skip.group(1).strip(" ()") or "marked") if skip else None
            server = bool(SERVER.search(previous))
            examples.append(Example(path, i + 1, LANGUAGES[language], code, reason, server))
        i = end + 1
    return examples


EXAMPLES = [example for path in DOC_FILES for example in collect(path)]


def test_the_collector_finds_the_examples():
    # A fence the regular expression stopped matching would silently leave the docs untested.
    names = {example.name for example in EXAMPLES}
    assert any(name.startswith("README.md:") for name in names)
    assert sum(example.skip is None for example in EXAMPLES) >= 12, names


def test_help_lists_every_subcommand_with_one_line():
    from inspyrenet_lite.cli import SUBCOMMANDS

    proc = subprocess.run(
        [sys.executable, "-m", "inspyrenet_lite", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in SUBCOMMANDS:
        described = [line for line in lines if line.split()[:1] == [name] and len(line.split()) > 2]
        assert described, f"--help does not describe the sub-command {name!r}:\n{proc.stdout}"


@pytest.fixture(scope="module")
def workspace_template(tmp_path_factory: pytest.TempPathFactory, tiny_folder: Path) -> Path:
    """The files the examples name (small generated photos, masks, clips), made once per module."""
    root = tmp_path_factory.mktemp("docs-template")
    rng = np.random.default_rng(0)
    work = root / "work"
    folders = ("photos", "shots", "images", "masks", "maps", "ours", "theirs", "videos", "my-data/images", "my-data/masks",
               "other-photos")
    for folder in folders:
        (work / folder).mkdir(parents=True)
    for seed, name in enumerate(["photo.jpg", "a.jpg", "b.jpg", "c.jpg", "beach.jpg", "photo.png"]):
        photo(96, 72, seed).save(work / name)
    (work / "broken.jpg").write_bytes(b"not an image")
    for i in range(3):
        photo(96, 72, 10 + i).save(work / "photos" / f"p{i}.jpg")
        photo(96, 72, 20 + i).save(work / "shots" / f"s{i}.jpg")
        photo(96, 72, 40 + i).save(work / "other-photos" / f"o{i}.jpg")
    for i in range(4):
        photo(64, 64, 30 + i).save(work / "images" / f"{i}.jpg")
        mask = soft_blob(rng, 64)
        for folder in ("masks", "maps", "ours", "theirs"):
            mask.save(work / folder / f"{i}.png")
    for i in range(6):
        photo(64, 64, 50 + i).save(work / "my-data" / "images" / f"{i}.jpg")
        soft_blob(rng, 64).save(work / "my-data" / "masks" / f"{i}.png")
    try:
        from video_clips import make_clip
    except ImportError:  # no PyAV: the video examples fail with a message naming it
        pass
    else:
        make_clip(work / "clip.mp4", photo(160, 96, 60), frames=3, size=(64, 48))
        make_clip(work / "beach.mp4", photo(160, 96, 61), frames=2, size=(64, 48), audio=False)
        shutil.copy(work / "clip.mp4", work / "videos" / "clip.mp4")
        photo(96, 72, 62).save(work / "videos" / "still.jpg")
    (root / "model").symlink_to(tiny_folder)
    shims = root / "bin"
    shims.mkdir()
    for name, target in (("inspyrenet-lite", f'"{sys.executable}" -m inspyrenet_lite'), ("python", f'"{sys.executable}"')):
        shim = shims / name
        shim.write_text(f'#!/usr/bin/env bash\nexec {target} "$@"\n')
        shim.chmod(0o755)
    return root


@pytest.fixture
def workspace(workspace_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the example files as the current folder, with the environment the examples run in."""
    work = tmp_path / "work"
    shutil.copytree(workspace_template / "work", work)
    env = {
        "INSPYRENET_LITE_CKPT": str(workspace_template / "model" / "model.safetensors"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "INSPYRENET_LITE_CACHE": str(tmp_path / "cache"),
        "PATH": f"{workspace_template / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="module")
def docs_server(workspace_template: Path) -> Iterator[str]:
    """The service (``create_app`` on a Remover of the tiny model) on a free loopback port: its base URL."""
    from serving_helpers import running

    from inspyrenet_lite import Remover
    from inspyrenet_lite.serving import ServeSettings, create_app

    remover = Remover(ckpt=workspace_template / "model" / "model.safetensors", device="cpu")
    with running(create_app(remover, ServeSettings())) as base:
        yield base


def _check_syntax(example: Example) -> None:
    if example.kind == "python":
        compile(example.code, example.name, "exec")
    else:
        proc = subprocess.run(["bash", "-n"], input=example.code, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{example.name}: {proc.stderr}"


def _shell_commands(code: str) -> list[str]:
    """The block's commands, one per logical line (backslash continuations joined, blank and comment lines dropped)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _run_cli_in_process(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``inspyrenet-lite ARGV`` in this process (imports paid once), with ``env`` set for the call."""
    from inspyrenet_lite.cli import main

    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            return main(argv)
        except SystemExit as stop:  # argparse errors and --help
            return stop.code if isinstance(stop.code, int) else 1


def _run_shell(example: Example, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``inspyrenet-lite`` line runs in this process; ``export`` sets the environment; the rest runs in bash."""
    env: dict[str, str] = {}
    for command in _shell_commands(example.code):
        words = shlex.split(command, comments=True)
        if words and words[0] == "export":
            env.update(word.split("=", 1) for word in words[1:])
            continue
        prefix = [word for word in itertools.takewhile(lambda w: re.fullmatch(r"[A-Za-z_]\w*=.*", w), words)]
        rest = words[len(prefix) :]
        if rest[:1] == ["inspyrenet-lite"] and not re.search(r"[|<>;&`]|\$\(", command.split("#")[0]):
            code = _run_cli_in_process(rest[1:], {**env, **dict(w.split("=", 1) for w in prefix)}, monkeypatch)
            assert code == 0, f"{example.name}: {command!r} exited with {code}"
            continue
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300,
            env={**os.environ, **env},
        )
        assert proc.returncode == 0, f"{example.name}: {command!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture
def restore_process_state():
    """Undo what an example run in this process changes for the tests after it: logging set-up by the CLI,
    Pillow's pixel guard widened by a Remover."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hub_propagates = logging.getLogger("huggingface_hub").propagate
    guard = Image.MAX_IMAGE_PIXELS
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("huggingface_hub").propagate = hub_propagates
    Image.MAX_IMAGE_PIXELS = guard


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_example(example: Example, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    _check_syntax(example)
    if example.skip is not None:
        return  # marked in the markdown: syntax only
    request.getfixturevalue("workspace")
    request.getfixturevalue("restore_process_state")
    if example.server:
        base = request.getfixturevalue("docs_server")
        assert EXAMPLE_URL in example.code, f"{example.name}: no request to {EXAMPLE_URL}"
        example = dataclasses.replace(example, code=example.code.replace(EXAMPLE_URL, base))
        monkeypatch.setenv("KEY", "s3cret")
    # One torch thread: the examples measure nothing, and a tiny model's forward on two threads of a busy
    # machine waits on thread barriers far longer than it computes.
    with one_thread():
        if example.kind == "python":
            exec(compile(example.code, example.name, "exec"), {"__name__": "__docs_example__"})
        else:
            _run_shell(example, monkeypatch)
