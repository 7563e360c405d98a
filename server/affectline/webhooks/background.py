"""A long-running task the server starts and stops with itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class BackgroundTask:
    def __init__(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
