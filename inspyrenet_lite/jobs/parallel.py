"""Run planned jobs on several devices or CPU worker processes: one model replica per worker.

:class:`ParallelJobRunner` is a :class:`~inspyrenet_lite.jobs.run.JobRunner`
whose network passes happen in worker processes (``spawn`` context, one per
device listed; ``["cpu", "cpu"]`` is two CPU workers, each with its share of
the cores). Work is split dynamically: the parent keeps a bounded number of
batches queued per worker (``prefetch``), and whichever worker is free takes
the next one, so a slow device takes fewer images.

Who writes what: a worker decodes its batch, runs the network and *encodes*
each result (the CPU-heavy parts); the parent alone writes the encoded bytes
(atomically) and the manifest. One process owns the output folder, so the
manifest's order (``started`` before the work, ``done`` after the file is in
place) is the one-process runner's, a worker that outlives a killed parent
cannot write a file the manifest does not know of, and a full disk stops the
run as before. Batches are cut exactly as the one-process runner cuts them,
so the bytes written are the same.

>>> from inspyrenet_lite.jobs.parallel import ParallelJobRunner, RemoverFactory
>>> runner = ParallelJobRunner(RemoverFactory(model="fast"), ["cpu", "cpu"], manifest, output)  # doctest: +SKIP
>>> runner.run(jobs)  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inspyrenet_lite.jobs.manifest import Manifest
from inspyrenet_lite.jobs.plan import Job
from inspyrenet_lite.image_io import encode_image
from inspyrenet_lite.jobs.memory import available_bytes, gigabytes, peak_rss_bytes, workers_that_fit
from inspyrenet_lite.jobs.run import ImageOutput, JobRunner, Reporter, process_batch, remover_identity

logger = logging.getLogger(__name__)

#: How long a loaded worker holds each readiness check while others are still loading.
READY_HOLD_S = 0.2

#: How long a terminated worker gets to exit before the parent stops waiting for it.
WORKER_EXIT_S = 10.0

#: Batches kept queued per worker: decoding and writing overlap the compute, memory stays bounded.
DEFAULT_PREFETCH = 2


class WorkerError(RuntimeError):
    """A worker process could not load the model, or died (killed, out of memory)."""


@dataclass(frozen=True)
class RemoverFactory:
    """Builds the :class:`~inspyrenet_lite.Remover` of one worker: ``factory(device)``.

    ``options`` are the Remover's keyword arguments other than ``device``. It is
    picklable, so it can travel to ``spawn`` workers.
    """

    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "options", options)

    def __call__(self, device: str) -> Any:
        from inspyrenet_lite.remover import Remover

        return Remover(device=device, **self.options)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(devices: str | None, workers: int | None = None, device: str | None = None) -> list[str]:
    """The worker list for ``--devices`` / ``--workers``: one entry per worker process.

    ``devices``: ``"all"`` (every GPU, else one CPU), or names separated by
    commas (``"cuda:0,cuda:1"``, ``"cpu,cpu"``). ``workers``: processes per
    device (without ``devices``: that many on ``device``, default CPU).
    ``ValueError`` says what was wrong.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers takes a positive number, got {workers}")
    if devices is None:
        return [device or "cpu"] * (workers or 1)
    text = devices.strip()
    if text == "all":
        count = _cuda_count()
        names = [f"cuda:{i}" for i in range(count)] if count else ["cpu"]
    else:
        names = [name.strip() for name in text.split(",")]
        if not names or any(not name for name in names):
            raise ValueError(f"--devices {devices!r} has an empty name; use e.g. all, cuda:0,cuda:1 or cpu,cpu")
    return [name for name in names for _ in range(workers or 1)]


def cpu_threads_per_worker(devices: Sequence[str]) -> int | None:
    """Each CPU worker's share of this process's cores (None without CPU workers)."""
    cpu_workers = sum(1 for name in devices if name.split(":")[0] == "cpu")
    if not cpu_workers:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // cpu_workers)


