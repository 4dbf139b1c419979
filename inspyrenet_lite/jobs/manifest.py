"""The record an output folder keeps of what ``inspyrenet-lite`` wrote into it.

One hidden file per output folder, :data:`MANIFEST_NAME`, JSON lines: each
line says, for one output (its path relative to the folder), which input it
belongs to (resolved path, size, mtime in ns), the output options it was made
with (type, threshold, reverse, hr_blend, quality) and how far the work went:
``started`` before any work on the input, then ``done``, ``failed`` or
``interrupted``. The last line for an output wins. Lines are appended and
fsynced as work goes; a torn last line (a crash mid-write) is ignored. The
file is rewritten (atomically) without its superseded lines at the start of
each run.

What it is for: an input keeps the output name it was given the first time
(names never depend on which other inputs a run has), a file the tool did not
write is never replaced, results are never taken for inputs, and an input
that killed an earlier run (out of memory) is known.
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


class Manifest:
    """The records of one output folder; ``case_insensitive`` compares names as that file system does."""

    def __init__(self, folder: Path, case_insensitive: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.case_insensitive = case_insensitive
        self._records: dict[str, Record] = {}
        self._by_input: dict[str, list[str]] = {}
        self._warned = False

    @classmethod
    def load(cls, folder: Path, case_insensitive: bool = False) -> Manifest:
        """Read ``folder``'s manifest; a missing one is empty, unreadable lines are skipped."""
        manifest = cls(folder, case_insensitive)
        try:
            text = manifest.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return manifest
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read %s (%s); treating it as empty", manifest.path, exc)
            return manifest
        for line in text.splitlines():
            try:
                manifest._remember(Record(**json.loads(line)))
            except (ValueError, TypeError):
                logger.debug("skipping an unreadable manifest line: %r", line[:200])
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
                fh.write(json.dumps(asdict(record)) + "\n")
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

    def _remember(self, record: Record) -> None:
        if record.status not in STATUSES:
            raise ValueError(f"unknown status {record.status!r}")
        name = self.key(record.output)
        old = self._records.get(name)
        if old is not None:
            self._by_input.get(self.key(old.input), []).remove(name)
        self._records[name] = record
        self._by_input.setdefault(self.key(record.input), []).append(name)
