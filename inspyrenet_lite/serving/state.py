"""``ServiceState``: the models, their batchers, the CPU pool and the metrics of one app."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ..model_source import HUB_PREFIX
from ..registry import MODELS
from ..predictor import MapRequest
import inspyrenet_lite.serving.deadline as deadlines  # the module, not the package (whose __init__ imports this one)
from .admission import NETWORK_UNITS, WorkLedger, retry_after
from .batcher import MicroBatcher, QueueFullError
from .errors import ServeError, queue_full
from .metrics import Metrics
from .settings import ServeSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: What ``create_app`` serves: a Predictor or Remover, a zero-argument function that loads one
#: (called at startup, off the event loop), a list of these (replicas of one model, one per
#: device: each batch goes to a free one), or a mapping of names to any of these.
ModelSource = Any


def as_predictor(model: Any) -> Any:
    """The Predictor of a Remover, or ``model`` itself (anything with ``predict_maps``)."""
    predictor = getattr(model, "predictor", model)
    if not hasattr(predictor, "predict_maps"):
        raise TypeError(f"expected a Predictor or a Remover, got {type(model).__name__}")
    return predictor


class ServiceState:
    """Everything the routes share (one per app)."""

    def __init__(self, models: ModelSource, settings: ServeSettings) -> None:
        if not isinstance(models, Mapping):
            models = {_name_of(models): models}
        if not models:
            raise ValueError("create_app needs at least one model")
        for name, source in models.items():
            if isinstance(source, (list, tuple)) and not source:
                raise ValueError(f"model {name!r} is an empty list: give at least one replica")
        self.sources = dict(models)
        self.default_model = next(iter(self.sources))
        self.settings = settings
        self.metrics = Metrics(settings.max_batch_size)
        self.batchers: dict[str, MicroBatcher] = {}
        self.ledger = WorkLedger()
        self.cpu_pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.failed: str | None = None
        self._warm_task: asyncio.Task | None = None
        self._draining: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.drain_until: float | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the CPU pool; load and warm the models in the background (``ready`` after)."""
        self.cpu_pool = ThreadPoolExecutor(self.settings.cpu_workers, thread_name_prefix="serve-cpu")
        self._loop = asyncio.get_running_loop()
        self._draining = asyncio.Event()
        self._warm_task = asyncio.get_running_loop().create_task(self._load_all())

    def drain(self, grace_s: float) -> None:
        """The server is stopping (SIGTERM): new work gets 503 at once, and work in flight is
        answered 503 unless done within ``grace_s`` less a second (to answer in). Safe to call
        from a signal handler."""
        self.drain_until = time.monotonic() + max(0.0, grace_s - 1.0)
        if self._loop is not None and self._draining is not None:
            self._loop.call_soon_threadsafe(self._draining.set)

    def _shutting_down(self) -> ServeError:
        return ServeError(503, "shutting_down", "the server is shutting down; retry on another instance",
                          headers={"Retry-After": str(max(1, self.settings.retry_after_s))})

    async def stop(self) -> None:
        """Stop the batchers (after uvicorn drained the requests in flight) and the pool; work still
        running in their threads is not waited for (the process exits without it)."""
        if self._warm_task is not None and not self._warm_task.done():
            self._warm_task.cancel()
            await asyncio.gather(self._warm_task, return_exceptions=True)
        for batcher in self.batchers.values():
            await batcher.stop()
        if self.cpu_pool is not None:
            self.cpu_pool.shutdown(wait=False, cancel_futures=True)

    async def _load_all(self) -> None:
        try:
            for name, source in self.sources.items():
                await self._load(name, source)
            self.ready = True
            logger.info("ready: %s", ", ".join(self.batchers))
        except Exception as exc:  # logged; /v1/ready stays 503 and says why
            self.failed = f"{type(exc).__name__}: {exc}"
            logger.error("loading the models failed: %s", self.failed)

    async def _load(self, name: str, source: Any) -> None:
        replicas = list(source) if isinstance(source, (list, tuple)) else [source]
        predictors = [as_predictor(loaded) for loaded in await asyncio.gather(*map(self._loaded, replicas))]
        devices = [str(getattr(predictor, "device", "")) for predictor in predictors]
        batcher = MicroBatcher(
            predictors,
            max_batch_size=self.settings.max_batch_size,
            max_wait_ms=self.settings.max_wait_ms,
            queue_size=self.settings.queue_size,
            name=name,
            on_batch=lambda size, replica, name=name, devices=devices: self.metrics.batch(
                size, name, replica, devices[replica]),
            on_depth=lambda depth, name=name: self.metrics.set_queue_depth(name, depth),
        )
        batcher.start()
        self.metrics.set_queue_depth(name, 0)
        self.metrics.add_replicas(name, devices)
        if self.settings.warmup:
            try:
                await batcher.warmup()  # every replica: ready means every device can answer
                # Timed apart from the first pass, which pays one-time costs (graphs, allocator):
                # admission needs the network's steady time before the first answer measures it.
                started = time.perf_counter()
                await batcher.warmup()
                seconds = time.perf_counter() - started
            except BaseException:
                await batcher.stop()
                raise
            if seconds > 0:
                self.ledger.seed(seconds, NETWORK_UNITS)
                logger.info("%s: a warm forward took %.3f s; admission starts from it", name, seconds)
        self.batchers[name] = batcher

    async def _loaded(self, source: Any) -> Any:
        """``source``, or what it loads when it is a loader (run on the CPU pool, off the loop)."""
        if not hasattr(source, "predict_maps") and not hasattr(source, "predictor") and callable(source):
            return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, source)
        return source

    # ------------------------------------------------------------- requests
    def batcher(self, model: str | None) -> MicroBatcher:
        """The batcher of ``model`` (default: the first); 422 for an unknown name, 503 before ready."""
        name = model or self.default_model
        if name not in self.sources:
            raise ServeError(
                422, "invalid_option", f"model {name!r} is not loaded here; choose one of {', '.join(self.sources)}",
                "model",
            )
        batcher = self.batchers.get(name)
        if batcher is None:
            raise ServeError(503, "not_ready", "the model is still loading; retry shortly",
                             headers={"Retry-After": str(max(1, self.settings.retry_after_s))})
        return batcher

    def admission(self) -> tuple[int, int, int]:
        """(requests admitted at most, free slots now, whole seconds until a slot is expected free)
        of the default model: remove.bg's X-RateLimit-Limit/-Remaining/-Reset."""
        limit = self.settings.queue_size
        batcher = self.batchers.get(self.default_model)
        if batcher is None:  # still loading: nothing is admitted yet
            return limit, 0, max(1, self.settings.retry_after_s)
        free = max(0, limit - batcher.depth)
        if free:
            return limit, free, 0
        return limit, 0, max(1, math.ceil(batcher.seconds_until_free()), self.settings.retry_after_s)

    async def cpu(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` on the CPU pool (decode, composite, encode): never on the loop.
        A stage boundary: nothing starts once the request's deadline passed (also checked when a
        pool thread picks the work up, and by ``deadline.check()`` inside ``work``)."""
        deadlines.check()
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, _checked, context, work, args)

    async def predict(self, batcher: MicroBatcher, request: MapRequest) -> np.ndarray:
        """The map of ``request`` through the batcher; 503 + Retry-After at once when full."""
        try:
            future = batcher.submit(request)
        except QueueFullError:
            self.metrics.count_full()
            raise queue_full(str(self.settings.retry_after_s)) from None
        try:
            return await future
        except QueueFullError:
            raise self._shutting_down() from None
        except ValueError as exc:
            raise ServeError(422, "invalid_option", str(exc)) from None
        except deadlines.DeadlineExceeded:
            raise
        except RuntimeError as exc:
            logger.error("inference failed: %s", exc)
            raise ServeError(500, "inference_failed", "the network failed on this image; see the server log") from None

    async def within_deadline(
        self, receive: Callable[[], Awaitable[dict]], work: Coroutine[Any, Any, T], units: int = NETWORK_UNITS
    ) -> T:
        """``work`` (a request of ``units`` of work, see :mod:`.admission`) under the per-request
        deadline: 503 + Retry-After at once when it is not expected to finish in time, 504 past the
        deadline, cancelled if the client leaves."""
        if self.drain_until is not None:
            work.close()
            raise self._shutting_down()
        ticket = self.ledger.admit(units, self.settings.timeout_s)
        if ticket is None:
            work.close()
            self.metrics.count_full()
            raise ServeError(
                503, "busy", f"the server is busy (the work admitted would take about "
                f"{self.ledger.expected_wait(units):.0f} s, above the {self.settings.timeout_s:g} s deadline); "
                "retry after the Retry-After seconds",
                headers={"Retry-After": retry_after(self.ledger.seconds_to_drain(), self.settings.retry_after_s)},
            )
        started = time.monotonic()
        outcome = "other"
        try:
            result = await self._run_within_deadline(receive, work, started)
            outcome = "answered"
            return result
        except ServeError as exc:
            outcome = "timeout" if exc.status == 504 else "other"
            raise
        finally:
            self.ledger.done(ticket, time.monotonic() - started, outcome)

    async def _run_within_deadline(
        self, receive: Callable[[], Awaitable[dict]], work: Coroutine[Any, Any, T], started: float
    ) -> T:
        deadline = deadlines.Deadline(self.settings.timeout_s)
        token = deadlines.set_current(deadline)
        try:
            task = asyncio.ensure_future(work)  # the task runs in a copy of this context: it sees the deadline
        finally:
            deadlines.reset_current(token)
        watcher = asyncio.ensure_future(_until_disconnected(receive))
        assert self._draining is not None
        drainer = asyncio.ensure_future(self._draining.wait())
        try:
            done, _ = await asyncio.wait({task, watcher, drainer}, timeout=self.settings.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if drainer in done and task not in done and watcher not in done:
                assert self.drain_until is not None
                grace = min(self.drain_until - time.monotonic(), deadline.remaining())
                done, _ = await asyncio.wait({task, watcher}, timeout=max(0.0, grace),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    deadline.abandon()
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise self._shutting_down()
        finally:
            watcher.cancel()
            drainer.cancel()
        if task in done and (task.cancelled() or not isinstance(task.exception(), deadlines.DeadlineExceeded)):
            return task.result()
        deadline.abandon()  # stages already running in a thread stop at their next boundary
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if watcher in done and not watcher.cancelled() and watcher.exception() is None:
            raise ServeError(499, "client_closed", "the client closed the connection")
        self.metrics.count_timeout()
        raise ServeError(
            504, "deadline_exceeded",
            f"the request took more than {self.settings.timeout_s:g} s (after {time.monotonic() - started:.1f} s); "
            "retry later, send smaller images, or raise the server's --timeout",
        )


def _name_of(source: Any) -> str:
    if isinstance(source, (list, tuple)) and source:
        return _name_of(source[0])
    if hasattr(source, "predict_maps") or hasattr(source, "predictor"):
        return public_name(str(getattr(as_predictor(source), "name", "model")))
    return "default"  # a loader: its model's name is not known before it runs


def public_name(name: str) -> str:
    """How answers, headers and metrics call the model ``name``: a registry name or Hub repo as it
    is; a local file or folder as ``local-`` and a hash of its path (a path tells the server's layout)."""
    if name in MODELS or name.startswith(HUB_PREFIX) or not (os.path.isabs(name) or os.path.exists(name)):
        return name
    path = os.path.realpath(os.path.expanduser(name))
    return "local-" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _checked(context: contextvars.Context, work: Callable[..., T], args: tuple) -> T:
    """``work(*args)`` in the request's context, unless its deadline passed while it waited for a thread."""
    def run() -> T:
        deadlines.check()
        return work(*args)

    return context.run(run)


async def _until_disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return
