"""From INPUT arguments (files, folders, globs) to jobs: which files, and where each result goes.

Rules (see the README's command-line section):

* only regular files are inputs; FIFOs, devices, broken or looping symbolic
  links are reported, never opened;
* results this tool wrote (recorded in the output folder's manifest) are
  never inputs, whatever the glob or folder;
* an input keeps the output name the manifest gave it; a new input gets
  ``<name>.<format>``, else ``<name>_<input suffix>.<format>``, else
  ``<name>_2.<format>``..., never an input's path, never another input's
  recorded output, and never an existing file the tool did not write
  (unless ``overwrite``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inspyrenet_lite._atomic import remove_stale_temporaries
from inspyrenet_lite.constants import IMAGE_SUFFIXES  # suffixes picked up in folders (explicit files: any)
from inspyrenet_lite.jobs.manifest import MANIFEST_NAME, Manifest
from inspyrenet_lite.video.formats import is_video

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One input file and where its result goes.

    ``error``: it cannot be done (counted as failed); ``skip``: it is not to
    be done (counted as skipped). ``output_name`` is relative to the output
    folder; ``key``, ``size`` and ``mtime_ns`` identify the input.
    """

    source: Path
    output: Path | None = None
    error: str | None = None
    skip: str | None = None
    output_name: str | None = None
    key: str = ""
    size: int = 0
    mtime_ns: int = 0


def probe_folder(folder: Path) -> bool:
    """Check that files can be created in ``folder`` (or the nearest existing
    folder above it, where it does not exist yet) and tell whether that file
    system ignores case. ``OSError`` says why it cannot be written."""
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    if not stat.S_ISDIR(os.stat(folder).st_mode):  # a symlink loop raises here
        raise NotADirectoryError(f"{str(folder)!r} is not a folder")
    fd, name = tempfile.mkstemp(prefix=".inspyrenet-probe-", dir=folder)
    try:
        os.close(fd)
        head, tail = os.path.split(name)
        return os.path.exists(os.path.join(head, tail.swapcase()))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _resolved(path: Path) -> str | None:
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return None


def _unusable(path: Path) -> str | None:
    """Why ``path`` cannot be an input (None if it is a regular file)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            return f"a broken or looping symbolic link ({exc.strerror}); skipped"
        return f"it cannot be read ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, device or socket); skipped, never opened"
    return None


def find_inputs(
    inputs: Sequence[str], output_dir: Path, manifest: Manifest
) -> tuple[list[tuple[Path, Path]], list[Job]]:
    """Expand INPUT arguments to (file, path relative to its folder or glob) and jobs for what cannot be done."""
    written = set()
    for name in manifest.outputs():
        for path in (str(output_dir / name), _resolved(output_dir / name)):
            if path:
                written.add(manifest.key(path))
    out_resolved = _resolved(output_dir)
    found: list[tuple[Path, Path]] = []
    problems: list[Job] = []

    def add(path: Path, rel: Path, explicit: bool) -> None:
        reason = _unusable(path)
        if reason is not None:
            problems.append(Job(path, error=reason))
        elif {manifest.key(str(path)), manifest.key(_resolved(path) or str(path))} & written:
            if explicit:
                problems.append(Job(path, skip="a result of an earlier run into this output folder, not an input"))
        else:
            found.append((path, rel))

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            # An output folder inside the input folder is not searched: its files are results.
            inner = out_resolved if out_resolved != _resolved(path) else None
            for file, rel, problem in _walk(path, inner):
                if problem:
                    problems.append(Job(file, error=problem))
                else:
                    add(file, rel, explicit=False)
        elif os.path.lexists(path):
            add(path, Path(path.name), explicit=True)
        elif text.lower().startswith(("http://", "https://")):
            problems.append(Job(path, error="an http(s) address: give it alone with -o - (the result goes to "
                                "stdout), or download it first"))
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                problems.append(Job(path, error="the pattern matches no file"))
            for match in matches:
                add(match, Path(match.name), explicit=False)
        else:
            problems.append(Job(path, error="no such file or folder"))
    return found, problems


def _walk(folder: Path, exclude: str | None) -> list[tuple[Path, Path, str | None]]:
    """Image and video files under ``folder`` as (path, path relative to folder, problem or None), sorted.

    Symbolic links to folders are followed, each real folder once (a link loop or a second link to
    the same folder adds nothing). Results recorded in the manifest of a folder on the way (the
    output folder of another run, inside this one) are not inputs."""
    found: list[tuple[Path, Path, str | None]] = []
    visited: set[str] = set()
    results: set[str] = set()

    def unreadable(exc: OSError) -> None:
        found.append((Path(exc.filename or folder), Path(), f"the folder cannot be read ({exc.strerror})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        root_path = Path(root)
        real = _resolved(root_path)
        if real is None or real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and _resolved(root_path / d) not in (exclude, None)  # loops: `visited` above
        )
        if MANIFEST_NAME in files:
            results |= _recorded_results(root_path)
        for name in sorted(files):
            path = root_path / name
            if name.startswith(".") or os.path.normpath(path) in results:
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES or is_video(path):
                found.append((path, path.relative_to(folder), None))
            elif os.path.islink(path) and not os.path.exists(path):
                found.append((path, Path(), _unusable(path)))
    return found


def _recorded_results(folder: Path) -> set[str]:
    """The paths (normalised, under ``folder``) of the results ``folder``'s manifest records."""
    outputs = Manifest.load(folder).outputs()
    if outputs:
        logger.info("%s holds the results of an earlier run (its manifest records %d): not inputs", folder, len(outputs))
    return {os.path.normpath(folder / name) for name in outputs}


