"""Run planned jobs on a Remover and write their results, keeping the output folder's manifest.

The command line's default command, and every later room that turns many
files into many files (several devices, a cluster), run jobs through
:class:`JobRunner`: it decides per job whether it is to be done now (resume
rules), records ``started`` before the work and ``done`` / ``failed`` /
``interrupted`` after it, batches images through the Remover (whose
``errors="skip"`` isolates a bad file), writes each result atomically, and
reports what happened through a :class:`Reporter` (the CLI prints; a library
caller may log or collect).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from inspyrenet_lite._interrupts import deferred_interrupts
from inspyrenet_lite.jobs.manifest import Manifest, Record
from inspyrenet_lite.jobs.plan import Job

logger = logging.getLogger(__name__)

#: Errors after which no further file can be written: the run stops.
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class DiskFull(Exception):
    """No more results can be written (full disk, quota, read-only file system)."""

    def advice(self) -> str:
        """What to do, by the cause."""
        if getattr(self.__cause__, "errno", None) == errno.EROFS:
            return "the file system became read-only; make it writable or choose another -o, then rerun"
        return "free some space and rerun"


@dataclass(frozen=True)
class ImageOutput:
    """What is made of each image and how it is written.

    ``spec`` is a parsed output type (:func:`inspyrenet_lite.compositing.parse_output_type`);
    ``format`` a Pillow format name (``"PNG"``, ``"WEBP"``, ``"JPEG"``...).
    """

    spec: Any
    threshold: float | None = None
    hr_blend: float | None = None
    reverse: bool = False
    format: str = "PNG"
    quality: int | None = None

    def fingerprint(self, model: Mapping[str, Any] | None = None) -> str:
        """The options that decide a result's content, as the manifest keeps them per output: a
        resumed run (``skip_existing``) redoes an output made with other ones instead of keeping it.
        ``model``: the model's part (:func:`model_identity`): which network, precision and resize."""
        spec = self.spec
        background = getattr(spec, "background", None)
        return json.dumps(
            {
                "type": getattr(spec, "kind", None),
                "colour": getattr(spec, "colour", None),
                "background": None if background is None else hashlib.sha256(background.tobytes()).hexdigest()[:16],
                "threshold": self.threshold,
                "hr_blend": self.hr_blend,
                "reverse": self.reverse,
                "quality": self.quality,
                **{f"model_{key}": value for key, value in (model or {}).items()},
            },
            sort_keys=True,
        )


def model_identity(
    name: str | None, weights_file: str | os.PathLike[str] | None, precision: str | None, resize: str | None
) -> dict[str, str | None]:
    """The model's part of an output's fingerprint: its name, a digest of its weights file (where it is
    known: a file moved or renamed is the same model, a file changed in place is not), its precision
    and its input resizing. ``None`` where unknown: such a part is not compared (:func:`same_fingerprint`).
    A model named by its local path is named by its digest alone (moving the folder changes nothing)."""
    weights = None if weights_file is None else file_digest(weights_file)
    if name is not None and weights is not None and os.path.exists(name):
        name = None
    return {
        "name": None if name is None else str(name),
        "weights": weights,
        "precision": precision,
        "resize": resize,
    }


def remover_identity(remover: Any) -> dict[str, str | None]:
    """:func:`model_identity` of a :class:`~inspyrenet_lite.Remover` (``None`` parts for other objects)."""
    return model_identity(
        getattr(remover, "mode", None), getattr(remover, "checkpoint_path", None),
        getattr(remover, "precision", None), getattr(remover, "resize", None),
    )


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """``size`` and ``mtime_ns`` only key the cache: a file changed since is hashed again."""
    from inspyrenet_lite._download import file_digest as sha

    return sha(path, "sha256")[:16]


def file_digest(path: str | os.PathLike[str]) -> str | None:
    """The first 16 hex digits of the file's SHA-256 (computed once per process and file version),
    or None if it cannot be read."""
    try:
        info = os.stat(path)
        return _digest(os.path.realpath(path), info.st_size, info.st_mtime_ns)
    except OSError:
        return None


def same_fingerprint(recorded: str, current: str) -> bool:
    """Whether an output recorded with fingerprint ``recorded`` was made as ``current`` would make it.

    A part that either side does not know (missing, as in the records of earlier versions, or
    ``None``: a model whose weights file is unknown) is not compared."""
    try:
        old, new = json.loads(recorded), json.loads(current)
    except ValueError:
        return False
    if not isinstance(old, dict):
        return False
    for key, value in new.items():
        unknown = key.startswith("model_") and (value is None or old.get(key) is None)
        if key in old and not unknown and old[key] != value:
            return False
    return True


@dataclass
class RunCounts:
    done: int = 0
    skipped: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed"


