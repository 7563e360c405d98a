"""The webhooks table: endpoints registered per campaign, with their wrapped signing secrets.

Sync and thread-safe like TimelineStore (callers on the event loop use asyncio.to_thread).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from affectline.crypto import KeyWrapper
from affectline.storage.tables import Webhook
from affectline.webhooks.signing import new_secret

_T = Webhook.__table__


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    webhook_id: str
    video_id: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Target:
    """Where one event goes: an endpoint with its secret in the clear (memory only)."""

    webhook_id: str
    url: str
    secret: str


def _record(row: object) -> WebhookRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return WebhookRecord(m["webhook_id"], m["video_id"], m["url"], tuple(json.loads(m["events"])),
                         m["description"], m["created_at"])


class WebhookStore:
    def __init__(self, engine: Engine, wrapper: KeyWrapper) -> None:
        self._engine = engine
        self._wrapper = wrapper

    @staticmethod
    def _context(webhook_id: str) -> str:
        # The AAD binds a wrapped secret to its row: copied onto another row it does not unwrap.
        return f"webhook:{webhook_id}"

    def create(self, video_id: str, url: str, events: Sequence[str], description: str = "",
               now: datetime | None = None) -> tuple[WebhookRecord, str]:
        """The new endpoint and its signing secret (the only time the secret is handed out)."""
        webhook_id = "wh_" + uuid.uuid4().hex
        secret = new_secret()
        record = WebhookRecord(webhook_id, video_id, url, tuple(events), description, now or datetime.now(UTC))
        with self._engine.begin() as conn:
            conn.execute(insert(_T).values(
                webhook_id=webhook_id, video_id=video_id, url=url, events=json.dumps(list(events)),
                description=description, created_at=record.created_at,
                wrapped_secret=self._wrapper.wrap(secret.encode(), self._context(webhook_id)),
            ))
        return record, secret

    def endpoints(self, video_id: str = "") -> list[WebhookRecord]:
        query = select(_T).order_by(_T.c.created_at, _T.c.webhook_id)
        if video_id:
            query = query.where(_T.c.video_id == video_id)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def delete(self, webhook_id: str) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(delete(_T).where(_T.c.webhook_id == webhook_id)).rowcount > 0

    def targets(self, video_id: str, event: str) -> list[Target]:
        """The endpoints of a campaign subscribed to `event`, with their secrets unwrapped."""
        query = select(_T).where(_T.c.video_id == video_id).order_by(_T.c.webhook_id)
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        return [
            Target(row.webhook_id, row.url, self._wrapper.unwrap(row.wrapped_secret, self._context(row.webhook_id)).decode())
            for row in rows
            if event in json.loads(row.events)
        ]
