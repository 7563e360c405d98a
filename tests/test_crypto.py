"""The crypto layer on its own: handshake, AAD binding, tamper detection, key wrapping."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from affectline import crypto


def handshake() -> tuple[bytes, bytes]:
    client = ec.generate_private_key(ec.SECP256R1())
    server_public, salt, server_key = crypto.server_handshake(crypto.public_key_bytes(client.public_key()))
    return server_key, crypto.client_handshake(server_public, salt, client)


def test_both_sides_derive_the_same_256_bit_key():
    server_key, client_key = handshake()
    assert server_key == client_key and len(server_key) == 32


def test_round_trip_and_aad_binds_session_and_seq():
    key, _ = handshake()
    nonce, ct = crypto.encrypt_batch(key, "s1", 7, b"frames")
    assert crypto.decrypt_batch(key, "s1", 7, nonce, ct) == b"frames"
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_batch(key, "s1", 8, nonce, ct)  # moved to another seq
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_batch(key, "s2", 7, nonce, ct)  # moved to another session


def test_aad_is_session_id_then_big_endian_u64_seq():
    assert crypto.batch_aad("ab", 258) == b"ab" + bytes([0, 0, 0, 0, 0, 0, 1, 2])


def test_tampered_ciphertext_is_rejected():
    key, _ = handshake()
    nonce, ct = crypto.encrypt_batch(key, "s", 0, b"x" * 100)
    bad = bytearray(ct)
    bad[10] ^= 1
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_batch(key, "s", 0, nonce, bytes(bad))


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x04" + b"\x00" * 64, b"\x02" + b"\x01" * 32, b"\x04" + b"\x01" * 64],
    ids=["empty", "zero-point", "compressed", "off-curve"],
)
def test_bad_public_keys_are_rejected(raw):
    with pytest.raises(crypto.BadPublicKey):
        crypto.server_handshake(raw)


def test_key_wrapper_round_trip_is_bound_to_the_session():
    wrapper = crypto.KeyWrapper(b"k" * 32)
    wrapped = wrapper.wrap(b"s" * 32, "session-1")
    assert wrapper.unwrap(wrapped, "session-1") == b"s" * 32
    with pytest.raises(crypto.DecryptionFailed):
        wrapper.unwrap(wrapped, "session-2")
    with pytest.raises(crypto.DecryptionFailed):
        crypto.KeyWrapper(b"o" * 32).unwrap(wrapped, "session-1")