# ------------------------------------------------------------------ worker side
_WORKER: dict[str, Any] = {}


def _watch_parent(parent: int) -> None:
    """End this worker when its parent is gone (killed with SIGKILL: nobody would collect its results)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(factory: Callable[[str], Any], devices: Any, threads: int | None, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    device = devices.get()
    if threads is not None and device.split(":")[0] == "cpu":
        import torch

        torch.set_num_threads(threads)
    try:
        _WORKER["remover"] = factory(device)
    except Exception as exc:  # reported by the parent, once
        _WORKER["error"] = f"cannot load the model on {device}: {exc}"
    _WORKER["device"] = device


def _remover() -> Any:
    if "remover" not in _WORKER:
        raise WorkerError(_WORKER.get("error", "the worker has no model"))
    return _WORKER["remover"]


def _ready(hold_s: float = 0.0) -> tuple[str | None, dict[str, Any] | None, int, int]:
    """(None, the model's :func:`~inspyrenet_lite.jobs.run.remover_identity`, this process's peak
    memory, its pid) when this worker's model is loaded, else (why not, None, memory, pid).
    ``hold_s`` keeps a loaded worker busy a moment, so workers still loading get the next checks."""
    time.sleep(hold_s)
    if "remover" not in _WORKER:
        return _WORKER.get("error", "the worker has no model"), None, peak_rss_bytes(), os.getpid()
    return None, remover_identity(_WORKER["remover"]), peak_rss_bytes(), os.getpid()


def _use_threads(threads: int | None) -> None:
    """Give this CPU worker its share of the cores: sent with each task, since the share grows
    when memory holds fewer workers than were asked for."""
    if threads is None or _WORKER.get("device", "cpu").split(":")[0] != "cpu":
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(str(exc))
    return exc


def encode(result: Any, output: ImageOutput) -> bytes:
    """``result`` (a PIL image) encoded as :func:`~inspyrenet_lite.image_io.save_image` writes it."""
    return encode_image(result, output.format, output.quality)


def _work_images(sources: list[str], output: ImageOutput, threads: int | None) -> list[bytes | Exception]:
    """One batch on this worker's model: encoded results, or the exception per file."""
    _use_threads(threads)
    results = process_batch(_remover(), sources, output)
    encoded: list[bytes | Exception] = []
    for result in results:
        try:
            encoded.append(_portable(result) if isinstance(result, Exception) else encode(result, output))
        except Exception as exc:
            encoded.append(_portable(exc))
    return encoded


def _work_video(video: Callable[[Any, Job], None], job: Job, threads: int | None) -> Exception | None:
    _use_threads(threads)
    try:
        video(_remover(), job)
    except WorkerError:
        raise
    except Exception as exc:
        return _portable(exc)
    return None


