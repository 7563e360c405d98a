"""The analytics RPCs through a real server, on SQLite and PostgreSQL, over native gRPC and
JSON-RPC: curves, key moments, A/B, segments, suppression, norms, campaigns, filters, opt-outs.

The data is `affectline demo-data`'s generator at a small size: variant b is happier in
seconds 20-30, everyone smiles around 42 s and is surprised around 10.5 s.
"""

from __future__ import annotations

import math

import grpc
import httpx
import numpy as np
import pytest
from api_client import GrpcPartner, bearer, cycle, frames_of
from db_backends import db_engine, db_url, pg_admin_url, pg_migrated_url  # noqa: F401
from google.protobuf import json_format
from server_harness import running_server

from affectline.analytics import frame_arrays, rollup_session, video_curves
from affectline.config import Settings
from affectline.demo_data import DemoSpec, write_demo
from affectline.storage.records import EMOTIONS
from affectline.v1 import analytics_pb2 as pb

VIDEO = "synthetic-demo"


@pytest.fixture
def server(db_url, tmp_path):
    with running_server(Settings(data_dir=tmp_path / "data", database_url=db_url)) as s:
        write_demo(s.parts.store, DemoSpec(sessions=40, seconds=50, fps=4.0, video_id=VIDEO, seed=3))
        yield s


def jsonrpc(server, method: str, params: dict) -> dict:
    r = httpx.post(server.http_base + "/jsonrpc", headers=bearer(server.analyst_key), timeout=60, json={
        "jsonrpc": "2.0", "id": 1, "method": f"affectline.v1.AnalyticsService/{method}", "params": params})
    return r.json()


def curve(curves: pb.Curves, metric: str) -> np.ndarray:
    return np.array(next(m for m in curves.metrics if m.metric == metric).mean)


def test_curves_moments_suppression_and_filters(server) -> None:
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    store = server.parts.store
    curves = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id=VIDEO)).curves
    assert curves.sessions == 40 and list(curves.seconds) == list(range(50)) and curves.min_viewers == 5
    # equal to curves recomputed from the frames of every session
    rows = [r for sid in store.session_ids(VIDEO)
            for r in rollup_session(sid, frame_arrays(store.session_frames(sid)))[0]]
    expected = video_curves(rows)
    for metric in ("happy", "engagement", "attention"):
        np.testing.assert_allclose(curve(curves, metric), expected.curves[metric].mean, atol=1e-6)
    np.testing.assert_allclose(curves.attention_share, expected.attention_share, atol=1e-6)

    # filters: variant, demographics, emotion subset, time range, attention share, passes
    meta = server.parts.analytics_service._rollups.sessions(VIDEO, __import__(
        "affectline.storage.rollup_store", fromlist=["Selection"]).Selection())
    women_b = sum(1 for m in meta.values() if m.variant_id == "b" and m.gender == "f")
    f = pb.AnalyticsFilter(variant_ids=["b"], genders=["f"], emotions=["happy"], start_s=20, end_s=30,
                           min_attention_share=0.0, passes=pb.PASS_SELECTION_ALL)
    got = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id=VIDEO, filter=f)).curves
    assert got.sessions == women_b and list(got.seconds) == list(range(20, 30))
    assert {m.metric for m in got.metrics} == {"happy", "confidence", "valence", "expressiveness", "engagement",
                                               "sentiment", "attention"}
    strict = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(
        video_id=VIDEO, filter=pb.AnalyticsFilter(min_attention_share=0.99))).curves
    assert strict.sessions < 40

    # a segment below the floor is suppressed with the reason, never shown
    region = min({m.region for m in meta.values()}, key=lambda r: sum(m.region == r for m in meta.values()))
    few = sum(m.region == region for m in meta.values())
    assert few < 5
    small = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(
        video_id=VIDEO, filter=pb.AnalyticsFilter(regions=[region]))).curves
    assert all(math.isnan(x) for x in curve(small, "happy"))
    assert [(s.start_s, s.end_s, s.reason) for s in small.suppressed] == [(0, 50, "fewer than 5 viewers")]

    # key moments: the shared laugh and scare
    moments = partner.analytics.GetKeyMoments(pb.GetKeyMomentsRequest(video_id=VIDEO)).moments
    assert any(m.metric == "happy" and m.kind == "peak" and 40 <= m.peak_s <= 44 and m.viewers >= 30 for m in moments)
    assert any(m.metric == "surprise" and m.kind == "peak" and 9 <= m.peak_s <= 12 for m in moments)

    # JSON-RPC serves the same
    body = jsonrpc(server, "GetVideoCurves", {"videoId": VIDEO, "filter": {"variantIds": ["b"], "genders": ["f"],
                   "emotions": ["happy"], "startS": 20, "endS": 30, "passes": "PASS_SELECTION_ALL",
                   "minAttentionShare": 0.0}})
    assert "result" in body, body
    via_json = json_format.ParseDict(body["result"], pb.GetVideoCurvesResponse()).curves
    np.testing.assert_allclose(curve(via_json, "happy"), curve(got, "happy"))
    body = jsonrpc(server, "GetKeyMoments", {"videoId": VIDEO, "minProminence": 0.05})
    assert len(body["result"]["moments"]) == len(moments)

    # bad filters: INVALID_ARGUMENT with a precise message, on both transports
    bad = {
        "filter.start_s (30) must be below filter.end_s (20)": pb.AnalyticsFilter(start_s=30, end_s=20),
        "filter.emotions: unknown emotion 'joy'": pb.AnalyticsFilter(emotions=["joy"]),
        "filter.min_attention_share must lie in [0, 1]": pb.AnalyticsFilter(min_attention_share=1.5),
    }
    for message, flt in bad.items():
        with pytest.raises(grpc.RpcError) as err:
            partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id=VIDEO, filter=flt))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
    body = jsonrpc(server, "GetVideoCurves", {"videoId": VIDEO, "filter": {"startS": 30, "endS": 20}})
    assert body["error"]["data"]["grpc_status"] == "INVALID_ARGUMENT"
    with pytest.raises(grpc.RpcError) as err:
        partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id="no-such-video"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    partner.close()


