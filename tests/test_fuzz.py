"""Property-based tests (hypothesis) of everything a client's bytes reach before a session is trusted.

What is proven, for random and mutated input:
- the crypto envelope (crypto.py): a batch decrypts only with its exact key, session id, seq,
  nonce and ciphertext; any other input is DecryptionFailed (BadPublicKey for public keys), never
  another exception; a wrapped session key unwraps only as it was wrapped;
- the CropBatch decoder: counting frames on the wire (count_crop_frames) agrees with the parser,
  never passes its limit, and raises nothing but ValueError; through SessionService, any decrypted
  payload ends in an ack or INVALID_ARGUMENT, never another error, and never stores more frames than
  the limit;
- the JSON-RPC endpoint (random JSON, batches, wrong types, huge ids and numbers, unicode, bytes that
  are not JSON): always an HTTP answer holding JSON-RPC replies (a result or an error), never a 500;
- Connect and gRPC-web (random and mutated envelopes: wrong lengths, flags, the compressed bit,
  trailers, odd encodings and timeouts): always an answer that carries a status, never a 500 without
  one, and nothing the server logs as an unhandled error.

The HTTP properties run against a real server (tests/server_harness.py) over loopback. Every crash
these found is fixed and kept below as an explicit @example. CI runs a few hundred examples per
property (profile "ci", derandomized); the long campaign (scripts/fuzz_campaign.py, docs/testing.md)
runs the same properties with HYPOTHESIS_PROFILE=campaign, and atheris on the pure targets.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import struct
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from affectline import crypto
from affectline.config import Settings
from affectline.metrics import Metrics
from affectline.partner_client import ClientSession, start_request
from affectline.services.crop_batch_wire import count_crop_frames
from affectline.services.session_service import CropSpec, SessionService
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.database import make_engine, upgrade
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import session_pb2
from server_harness import running_server

settings.register_profile("ci", max_examples=int(os.environ.get("AFFECTLINE_FUZZ_EXAMPLES", "150")), deadline=None,
                          derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.register_profile("campaign", max_examples=int(os.environ.get("AFFECTLINE_FUZZ_EXAMPLES", "20000")),
                          deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SIDE = 4  # a 4x4 crop spec keeps the service-level cases small
MAX_FRAMES = 8
U64 = st.integers(min_value=0, max_value=2**64 - 1)


# --- helpers ------------------------------------------------------------------------------------------


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Applies (kind, position, value) edits: flip a bit, overwrite, insert, delete, truncate, duplicate a span."""
    out = bytearray(data)
    for kind, pos, value in ops:
        pos = pos % (len(out) + 1)
        if kind == 0 and out:
            out[pos % len(out)] ^= 1 << (value % 8)
        elif kind == 1 and out:
            out[pos % len(out)] = value % 256
        elif kind == 2:
            out.insert(pos, value % 256)
        elif kind == 3 and out:
            del out[pos % len(out)]
        elif kind == 4:
            del out[pos:]
        elif kind == 5 and out:
            span = out[pos:pos + 1 + value % 16]
            out[pos:pos] = span
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**16), st.integers(0, 2**16)), min_size=1, max_size=6)


def frame_batches(max_frames: int = MAX_FRAMES + 2) -> st.SearchStrategy[bytes]:
    """Serialized CropBatches, valid or nearly so (wrong crop sizes, odd times, NaN poses, bad timestamps)."""
    frame = st.fixed_dictionaries({
        "video_time_ms": st.integers(-2**63, 2**63 - 1),
        "face_present": st.booleans(),
        "crop": st.one_of(st.just(bytes(SIDE * SIDE)), st.binary(max_size=40)),
        "ts": st.one_of(st.none(), st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1))),
        "yaw": st.one_of(st.none(), st.floats(width=32)),
    })

    def build(frames: list[dict[str, Any]], fps: float) -> bytes:
        batch = session_pb2.CropBatch(achieved_fps=fps)
        for f in frames:
            out = batch.frames.add(video_time_ms=f["video_time_ms"], face_present=f["face_present"], crop=f["crop"])
            if f["ts"] is not None:
                out.captured_at.seconds, out.captured_at.nanos = f["ts"]
            if f["yaw"] is not None:
                out.head_yaw_deg = f["yaw"]
        return batch.SerializeToString()

    return st.builds(build, st.lists(frame, max_size=max_frames), st.floats(width=32))


