"""Storage of API keys (table api_keys): records in and out, no key material but the hash.

Synchronous and thread-safe like TimelineStore (each method is one short transaction); the
authenticator calls it from worker threads. Hashing and checking secrets is auth/'s job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from affectline.storage.tables import ApiKey

_keys = cast(Table, ApiKey.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    secret_sha256: bytes = field(repr=False)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class DuplicateKeyId(ValueError):
    pass


def _record(row: Row[Any]) -> ApiKeyRecord:
    m = row._mapping
    return ApiKeyRecord(
        key_id=m["key_id"], name=m["name"], scopes=tuple(json.loads(m["scopes"])), created_at=m["created_at"],
        secret_sha256=bytes(m["secret_sha256"]), expires_at=m["expires_at"], revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
    )


class ApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: ApiKeyRecord) -> None:
        """Stores a new key; DuplicateKeyId if its id is taken (ids are random: a re-registration)."""
        values = {
            "key_id": record.key_id, "name": record.name, "scopes": json.dumps(list(record.scopes)),
            "secret_sha256": record.secret_sha256, "created_at": record.created_at, "expires_at": record.expires_at,
            "revoked_at": record.revoked_at, "last_used_at": record.last_used_at,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_keys).values(**values))
        except IntegrityError as exc:
            raise DuplicateKeyId(f"an API key with id {record.key_id} already exists") from exc

    def get(self, key_id: str) -> ApiKeyRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_keys).where(_keys.c.key_id == key_id)).first()
        return _record(row) if row is not None else None

    def list(self) -> list[ApiKeyRecord]:
        """Every key, revoked and expired ones included, oldest first."""
        with self._engine.connect() as conn:
            rows: Iterable[Row[Any]] = conn.execute(select(_keys).order_by(_keys.c.created_at, _keys.c.key_id))
            return [_record(r) for r in rows]

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_keys)).scalar_one())

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Marks the key revoked at `at` (an earlier revocation time is kept); None if unknown."""
        with self._engine.begin() as conn:
            conn.execute(update(_keys).where(_keys.c.key_id == key_id, _keys.c.revoked_at.is_(None)).values(revoked_at=at))
            row = conn.execute(select(_keys).where(_keys.c.key_id == key_id)).first()
        return _record(row) if row is not None else None

    def touch(self, key_id: str, at: datetime) -> None:
        """Records a use of the key (callers throttle this: it is a write)."""
        with self._engine.begin() as conn:
            conn.execute(update(_keys).where(_keys.c.key_id == key_id).values(last_used_at=at))
