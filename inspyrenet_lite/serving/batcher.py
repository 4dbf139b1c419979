"""``MicroBatcher``: gathers concurrent requests into batches for one model's replicas.

Requests are admitted while fewer than ``queue_size`` are waiting or running
(else :class:`QueueFullError` at once: the caller answers 503). One asyncio
task waits for a free replica (one Predictor per device), then collects up to
``max_batch_size`` requests, waiting at most ``max_wait_ms`` after the first,
and hands the batch to that replica's inference thread (a one-thread executor
per replica: a device is one resource), which calls ``Predictor.predict_maps``
with all their :class:`MapRequest` at once. While one replica computes, the
next batch is collected for the next free one, so a slow device takes fewer
batches; when several are free, the one with the lowest time per image so far
takes the batch. A request whose future was cancelled (deadline, client gone)
frees its slot at once and is left out of the next batch, and so is one whose
deadline (:mod:`.deadline`, taken from the submitting task) passed while it waited.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..predictor import MapRequest, Predictor
import inspyrenet_lite.serving.deadline as deadlines  # the module, not the package (whose __init__ imports this one)

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The batcher has ``queue_size`` requests waiting or running; try again shortly."""


_Entry = tuple[MapRequest, "asyncio.Future[np.ndarray]", "deadlines.Deadline | None"]
#: Weight of the newest batch in a replica's running time-per-image estimate.
_SPEED_WEIGHT = 0.3


class MicroBatcher:
    """Batches :class:`MapRequest` for ``predictors`` (one Predictor, or one replica per device);
    use from one event loop (see the module docstring).

    ``on_batch(size, replica)`` is told of every forward (``replica``: the index in ``predictors``).
    """

    def __init__(
        self,
        predictors: Predictor | Sequence[Predictor],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        name: str = "model",
        on_batch: Callable[[int, int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        replicas = list(predictors) if isinstance(predictors, (list, tuple)) else [predictors]
        if not replicas:
            raise ValueError("MicroBatcher needs at least one predictor")
        self.predictors = replicas
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.name = name
        self._on_batch = on_batch or (lambda size, replica: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._admitted = 0
        self._wake: asyncio.Event | None = None
        self._freed: asyncio.Event | None = None
        self._free: set[int] = set()
        self._seconds_per_image = [0.0] * len(replicas)
        self._forwards: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._executors: list[ThreadPoolExecutor] = []

    @property
    def predictor(self) -> Predictor:
        """The first replica (the one that describes the model)."""
        return self.predictors[0]

    @property
    def devices(self) -> list[str]:
        """The device of each replica, in order."""
        return [str(getattr(predictor, "device", "")) for predictor in self.predictors]

    @property
    def depth(self) -> int:
        """Requests admitted and not yet answered (waiting or in the network)."""
        return self._admitted

    def seconds_until_free(self) -> float:
        """About how long until a request slot frees up: 0 while one is free, else the time of one
        full batch on the fastest replica so far (0 before any batch ran)."""
        if self._admitted < self.queue_size:
            return 0.0
        known = [seconds for seconds in self._seconds_per_image if seconds > 0]
        return min(known, default=0.0) * self.max_batch_size

    def start(self) -> None:
        """Start the collecting task on the running loop."""
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        self._free = set(range(len(self.predictors)))
        self._executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"inference-{self.name}-{index}")
            for index in range(len(self.predictors))
        ]
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop collecting; requests still waiting get ``QueueFullError``; a forward still running
        is not waited for (its thread finishes on its own; nobody waits for its answer)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._forwards):
            task.cancel()
        await asyncio.gather(*self._forwards, return_exceptions=True)
        while self._pending:
            _, future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(QueueFullError("the server is shutting down"))
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    async def warmup(self) -> None:
        """Warm every replica up on its own inference thread, all at once."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(
            loop.run_in_executor(executor, predictor.warmup)
            for executor, predictor in zip(self._executors, self.predictors, strict=True)
        ))

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
        self._pending.append((request, future, deadlines.current()))
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
            if _live(entry):
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

    async def _until_a_replica_is_free(self) -> None:
        assert self._freed is not None
        while not self._free:
            self._freed.clear()
            await self._freed.wait()

    def _take_fastest_free(self) -> int:
        """The free replica with the lowest time per image so far (untried ones first)."""
        replica = min(self._free, key=lambda index: (self._seconds_per_image[index], index))
        self._free.discard(replica)
        return replica

    def _give_back(self, replica: int) -> None:
        assert self._freed is not None
        self._free.add(replica)
        self._freed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._until_a_replica_is_free()  # only this task takes replicas: still free after collecting
            batch = [entry for entry in await self._collect() if _live(entry)]
            if not batch:
                continue
            replica = self._take_fastest_free()
            task = loop.create_task(self._forward(replica, batch), name=f"forward-{self.name}-{replica}")
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)

    async def _forward(self, replica: int, batch: list[_Entry]) -> None:
        """Run ``batch`` on ``replica``'s thread and answer each request with its own map."""
        loop = asyncio.get_running_loop()
        try:
            self._on_batch(len(batch), replica)
            requests = [request for request, _, _ in batch]
            started = time.perf_counter()
            try:
                maps = await loop.run_in_executor(self._executors[replica], self._predict, replica, requests)
            except asyncio.CancelledError:  # stop(): nobody waits for this batch any more
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(QueueFullError("the server is shutting down"))
                raise
            except Exception as exc:  # the whole call failed: every caller gets the error
                logger.warning("a batch of %d failed on %s: %s", len(batch), self.devices[replica], exc)
                maps = [exc] * len(batch)
            else:
                per_image = (time.perf_counter() - started) / len(batch)
                known = self._seconds_per_image[replica]
                self._seconds_per_image[replica] = per_image if not known else (
                    (1 - _SPEED_WEIGHT) * known + _SPEED_WEIGHT * per_image)
            for (_, future, _), result in zip(batch, maps, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._give_back(replica)

    def _predict(self, replica: int, requests: list[MapRequest]) -> list[np.ndarray | Exception]:
        return self.predictors[replica].predict_maps(requests, batch_size=self.max_batch_size, errors="skip")


def _live(entry: _Entry) -> bool:
    """Whether ``entry`` still wants its map; one past its deadline is answered with DeadlineExceeded."""
    _, future, deadline = entry
    if future.done():
        return False
    if deadline is not None and deadline.expired():
        future.set_exception(deadlines.DeadlineExceeded("the request's deadline passed in the queue"))
        return False
    return True