PAYLOADS = st.one_of(
    st.binary(max_size=300),
    frame_batches(),
    st.tuples(frame_batches(), EDITS).map(lambda t: mutate(*t)),
)


class Service:
    """A SessionService on SQLite with a stand-in model, driven on one event loop."""

    def __init__(self, tmp: Path) -> None:
        self.engine = make_engine(f"sqlite:///{tmp / 'fuzz.db'}")
        upgrade(self.engine)
        self.store = TimelineStore(self.engine)
        self.writer = GroupCommitWriter(self.store)
        self.loop = asyncio.new_event_loop()

        async def score(crops: np.ndarray, *, sequence: str | None = None) -> np.ndarray:
            return np.full((len(crops), 7), 1 / 7, dtype=np.float32)

        self.service = SessionService(
            store=self.store, writer=self.writer, score=score, crop_spec=CropSpec(SIDE, SIDE, 1, "stub/1", MAX_FRAMES),
            key_wrapper=crypto.KeyWrapper(os.urandom(32)), metrics=Metrics.create(), session_ttl=timedelta(hours=1),
            max_sessions_per_viewer=10**6)
        self.session = self.start()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self) -> ClientSession:
        key = ec.generate_private_key(ec.SECP256R1())
        response = self.run(self.service.start_session(start_request(key, video_id="fuzz", viewer_id="fuzzer")))
        return ClientSession.open(key, response)

    def push_plaintext(self, payload: bytes) -> tuple[int, Any]:
        """Encrypts `payload` as the session's next batch and pushes it: (seq, the ack), or
        (seq, None) when it was refused as INVALID_ARGUMENT, the only refusal allowed."""
        s = self.session
        seq = s.next_seq()
        nonce, ciphertext = crypto.encrypt_batch(s.key, s.session_id, seq, payload)
        request = session_pb2.PushCropsRequest(session_id=s.session_id, session_token=s.token, seq=seq,
                                               nonce=nonce, ciphertext=ciphertext)
        try:
            return seq, self.run(self.service.push_crops(request))
        except ConnectError as exc:
            assert exc.code is Code.INVALID_ARGUMENT, exc.message
            return seq, None

    def close(self) -> None:
        self.writer.close()
        self.loop.close()
        self.engine.dispose()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    s = Service(tmp_path_factory.mktemp("fuzz-service"))
    yield s
    s.close()


