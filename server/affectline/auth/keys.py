"""The API key format, `afk_<id>_<secret>`, and how its secret is hashed and checked.

The id (16 hex chars) is public: it names the key in listings and errors. The secret is 32
random bytes (urlsafe base64, 43 chars). Only SHA-256(secret) is stored: the secret is
random and 256 bits long, so a fast hash is enough (nothing to brute-force, unlike a
password) and no server-side key is needed to check it, which lets `affectline keys` work
on the database alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

PREFIX = "afk"
ID_BYTES = 8
SECRET_BYTES = 32
_KEY = re.compile(rf"{PREFIX}_([0-9a-f]{{{ID_BYTES * 2}}})_([A-Za-z0-9_-]{{43}})")
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Credential:
    key_id: str
    secret: str = field(repr=False)  # never in a repr, so never in a traceback or log line

    @property
    def token(self) -> str:
        """What the client sends: afk_<id>_<secret>."""
        return f"{PREFIX}_{self.key_id}_{self.secret}"

    @property
    def secret_sha256(self) -> bytes:
        return hash_secret(self.secret)


def new_key() -> Credential:
    return Credential(secrets.token_hex(ID_BYTES), secrets.token_urlsafe(SECRET_BYTES))


def parse_key(token: str) -> Credential | None:
    """The key in `token`, or None when it is not of the afk_<id>_<secret> form."""
    m = _KEY.fullmatch(token)
    return Credential(m.group(1), m.group(2)) if m else None


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `authorization: Bearer <token>` header; None when absent or another scheme."""
    m = _BEARER.fullmatch(authorization or "")
    return m.group(1) if m else None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(key: Credential, stored_sha256: bytes) -> bool:
    # Constant time: how many leading bytes match must not show in the answer's timing.
    return hmac.compare_digest(key.secret_sha256, stored_sha256)
