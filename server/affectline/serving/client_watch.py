"""ASGI middleware that watches the client's side of each HTTP request.

- A request body that stalls for `read_timeout_s` reads as a disconnect, so slow-body
  clients cannot hold connections open. This replaces hypercorn's own read_timeout, which
  counts any silence from the client, and so also cut long server streams (WatchLive) whose
  client has nothing more to send once its request is in.
- On the paths of streaming methods, a client that disconnects cancels the handler: hypercorn
  only queues `http.disconnect` for the app, and a handler busy producing a stream never reads
  it, so without this it would run on for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
ASGIApp = Callable[[dict, Receive, Callable], Awaitable[None]]
DISCONNECT: Message = {"type": "http.disconnect"}


class _Body:
    """The request's receive channel with a deadline on each read until the body is complete."""

    def __init__(self, receive: Receive, timeout_s: float | None) -> None:
        self._receive = receive
        self._timeout_s = timeout_s
        self.complete = asyncio.Event()

    async def read(self) -> Message:
        if self.complete.is_set():
            return await self._receive()
        try:
            async with asyncio.timeout(self._timeout_s):
                message = await self._receive()
        except TimeoutError:
            self.complete.set()
            return DISCONNECT
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete.set()
        return message


class ClientWatch:
    def __init__(self, app: ASGIApp, *, read_timeout_s: float | None, streaming_paths: Collection[str] = ()) -> None:
        self._app = app
        self._timeout_s = read_timeout_s
        self._streaming = frozenset(streaming_paths)

    async def __call__(self, scope: dict, receive: Receive, send: Callable) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = _Body(receive, self._timeout_s)
        if scope["path"] not in self._streaming:
            await self._app(scope, body.read, send)
            return
        await self._cancel_on_disconnect(scope, body, receive, send)

    async def _cancel_on_disconnect(self, scope: dict, body: _Body, receive: Receive, send: Callable) -> None:
        gone = asyncio.Event()

        async def app_receive() -> Message:
            if not body.complete.is_set():
                return await body.read()
            await gone.wait()  # after the body, only the watcher reads the client's channel
            return DISCONNECT

        handler = asyncio.create_task(self._app(scope, app_receive, send))

        async def watch() -> None:
            await body.complete.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            handler.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await handler
        except asyncio.CancelledError:
            if not gone.is_set():  # cancelled from outside (server shutdown): pass it on
                raise
        finally:
            watcher.cancel()
