"""The Redis that replicas share live state through (AFFECTLINE_REDIS_URL): its clients and key names.

Two clients on the event loop (redis.asyncio): one for short commands (rate-limit scripts,
XADD) whose timeout bounds what an unreachable Redis can add to a call, and one for the
stream reader's blocking XREAD, whose timeout must outlast the block. Nothing connects until
the first command, so a replica starts while Redis is down (and works per pod until it is back).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# A keyed call waits at most this long for Redis before the per-key limit falls back to the
# replica's own bucket; a round trip in one data centre is ~0.1-1 ms.
COMMAND_TIMEOUT_S = 0.25
# XREAD BLOCK: how long a reader waits for a message in one call, and so the longest a replica's
# shutdown waits for its reader (services/live_stream.py, LiveStream.stop).
READ_BLOCK_S = 0.5


def _once_more() -> Retry:
    """One immediate retry (a pooled connection that Redis closed), never redis-py's default of
    10 with backoff, which would hold a keyed call for seconds while Redis is down."""
    return Retry(NoBackoff(), 1)


@dataclass(frozen=True)
class RedisShared:
    commands: Redis
    reader: Redis
    prefix: str
    url: str  # redacted, for logs

    @classmethod
    def connect(cls, url: str, prefix: str) -> RedisShared:
        commands = Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT_S, socket_connect_timeout=COMMAND_TIMEOUT_S,
                                  retry=_once_more())
        reader = Redis.from_url(url, socket_timeout=READ_BLOCK_S + 5.0, socket_connect_timeout=COMMAND_TIMEOUT_S * 4,
                                retry=_once_more())
        return cls(commands, reader, prefix, redact(url))

    def key(self, name: str) -> str:
        """A key under this deployment's prefix (AFFECTLINE_REDIS_PREFIX), so deployments and test
        runs sharing one Redis never meet."""
        return self.prefix + name

    async def close(self) -> None:
        await self.commands.aclose()
        await self.reader.aclose()


def redact(url: str) -> str:
    """The URL with its password masked, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
