"""Dynamic batching of crop requests into model runs.

Requests from many sessions wait in one FIFO queue. A model run takes requests
from the front until it holds `max_batch_size` crops or the oldest request has
waited `max_queue_delay_s`. Requests are never split or reordered, so the frames
of one session reach the model, and come back, in the order they were submitted.
The model runs in a worker thread: the event loop keeps serving RPCs meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from affectline.metrics import Metrics

RunBatch = Callable[[np.ndarray], np.ndarray]


class BatcherClosed(RuntimeError):
    """submit() after stop() began."""


@dataclass(slots=True)
class _Request:
    crops: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int = 64,
        max_queue_delay_s: float = 0.005,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_queue_delay_s < 0:
            raise ValueError("max_queue_delay_s must be >= 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self._metrics = metrics
        self._queue: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # One thread: runs of the model are serialised, which keeps cross-batch order trivially.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="affectline-infer")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="affectline-batcher")

    async def stop(self) -> None:
        """Stops taking requests, finishes every queued one, then returns."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, crops: np.ndarray) -> np.ndarray:
        """Scores crops (uint8 [N,H,W]); returns probabilities [N,C] in the same order."""
        if self._closing:
            raise BatcherClosed("the inference engine is shutting down")
        if len(crops) == 0:
            raise ValueError("submit() needs at least one crop")
        if self._task is None:
            await self.start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(crops, future))
        self._wakeup.set()
        return await future

    def queued_crops(self) -> int:
        return sum(len(r.crops) for r in self._queue)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_batch()
            batch = self._take_batch()
            now = time.perf_counter()
            if self._metrics:
                for r in batch:
                    self._metrics.queue_delay.observe(now - r.enqueued_at)
            x = np.concatenate([r.crops for r in batch]) if len(batch) > 1 else batch[0].crops
            started = time.perf_counter()
            try:
                probs = await loop.run_in_executor(self._executor, self._run_batch, x)
            except Exception as exc:  # the model failed: every request of this run gets the error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            finally:
                if len(batch) > 1:
                    x.fill(0)  # our concatenated copy of the crops; callers zero their own arrays
            if self._metrics:
                self._metrics.inference_duration.observe(time.perf_counter() - started)
                self._metrics.batch_size.observe(len(x))
            offset = 0
            for r in batch:
                n = len(r.crops)
                if not r.future.done():  # a cancelled caller no longer wants its result
                    r.future.set_result(probs[offset : offset + n])
                offset += n

    async def _wait_for_batch(self) -> None:
        """Waits until the queue fills a batch or its oldest request is due."""
        deadline = self._queue[0].enqueued_at + self.max_queue_delay_s
        while self.queued_crops() < self.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Request]:
        batch = [self._queue.popleft()]
        size = len(batch[0].crops)
        while self._queue and size + len(self._queue[0].crops) <= self.max_batch_size:
            req = self._queue.popleft()
            batch.append(req)
            size += len(req.crops)
        return batch
