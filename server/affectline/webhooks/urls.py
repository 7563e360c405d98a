"""Which endpoint URLs a webhook may have: HTTPS, or plain HTTP to loopback where allowed."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from affectline.tls import is_loopback

MAX_URL_CHARS = 2048


class BadEndpoint(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    # Development and tests: http:// to this machine only, never to another host.
    allow_http_loopback: bool = False

    def check(self, url: str) -> str:
        """The URL when it is allowed, else BadEndpoint saying why."""
        if len(url) > MAX_URL_CHARS:
            raise BadEndpoint(f"url is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsing the port validates it
        except ValueError as exc:
            raise BadEndpoint(f"url {url!r} does not parse: {exc}") from exc
        if not parts.hostname:
            raise BadEndpoint(f"url {url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise BadEndpoint("url must not carry credentials; deliveries are authenticated by their signature")
        if parts.fragment:
            raise BadEndpoint("url must not have a fragment")
        if parts.scheme == "https":
            return url
        if parts.scheme == "http" and self.allow_http_loopback and is_loopback(parts.hostname):
            return url
        allowed = "https:// (or http:// to loopback)" if self.allow_http_loopback else "https://"
        raise BadEndpoint(f"url must start with {allowed}, got {url!r}")
