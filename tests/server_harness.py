"""Runs a real Affectline server (gRPC + HTTP on free ports) in a background thread."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from affectline.app import AffectlineServer, build_parts
from affectline.auth.issuing import issue_key
from affectline.auth.scopes import ANALYTICS_READ
from affectline.config import Settings


@dataclass
class RunningServer:
    server: AffectlineServer
    _analyst_key: str | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def parts(self):
        return self.server.parts

    def create_key(self, *scopes: str, name: str = "test", expires_at: datetime | None = None) -> str:
        """A new API key in this server's store, as `affectline keys create` makes it."""
        return issue_key(self.parts.api_keys, name, scopes, expires_at=expires_at).token

    @property
    def analyst_key(self) -> str:
        """An analytics:read key, made on first use: what tests that read analytics send."""
        if self._analyst_key is None:
            self._analyst_key = self.create_key(ANALYTICS_READ, name="test analyst")
        return self._analyst_key


@contextmanager
def running_server(settings: Settings) -> Iterator[RunningServer]:
    settings = settings.with_overrides(host="127.0.0.1", grpc_port=0, http_port=0)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        try:
            server = AffectlineServer(build_parts(settings))
            await server.start()
            box["server"] = server
        except BaseException as exc:  # surface start-up failures in the test thread
            box["error"] = exc
            started.set()
            return
        started.set()
        await stop.wait()
        await server.stop(grace_s=2.0)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), name="affectline-test-server", daemon=True)
    thread.start()
    if not started.wait(timeout=60):
        raise TimeoutError("server did not start within 60 s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    try:
        yield RunningServer(box["server"])  # type: ignore[arg-type]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
