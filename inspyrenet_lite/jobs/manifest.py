"""The record an output folder keeps of what ``inspyrenet-lite`` wrote into it.

One hidden file per output folder, :data:`MANIFEST_NAME`, JSON lines: each
line says, for one output (its path relative to the folder), which input it
belongs to (resolved path, size, mtime in ns), the output options it was made
with (type, threshold, reverse, hr_blend, quality; the model, its precision
and resize) and how far the work went: ``started`` before any work on the
input, then ``done``, ``failed`` or ``interrupted``, and the size and mtime of
the output file as it was written. The last line for an output wins. Lines
are appended and fsynced as work goes; a torn last line (a crash mid-write)
is ignored, a damaged line is skipped with a warning. The file is rewritten
(atomically) without its superseded lines at the start of each run.

What it is for: an input keeps the output name it was given the first time
(names never depend on which other inputs a run has), a file the tool did not
write is never replaced (nor one edited since it was written), results are
never taken for inputs, and an input that killed an earlier run (out of
memory) is known.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from inspyrenet_lite._atomic import atomic_write_text

logger = logging.getLogger(__name__)

MANIFEST_NAME = ".inspyrenet-lite-manifest.jsonl"
STATUSES = ("started", "done", "failed", "interrupted")


@dataclass
class Record:
    """One output and the input it was made from."""

    output: str  # relative to the output folder, with "/" separators
    input: str  # resolved path of the input
    size: int
    mtime_ns: int
    status: str
    error: str | None = None
    options: str | None = None  # ImageOutput.fingerprint() of the run that wrote it (None: an older version's)
    out_size: int | None = None  # the output file as this tool left it (None: an older version's record)
    out_mtime_ns: int | None = None

    def __post_init__(self) -> None:
        for name in ("output", "input", "status"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        for name in ("size", "mtime_ns"):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an integer")
        for name in ("out_size", "out_mtime_ns"):
            if not isinstance(getattr(self, name), (int, type(None))):
                raise TypeError(f"{name} must be an integer or null")
        for name in ("error", "options"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise TypeError(f"{name} must be a string or null")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def output_changed(self, path: Path) -> bool:
        """Whether the output file at ``path`` is no longer the one this tool wrote (edited or replaced
        since; unknown for older records and missing files: False)."""
        if self.out_size is None or self.out_mtime_ns is None:
            return False
        try:
            info = os.stat(path)
        except OSError:
            return False
        return (info.st_size, info.st_mtime_ns) != (self.out_size, self.out_mtime_ns)


class Manifest:
    """The records of one output folder; ``case_insensitive`` compares names as that file system does."""

    def __init__(self, folder: Path, case_insensitive: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.case_insensitive = case_insensitive
        self._records: dict[str, Record] = {}
        self._by_input: dict[str, list[str]] = {}
        self._warned = False
        self._unterminated = False  # the file ends in a torn line: the next line starts on a line of its own

    @classmethod
    def load(cls, folder: Path, case_insensitive: bool = False) -> Manifest:
        """Read ``folder``'s manifest; a missing one is empty. Lines that cannot be read (a torn last
        line after a crash, a damaged byte, a field of the wrong type) are skipped one by one, with a
        warning naming them unless it is only a torn last line; the others are kept."""
        manifest = cls(folder, case_insensitive)
        try:
            data = manifest.path.read_bytes()
        except FileNotFoundError:
            return manifest
        except OSError as exc:
            logger.warning("cannot read %s (%s); treating it as empty", manifest.path, exc)
            return manifest
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""  # after the last newline: empty, or a line a crash cut short
        bad = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                manifest._remember(Record(**json.loads(line.decode("utf-8"))))
            except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                bad.append(number)
        manifest._unterminated = bool(torn)
        if torn.strip():
            logger.info("%s: ignoring its last line, cut short (a run stopped while writing it)", manifest.path)
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            logger.warning(
                "%s: skipping %d damaged line(s) (%s); the outputs they recorded are treated as files "
                "this tool did not write", manifest.path, len(bad), shown,
            )
        return manifest

    def key(self, name: str | os.PathLike) -> str:
        """``name`` as this file system compares it."""
        text = os.fspath(name)
        return text.casefold() if self.case_insensitive else text

    def get(self, output: str) -> Record | None:
        """The record of ``output`` (relative path), if any."""
        return self._records.get(self.key(output))

    def output_for(self, input_path: str, suffix: str) -> str | None:
        """The output recorded for ``input_path`` that ends in ``suffix``, if any."""
        for name in self._by_input.get(self.key(input_path), ()):
            record = self._records[name]
            if record.output.lower().endswith(suffix.lower()):
                return record.output
        return None

    def outputs(self) -> list[str]:
        """Every recorded output, relative to the folder."""
        return [record.output for record in self._records.values()]

    def record(self, record: Record) -> None:
        """Remember ``record`` and append it to the file (fsynced).

        A manifest that cannot be written is reported once; the run goes on
        (outputs it does not know of are simply never replaced later).
        """
        self._remember(record)
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(("\n" if self._unterminated else "") + json.dumps(asdict(record)) + "\n")
                self._unterminated = False
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if not self._warned:
                logger.warning("cannot update %s (%s)", self.path, exc)
                self._warned = True

    def compact(self) -> None:
        """Rewrite the file with one line per output (atomically)."""
        if self._records:
            atomic_write_text(self.path, "".join(json.dumps(asdict(r)) + "\n" for r in self._records.values()))
            self._unterminated = False

    def _remember(self, record: Record) -> None:
        name = self.key(record.output)
        old = self._records.get(name)
        if old is not None:
            self._by_input.get(self.key(old.input), []).remove(name)
        self._records[name] = record
        self._by_input.setdefault(self.key(record.input), []).append(name)
