"""Every way a request can be wrong gets a precise gRPC status, and nothing half-written."""

from __future__ import annotations

import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from affectline import crypto
from affectline.config import Settings
from affectline.partner_client import crop_batch, start_request
from affectline.v1 import analytics_pb2, session_pb2
from api_client import GrpcPartner, cycle, frames_of
from server_harness import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Most tests here start sessions of one viewer id: no cap on open sessions per viewer.
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), max_frames_per_batch=32, max_sessions_per_viewer=10_000)
    with running_server(settings) as s:
        yield s


@pytest.fixture
def partner(server):
    p = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    yield p
    p.close()


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def frames_stored(partner: GrpcPartner, session_id: str) -> int:
    return len(partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session_id)).frames)


# --- StartSession ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\x04" + b"\x01" * 64, b"junk"], ids=["empty", "off-curve", "short"])
def test_bad_client_key_is_invalid_argument(partner, raw):
    request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="v", viewer_id="x")
    request.client_public_key = raw
    code, details = status_of(lambda: partner.sessions.StartSession(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "client_public_key" in details


def test_no_session_without_consent_to_emotion(partner):
    request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="v", viewer_id="x", scopes=["attention"])
    code, details = status_of(lambda: partner.sessions.StartSession(request))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "emotion" in details


def test_demographics_need_their_own_consent_scope(partner):
    request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="v", viewer_id="x", age_band="25-34")
    code, details = status_of(lambda: partner.sessions.StartSession(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "demographics" in details


@pytest.mark.parametrize("field,value", [("video_id", ""), ("video_id", "a b"), ("capture_fps", 500.0)])
def test_invalid_start_fields(partner, field, value):
    request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="v", viewer_id="x")
    setattr(request, field, value)
    code, details = status_of(lambda: partner.sessions.StartSession(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details


# --- PushCrops: crypto ----------------------------------------------------------------------


def test_tampered_ciphertext_is_rejected_and_nothing_is_stored(partner, fer_faces):
    session = partner.start()
    request = session.push_request(frames_of(cycle(fer_faces["happy"], 5)))
    bad = bytearray(request.ciphertext)
    bad[-1] ^= 0x80
    request.ciphertext = bytes(bad)
    code, details = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "failed authentication" in details
    assert frames_stored(partner, session.session_id) == 0


def test_tampered_aad_moving_a_batch_to_another_seq_is_rejected(partner, fer_faces):
    session = partner.start()
    request = session.push_request(frames_of(cycle(fer_faces["happy"], 5)))
    request.seq = 5  # the ciphertext was sealed for seq 0
    code, details = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "failed authentication" in details


def test_a_batch_from_another_session_does_not_decrypt(partner, fer_faces):
    a, b = partner.start(), partner.start()
    request = a.push_request(frames_of(cycle(fer_faces["happy"], 5)))
    request.session_id, request.session_token = b.session_id, b.token
    code, _ = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_retry_of_an_accepted_batch_is_acked_again_without_duplicating_frames(partner, fer_faces):
    session = partner.start()
    request = session.push_request(frames_of(cycle(fer_faces["happy"], 8)))
    first = partner.sessions.PushCrops(request)
    again = partner.sessions.PushCrops(request)  # the client lost the first ack
    assert not first.duplicate and again.duplicate
    assert [r.top_emotion for r in again.results] == [r.top_emotion for r in first.results]
    assert frames_stored(partner, session.session_id) == 8


def test_replayed_seq_with_different_content_is_already_exists(partner, fer_faces):
    session = partner.start()
    partner.sessions.PushCrops(session.encrypt(0, crop_batch(frames_of(cycle(fer_faces["happy"], 4)))))
    other = session.encrypt(0, crop_batch(frames_of(cycle(fer_faces["sad"], 4))))
    code, details = status_of(lambda: partner.sessions.PushCrops(other))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "replayed seq" in details
    assert frames_stored(partner, session.session_id) == 4


def test_reused_nonce_is_rejected(partner, fer_faces):
    session = partner.start()
    first = session.encrypt(0, crop_batch(frames_of(cycle(fer_faces["happy"], 4))))
    partner.sessions.PushCrops(first)
    nonce, ct = crypto.encrypt_batch(session.key, session.session_id, 1,
                                     crop_batch(frames_of(cycle(fer_faces["sad"], 4))).SerializeToString(), first.nonce)
    reused = session_pb2.PushCropsRequest(session_id=session.session_id, session_token=session.token, seq=1,
                                          nonce=nonce, ciphertext=ct)
    code, details = status_of(lambda: partner.sessions.PushCrops(reused))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nonce reused" in details
    assert frames_stored(partner, session.session_id) == 4


def test_wrong_session_token_is_unauthenticated(partner, fer_faces):
    session = partner.start()
    request = session.push_request(frames_of(cycle(fer_faces["happy"], 2)))
    request.session_token = "not-the-token"
    code, _ = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    end = session.end_request()
    end.session_token = "nope"
    assert status_of(lambda: partner.sessions.EndSession(end))[0] == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_session_is_not_found(partner):
    request = session_pb2.PushCropsRequest(session_id="deadbeef", session_token="t", seq=0, nonce=b"n" * 12, ciphertext=b"c")
    assert status_of(lambda: partner.sessions.PushCrops(request))[0] == grpc.StatusCode.NOT_FOUND
    timeline = analytics_pb2.GetSessionTimelineRequest(session_id="deadbeef")
    assert status_of(lambda: partner.analytics.GetSessionTimeline(timeline))[0] == grpc.StatusCode.NOT_FOUND


def test_ended_session_takes_no_more_batches(partner, fer_faces):
    session = partner.start()
    partner.sessions.EndSession(session.end_request(reason="withdrawn"))
    code, details = status_of(lambda: partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 2)))))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "withdrawn" in details


