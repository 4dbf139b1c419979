"""The output folder of a run: never an earlier run's or the starting model's, unless asked.

A run writes ``metrics.jsonl``, the exported model (``config.json``,
``model.safetensors``, ``model.pth``) and ``checkpoints/`` (``last.pt``,
``epochNNN.pt``). Writing them over an earlier run would leave a mixed,
misleading folder (old epoch checkpoints beside new ones, an appended log), so
a folder that holds anything is refused unless the run resumes from its own
checkpoint there, or ``overwrite`` is asked for: then the files a run writes
(the names above, nothing else) are removed first. A folder that is, or
holds, the starting model is refused even then.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

#: Files a run writes at the top of its output folder.
RUN_FILES = ("metrics.jsonl", "config.json", "model.safetensors", "model.pth")
_CHECKPOINT = re.compile(r"(last|epoch\d{3,})\.pt")


class OutputFolderError(ValueError):
    """An output folder that a run must not write into (an earlier run's, or the starting model's)."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_protected(out: Path, protect: Iterable[str | os.PathLike[str]]) -> None:
    for item in protect:
        start = Path(item).resolve()
        if _inside(start, out):
            raise OutputFolderError(
                f"output folder {out} is (or holds) the starting model {item}; training would replace "
                "its files. Give another output folder (-o)."
            )


def _is_own_resume(out: Path, resume: str | os.PathLike[str] | None) -> bool:
    return resume is not None and Path(resume).resolve().parent == out / "checkpoints"


def check_out_dir(
    out_dir: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Raise :class:`OutputFolderError` unless a run may write into ``out_dir``.

    Allowed: a missing or empty folder; the folder of the checkpoint being
    resumed (``resume`` in ``out_dir/checkpoints``); any other folder with
    ``overwrite``. Never: a folder that is or holds a ``protect`` path (the
    starting model), whatever the other arguments.
    """
    out = Path(out_dir).resolve()
    _check_protected(out, protect)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"output folder {out_dir} is a file; give a folder name")
    if not out.is_dir() or overwrite or _is_own_resume(out, resume):
        return
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise OutputFolderError(
            f"output folder {out_dir} already holds files ({shown}) and is not this run's. Give a new or "
            f"empty folder, continue that run with --resume {Path(out_dir) / 'checkpoints' / 'last.pt'}, "
            "or pass --overwrite (Trainer(overwrite=True)) to replace an earlier run's files there "
            "(other files are kept)"
        )


def clear_run_files(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the files a run writes (and nothing else) from ``out_dir``; returns what was removed."""
    out = Path(out_dir)
    removed = [out / name for name in RUN_FILES if (out / name).is_file()]
    ckpt_dir = out / "checkpoints"
    if ckpt_dir.is_dir():
        removed += sorted(p for p in ckpt_dir.iterdir() if p.is_file() and _CHECKPOINT.fullmatch(p.name))
    for path in removed:
        path.unlink()
    if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()
    if removed:
        logger.info("overwrite: removed %d files of an earlier run from %s", len(removed), out)
    return removed


def prepare_out_dir(
    out_dir: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    clear: bool = True,
) -> None:
    """:func:`check_out_dir`, then (with ``overwrite``, not resuming in place, and ``clear``) remove an
    earlier run's files and create the folder."""
    protect = list(protect)
    check_out_dir(out_dir, resume=resume, overwrite=overwrite, protect=protect)
    out = Path(out_dir)
    if overwrite and clear and out.is_dir() and not _is_own_resume(out.resolve(), resume):
        clear_run_files(out)
    out.mkdir(parents=True, exist_ok=True)