def assign_outputs(
    found: Sequence[tuple[Path, Path]],
    output_dir: Path,
    suffix: str | Callable[[Path], str],
    manifest: Manifest,
    overwrite: bool = False,
) -> list[Job]:
    """One job per distinct input, with the output name the manifest gave it or a new, safe one.

    ``suffix`` is the outputs' suffix, or a function of the input path giving it
    (videos and images get different ones)."""
    jobs: list[Job] = []
    seen: set[str] = set()
    for path, rel in found:
        key = _resolved(path)
        if key is None or manifest.key(key) in seen:
            continue
        seen.add(manifest.key(key))
        info = os.stat(path)
        jobs.append(Job(path, output_name=rel.as_posix(), key=key, size=info.st_size, mtime_ns=info.st_mtime_ns))

    planned: set[str] = set()
    for job in jobs:
        job_suffix = suffix(job.source) if callable(suffix) else suffix
        name = manifest.output_for(job.key, job_suffix)
        if name is None or not _free(name, job, output_dir, manifest, seen, planned, overwrite):
            name = new_output_name(job, output_dir, job_suffix, manifest, seen, planned, overwrite)
        planned.add(manifest.key(name))
        job.output_name = name
        job.output = output_dir / name
        job.skip = edited_output(job, manifest, overwrite)
    return jobs


def edited_output(job: Job, manifest: Manifest, overwrite: bool) -> str | None:
    """Why ``job`` is to be skipped because its output was edited (or replaced) by someone since this tool
    wrote it, or None (also with ``overwrite``, which lets the run replace it)."""
    assert job.output_name is not None and job.output is not None
    record = manifest.get(job.output_name)
    if overwrite or record is None or manifest.key(record.input) != manifest.key(job.key):
        return None
    if not record.output_changed(job.output):
        return None
    return f"its output {job.output_name} was changed since this tool wrote it; kept (--overwrite replaces it)"


def new_output_name(
    job: Job, output_dir: Path, suffix: str, manifest: Manifest, inputs: set[str], planned: set[str], overwrite: bool
) -> str:
    """A free output name for ``job`` (the rules in the module docstring): ``inputs`` are the inputs'
    keys, ``planned`` the names other jobs of this run were given (both as ``manifest.key`` has them)."""
    assert job.output_name is not None
    rel = Path(job.output_name)
    stem = rel.with_suffix("").as_posix() if rel.suffix else rel.as_posix()
    candidates = [stem + suffix, f"{stem}_{rel.suffix.lstrip('.') or 'file'}{suffix}"]
    counter = 2
    while True:
        for name in map(fit_name, candidates):
            if _free(name, job, output_dir, manifest, inputs, planned, overwrite):
                return name
        candidates = [f"{stem}_{counter}{suffix}"]
        counter += 1


#: The longest file name (bytes) most file systems take (ext4, XFS, APFS, NTFS: 255).
NAME_MAX = 255


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` (a relative path) with its last part shortened to ``limit`` bytes where it is longer: the
    stem is cut and a short hash of the whole name keeps shortened names apart (an input named at the
    limit whose output needs a suffix failed with 'File name too long')."""
    head, _, tail = name.rpartition("/")
    if len(os.fsencode(tail)) <= limit:
        return name
    stem, dot, ext = tail.rpartition(".")
    if not dot:
        stem, ext = tail, ""
    ending = f"~{hashlib.sha256(os.fsencode(name)).hexdigest()[:8]}" + (f".{ext}" if dot else "")
    room = limit - len(os.fsencode(ending))
    short = os.fsencode(stem)[:room].decode("utf-8", "ignore") if room > 0 else ""
    return (head + "/" if head else "") + short + ending


def _free(
    name: str, job: Job, output_dir: Path, manifest: Manifest, inputs: set[str], planned: set[str], overwrite: bool
) -> bool:
    """Whether ``job`` may write ``name``: not an input, not planned for another
    input, not another input's result, and not a file the tool did not write
    (unless ``overwrite``)."""
    if manifest.key(name) in planned:
        return False
    path = output_dir / name
    target = _resolved(path) or os.path.abspath(path)
    if manifest.key(target) in inputs:
        return False
    record = manifest.get(name)
    if record is not None:
        return manifest.key(record.input) == manifest.key(job.key)
    return overwrite or not os.path.lexists(path)


def remove_leftovers(output_dir: Path, jobs: Sequence[Job]) -> None:
    """Remove the temporaries that killed earlier runs (``kill -9``, out of memory) left
    in the folders this run writes to (:func:`~inspyrenet_lite._atomic.remove_stale_temporaries`)."""
    folders = {output_dir, *(job.output.parent for job in jobs if job.output is not None)}
    for folder in sorted(folders):
        remove_stale_temporaries(folder)


def collect_jobs(
    inputs: Sequence[str],
    output_dir: Path,
    suffix: str | Callable[[Path], str],
    manifest: Manifest | None = None,
    overwrite: bool = False,
) -> list[Job]:
    """Expand inputs and plan an output path for each file (the rules in the module docstring).

    Without ``manifest``, the output folder's own is read (and its file
    system probed for case-insensitivity where it can be written).
    """
    if manifest is None:
        try:
            case_insensitive = probe_folder(output_dir)
        except OSError:
            case_insensitive = False
        manifest = Manifest.load(output_dir, case_insensitive)
    found, problems = find_inputs(inputs, output_dir, manifest)
    return problems + assign_outputs(found, output_dir, suffix, manifest, overwrite)
