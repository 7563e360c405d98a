"""The per-API-key rate limit across replicas (AFFECTLINE_REDIS_URL): one token bucket per key
in Redis, taken from atomically by a Lua script, so N replicas grant a key the configured rate
in total, not N times it.

The script reads Redis's own clock (TIME), so replicas' clock skew cannot refill a bucket; a
bucket's hash expires once it would be full again (burst / rate seconds), which bounds Redis's
memory to the keys active in that time and is the same as a full bucket.

When Redis fails (unreachable, a timeout past redis_shared.COMMAND_TIMEOUT_S, an error), the
limit fails over to this replica's own in-memory bucket with the same settings, rather than
open (no limit at all) or closed (every keyed call refused: a Redis outage would become an API
outage): the caller gets at most N x the configured rate while it lasts, as without Redis. The
first failure logs a warning and every one counts in affectline_redis_errors_total{use="rate_limit"};
Redis is tried again after RETRY_S, so a dead Redis costs one timeout per RETRY_S, not one per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from affectline.rate_limit import RateLimiter

log = logging.getLogger(__name__)

RETRY_S = 1.0

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst. Returns the wait in seconds as a string
# ("0": granted); Lua numbers returned as replies would be truncated to integers.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class SharedRateLimiter:
    """A KeyLimiter (rate_limit.py) whose buckets live in Redis under `prefix`; `fallback`
    (the same rate and burst, in memory) answers while Redis does not."""

    def __init__(self, redis: Redis, prefix: str, fallback: RateLimiter, *, errors: Counter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = fallback.rate
        self.burst = fallback.burst
        self._prefix = prefix
        self._script = redis.register_script(TOKEN_BUCKET)
        self._fallback = fallback
        self._errors = errors.labels(use="rate_limit")
        self._clock = clock
        self._retry_at = 0.0  # while Redis is failing: when to try it again
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, key: str) -> float | None:
        if not self.enabled:
            return None
        if self._failing and self._clock() < self._retry_at:
            return self._fallback.acquire(key)
        try:
            wait = float(await self._script(keys=[self._prefix + key], args=[repr(self.rate), repr(self.burst)]))
        except _FAILURES as exc:
            self._errors.inc()
            self._retry_at = self._clock() + RETRY_S
            if not self._failing:
                self._failing = True
                log.warning("rate limit: Redis failed (%s: %s); per-key limits are per replica until it answers "
                            "again", type(exc).__name__, exc)
            return self._fallback.acquire(key)
        if self._failing:
            self._failing = False
            log.warning("rate limit: Redis answers again; per-key limits are shared by the replicas again")
        return wait if wait > 0 else None
