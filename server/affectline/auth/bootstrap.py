"""The first admin key, so that a fresh server can be administered and its analytics read.

Either AFFECTLINE_ADMIN_KEY names one (registered when absent: for deployments whose
secrets live elsewhere), or, when the store holds no key at all, `serve` makes one and
writes it to <data dir>/admin-key (mode 0600). Once any key exists nothing is made again,
so revoking the first key is final.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from affectline.auth.issuing import issue_key, register_key
from affectline.auth.keys import parse_key, secret_matches
from affectline.auth.scopes import ADMIN
from affectline.storage.api_key_store import ApiKeyStore, DuplicateKeyId

ADMIN_KEY_FILE = "admin-key"


@dataclass(frozen=True, slots=True)
class FirstKey:
    """A key made on this start: its file, and the key itself to show the operator once."""

    key_id: str
    path: Path
    token: str = field(repr=False)


def ensure_admin_key(store: ApiKeyStore, data_dir: Path, configured: str = "") -> FirstKey | None:
    """Registers `configured` (AFFECTLINE_ADMIN_KEY) if given, else makes a first admin key
    when the store is empty; returns the key only when one was made."""
    if configured:
        _register_configured(store, configured)
        return None
    if store.count():
        return None
    credential = issue_key(store, "admin (made on first start)", [ADMIN])
    path = data_dir / ADMIN_KEY_FILE
    _write_private(path, credential.token + "\n")
    return FirstKey(credential.key_id, path, credential.token)


def _register_configured(store: ApiKeyStore, token: str) -> None:
    credential = parse_key(token.strip())
    if credential is None:
        raise ValueError("AFFECTLINE_ADMIN_KEY is not an API key of the form afk_<16 hex>_<43 urlsafe chars>")
    if store.get(credential.key_id) is None:
        try:
            register_key(store, credential, "admin (AFFECTLINE_ADMIN_KEY)", [ADMIN])
            return
        except DuplicateKeyId:  # another replica registered it first
            pass
    existing = store.get(credential.key_id)
    # Registered before: kept as it is, so a revoked one stays revoked.
    if existing is None or not secret_matches(credential, existing.secret_sha256):
        raise ValueError(f"AFFECTLINE_ADMIN_KEY: key id {credential.key_id} is registered with another secret")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file of the same name may have been readable by others
    with os.fdopen(fd, "w") as f:
        f.write(text)
