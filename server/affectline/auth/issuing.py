"""Putting keys into the store: a new random one, or a given one (AFFECTLINE_ADMIN_KEY)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from affectline.auth.keys import Credential, new_key
from affectline.auth.scopes import parse_scopes
from affectline.storage.api_key_store import ApiKeyRecord, ApiKeyStore


def register_key(store: ApiKeyStore, credential: Credential, name: str, scopes: Iterable[str], *,
                 expires_at: datetime | None = None, now: datetime | None = None) -> ApiKeyRecord:
    """Stores `credential` (its hash) under `name`; ValueError for no name or a bad scope,
    DuplicateKeyId when its id is taken."""
    if not name.strip():
        raise ValueError("a key needs a --name saying who or what uses it")
    created = now or datetime.now(UTC)
    if expires_at is not None and expires_at <= created:
        raise ValueError("a key must expire after it is made")
    record = ApiKeyRecord(key_id=credential.key_id, name=name.strip(), scopes=parse_scopes(scopes), created_at=created,
                          secret_sha256=credential.secret_sha256, expires_at=expires_at)
    store.add(record)
    return record


def issue_key(store: ApiKeyStore, name: str, scopes: Iterable[str], *, expires_at: datetime | None = None) -> Credential:
    """A new random key, stored; the returned credential is the only copy of its secret."""
    credential = new_key()
    register_key(store, credential, name, scopes, expires_at=expires_at)
    return credential