def test_ab_segments_norms_and_campaigns(server) -> None:
    write_demo(server.parts.store, DemoSpec(sessions=10, seconds=20, fps=2.0, video_id="other", seed=4))
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    # over the whole video the planted effect is 0.02 of mean happiness (too small for 20 a side);
    # within seconds 20-30 it is the full 0.1
    ab = partner.analytics.CompareVariants(pb.CompareVariantsRequest(
        video_id=VIDEO, variant_a="a", variant_b="b", metrics=["happy", "surprise"], curve_metric="happy",
        filter=pb.AnalyticsFilter(start_s=15, end_s=35)))
    happy, surprise = ab.metrics
    assert happy.reliable and happy.difference > 0 and happy.ci_low > 0 and happy.hedges_g > 0.5
    assert 0 <= happy.holm_p <= 1 and happy.holm_p >= happy.welch_p
    assert not surprise.reliable
    assert "b scores higher than a on happy" in ab.verdict and "No reliable difference" in ab.verdict
    d = ab.curve_difference
    inside = [x for s, x in zip(d.seconds, d.difference) if 20 <= s < 30]
    outside = [x for s, x in zip(d.seconds, d.difference) if s < 18 or s >= 32]
    assert list(d.seconds) == list(range(15, 35))
    assert min(inside) > 0.07 and max(abs(x) for x in outside) < 0.05
    assert all(lo > 0 for s, lo in zip(d.seconds, d.ci_low) if 20 <= s < 30)

    # A/B refusals
    with pytest.raises(grpc.RpcError) as err:
        partner.analytics.CompareVariants(pb.CompareVariantsRequest(video_id=VIDEO, variant_a="a", variant_b="a"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        partner.analytics.CompareVariants(pb.CompareVariantsRequest(
            video_id=VIDEO, variant_a="a", variant_b="b", filter=pb.AnalyticsFilter(variant_ids=["a"])))
    assert "variant_ids must be empty" in err.value.details()
    # a variant below the floor: no statistics, the reason instead
    few = partner.analytics.CompareVariants(pb.CompareVariantsRequest(
        video_id=VIDEO, variant_a="a", variant_b="b", filter=pb.AnalyticsFilter(regions=["JP"])))
    assert not few.metrics and few.suppressed_reason.startswith("fewer than 5 viewers")

    segments = partner.analytics.GetSegments(pb.GetSegmentsRequest(video_id=VIDEO, field=pb.SEGMENT_FIELD_AGE_BAND))
    assert sum(s.viewers for s in segments.segments) == 40
    for s in segments.segments:
        assert s.suppressed == (s.viewers < 5)
        assert (s.reason == "fewer than 5 viewers") == s.suppressed and s.HasField("curves") != s.suppressed
    assert any(s.suppressed for s in segments.segments) and any(not s.suppressed for s in segments.segments)
    by_variant = partner.analytics.GetSegments(pb.GetSegmentsRequest(video_id=VIDEO, field=pb.SEGMENT_FIELD_VARIANT))
    assert [(s.value, s.viewers) for s in by_variant.segments] == [("a", 20), ("b", 20)]
    with pytest.raises(grpc.RpcError) as err:
        partner.analytics.GetSegments(pb.GetSegmentsRequest(video_id=VIDEO))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    norms = partner.analytics.GetNorms(pb.GetNormsRequest(video_id=VIDEO)).norms
    assert [n.metric for n in norms] == ["engagement", "sentiment", "attention_share", "expressiveness"]
    assert all(n.norm_size == 1 and n.HasField("percentile") and n.percentile in (0.0, 100.0) for n in norms)

    campaigns = {c.video_id: c for c in partner.analytics.ListCampaigns(pb.ListCampaignsRequest()).campaigns}
    assert campaigns[VIDEO].viewers == 40 and campaigns["other"].viewers == 10
    assert [(v.variant_id, v.viewers) for v in campaigns[VIDEO].variants] == [("a", 20), ("b", 20)]
    assert campaigns[VIDEO].HasField("last_session_at") and len(campaigns[VIDEO].scores) == 4

    body = jsonrpc(server, "CompareVariants", {"videoId": VIDEO, "variantA": "a", "variantB": "b", "metrics": ["happy"],
                                               "filter": {"startS": 20, "endS": 30}})
    assert body["result"]["metrics"][0]["reliable"] is True
    partner.close()


def test_per_emotion_opt_out_end_to_end(db_url, tmp_path, fer_faces) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, min_segment_viewers=1)
    with running_server(settings) as server:
        from affectline.partner_client import ClientSession, crop_batch, start_request
        from cryptography.hazmat.primitives.asymmetric import ec

        partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
        key = ec.generate_private_key(ec.SECP256R1())
        request = start_request(key, video_id="optout", viewer_id="v-opt", scopes=("emotion", "attention"))
        request.viewer.consent.allowed_emotions.extend(["neutral", "happy"])
        session = ClientSession.open(key, partner.sessions.StartSession(request))
        for seq in range(3):
            partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["happy"], 10),
                                                                      start_ms=seq * 500, step_ms=50)))
        partner.sessions.EndSession(session.end_request())
        # stored: NULL for every withheld emotion, raw and smoothed
        frames = server.parts.store.session_frames(session.session_id)
        face = [f for f in frames if f.face_present]
        assert face and all(math.isnan(f.probs[EMOTIONS.index("sad")]) for f in face)
        assert all(f.smoothed is not None and math.isnan(f.smoothed[EMOTIONS.index("angry")]) for f in face)
        assert all(not math.isnan(f.probs[EMOTIONS.index("happy")]) for f in face)
        # reported: withheld emotions and the metrics reading them have no viewers behind them
        curves = partner.analytics.GetVideoCurves(pb.GetVideoCurvesRequest(video_id="optout")).curves
        behind = {m.metric: set(m.viewers) for m in curves.metrics}
        assert behind["sad"] == {0} and behind["valence"] == {0} and behind["confidence"] == {0}
        assert behind["happy"] == {1} and behind["neutral"] == {1} and behind["expressiveness"] == {1}
        assert all(math.isnan(x) for x in curve(curves, "sad")) and not any(math.isnan(x) for x in curve(curves, "happy"))
        # a name outside the seven is refused
        bad = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="optout", viewer_id="v-bad")
        bad.viewer.consent.allowed_emotions.append("joy")
        with pytest.raises(grpc.RpcError) as err:
            partner.sessions.StartSession(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'joy'" in err.value.details()
        partner.close()
