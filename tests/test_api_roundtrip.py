"""Real round trips: handshake, encrypted batches of real faces, timelines, on every transport."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import numpy as np
import pytest
from connectrpc.protocol import ProtocolType
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from affectline.config import Settings
from affectline.partner_client import ClientSession, start_request
from affectline.v1 import analytics_pb2, common_pb2, session_pb2
from affectline.v1.analytics_connect import AnalyticsServiceClient
from affectline.v1.session_connect import SessionServiceClient
from api_client import GrpcPartner, bearer, cycle, frames_of
from server_harness import running_server


@pytest.fixture
def server(db_url, tmp_path):
    with running_server(Settings(data_dir=tmp_path / "data", database_url=db_url)) as s:
        yield s


def test_300_real_faces_over_native_grpc_come_back_as_a_300_frame_timeline(server, fer_faces, crop_size):
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    session = partner.start(video_id="trailer-1", variant_id="a")
    assert session.crop_spec.width == crop_size and session.crop_spec.height == crop_size and session.crop_spec.channels == 1
    happy = cycle(fer_faces["happy"], 300)
    acks = []
    for b in range(30):
        frames = frames_of(happy[b * 10 : (b + 1) * 10], start_ms=b * 333)
        acks.append(partner.sessions.PushCrops(session.push_request(frames)))
    assert [a.seq for a in acks] == list(range(30))
    assert acks[-1].frames_accepted_total == 300
    tops = [r.top_emotion for a in acks for r in a.results]
    assert tops.count(common_pb2.EMOTION_HAPPY) / len(tops) > 0.9

    summary = partner.sessions.EndSession(session.end_request()).summary
    assert summary.frames_total == 300 and summary.frames_with_face == 300
    assert summary.dominant_emotion == common_pb2.EMOTION_HAPPY

    timeline = partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id))
    assert len(timeline.frames) == 300
    times = [f.video_time_ms for f in timeline.frames]
    assert times == sorted(times) and times[0] == 0
    scores = timeline.frames[0].scores
    assert sum(json_format.MessageToDict(scores, always_print_fields_with_no_presence=True).values()) == pytest.approx(1.0, abs=1e-4)

    video = partner.analytics.GetVideoTimeline(analytics_pb2.GetVideoTimelineRequest(video_id="trailer-1"))
    assert video.sessions == 1 and video.bucket_ms == 1000
    assert sum(b.frames for b in video.buckets) == 300
    assert all(b.viewers == 1 for b in video.buckets)
    assert all(b.mean_scores.happy > 0.5 for b in video.buckets)
    partner.close()


def test_frames_without_a_face_are_stored_without_scores(server, fer_faces):
    partner = GrpcPartner(server.grpc_target)
    session = partner.start()
    crops = [fer_faces["sad"][0], None, fer_faces["sad"][1], None]
    ack = partner.sessions.PushCrops(session.push_request(frames_of(crops)))
    assert [r.face_present for r in ack.results] == [True, False, True, False]
    assert not ack.results[1].HasField("scores") and ack.results[1].top_emotion == common_pb2.EMOTION_UNSPECIFIED
    summary = partner.sessions.EndSession(session.end_request()).summary
    assert (summary.frames_total, summary.frames_with_face) == (4, 2)
    partner.close()


def test_bidi_stream_acks_every_batch_in_order(server, fer_faces):
    partner = GrpcPartner(server.grpc_target)
    session = partner.start()
    requests = [session.push_request(frames_of(cycle(fer_faces["happy"], 10), start_ms=i * 333)) for i in range(12)]
    acks = list(partner.sessions.StreamCrops(iter(requests)))
    assert [a.seq for a in acks] == list(range(12))
    assert acks[-1].frames_accepted_total == 120
    partner.close()


def test_health_and_reflection(server):
    channel = grpc.insecure_channel(server.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "affectline.v1.SessionService", "affectline.v1.AnalyticsService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"affectline.v1.SessionService", "affectline.v1.AnalyticsService", "grpc.health.v1.Health"} <= names
    channel.close()
    r = httpx.get(server.http_base + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["database"] == "ok"


@pytest.mark.parametrize("protocol", [ProtocolType.GRPC_WEB, ProtocolType.CONNECT], ids=["grpc-web", "connect"])
def test_http_transports_round_trip(server, fer_faces, protocol):
    async def scenario() -> None:
        sessions = SessionServiceClient(server.http_base, protocol=protocol)
        analytics = AnalyticsServiceClient(server.http_base, protocol=protocol)
        key = ec.generate_private_key(ec.SECP256R1())
        started = await sessions.start_session(start_request(key, video_id="ad-7", viewer_id="v-web"))
        session = ClientSession.open(key, started)
        for b in range(3):
            ack = await sessions.push_crops(session.push_request(frames_of(cycle(fer_faces["happy"], 10), b * 333)))
            assert ack.seq == b and len(ack.results) == 10
        await sessions.end_session(session.end_request())
        timeline = await analytics.get_session_timeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id),
                                                        headers=bearer(server.analyst_key))
        assert len(timeline.frames) == 30
        assert sum(f.top_emotion == common_pb2.EMOTION_HAPPY for f in timeline.frames) >= 27

    asyncio.run(scenario())


def test_json_rpc_round_trip_with_batch_calls(server, fer_faces):
    key = ec.generate_private_key(ec.SECP256R1())
    start = json_format.MessageToDict(start_request(key, video_id="promo", viewer_id="v-json"))
    r = httpx.post(server.http_base + "/jsonrpc", json={
        "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.SessionService/StartSession", "params": start,
    })
    body = r.json()
    assert "result" in body, body
    session = ClientSession.open(key, json_format.ParseDict(body["result"], session_pb2.StartSessionResponse()))
    pushes = [
        {"jsonrpc": "2.0", "id": 10 + i, "method": "affectline.v1.SessionService/PushCrops",
         "params": json_format.MessageToDict(session.encrypt(i, _batch(fer_faces["happy"], i)))}
        for i in range(2)
    ]
    replies = httpx.post(server.http_base + "/jsonrpc", json=pushes).json()
    assert sorted(x["id"] for x in replies) == [10, 11]
    assert all(len(x["result"]["results"]) == 5 for x in replies)

    r = httpx.post(server.http_base + "/jsonrpc", json={
        "jsonrpc": "2.0", "id": 2, "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
        "params": {"sessionId": session.session_id},
    }, headers=bearer(server.analyst_key))
    assert len(r.json()["result"]["frames"]) == 10


def _batch(faces: np.ndarray, seq: int) -> session_pb2.CropBatch:
    from affectline.partner_client import crop_batch

    return crop_batch(frames_of(cycle(faces, 5), start_ms=seq * 200))


def test_json_rpc_errors_carry_the_grpc_status(server):
    url = server.http_base + "/jsonrpc"
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
                              "params": {"sessionId": "nope"}}, headers=bearer(server.analyst_key)).json()
    assert r["error"]["code"] == -32005 and r["error"]["data"]["grpc_status"] == "NOT_FOUND"
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "affectline.v1.Nope/Nope", "params": {}}).json()
    assert r["error"]["code"] == -32601
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "affectline.v1.SessionService/StartSession",
                              "params": {"videoId": 12, "bogus": True}}).json()
    assert r["error"]["code"] == -32602 and r["error"]["data"]["grpc_status"] == "INVALID_ARGUMENT"
    r = httpx.post(url, content=b"{not json").json()
    assert r["error"]["code"] == -32700
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "affectline.v1.SessionService/StreamCrops", "params": {}}).json()
    assert r["error"]["code"] == -32601 and "streaming" in r["error"]["message"]


def test_metrics_are_exposed_after_traffic(server, fer_faces):
    partner = GrpcPartner(server.grpc_target)
    session = partner.start()
    partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 10))))
    with pytest.raises(grpc.RpcError):
        partner.sessions.PushCrops(session_pb2.PushCropsRequest(session_id=session.session_id, session_token="wrong"))
    text = httpx.get(server.http_base + "/metrics").text
    for name in (
        'affectline_rpc_duration_seconds_count{code="OK",method="PushCrops",service="affectline.v1.SessionService",transport="grpc"} 1.0',
        'affectline_frames_total{face_present="true"} 10.0',
        "affectline_inference_batch_size_bucket",
        "affectline_inference_queue_delay_seconds_bucket",
        "affectline_active_sessions 1.0",
        'affectline_decrypt_failures_total{reason="bad_token"} 1.0',
        "affectline_db_write_duration_seconds_bucket",
        'affectline_rpc_errors_total{code="UNAUTHENTICATED",method="PushCrops",service="affectline.v1.SessionService",transport="grpc"} 1.0',
    ):
        assert name in text, name
    partner.close()


def test_a_session_survives_a_server_restart(db_url, tmp_path, fer_faces):
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    with running_server(settings) as first:
        partner = GrpcPartner(first.grpc_target)
        session = partner.start()
        partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 10))))
        pending = session.push_request(frames_of(cycle(fer_faces["happy"], 10), start_ms=333))
        partner.close()
    with running_server(settings) as second:  # same data dir: same key-encryption key
        partner = GrpcPartner(second.grpc_target)
        ack = partner.sessions.PushCrops(pending)
        assert ack.seq == 1 and not ack.duplicate and ack.frames_accepted_total == 20
        assert partner.sessions.EndSession(session.end_request()).summary.frames_total == 20
        partner.close()


def test_smoothed_scores_are_acked_live_and_read_back_from_the_timeline(server, fer_faces):
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    session = partner.start()
    faces = [fer_faces["happy"][0], fer_faces["sad"][0]] * 5
    ack = partner.sessions.PushCrops(session.push_request(frames_of(faces, step_ms=33)))
    ack2 = partner.sessions.PushCrops(session.push_request(frames_of(faces, start_ms=330, step_ms=33)))
    raw_happy = [r.scores.happy for r in [*ack.results, *ack2.results]]
    smooth_happy = [r.smoothed_scores.happy for r in [*ack.results, *ack2.results]]
    assert smooth_happy[0] == pytest.approx(raw_happy[0])  # first frame passes through
    # Alternating happy/sad faces: the smoothed curve swings less than the raw one.
    swing = lambda xs: max(abs(a - b) for a, b in zip(xs, xs[1:]))
    assert swing(smooth_happy[2:]) < 0.5 * swing(raw_happy[2:])
    timeline = partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id))
    assert [f.smoothed_scores.happy for f in timeline.frames] == pytest.approx(smooth_happy, abs=1e-6)
    partner.close()
