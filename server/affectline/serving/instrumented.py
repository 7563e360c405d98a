"""Wraps a service implementation so every call is timed and counted per transport."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.metrics import Metrics
from affectline.serving.rpc_methods import RpcMethod, ServiceBinding

log = logging.getLogger(__name__)


def _internal(method: RpcMethod, transport: str) -> ConnectError:
    """An unexpected exception: logged here with its traceback, and answered on every transport
    as INTERNAL "internal error" (connectrpc would send str(exc), which can hold SQL or paths)."""
    log.exception("%s %s failed", transport, method.path)
    return ConnectError(Code.INTERNAL, "internal error")


class InstrumentedService:
    """Same methods as the wrapped implementation; records affectline_rpc_* metrics."""

    def __init__(self, binding: ServiceBinding, metrics: Metrics, transport: str) -> None:
        for method in binding.methods():
            target = getattr(binding.impl, method.attr)
            wrapped = (
                self._wrap_stream(method, target, metrics, transport)
                if method.server_streaming
                else self._wrap_unary(method, target, metrics, transport)
            )
            setattr(self, method.attr, wrapped)

    @staticmethod
    def _record(metrics: Metrics, method: RpcMethod, transport: str, code: str, started: float,
                ok_duration: Any) -> None:
        elapsed = time.perf_counter() - started
        if code == "OK":  # the hot path: the labelled child looked up once, not per call
            ok_duration.observe(elapsed)
            return
        labels = dict(service=method.service, method=method.name, transport=transport, code=code)
        metrics.rpc_duration.labels(**labels).observe(elapsed)
        metrics.rpc_errors.labels(**labels).inc()

    @classmethod
    def _wrap_unary(cls, method: RpcMethod, target: Any, metrics: Metrics, transport: str) -> Any:
        ok_duration = metrics.rpc_duration.labels(service=method.service, method=method.name, transport=transport, code="OK")

        async def call(request: Any, ctx: Any = None) -> Any:
            started = time.perf_counter()
            code = "INTERNAL"
            try:
                response = await target(request, ctx)
                code = "OK"
                return response
            except ConnectError as exc:
                code = exc.code.name
                raise
            except Exception as exc:
                raise _internal(method, transport) from exc
            finally:
                cls._record(metrics, method, transport, code, started, ok_duration)

        return call

    @classmethod
    def _wrap_stream(cls, method: RpcMethod, target: Any, metrics: Metrics, transport: str) -> Any:
        ok_duration = metrics.rpc_duration.labels(service=method.service, method=method.name, transport=transport, code="OK")

        async def call(requests: Any, ctx: Any = None) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = "INTERNAL"
            try:
                async for response in target(requests, ctx):
                    yield response
                code = "OK"
            except ConnectError as exc:
                code = exc.code.name
                raise
            except (GeneratorExit, asyncio.CancelledError):
                code = "CANCELLED"  # the client went away mid-stream
                raise
            except Exception as exc:
                raise _internal(method, transport) from exc
            finally:
                cls._record(metrics, method, transport, code, started, ok_duration)

        return call
