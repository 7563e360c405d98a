"""RecordingService end to end on a real server: the native bidi AnalyzeRecording stream, the
resumable HTTP upload (interrupted and resumed) with Connect status calls, each bad input with
its own status and nothing stored, and the temporary files gone afterwards."""

from __future__ import annotations

import json
import socket
import stat
import struct
import time
from collections import Counter
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from affectline.auth.scopes import SESSIONS_WRITE
from affectline.config import Settings
from affectline.storage.records import EMOTIONS
from affectline.v1 import recording_pb2, recording_pb2_grpc, session_pb2
from browser_support import SAMPLES
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from recording_support import sofa_frame, write_mp4, write_webcam_mp4
from server_harness import running_server

pytestmark = pytest.mark.skipif(not (SAMPLES / "sample3.jpg").exists(), reason="client_js not installed")
MAX_MB = 2.0
State = recording_pb2.RecordingState


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> bytes:
    return write_webcam_mp4(tmp_path_factory.mktemp("rec") / "webcam.mp4").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("srv") / "data", recording_max_mb=MAX_MB,
                        recording_max_concurrent=2)
    with running_server(settings) as s:
        yield s


@pytest.fixture(scope="module")
def key(server) -> str:
    return server.create_key(SESSIONS_WRITE, name="panel uploader")


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield recording_pb2_grpc.RecordingServiceStub(channel)


def metadata(total: int, *, video: str = "ad-1", viewer: str = "panel-7", offset_ms: int = 0,
             scopes=("emotion",)) -> recording_pb2.RecordingMetadata:
    at = Timestamp()
    at.FromDatetime(datetime(2026, 12, 1, 10, tzinfo=UTC))
    consent = session_pb2.ConsentRecord(notice_version="2026-11", consented_at=at, scopes=list(scopes))
    return recording_pb2.RecordingMetadata(
        video_id=video, variant_id="b", viewer=session_pb2.ViewerDescriptor(viewer_id=viewer, consent=consent),
        offset_ms=offset_ms, total_bytes=total, file_name="webcam.mp4", content_type="video/mp4")


def bidi(stub, key: str, meta: recording_pb2.RecordingMetadata, data: bytes, chunk: int = 64 * 1024):
    def messages():
        yield recording_pb2.AnalyzeRecordingRequest(metadata=meta)
        for i in range(0, len(data), chunk):
            yield recording_pb2.AnalyzeRecordingRequest(chunk=data[i:i + chunk])

    return list(stub.AnalyzeRecording(messages(), metadata=(("authorization", f"Bearer {key}"),), timeout=120))


