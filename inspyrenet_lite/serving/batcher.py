"""``MicroBatcher``: gathers concurrent requests into batches for one Predictor.

Requests are admitted while fewer than ``queue_size`` are waiting or running
(else :class:`QueueFullError` at once: the caller answers 503). One asyncio
task collects up to ``max_batch_size`` of them, waiting at most
``max_wait_ms`` after the first, and hands the batch to the inference thread
(a one-thread executor: the device is one resource), which calls
``Predictor.predict_maps`` with all their :class:`MapRequest` at once. A
request whose future was cancelled (deadline, client gone) frees its slot at
once and is left out of the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..predictor import MapRequest, Predictor

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The batcher has ``queue_size`` requests waiting or running; try again shortly."""


_Entry = tuple[MapRequest, "asyncio.Future[np.ndarray]"]


class MicroBatcher:
    """Batches :class:`MapRequest` for ``predictor``; use from one event loop (see the module docstring)."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        name: str = "model",
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.name = name
        self._on_batch = on_batch or (lambda size: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._admitted = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Requests admitted and not yet answered (waiting or in the network)."""
        return self._admitted

    def start(self) -> None:
        """Start the collecting task on the running loop."""
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"inference-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop collecting; requests still waiting get ``QueueFullError``; the running forward finishes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(QueueFullError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def run_in_inference_thread(self, work: Callable[[], object]) -> object:
        """Run ``work`` on the inference thread (e.g. a warm-up), after what is queued there."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def submit(self, request: MapRequest) -> asyncio.Future[np.ndarray]:
        """Admit ``request``; a future of its map. Raises QueueFullError at once when full."""
        if self._task is None or self._wake is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self._admitted >= self.queue_size:
            raise QueueFullError(f"{self._admitted} requests are waiting or running (queue_size={self.queue_size})")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._admitted += 1
        self._on_depth(self._admitted)
        future.add_done_callback(self._release)
        self._pending.append((request, future))
        if len(self._pending) > 2 * self.queue_size:  # cancelled entries the collector has not reached
            self._pending = collections.deque(e for e in self._pending if not e[1].done())
        self._wake.set()
        return future

    def _release(self, _future: asyncio.Future) -> None:
        self._admitted -= 1
        self._on_depth(self._admitted)

    def _pop_live(self) -> _Entry | None:
        while self._pending:
            entry = self._pending.popleft()
            if not entry[1].done():
                return entry
        return None

    async def _collect(self) -> list[_Entry]:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        first = self._pop_live()
        while first is None:
            self._wake.clear()
            await self._wake.wait()
            first = self._pop_live()
        batch = [first]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            entry = self._pop_live()
            if entry is not None:
                batch.append(entry)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [entry for entry in await self._collect() if not entry[1].done()]
            if not batch:
                continue
            self._on_batch(len(batch))
            requests = [request for request, _ in batch]
            try:
                maps = await loop.run_in_executor(self._executor, self._predict, requests)
            except Exception as exc:  # the whole call failed: every caller gets the error
                logger.warning("a batch of %d failed: %s", len(batch), exc)
                maps = [exc] * len(batch)
            for (_, future), result in zip(batch, maps, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _predict(self, requests: list[MapRequest]) -> list[np.ndarray | Exception]:
        return self.predictor.predict_maps(requests, batch_size=self.max_batch_size, errors="skip")