def test_expired_session_is_failed_precondition(tmp_path, fer_faces):
    with running_server(Settings(data_dir=tmp_path, session_ttl_s=1)) as server:
        partner = GrpcPartner(server.grpc_target)
        session = partner.start()
        time.sleep(1.2)
        code, details = status_of(lambda: partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 2)))))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in details
        partner.close()


# --- PushCrops: content -----------------------------------------------------------------------


def test_malformed_protobuf_on_the_wire_is_invalid_argument(server):
    channel = grpc.insecure_channel(server.grpc_target)
    raw_call = channel.unary_unary("/affectline.v1.SessionService/PushCrops")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as info:
        raw_call(b"\xff\xff\xff\xff\x0f")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in info.value.details()
    channel.close()


def test_ciphertext_that_is_not_a_crop_batch_is_invalid_argument(partner):
    session = partner.start()
    nonce, ct = crypto.encrypt_batch(session.key, session.session_id, 0, b"\xff\xff\xff\xff\x0f")
    request = session_pb2.PushCropsRequest(session_id=session.session_id, session_token=session.token, seq=0,
                                           nonce=nonce, ciphertext=ct)
    code, details = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a CropBatch" in details


@pytest.mark.parametrize("delta", [(16, 16), (0, -1), None], ids=["larger", "one-row-short", "1x1"])
def test_wrong_crop_size_is_invalid_argument(partner, fer_faces, crop_size, delta):
    import numpy as np

    session = partner.start()
    good = fer_faces["happy"][0]
    size = (1, 1) if delta is None else (crop_size + delta[0], crop_size + delta[1])
    wrong = np.zeros(size, dtype=np.uint8)
    code, details = status_of(lambda: partner.sessions.PushCrops(session.push_request(frames_of([good, wrong]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "frame 1" in details
    assert f"expected {crop_size * crop_size}" in details
    assert frames_stored(partner, session.session_id) == 0  # the good frame of the bad batch is not kept


def test_oversized_batch_is_invalid_argument(partner, fer_faces):
    session = partner.start()
    code, details = status_of(lambda: partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 33)))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 32" in details


def test_empty_batch_and_bad_nonce_are_invalid_argument(partner):
    session = partner.start()
    code, details = status_of(lambda: partner.sessions.PushCrops(session.push_request([])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no frames" in details
    request = session.push_request(frames_of([None]))
    request.nonce = b"short"
    code, details = status_of(lambda: partner.sessions.PushCrops(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nonce must be 12 bytes" in details


def test_a_rejected_batch_can_be_followed_by_a_good_one(partner, fer_faces):
    session = partner.start()
    bad = session.push_request(frames_of(cycle(fer_faces["happy"], 33)))  # seq 0, too big
    with pytest.raises(grpc.RpcError):
        partner.sessions.PushCrops(bad)
    ack = partner.sessions.PushCrops(session.encrypt(0, crop_batch(frames_of(cycle(fer_faces["happy"], 3)))))
    assert ack.seq == 0 and ack.frames_accepted_total == 3


def test_stream_ends_with_the_status_of_a_bad_batch(partner, fer_faces):
    session = partner.start()
    good = session.push_request(frames_of(cycle(fer_faces["happy"], 3)))
    bad = session.push_request(frames_of(cycle(fer_faces["happy"], 3)))
    bad.session_token = "wrong"
    responses = partner.sessions.StreamCrops(iter([good, bad]))
    assert next(responses).seq == 0
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_video_timeline_validation(partner):
    code, _ = status_of(lambda: partner.analytics.GetVideoTimeline(analytics_pb2.GetVideoTimelineRequest(video_id="none-such")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = status_of(lambda: partner.analytics.GetVideoTimeline(
        analytics_pb2.GetVideoTimelineRequest(video_id="v", bucket_ms=1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bucket_ms" in details


def test_backpressure_is_resource_exhausted_with_a_retry_hint_and_the_retry_succeeds(tmp_path, fer_faces):
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(data_dir=tmp_path, max_batch_size=64, max_queued_crops=64, max_frames_per_batch=64)
    with running_server(settings) as server:
        partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
        sessions = [partner.start(viewer_id=f"v{i}") for i in range(24)]
        requests = [s.push_request(frames_of(cycle(fer_faces["happy"], 64))) for s in sessions]

        def push(request):
            try:
                return partner.sessions.PushCrops(request)
            except grpc.RpcError as exc:
                return exc

        with ThreadPoolExecutor(len(requests)) as pool:
            outcomes = list(pool.map(push, requests))
        refused = [(r, o) for r, o in zip(requests, outcomes) if isinstance(o, grpc.RpcError)]
        assert refused, "24 simultaneous 64-crop batches should overflow a 64-crop queue"
        for _, exc in refused:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry_after_ms=" in exc.details()
        for request, _ in refused:  # re-sending the same batch later succeeds: nothing is lost
            assert not partner.sessions.PushCrops(request).duplicate
        for s in sessions:
            assert frames_stored(partner, s.session_id) == 64
        partner.close()
