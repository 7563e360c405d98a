"""The per-call API key check that every transport runs: Authenticator.authorize.

Transports only pull the `authorization` header (metadata) out of their own request and
call authorize(service, header); what a service needs is scopes.required_scope's business,
and the errors are ConnectErrors that each transport already knows how to send.

Verified keys are cached for `cache_s` (AFFECTLINE_API_KEY_CACHE_S), so a call costs a
SHA-256 and a dict lookup, not a database round trip. The cache holds the stored record, not
the verdict: the secret is checked on every call and expiry against the clock, so only a
revocation (made by `affectline keys revoke` in another process) takes up to `cache_s` to
reach a running server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.auth.keys import bearer_token, parse_key, secret_matches
from affectline.auth.scopes import grants, required_scope
from affectline.storage.api_key_store import ApiKeyRecord

log = logging.getLogger(__name__)

# (service full name, the authorization header or None) -> the key used (None: no key needed);
# raises ConnectError UNAUTHENTICATED or PERMISSION_DENIED. What the transports are given.
Authorize = Callable[[str, str | None], Awaitable[ApiKeyRecord | None]]

LAST_USED_EVERY_S = 60.0  # last_used_at is a write: at most one per key and server a minute
MAX_CACHED = 10_000  # unknown ids are cached too; this bounds what random ids can fill


class KeyLookup(Protocol):
    def get(self, key_id: str) -> ApiKeyRecord | None: ...

    def touch(self, key_id: str, at: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class _Cached:
    record: ApiKeyRecord | None
    fetched: float  # clock() at the lookup


def _unauthenticated(message: str) -> ConnectError:
    return ConnectError(Code.UNAUTHENTICATED, message)


class Authenticator:
    def __init__(self, keys: KeyLookup, *, cache_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._keys = keys
        self._cache_s = cache_s
        self._clock = clock
        self._now = now
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._touches: set[asyncio.Task[None]] = set()

    async def authorize(self, service: str, authorization: str | None) -> ApiKeyRecord | None:
        needed = required_scope(service)
        if needed is None:
            return None
        token = bearer_token(authorization)
        if token is None:
            raise _unauthenticated(f"{service} needs an API key with scope {needed!r}, sent as "
                                   "'authorization: Bearer <key>' (`affectline keys create` makes one)")
        credential = parse_key(token)
        if credential is None:
            raise _unauthenticated("the API key is malformed: expected afk_<id>_<secret>")
        record = await self._record(credential.key_id)
        # Unknown id and wrong secret read the same, so the answer tells nothing about which ids exist.
        if record is None or not secret_matches(credential, record.secret_sha256):
            raise _unauthenticated("the API key is not valid")
        if record.revoked_at is not None:
            raise _unauthenticated(f"API key {record.key_id} was revoked")
        if record.expires_at is not None and record.expires_at <= self._now():
            raise _unauthenticated(f"API key {record.key_id} expired at {record.expires_at:%Y-%m-%d %H:%M} UTC")
        if not grants(record.scopes, needed):
            raise ConnectError(Code.PERMISSION_DENIED, f"API key {record.key_id} lacks the scope {needed!r} "
                               f"that {service} needs (it has: {', '.join(record.scopes)})")
        self._note_use(record.key_id)
        return record

    async def close(self) -> None:
        """Waits for the last_used_at writes still running (before the engine goes)."""
        await asyncio.gather(*self._touches, return_exceptions=True)

    async def _record(self, key_id: str) -> ApiKeyRecord | None:
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached.fetched < self._cache_s:
            return cached.record
        try:
            record = await asyncio.to_thread(self._keys.get, key_id)
        except Exception as exc:  # the database is down: the caller may retry, nothing is granted
            log.exception("API key lookup failed")
            raise ConnectError(Code.UNAVAILABLE, "could not check the API key; retry") from exc
        if self._cache_s > 0:
            self._cache.pop(key_id, None)
            if len(self._cache) >= MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the oldest lookup
            self._cache[key_id] = _Cached(record, now)
        return record

    def _note_use(self, key_id: str) -> None:
        now = self._clock()
        last = self._touched.get(key_id)
        if last is not None and now - last < LAST_USED_EVERY_S:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(asyncio.to_thread(self._keys.touch, key_id, self._now()))
        self._touches.add(task)
        task.add_done_callback(self._touch_done)

    def _touch_done(self, task: asyncio.Task[None]) -> None:
        self._touches.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not record an API key's last use: %s", type(task.exception()).__name__)
