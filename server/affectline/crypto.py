"""End-to-end encryption of crop batches.

ECDH P-256 between the browser and the server, HKDF-SHA256 to derive a per-session
AES-256-GCM key, and AAD = session id (UTF-8) || seq (u64 big-endian) so a batch
cannot be moved to another session or another position in the sequence.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HKDF_INFO = b"affectline/v1 crop batch key"
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
PUBLIC_KEY_BYTES = 65  # uncompressed SEC1: 0x04 || X || Y


class BadPublicKey(ValueError):
    """The peer's public key is not an uncompressed point on P-256."""


class DecryptionFailed(ValueError):
    """The ciphertext, its tag or its AAD did not authenticate."""


def batch_aad(session_id: str, seq: int) -> bytes:
    return session_id.encode() + struct.pack(">Q", seq)


def batch_digest(nonce: bytes, ciphertext: bytes) -> bytes:
    """Identifies one exact encrypted batch, so a client retry can be told from a replay."""
    digest = hashlib.sha256(nonce)
    digest.update(ciphertext)  # not nonce + ciphertext: that copies the whole batch first
    return digest.digest()


def load_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != PUBLIC_KEY_BYTES or raw[0] != 0x04:
        raise BadPublicKey(
            f"public key must be {PUBLIC_KEY_BYTES} bytes of uncompressed SEC1 P-256 (0x04||X||Y), got {len(raw)} bytes"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:  # not on the curve
        raise BadPublicKey(f"public key is not a valid P-256 point: {exc}") from exc


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def derive_key(private_key: ec.EllipticCurvePrivateKey, peer_public: ec.EllipticCurvePublicKey, salt: bytes) -> bytes:
    shared = private_key.exchange(ec.ECDH(), peer_public)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=HKDF_INFO).derive(shared)


def server_handshake(client_public_raw: bytes) -> tuple[bytes, bytes, bytes]:
    """Runs the server side of the key exchange.

    Returns (server public key bytes, HKDF salt, derived AES key). The server's
    private key is discarded here: only the derived key is kept for the session.
    """
    client_public = load_public_key(client_public_raw)
    private = ec.generate_private_key(ec.SECP256R1())
    salt = os.urandom(SALT_BYTES)
    return public_key_bytes(private.public_key()), salt, derive_key(private, client_public, salt)


def client_handshake(server_public_raw: bytes, salt: bytes, private: ec.EllipticCurvePrivateKey) -> bytes:
    """The client side (used by partner SDKs, tests, the load tests and the benchmark)."""
    return derive_key(private, load_public_key(server_public_raw), salt)


def encrypt_batch(key: bytes, session_id: str, seq: int, plaintext: bytes, nonce: bytes | None = None) -> tuple[bytes, bytes]:
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, batch_aad(session_id, seq))


def decrypt_batch(key: bytes, session_id: str, seq: int, nonce: bytes, ciphertext: bytes) -> bytes:
    if len(nonce) != NONCE_BYTES:
        raise DecryptionFailed(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, batch_aad(session_id, seq))
    except InvalidTag as exc:
        raise DecryptionFailed("ciphertext failed authentication (tampered data, wrong AAD or wrong key)") from exc


class KeyWrapper:
    """Wraps session keys with the server's key-encryption key before they are stored.

    The stored sessions table then holds nothing that decrypts crops without the KEK,
    which lives outside the database (env var or a key file with mode 0600).
    """

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise ValueError(f"key-encryption key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(kek)

    def wrap(self, key: bytes, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, context.encode())

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        if len(wrapped) < NONCE_BYTES + 16:  # AESGCM raises ValueError on a short nonce, not InvalidTag
            raise DecryptionFailed("stored session key is truncated")
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise DecryptionFailed("stored session key does not unwrap: the key-encryption key changed") from exc
