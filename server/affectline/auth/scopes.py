"""The scopes an API key can hold and the one rule saying which scope a method needs.

The rule goes by service, never by method: a method added to a service needs that service's
scope with no edit here, and a service this table does not know needs `admin` (deny by
default) until someone decides otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ANALYTICS_READ = "analytics:read"
# For partner systems that upload recordings (RecordingService). SessionService is open to
# anyone holding a session token (viewers' browsers carry no API key).
SESSIONS_WRITE = "sessions:write"
ADMIN = "admin"  # implies every other scope
SCOPES: tuple[str, ...] = (ANALYTICS_READ, SESSIONS_WRITE, ADMIN)

_BY_SERVICE: Mapping[str, str | None] = {
    "affectline.v1.SessionService": None,  # authorised by each session's own bearer token
    "affectline.v1.AnalyticsService": ANALYTICS_READ,
    "affectline.v1.LiveService": ANALYTICS_READ,
    "affectline.v1.WebhookService": ADMIN,
    "affectline.v1.RecordingService": SESSIONS_WRITE,  # partner systems uploading recordings
}
# Probes and tooling must work without a key (load balancers, grpcurl's discovery).
_OPEN_PREFIXES = ("grpc.health.", "grpc.reflection.")


def required_scope(service: str) -> str | None:
    """The scope a call to `service` (full name, e.g. "affectline.v1.AnalyticsService") needs;
    None: no API key needed."""
    if service in _BY_SERVICE:
        return _BY_SERVICE[service]
    if service.startswith(_OPEN_PREFIXES):
        return None
    return ADMIN


def grants(held: Iterable[str], needed: str) -> bool:
    held = set(held)
    return needed in held or ADMIN in held


def parse_scopes(names: Iterable[str]) -> tuple[str, ...]:
    """Known scopes, each once, in SCOPES order; ValueError for none or an unknown one."""
    wanted = set(names)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)
