"""The events webhooks carry and the JSON body of a delivery."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SESSION_ENDED = "session.ended"
KEY_MOMENTS_CHANGED = "key_moments.changed"
EVENTS: tuple[str, ...] = (SESSION_ENDED, KEY_MOMENTS_CHANGED)


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def event_body(event_id: str, event: str, video_id: str, created_at: datetime, data: Mapping[str, Any]) -> bytes:
    """`{"id", "type", "video_id", "created_at", "data"}`: the same bytes go to every endpoint
    and every retry, so receivers can deduplicate on `id`."""
    return json.dumps(
        {"id": event_id, "type": event, "video_id": video_id, "created_at": created_at.isoformat(), "data": data},
        separators=(",", ":"), sort_keys=True,
    ).encode()
