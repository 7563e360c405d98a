"""Delivery of signed webhook requests: a bounded queue, a few worker tasks, retries.

Ingestion only ever calls `offer` (no await, no I/O): a slow or failing endpoint costs its
own worker's time and a queue slot, never an RPC's. Deliveries waiting for a retry count
against the same bound, so memory stays bounded however long an endpoint is down; past the
bound new deliveries are dropped (logged and counted). Pending deliveries live in memory and
are lost when the server stops.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter

from affectline.webhooks.retry import RetryPolicy
from affectline.webhooks.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)
USER_AGENT = "affectline-webhooks/1"


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_id: str
    url: str
    secret: str
    event_id: str
    event: str
    body: bytes


# Sends one attempt; returns the HTTP status, raises on a network error or timeout.
Send = Callable[[Delivery], Awaitable[int]]


class HttpSender:
    """POSTs deliveries with httpx: signed now (the timestamp is per attempt), no redirects
    followed (a redirect could move a signed body elsewhere), TLS verified against the system
    store or `ca_bundle`."""

    def __init__(self, *, timeout_s: float, ca_bundle: str = "", clock: Callable[[], float] = time.time) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout_s, follow_redirects=False)
        self._clock = clock

    async def __call__(self, delivery: Delivery) -> int:
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "affectline-event": delivery.event,
            "affectline-delivery": delivery.event_id,
            SIGNATURE_HEADER: signature_header(delivery.secret, int(self._clock()), delivery.body),
        }
        response = await self._client.post(delivery.url, content=delivery.body, headers=headers)
        return response.status_code

    async def close(self) -> None:
        await self._client.aclose()


class DeliveryQueue:
    def __init__(self, send: Send, policy: RetryPolicy, *, size: int = 1000, workers: int = 4,
                 registry: CollectorRegistry | None = None) -> None:
        self._send = send
        self._policy = policy
        self._size = size
        self._workers_n = workers
        self._queue: asyncio.Queue[tuple[Delivery, int]] = asyncio.Queue()
        self._pending = 0  # queued + waiting for a retry + being sent: what `size` bounds
        self._workers: list[asyncio.Task[None]] = []
        self._timers: dict[int, asyncio.TimerHandle] = {}  # retries waiting for their time
        self._timer_ids = itertools.count()
        self._outcomes = Counter("affectline_webhook_deliveries_total",
                                 "Webhook delivery attempts by outcome (delivered, retry, failed, dropped).",
                                 ["outcome"], registry=registry)

    @property
    def pending(self) -> int:
        return self._pending

    def offer(self, delivery: Delivery) -> bool:
        """Queues a first attempt; False (and dropped) when the queue is full."""
        if self._pending >= self._size:
            self._outcomes.labels(outcome="dropped").inc()
            log.warning("webhook queue full (%d): dropped %s %s for %s", self._size, delivery.event,
                        delivery.event_id, delivery.webhook_id)
            return False
        self._pending += 1
        self._queue.put_nowait((delivery, 1))
        return True

    async def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"affectline-webhook-{i}") for i in range(self._workers_n)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        while True:
            delivery, attempt = await self._queue.get()
            try:
                delivered = await self._attempt(delivery, attempt)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one delivery must not stop the worker
                log.exception("webhook delivery %s failed unexpectedly", delivery.event_id)
                delivered = False
            if delivered:
                self._done("delivered")
                continue
            delay = self._policy.delay_s(attempt)
            if delay is None:
                self._done("failed")
                log.warning("webhook %s: gave up on %s %s after %d attempts", delivery.webhook_id,
                            delivery.event, delivery.event_id, attempt)
                continue
            self._outcomes.labels(outcome="retry").inc()
            key = next(self._timer_ids)
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._retry, key, delivery, attempt + 1)

    def _retry(self, key: int, delivery: Delivery, attempt: int) -> None:
        del self._timers[key]
        self._queue.put_nowait((delivery, attempt))  # already counted in _pending

    def _done(self, outcome: str) -> None:
        self._pending -= 1
        self._outcomes.labels(outcome=outcome).inc()

    async def _attempt(self, delivery: Delivery, attempt: int) -> bool:
        try:
            status = await self._send(delivery)
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            log.info("webhook %s attempt %d of %s: %s", delivery.webhook_id, attempt, delivery.event_id,
                     type(exc).__name__)
            return False
        if 200 <= status < 300:
            return True
        log.info("webhook %s attempt %d of %s: HTTP %d", delivery.webhook_id, attempt, delivery.event_id, status)
        return False
