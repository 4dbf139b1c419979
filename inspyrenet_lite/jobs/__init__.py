"""Many files in, many files out: plan jobs, run them on a Remover, keep the output folder's record.

:mod:`.plan` expands inputs into :class:`Job` objects with their output paths,
:mod:`.manifest` is the output folder's record (what was written, for which
input, how far the work went), :mod:`.run` runs jobs and writes results,
:mod:`.lock` keeps a second run out of a folder a run is writing into (hold
it from planning to the end: ``with FolderLock(out): ...``).
The command line uses these; so can any program that batch-processes folders.

>>> from pathlib import Path
>>> from inspyrenet_lite import Remover
>>> from inspyrenet_lite.compositing import parse_output_type
>>> from inspyrenet_lite.jobs import FolderLock, ImageOutput, JobRunner, Manifest, collect_jobs
>>> out = Path("out")
>>> with FolderLock(out):  # doctest: +SKIP
...     manifest = Manifest.load(out)
...     jobs = collect_jobs(["photos/"], out, ".png", manifest)
...     counts = JobRunner(Remover(), manifest, ImageOutput(parse_output_type("rgba"))).run(jobs)
"""

from __future__ import annotations

from .lock import FolderBusy, FolderLock
from .manifest import MANIFEST_NAME, Manifest, Record
from .plan import (
    Job, assign_outputs, collect_jobs, edited_output, find_inputs, new_output_name, probe_folder, remove_leftovers,
)
from .run import DiskFull, ImageOutput, JobRunner, LogReporter, Reporter, RunCounts, model_identity

__all__ = [
    "FolderBusy", "FolderLock", "MANIFEST_NAME", "Manifest", "Record", "Job", "assign_outputs", "collect_jobs",
    "edited_output", "find_inputs", "new_output_name", "probe_folder", "remove_leftovers", "DiskFull", "ImageOutput",
    "JobRunner", "LogReporter", "Reporter", "RunCounts", "model_identity",
]
