"""Group commit of crop batches: one writer thread, one transaction for many sessions' batches.

Each accepted batch would otherwise cost its own transaction (and, on SQLite, its own
commit and WAL write), plus a thread hop. Under load the writer takes every batch waiting
at that moment and commits them together, so the cost per batch falls as load rises while
an idle server still commits each batch at once. A caller is answered only after the
commit, so an acknowledged batch is durable. If a group fails (say one batch reuses a
nonce), its batches are retried one per transaction, so only the faulty one fails.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass

from affectline.metrics import Metrics
from affectline.storage.records import BatchRecord
from affectline.storage.timeline_store import TimelineStore


@dataclass(slots=True)
class _Write:
    session_id: str
    batch: BatchRecord
    future: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class GroupCommitWriter:
    def __init__(self, store: TimelineStore, *, max_group: int = 128, metrics: Metrics | None = None) -> None:
        self._store = store
        self._max_group = max_group
        self._metrics = metrics
        self._queue: queue.SimpleQueue[_Write | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="affectline-db-writer", daemon=True)
        self._thread.start()

    async def write(self, session_id: str, batch: BatchRecord) -> bool:
        """Stores the batch (see TimelineStore.append_batch); returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put(_Write(session_id, batch, future, loop))
        return await future

    def close(self) -> None:
        """Finishes every queued write, then stops the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            group: list[_Write] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    group.append(item)  # type: ignore[arg-type]
                if stopping or len(group) >= self._max_group:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if group:
                self._commit(group)

    def _commit(self, group: list[_Write]) -> None:
        started = time.perf_counter()
        try:
            results: list[bool | BaseException] = list(
                self._store.append_batches([(w.session_id, w.batch) for w in group])
            )
        except Exception:
            results = []
            for w in group:  # find the faulty batch: one transaction each
                try:
                    results.append(self._store.append_batch(w.session_id, w.batch))
                except Exception as exc:
                    results.append(exc)
        if self._metrics:
            self._metrics.db_write_duration.observe(time.perf_counter() - started)
            self._metrics.db_group_size.observe(len(group))
        # One wake-up per event loop for the whole group, not one per batch: each
        # call_soon_threadsafe writes to the loop's self-pipe and wakes it.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool | BaseException]]] = {}
        for w, result in zip(group, results, strict=True):
            by_loop.setdefault(w.loop, []).append((w.future, result))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    for future, result in settled:
        if future.done():  # the caller was cancelled
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