def assert_clean(server) -> None:
    """No recording is left in the private upload directory (mode 0700)."""
    root = server.parts.recording_service.upload_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    deadline = time.monotonic() + 5  # a cancelled analysis deletes its file as its task ends
    while list(root.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(root.iterdir()) == []


def assert_timeline(server, result: recording_pb2.RecordingResult, offset_ms: int) -> None:
    assert result.frames == 60 and 25 <= result.frames_with_face <= 32
    assert result.dominant_emotion == "happy"
    frames = server.parts.store.session_frames(result.session_id)
    assert len(frames) == 60
    times = [f.video_time_ms for f in frames]
    assert all(abs(t - (offset_ms + i * 1000 / 30)) <= 1 for i, t in enumerate(times)), "frame timestamp + offset"
    present = [f.face_present for f in frames]
    assert all(present[:28]) and not any(present[32:]), present
    tops = Counter(EMOTIONS[max(range(7), key=lambda i: f.probs[i])] for f in frames if f.probs)
    assert tops.most_common(1)[0][0] == "happy", tops
    session = server.parts.store.get_session(result.session_id)
    assert (session.video_id, session.variant_id, session.viewer.viewer_id, session.end_reason) == (
        "ad-1", "b", "panel-7", "completed")
    assert session.consent.scopes == ("emotion",)


def test_native_bidi_stream_analyses_a_recording(server, stub, key, recording):
    events = bidi(stub, key, metadata(len(recording), offset_ms=5000), recording)
    assert events[0].state == State.RECORDING_STATE_UPLOADING and events[0].recording_id
    assert any(e.state == State.RECORDING_STATE_ANALYSING for e in events)
    last = events[-1]
    assert last.state == State.RECORDING_STATE_DONE and last.progress.frames_scored == 60
    assert last.progress.bytes_received == len(recording) and last.progress.percent == 100
    assert_timeline(server, last.result, offset_ms=5000)
    assert stub.GetRecordingStatus(recording_pb2.RecordingRef(recording_id=last.recording_id),
                                   metadata=(("authorization", f"Bearer {key}"),)).result == last.result
    assert_clean(server)


def test_bidi_stream_needs_a_sessions_write_key(server, stub, recording):
    with pytest.raises(grpc.RpcError) as e:
        bidi(stub, server.analyst_key, metadata(len(recording)), recording)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _connect(client: httpx.Client, key: str, method: str, message) -> dict:
    r = client.post(f"/affectline.v1.RecordingService/{method}", content=json_format.MessageToJson(message),
                    headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()


def _interrupted_chunk(port: int, path: str, key: str, offset: int, data: bytes) -> None:
    """A PATCH whose connection drops halfway through its body."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nUpload-Offset: {offset}\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data[: len(data) // 2])
    time.sleep(0.3)


def _watch_connect(client: httpx.Client, key: str, recording_id: str) -> list[dict]:
    """WatchRecording over the Connect streaming protocol (enveloped JSON messages)."""
    body = json.dumps({"recordingId": recording_id}).encode()
    events = []
    with client.stream("POST", "/affectline.v1.RecordingService/WatchRecording",
                       content=struct.pack(">BI", 0, len(body)) + body,
                       headers={"content-type": "application/connect+json", "authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200
        raw = r.read()
    while raw:
        flags, n = struct.unpack(">BI", raw[:5])
        msg, raw = json.loads(raw[5:5 + n]), raw[5 + n:]
        if flags & 2:
            assert "error" not in msg, msg
        else:
            events.append(msg)
    return events


def test_http_upload_resumes_after_an_interruption(server, key, recording):
    with httpx.Client(base_url=server.http_base, timeout=60) as client:
        upload = _connect(client, key, "CreateRecordingUpload", metadata(len(recording), offset_ms=1200))
        rid, url = upload["recordingId"], upload["uploadUrl"]
        assert int(upload["maxBytes"]) == int(MAX_MB * 2**20) and url == f"/v1/recordings/{rid}"
        auth = {"authorization": f"Bearer {key}"}
        n = len(recording)
        q = n // 4
        r = client.patch(url, content=recording[:q], headers={**auth, "content-range": f"bytes 0-{q - 1}/{n}"})
        assert r.status_code == 200 and r.json()["offset"] == q
        _interrupted_chunk(server.server.http_port, url, key, q, recording[q:2 * q])
        head = client.head(url, headers=auth)
        assert head.status_code == 200 and head.headers["upload-offset"] == str(q), "a cut chunk stores nothing"
        gap = client.patch(url, content=b"x" * 10, headers={**auth, "upload-offset": str(2 * q)})
        assert gap.status_code == 409 and gap.headers["upload-offset"] == str(q)
        early = client.post("/affectline.v1.RecordingService/StartRecordingAnalysis", json={"recordingId": rid},
                            headers=auth)
        assert early.status_code != 200 and early.json()["code"] == "failed_precondition"
        # resume from a bit before the offset: the overlap is idempotent
        r = client.put(url, content=recording[q // 2:], headers={**auth, "upload-offset": str(q // 2)})
        assert r.status_code == 200 and r.json() == {"recording_id": rid, "offset": len(recording),
                                                     "total_bytes": len(recording), "complete": True}
        r = client.patch(url, content=recording[:10], headers={**auth, "upload-offset": "0"})
        assert r.status_code == 200 and r.json()["offset"] == len(recording), "a repeated chunk changes nothing"
        started = _connect(client, key, "StartRecordingAnalysis", recording_pb2.RecordingRef(recording_id=rid))
        assert started["state"] == "RECORDING_STATE_ANALYSING"
        events = _watch_connect(client, key, rid)
        assert events[-1]["state"] == "RECORDING_STATE_DONE", events[-1]
        status = json_format.ParseDict(
            _connect(client, key, "GetRecordingStatus", recording_pb2.RecordingRef(recording_id=rid)),
            recording_pb2.RecordingStatus())
        assert status.state == State.RECORDING_STATE_DONE
        assert_timeline(server, status.result, offset_ms=1200)
        assert client.head(url, headers=auth).status_code == 404, "the recording is gone after the analysis"
    assert_clean(server)


def _sessions(server, video: str) -> int:
    return server.parts.store.count_sessions(video)


@pytest.mark.parametrize("case,code", [
    ("truncated", grpc.StatusCode.INVALID_ARGUMENT),
    ("not_a_video", grpc.StatusCode.INVALID_ARGUMENT),
    ("upload_ends_early", grpc.StatusCode.INVALID_ARGUMENT),
    ("no_face", grpc.StatusCode.FAILED_PRECONDITION),
    ("too_large", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("more_than_announced", grpc.StatusCode.INVALID_ARGUMENT),
    ("no_consent", grpc.StatusCode.PERMISSION_DENIED),
])
def test_bad_input_gets_its_status_and_stores_nothing(server, stub, key, recording, tmp_path, case, code):
    video = f"bad-{case.replace('_', '-')}"
    data, total, scopes = recording, len(recording), ("emotion",)
    if case == "truncated":
        data = recording[: len(recording) // 2]
        total = len(data)
    elif case == "not_a_video":
        data = b"this is not a video\n" * 1000
        total = len(data)
    elif case == "upload_ends_early":
        data = recording[:1000]
    elif case == "no_face":
        data = write_mp4(tmp_path / "sofa.mp4", [sofa_frame()] * 20).read_bytes()
        total = len(data)
    elif case == "too_large":
        total = int(MAX_MB * 2**20) + 1
    elif case == "more_than_announced":
        total = 1000
    else:
        scopes = ("demographics",)
    with pytest.raises(grpc.RpcError) as e:
        bidi(stub, key, metadata(total, video=video, scopes=scopes), data)
    assert e.value.code() == code, e.value.details()
    details = e.value.details()
    assert "\n" not in details and str(server.parts.recording_service.upload_dir) not in details, "one line, no path"
    assert _sessions(server, video) == 0
    assert_clean(server)


def test_cancel_and_abandoned_uploads_leave_nothing(server, stub, key, recording):
    auth = (("authorization", f"Bearer {key}"),)
    upload = stub.CreateRecordingUpload(metadata(len(recording), video="cancelled"), metadata=auth)
    service = server.parts.recording_service
    assert len(list(service.upload_dir.iterdir())) == 1
    status = stub.CancelRecording(recording_pb2.RecordingRef(recording_id=upload.recording_id), metadata=auth)
    assert status.state == State.RECORDING_STATE_CANCELLED
    assert_clean(server)
    abandoned = stub.CreateRecordingUpload(metadata(len(recording), video="abandoned"), metadata=auth)
    service._uploads.ttl_s = 0.0  # every upload without a chunk since "now" is abandoned
    try:
        time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetRecordingStatus(recording_pb2.RecordingRef(recording_id=abandoned.recording_id), metadata=auth)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        service._uploads.ttl_s = 3600.0
    assert_clean(server)