# ------------------------------------------------------------------ parent side
class ParallelJobRunner(JobRunner):
    """A :class:`JobRunner` whose network passes run in worker processes, one per entry of ``devices``.

    Args:
        factory: ``factory(device)`` builds a worker's Remover (picklable: :class:`RemoverFactory`).
        devices: one torch device name per worker (:func:`parse_devices`).
        video: ``video(remover, job)`` processes a video job in a worker and writes its output (picklable).
        prefetch: batches queued per worker.
        threads: torch threads per CPU worker (default: :func:`cpu_threads_per_worker`).

    The other arguments, the resume rules, the counts and the manifest are :class:`JobRunner`'s.
    A worker that cannot load the model or dies raises :class:`WorkerError` (jobs in flight are
    recorded ``failed``); ``KeyboardInterrupt`` records them ``interrupted`` and stops the workers.
    """

    def __init__(
        self,
        factory: Callable[[str], Any],
        devices: Sequence[str],
        manifest: Manifest,
        output: ImageOutput,
        *,
        batch_size: int = 1,
        skip_existing: bool = False,
        retry_failed: bool = False,
        video: Callable[[Any, Job], None] | None = None,
        reporter: Reporter | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        threads: int | None = None,
    ) -> None:
        if not devices:
            raise ValueError("devices is empty: give at least one device, e.g. ['cpu']")
        super().__init__(
            None, manifest, output, batch_size=batch_size, skip_existing=skip_existing,
            retry_failed=retry_failed, reporter=reporter,
        )
        self.factory = factory
        self.devices = list(devices)
        self.worker_video = video
        self.prefetch = max(1, prefetch)
        self._threads_given = threads
        self.threads = threads if threads is not None else cpu_threads_per_worker(self.devices)
        self._pending: dict[cf.Future, tuple[str, list[Job], int]] = {}

    def run(self, jobs: Sequence[Job]) -> Any:
        """Process ``jobs`` on the workers; the counts (see the class docstring for what is raised)."""
        videos, batches = self.split_work(jobs)
        units: list[tuple[str, list[Job]]] = [("video", [job]) for job in videos]
        units += [("images", batch) for batch in batches]
        self.manifest.folder.mkdir(parents=True, exist_ok=True)
        self._fit_workers(len(units))
        pool = self._start_pool()
        finished = False
        try:
            self._check_workers(pool)
            self._drive(pool, iter(units))
            finished = True
        except KeyboardInterrupt:
            self.interrupt_in_flight()
            raise
        except cf.process.BrokenProcessPool as exc:
            self._fail_in_flight("a worker process died (killed, perhaps for lack of memory)")
            raise WorkerError(
                "a worker process died (killed, perhaps for lack of memory; or, when this runs from a script, "
                "the script starts the run outside `if __name__ == \"__main__\":`, which every spawned worker "
                "imports again)"
            ) from exc
        finally:
            self.in_flight = []
            self._stop_pool(pool, wait=finished)
        return self.counts

    # ------------------------------------------------------------ internals
    def _fit_workers(self, units: int) -> None:
        """No more workers than units of work (each loads a model: memory for nothing otherwise)."""
        if 0 < units < len(self.devices):
            logger.warning(
                "starting %d worker process%s, not %d: there %s only %d batch%s of work",
                units, "" if units == 1 else "es", len(self.devices), "is" if units == 1 else "are",
                units, "" if units == 1 else "es",
            )
            self.devices = self.devices[:units]
            if self._threads_given is None:
                self.threads = cpu_threads_per_worker(self.devices)

    def _start_pool(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for device in self.devices:
            queue.put(device)
        return cf.ProcessPoolExecutor(
            max_workers=len(self.devices),
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.factory, queue, self.threads, os.getpid()),
        )

    @staticmethod
    def _stop_pool(pool: cf.ProcessPoolExecutor, wait: bool) -> None:
        """Shut the pool down; without ``wait`` (an error or interrupt), end the workers now."""
        processes = list((getattr(pool, "_processes", None) or {}).values())
        results = getattr(pool, "_result_queue", None)
        pool.shutdown(wait=wait, cancel_futures=True)
        if wait:
            return
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(WORKER_EXIT_S)
        # A worker ended half-way through sending a result leaves the pool's thread waiting for the
        # rest for ever, and the interpreter's exit waiting for that thread: this process holds the
        # pipe's last write end, and closing it (the workers' ends are gone) ends that wait.
        writer = getattr(results, "_writer", None)
        if writer is not None and not any(process.is_alive() for process in processes):
            writer.close()

    def _check_workers(self, pool: cf.ProcessPoolExecutor) -> None:
        """Wait until the workers have loaded the model; WorkerError with the reason if one cannot.
        The outputs' fingerprints then name the model the workers loaded.

        The pool starts a process per task it cannot give to an idle one: the first worker loads
        alone, its memory decides how many more start, then those load together."""
        first = pool.submit(_ready).result()
        loaded = {self._accept(*first)}
        self._fit_memory(pool, per_worker=first[2])
        # Until each process has answered: one that cannot load says why, a dead one breaks the pool.
        while len(loaded) < len(self.devices):
            for future in [pool.submit(_ready, READY_HOLD_S) for _ in self.devices]:
                loaded.add(self._accept(*future.result()))

    def _accept(self, problem: str | None, identity: dict[str, Any] | None, peak_rss: int, pid: int) -> int:
        if problem:
            raise WorkerError(problem)
        self._options = self.output.fingerprint(identity)
        return pid

    def _fit_memory(self, pool: cf.ProcessPoolExecutor, per_worker: int) -> None:
        """No more workers than free memory holds, at what the first one took to load its model."""
        available = available_bytes() if len(self.devices) > 1 else None
        if available is None:
            return
        fit = workers_that_fit(len(self.devices), 1, per_worker, available)
        if fit == len(self.devices):
            return
        logger.warning(
            "starting %d worker process%s, not %d: each holds about %s once its model is loaded and %s is free "
            "(ask for --workers %d or fewer to start that many)",
            fit, "" if fit == 1 else "es", len(self.devices), gigabytes(per_worker), gigabytes(available), fit,
        )
        self.devices = self.devices[:fit]
        # The pool spawns processes on demand up to this bound: none has started past the first yet.
        pool._max_workers = fit  # noqa: SLF001 (concurrent.futures has no public way to lower it)
        if self._threads_given is None:
            self.threads = cpu_threads_per_worker(self.devices)

    def _drive(self, pool: cf.ProcessPoolExecutor, units: Any) -> None:
        limit = len(self.devices) * self.prefetch
        exhausted = False
        while True:
            while not exhausted and len(self._pending) < limit:
                unit = next(units, None)
                if unit is None:
                    exhausted = True
                else:
                    self._submit(pool, *unit)
            if not self._pending:
                return
            done, _ = cf.wait(self._pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                self._collect(future)

    def _submit(self, pool: cf.ProcessPoolExecutor, kind: str, chunk: list[Job]) -> None:
        todo = [job for job in chunk if self.to_do(job)]
        if not todo:
            if kind == "images":
                self.reporter.advanced(len(chunk))
            return
        self.in_flight.extend(todo)  # first: a stop while the lines below are written records them interrupted
        for job in todo:  # recorded before the work: a resume knows what killed a run
            self.note(job, "started")
        if kind == "video":
            if self.worker_video is None:
                future = pool.submit(_fail_video)
            else:
                future = pool.submit(_work_video, self.worker_video, todo[0], self.threads)
        else:
            future = pool.submit(_work_images, [str(job.source) for job in todo], self.output, self.threads)
        self._pending[future] = (kind, todo, len(chunk))

    def _collect(self, future: cf.Future) -> None:
        kind, todo, size = self._pending.pop(future)
        results = future.result()  # WorkerError / BrokenProcessPool propagate
        if kind == "video":
            self._finish(todo[0], results, None)
        else:
            for job, result in zip(todo, results, strict=True):
                self._finish(job, result if isinstance(result, Exception) else None, result)
            self.reporter.advanced(size)

    def _finish(self, job: Job, error: Exception | None, data: bytes | None) -> None:
        """Write a worker's encoded result and record it (the one-process rules: :meth:`JobRunner.settle`)."""
        self.settle(job, error, None if data is None else lambda done: write_result(job, data, done))

    def _fail_in_flight(self, reason: str) -> None:
        for job in list(self.in_flight):
            self.note(job, "failed", reason)
            self.fail(job, reason)
        self.in_flight = []


def write_result(job: Job, data: bytes, on_replaced: Callable[[], None] | None = None) -> None:
    """Write encoded ``data`` to ``job.output`` atomically (its folder created if needed);
    ``on_replaced`` as in :func:`~inspyrenet_lite._atomic.atomic_open`."""
    from inspyrenet_lite._atomic import atomic_open

    assert job.output is not None
    job.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(job.output, on_replaced) as fh:
        fh.write(data)


def _fail_video() -> Exception:
    return ValueError("video inputs are not handled by this run")