class ErrorLog(logging.Handler):
    """Collects records logged with a traceback (an unhandled error in a handler) while fuzzing."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("fuzz-server")
    with running_server(Settings(data_dir=data, time_variants=0, max_run_ms=0, max_frames_per_batch=8)) as s:
        s.admin_key = (data / "admin-key").read_text().strip() if (data / "admin-key").exists() else ""
        yield s


@contextmanager
def no_unhandled_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    assert not handler.records, "unhandled errors: " + "; ".join(
        f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" for r in handler.records)  # type: ignore[index]


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    # A fresh connection per request: the server may close one after refusing a request whose body it did not
    # read, and a reused connection then fails client-side ("disconnected without a response"), not a server fault.
    headers = {"connection": "close", **({"authorization": f"Bearer {server.admin_key}"} if server.admin_key else {})}
    with httpx.Client(base_url=server.http_base, timeout=15, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def live_session(http: httpx.Client) -> ClientSession:
    key = ec.generate_private_key(ec.SECP256R1())
    r = http.post("/affectline.v1.SessionService/StartSession",
                  content=start_request(key, video_id="fuzz", viewer_id="fuzz-http").SerializeToString(),
                  headers={"content-type": "application/proto"})
    assert r.status_code == 200, r.text
    return ClientSession.open(key, session_pb2.StartSessionResponse.FromString(r.content))


# --- 1. the crypto envelope ------------------------------------------------------------------------------


@given(key=st.binary(min_size=32, max_size=32), session_id=st.text(max_size=40), seq=U64,
       plaintext=st.binary(max_size=256), target=st.sampled_from(["key", "session", "seq", "nonce", "ciphertext"]),
       edits=EDITS, other=st.one_of(st.text(max_size=40), U64))
def test_a_batch_decrypts_only_exactly_as_sealed_and_anything_else_is_decryption_failed(
        key, session_id, seq, plaintext, target, edits, other):
    nonce, ciphertext = crypto.encrypt_batch(key, session_id, seq, plaintext)
    assert crypto.decrypt_batch(key, session_id, seq, nonce, ciphertext) == plaintext
    args = {"key": key, "session": session_id, "seq": seq, "nonce": nonce, "ciphertext": ciphertext}
    if target in ("key", "nonce", "ciphertext"):
        changed = mutate(args[target], edits)
        if target == "key" and len(changed) != 32:
            changed = (changed + bytes(32))[:32]  # the service only ever holds 32-byte keys
    elif target == "session":
        changed = other if isinstance(other, str) else str(other)
    else:
        changed = other if isinstance(other, int) else len(other)
    args[target] = changed
    try:
        out = crypto.decrypt_batch(args["key"], args["session"], args["seq"], args["nonce"], args["ciphertext"])
    except crypto.DecryptionFailed:
        return
    # Only a no-op mutation may decrypt (a different session id with the same UTF-8 bytes cannot exist).
    assert (args["key"], args["session"], args["seq"], args["nonce"], args["ciphertext"]) == (
        key, session_id, seq, nonce, ciphertext) and out == plaintext


@given(kek=st.binary(min_size=32, max_size=32), key=st.binary(min_size=32, max_size=32), context=st.text(max_size=40),
       edits=EDITS, raw=st.binary(max_size=80))
@example(kek=bytes(32), key=bytes(32), context="s", edits=[(4, 5, 0)], raw=b"")  # truncated below the nonce
def test_a_wrapped_session_key_unwraps_only_as_wrapped(kek, key, context, edits, raw):
    wrapper = crypto.KeyWrapper(kek)
    wrapped = wrapper.wrap(key, context)
    assert wrapper.unwrap(wrapped, context) == key
    for blob in (mutate(wrapped, edits), raw):
        try:
            assert wrapper.unwrap(blob, context) == key and blob == wrapped
        except crypto.DecryptionFailed:
            pass


@given(raw=st.one_of(st.binary(max_size=80), st.binary(min_size=64, max_size=64).map(lambda b: b"\x04" + b)))
def test_a_client_public_key_is_a_p256_point_or_bad_public_key(raw):
    try:
        crypto.load_public_key(raw)
    except crypto.BadPublicKey:
        return
    assert len(raw) == crypto.PUBLIC_KEY_BYTES and raw[0] == 4


# --- 2. the CropBatch decoder --------------------------------------------------------------------------------


@given(data=PAYLOADS, stop_after=st.integers(0, MAX_FRAMES))
@example(data=b"\x0a\x00" * 1000, stop_after=8)  # a frame bomb: counting stops at the limit
@example(data=b"\x0b\x0c", stop_after=8)  # a group (wire types 3, 4): refused
def test_counting_frames_on_the_wire_agrees_with_the_parser_and_stops_at_the_limit(data, stop_after):
    try:
        n = count_crop_frames(data, stop_after=stop_after)
    except ValueError:
        return  # refused before parsing: INVALID_ARGUMENT
    assert 0 <= n <= stop_after + 1
    if n > stop_after:
        return  # refused before parsing
    batch = session_pb2.CropBatch()
    try:
        batch.ParseFromString(data)
    except DecodeError:
        return
    assert len(batch.frames) == n


@given(payload=PAYLOADS)
@example(payload=session_pb2.CropBatch(frames=[session_pb2.CropFrame(
    video_time_ms=1, captured_at={"seconds": 2**62})]).SerializeToString())  # was INTERNAL: timestamp overflow
@example(payload=session_pb2.CropBatch(frames=[session_pb2.CropFrame(
    video_time_ms=1, captured_at={"seconds": 1, "nanos": -1})]).SerializeToString())
def test_any_decrypted_payload_is_acked_or_invalid_argument(service, payload):
    seq, ack = service.push_plaintext(payload)
    if ack is None:
        return
    assert 1 <= len(ack.results) <= MAX_FRAMES
    stored = service.store.get_batch(service.session.session_id, seq)
    assert stored is not None and len(stored.frames) == len(ack.results)


# --- 3. JSON-RPC ----------------------------------------------------------------------------------------------

METHODS = ["affectline.v1.SessionService/StartSession", "affectline.v1.SessionService/PushCrops",
           "affectline.v1.SessionService/EndSession", "affectline.v1.SessionService/StreamCrops",
           "affectline.v1.AnalyticsService/GetSessionTimeline", "affectline.v1.AnalyticsService/GetVideoTimeline"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**200, 2**200) | st.floats() | st.text(max_size=20)
           | st.sampled_from(["", "0", "-1", "1e309", "AAAA", "\u0000", "\ud7ff\ufffd", "9" * 40]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
PARAM_KEYS = ["sessionId", "sessionToken", "seq", "nonce", "ciphertext", "videoId", "variantId", "viewer",
              "clientPublicKey", "captureFps", "pageSize", "pageToken", "bucketMs", "reason", "framesPerBatch"]
PARAMS = JSON | st.dictionaries(st.sampled_from(PARAM_KEYS), JSON, max_size=6)
CALL = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2.0, None]), "method": st.sampled_from(METHODS) | JSON},
    optional={"id": JSON, "params": PARAMS},
)
BODIES = st.one_of(
    CALL.map(lambda c: json.dumps(c).encode()),
    st.lists(CALL | JSON, min_size=0, max_size=5).map(lambda c: json.dumps(c).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.tuples(CALL.map(lambda c: json.dumps(c).encode()), EDITS).map(lambda t: mutate(*t)),
)


def assert_json_rpc_reply(reply: Any) -> None:
    assert isinstance(reply, dict) and reply.get("jsonrpc") == "2.0" and "id" in reply, reply
    assert ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int) and isinstance(reply["error"]["message"], str), reply
        assert "Traceback" not in reply["error"]["message"] and "/server/affectline/" not in reply["error"]["message"]


@given(body=BODIES)
@example(body=b'{"jsonrpc": "2.0", "id": NaN, "method": "x"}')  # was a 500: NaN echoed as the id
@example(body=b'{"jsonrpc": "1.0", "id": {"\\udd8b": 1}}')  # was a 500: a lone surrogate echoed (campaign)
@example(body=b'{"jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetVideoTimeline", '
              b'"params": {"videoId": "demo", "bucketMs": Infinity}}')
@example(body=b"[" * 100_000 + b"]" * 100_000)  # was a 500: RecursionError while parsing
@example(body=b'{"jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetVideoTimeline", '
              b'"params": {"videoId": "demo", "bucketMs": 1e400}}')
@example(body=b'{"jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline", '
              b'"params": {"sessionId": "x", "pageSize": 99999999999999999999999}}')
def test_json_rpc_always_answers_json_rpc(server, http, body):
    with no_unhandled_errors():
        r = http.post("/jsonrpc", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 204, 413), (r.status_code, r.text[:300])
    if r.status_code == 204:
        return
    payload = r.json()
    for reply in payload if isinstance(payload, list) else [payload]:
        assert_json_rpc_reply(reply)


# --- 4. Connect and gRPC-web framing -----------------------------------------------------------------------------

CONTENT_TYPES = ["application/proto", "application/json", "application/connect+proto", "application/connect+json",
                 "application/grpc-web+proto", "application/grpc-web", "application/grpc-web-text",
                 "application/grpc-web+json", "text/plain", "application/grpc"]
PATHS = ["/affectline.v1.SessionService/PushCrops", "/affectline.v1.SessionService/StartSession",
         "/affectline.v1.SessionService/StreamCrops", "/affectline.v1.SessionService/EndSession",
         "/affectline.v1.AnalyticsService/GetSessionTimeline", "/affectline.v1.SessionService/Nope"]
ENCODINGS = st.sampled_from([None, "identity", "gzip", "br", "zstd", "x-garbage", ""])


def envelope(flags: int, payload: bytes, length: int | None = None) -> bytes:
    return bytes([flags % 256]) + struct.pack(">I", (len(payload) if length is None else length) % 2**32) + payload


def push_payload(session: ClientSession) -> bytes:
    return session.push_request([]).SerializeToString()  # a well-formed (empty, hence refused) batch


@st.composite
def connect_requests(draw: st.DrawFn, session_bytes: bytes) -> tuple[str, dict[str, str], bytes]:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    path = draw(st.sampled_from(PATHS))
    message = draw(st.one_of(st.just(session_bytes), st.binary(max_size=120),
                             st.tuples(st.just(session_bytes), EDITS).map(lambda t: mutate(*t)),
                             st.just(b'{"sessionId": "x"}'), JSON.map(lambda v: json.dumps(v).encode())))
    frames = []
    for _ in range(draw(st.integers(0, 3))):
        flags = draw(st.sampled_from([0, 1, 2, 3, 0x80, 0x81, 0x7F, 0xFF]) | st.integers(0, 255))
        length = draw(st.none() | st.integers(0, 2**32 - 1) | st.integers(0, len(message) + 8))
        frames.append(envelope(flags, message if flags != 0x80 else b"grpc-status: 0\r\n", length))
    body = draw(st.sampled_from([b"".join(frames), message, b"".join(frames)[:draw(st.integers(0, 40))]]))
    if content_type == "application/grpc-web-text":
        body = base64.b64encode(body) if draw(st.booleans()) else body
    headers = {"content-type": content_type}
    for name, value in (("connect-protocol-version", st.sampled_from(["1", "2", ""])),
                        ("grpc-encoding", ENCODINGS), ("grpc-accept-encoding", ENCODINGS),
                        ("connect-content-encoding", ENCODINGS), ("content-encoding", ENCODINGS),
                        ("grpc-timeout", st.sampled_from(["1S", "100m", "99999999H", "x", "-1S", ""])),
                        ("connect-timeout-ms", st.sampled_from(["0", "1", "-5", "1e9", "abc"]))):
        value = draw(st.none() | value)
        if value is not None:
            headers[name] = value
    return path, headers, body


def grpc_web_trailers(body: bytes, encoding: str) -> bytes:
    """The payloads of the trailer frames (flag 0x80; 0x81: compressed with the response's grpc-encoding)."""
    out, pos = b"", 0
    while pos + 5 <= len(body):
        flags, length = body[pos], struct.unpack(">I", body[pos + 1:pos + 5])[0]
        payload = body[pos + 5:pos + 5 + length]
        if flags & 0x80:
            out += gzip.decompress(payload) if flags & 1 and encoding == "gzip" else payload
        pos += 5 + length
    return out


def carries_a_status(r: httpx.Response) -> bool:
    """The answer names an outcome in its protocol's own form."""
    content_type = r.headers.get("content-type", "")
    if "grpc-status" in r.headers:
        return True
    if content_type.startswith("application/grpc"):
        body = r.content
        if content_type.startswith("application/grpc-web-text"):
            try:
                body = base64.b64decode(body)
            except ValueError:
                return False
        return b"grpc-status" in grpc_web_trailers(body, r.headers.get("grpc-encoding", ""))
    if content_type.startswith("application/connect+"):
        return r.status_code != 200 or b'"error"' in r.content or len(r.content) >= 5  # an end-stream frame
    if r.status_code == 200:
        return True  # a unary Connect success
    try:
        return isinstance(r.json().get("code"), str)
    except ValueError:
        return r.status_code in (404, 405, 415)  # no such route or media type: plain HTTP statuses


@given(data=st.data())
def test_connect_and_grpc_web_always_answer_with_a_status(server, http, live_session, data):
    path, headers, body = data.draw(connect_requests(push_payload(live_session)))
    with no_unhandled_errors():
        r = http.post(path, content=body, headers=headers)
    assert carries_a_status(r), (path, headers, body[:80], r.status_code, r.headers, r.content[:200])
    assert not (r.status_code == 500 and "grpc-status" not in r.headers and b'"code"' not in r.content), r.content[:200]
    assert b"Traceback" not in r.content and b"/server/affectline/" not in r.content


def test_native_grpc_on_the_http_port_is_a_clean_415_with_a_grpc_status(server, http):
    """Regression (found by the property above): application/grpc over HTTP/1.1 made connectrpc raise
    (no ASGI trailers), a 500 without a status."""
    with no_unhandled_errors():
        r = http.post("/affectline.v1.SessionService/PushCrops", content=envelope(0, b""),
                      headers={"content-type": "application/grpc"})
    assert r.status_code == 415 and r.headers["grpc-status"] == "12"


def test_a_consent_time_out_of_timestamp_range_is_invalid_argument(service):
    """Regression (found by the payload property, same cause): a Timestamp past year 9999 overflowed
    datetime and answered INTERNAL."""
    request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="fuzz", viewer_id="fuzzer-2")
    request.viewer.consent.consented_at.seconds = 2**62
    with pytest.raises(ConnectError) as info:
        service.run(service.service.start_session(request))
    assert info.value.code is Code.INVALID_ARGUMENT