class Reporter(Protocol):
    def failed(self, job: Job, error: BaseException | str) -> None: ...
    def skipped(self, job: Job, reason: str) -> None: ...
    def advanced(self, count: int) -> None: ...


class LogReporter:
    """A :class:`Reporter` that logs (the default for library callers)."""

    def failed(self, job: Job, error: BaseException | str) -> None:
        logger.warning("failed: %s: %s", job.source, error)

    def skipped(self, job: Job, reason: str) -> None:
        logger.info("skipped: %s: %s", job.source, reason)

    def advanced(self, count: int) -> None:
        pass


class JobRunner:
    """Runs jobs on ``remover`` into their planned outputs (see the module docstring).

    Args:
        remover: a :class:`~inspyrenet_lite.Remover` (or anything with its ``process``).
        manifest: the output folder's record (:class:`~inspyrenet_lite.jobs.manifest.Manifest`).
        output: what to make of each image and how to write it.
        batch_size: images per network pass.
        skip_existing: resume: skip jobs whose recorded output is done and whose input and output
            options (:meth:`ImageOutput.fingerprint`) are unchanged, and jobs an earlier run died on
            (unless ``retry_failed``).
        video: ``video(job)`` processes a video job (raises on failure); ``None``: videos fail.
        reporter: where failures, skips and progress go.
        model: the model's part of each output's fingerprint (:func:`model_identity`); default: read
            from ``remover`` (:func:`remover_identity`).

    ``counts`` holds what happened so far, also after an interruption
    (``KeyboardInterrupt`` is re-raised once the jobs in flight are recorded
    ``interrupted``) or :class:`DiskFull`.
    """

    def __init__(
        self,
        remover: Any,
        manifest: Manifest,
        output: ImageOutput,
        *,
        batch_size: int = 1,
        skip_existing: bool = False,
        retry_failed: bool = False,
        video: Callable[[Job], None] | None = None,
        reporter: Reporter | None = None,
        model: Mapping[str, Any] | None = None,
    ) -> None:
        from inspyrenet_lite.checks import check_options

        options = check_options(batch_size=batch_size, skip_existing=skip_existing, retry_failed=retry_failed)
        self.remover = remover
        self.manifest = manifest
        self.output = output
        self.batch_size: int = options["batch_size"]
        self.skip_existing: bool = options["skip_existing"]
        self.retry_failed: bool = options["retry_failed"]
        self.video = video
        self.reporter = reporter or LogReporter()
        self.counts = RunCounts()
        self.in_flight: list[Job] = []
        self._options = output.fingerprint(model if model is not None else remover_identity(remover))

    def split_work(self, jobs: Sequence[Job]) -> tuple[list[Job], list[list[Job]]]:
        """``jobs`` as every executor cuts them: the videos (one at a time), then the other jobs in
        batches of ``batch_size`` in their order (jobs already failed at planning go with the images)."""
        from inspyrenet_lite.video.formats import is_video

        videos = [job for job in jobs if job.error is None and is_video(job.source)]
        chosen = {id(job) for job in videos}
        images = [job for job in jobs if id(job) not in chosen]
        return videos, [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]

    def run(self, jobs: Sequence[Job]) -> RunCounts:
        """Process ``jobs``: videos one at a time first, then images in batches."""
        videos, batches = self.split_work(jobs)
        self.manifest.folder.mkdir(parents=True, exist_ok=True)
        try:
            for job in videos:
                self._run_video(job)
            for chunk in batches:
                self._run_images([job for job in chunk if self.to_do(job)])
                self.reporter.advanced(len(chunk))
        except KeyboardInterrupt:
            self.interrupt_in_flight()
            raise
        finally:
            self.in_flight = []
        return self.counts

    # ------------------------------------------ the ledger (what every executor uses)
    def interrupt_in_flight(self) -> None:
        """Record the jobs in flight ``interrupted`` (not tried to the end: a resume must not take them for crashes)."""
        for job in self.in_flight:
            self.note(job, "interrupted")

    def note(self, job: Job, status: str, error: str | None = None) -> None:
        """Record ``job``'s ``status``: with ``done``, the output file as written (size, mtime); otherwise
        what the record knew of an earlier output of the same input (it may still be there)."""
        assert job.output_name is not None and job.output is not None
        out_size = out_mtime_ns = None
        if status == "done":
            try:
                info = job.output.stat()
                out_size, out_mtime_ns = info.st_size, info.st_mtime_ns
            except OSError:
                pass
        else:
            old = self.manifest.get(job.output_name)
            if old is not None and self.manifest.key(old.input) == self.manifest.key(job.key):
                out_size, out_mtime_ns = old.out_size, old.out_mtime_ns
        self.manifest.record(
            Record(job.output_name, job.key, job.size, job.mtime_ns, status, error, self._options, out_size, out_mtime_ns)
        )

    def fail(self, job: Job, error: BaseException | str) -> None:
        """Count ``job`` failed and report it (its record is :meth:`note`'s)."""
        self.counts.failed += 1
        if isinstance(error, BaseException):
            logger.debug("failure on %s", job.source, exc_info=error)
        self.reporter.failed(job, error)

    def to_do(self, job: Job) -> bool:
        """Whether ``job`` is to be processed now (else it was counted)."""
        if job.error is not None:
            self.fail(job, job.error)
            return False
        if job.skip is not None:
            self.counts.skipped += 1
            self.reporter.skipped(job, job.skip)
            return False
        record = self.manifest.get(job.output_name or "")
        same = record is not None and (record.input, record.size, record.mtime_ns) == (job.key, job.size, job.mtime_ns)
        if not (self.skip_existing and same):
            return True
        assert record is not None and job.output is not None
        if record.options is not None and not same_fingerprint(record.options, self._options):
            logger.info("redoing %s: its output was made with other options (%s)", job.source, record.options)
            return True
        if record.status == "done" and job.output.exists():
            self.counts.skipped += 1
            return False
        if record.status == "started" and not self.retry_failed:
            self.fail(
                job,
                "an earlier run stopped while processing it (killed, perhaps for lack of memory); "
                "skipped: --retry-failed tries it again, --max-pixels or a smaller image may help",
            )
            return False
        return True

    def _run_video(self, job: Job) -> None:
        if not self.to_do(job):
            return
        self.in_flight = [job]
        self.note(job, "started")
        try:
            if self.video is None:
                raise ValueError("video inputs are not handled by this run")
            self.video(job)
        except Exception as exc:  # one bad video must not stop the others
            with deferred_interrupts():
                self.note(job, "failed", str(exc))
                self.fail(job, exc)
                self.in_flight = []
        else:
            with deferred_interrupts():
                self.note(job, "done")
                self.counts.done += 1
                self.in_flight = []

    def _run_images(self, todo: list[Job]) -> None:
        if not todo:
            return
        self.in_flight = list(todo)
        for job in todo:  # recorded before the work: a resume knows what killed a run
            self.note(job, "started")
        results = process_batch(self.remover, [str(job.source) for job in todo], self.output)
        for job, result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                self.settle(job, result, None)
            else:
                self.settle(job, None, lambda done, job=job, result=result: self._save(job, result, done))

    def settle(self, job: Job, error: Exception | None, write: Callable[[Callable[[], None]], None] | None) -> None:
        """Write one job's result and record ``done``, or record ``failed`` (``error``, or what writing raised).

        ``write(record_done)`` puts the file in place and calls ``record_done`` right after the rename,
        with stop signals held across both (a stop cannot leave a written file recorded otherwise); a
        stop while it still encodes interrupts it. ``write`` None: the result is already written (a
        video). A full disk marks the jobs still in flight ``interrupted`` and raises :class:`DiskFull`."""

        def record_done() -> None:
            self.note(job, "done")
            self.counts.done += 1
            self.in_flight.remove(job)

        try:
            if error is not None:
                raise error
            if write is not None:
                write(record_done)
            else:
                with deferred_interrupts():
                    record_done()
        except Exception as exc:  # one bad file must not stop the others
            with deferred_interrupts():
                self.note(job, "failed", str(exc))
                self.fail(job, exc)
                if job in self.in_flight:
                    self.in_flight.remove(job)
            if isinstance(exc, OSError) and exc.errno in FATAL_WRITE_ERRNOS:
                self.interrupt_in_flight()
                raise DiskFull(exc) from exc

    def _save(self, job: Job, result: Any, on_replaced: Callable[[], None]) -> None:
        from inspyrenet_lite.image_io import save_image

        assert job.output is not None
        job.output.parent.mkdir(parents=True, exist_ok=True)
        save_image(result, job.output, format=self.output.format, quality=self.output.quality, on_replaced=on_replaced)


def process_batch(remover: Any, images: Sequence[Any], output: ImageOutput) -> list[Any]:
    """``remover.process``'s result (or exception) per image, with ``output``'s options: one call per batch
    (``errors="skip"`` isolates a bad file), a plain call for a single image."""
    options = {
        "type": output.spec, "threshold": output.threshold, "hr_blend": output.hr_blend, "reverse": output.reverse,
    }
    if len(images) > 1:
        return remover.process(list(images), batch_size=len(images), errors="skip", **options)
    try:
        return [remover.process(images[0], **options)] if images else []
    except Exception as exc:
        return [exc]
