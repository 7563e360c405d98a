"""Hardening: rate limits with retry hints, strict field validation, no internals to clients,
security headers and a strict CSP on the pages, CORS only for configured origins, and logs
without tokens or keys."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format

from affectline.config import Settings
from affectline.partner_client import ClientSession, Frame, start_request
from affectline.rate_limit import RateLimiter, credential_key
from affectline.serving.web_security import CONTENT_SECURITY_POLICY
from affectline.v1 import analytics_pb2, session_pb2
from api_client import GrpcPartner, bearer
from server_harness import running_server

STATIC = Path(__file__).resolve().parents[1] / "server" / "affectline" / "static"


def _crops(n: int, size: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [Frame(video_time_ms=i * 33, crop=rng.integers(0, 256, (size, size), dtype=np.uint8)) for i in range(n)]


def test_token_bucket_refills_at_its_rate_and_bounds_its_memory():
    now = [0.0]
    limiter = RateLimiter(2.0, 3, max_buckets=2, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a") == pytest.approx(0.5)  # the retry hint: one token at 2/s
    now[0] += 0.5
    assert limiter.acquire("a") is None and limiter.acquire("a") is not None
    limiter.acquire("b"), limiter.acquire("c")
    assert len(limiter) == 2  # least recently used bucket dropped
    assert RateLimiter(0, 1).acquire("x") is None  # 0 = off
    assert credential_key([("authorization", "Bearer abc")]) == credential_key([("x-api-key", "abc")])
    assert credential_key([("authorization", "Bearer abc")]) != credential_key([("authorization", "Bearer abd")])
    assert credential_key([("content-type", "x")]) is None


def test_pushes_past_the_session_rate_get_resource_exhausted_with_a_retry_hint(tmp_path, crop_size):
    settings = Settings(data_dir=tmp_path, rate_limit_session_rps=0.5, rate_limit_session_burst=2)
    with running_server(settings) as server:
        partner = GrpcPartner(server.grpc_target)
        session = partner.start()
        for _ in range(2):
            partner.sessions.PushCrops(session.push_request(_crops(2, crop_size)))
        with pytest.raises(grpc.RpcError) as limited:
            partner.sessions.PushCrops(session.push_request(_crops(2, crop_size)))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert re.search(r"retry_after_ms=\d+", limited.value.details())
        assert "AFFECTLINE_RATE_LIMIT_SESSION_RPS" in limited.value.details()
        assert int(dict(limited.value.trailing_metadata())["retry-after-ms"]) > 0
        # Another session has its own bucket; a wrong token does not drain this one's.
        other = partner.start(viewer_id="viewer-2")
        partner.sessions.PushCrops(other.push_request(_crops(2, crop_size)))
        # Connect (HTTP): the same status, and a Retry-After header.
        body = json_format.MessageToDict(session.push_request(_crops(2, crop_size)))
        r = httpx.post(server.http_base + "/affectline.v1.SessionService/PushCrops", json=body)
        assert r.status_code == 429 and r.json()["code"] == "resource_exhausted"
        assert "retry_after_ms=" in r.json()["message"] and int(r.headers["retry-after"]) >= 1
        partner.close()


def test_calls_past_the_api_key_rate_get_resource_exhausted_on_every_transport(tmp_path):
    settings = Settings(data_dir=tmp_path, rate_limit_key_rps=0.2, rate_limit_key_burst=1)
    with running_server(settings) as server:
        analytics = analytics_pb2.GetVideoTimelineRequest(video_id="demo")
        key = server.analyst_key
        partner = GrpcPartner(server.grpc_target, api_key=key)
        with pytest.raises(grpc.RpcError) as first:
            partner.analytics.GetVideoTimeline(analytics)
        assert first.value.code() == grpc.StatusCode.NOT_FOUND  # allowed (no sessions yet)
        with pytest.raises(grpc.RpcError) as limited:
            partner.analytics.GetVideoTimeline(analytics)
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert re.search(r"retry_after_ms=\d+", limited.value.details())
        partner.close()

        # HTTP: the key's bucket is per server and shared by the transports.
        connect = httpx.post(server.http_base + "/affectline.v1.AnalyticsService/GetVideoTimeline",
                             json={"videoId": "demo"}, headers=bearer(key))
        assert connect.status_code == 429 and connect.json()["code"] == "resource_exhausted"
        assert int(connect.headers["retry-after"]) >= 1
        grpc_web = httpx.post(server.http_base + "/affectline.v1.AnalyticsService/GetVideoTimeline",
                              content=b"\x00\x00\x00\x00\x00",
                              headers={**bearer(key), "content-type": "application/grpc-web+proto"})
        assert grpc_web.headers["grpc-status"] == "8" and "retry-after" in grpc_web.headers
        rpc = httpx.post(server.http_base + "/jsonrpc", headers=bearer(key), json={
            "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetVideoTimeline",
            "params": {"videoId": "demo"}})
        assert rpc.status_code == 429 and rpc.json()["error"]["code"] == -32008
        assert "retry-after" in rpc.headers
        # Another key is not limited by this one.
        other = httpx.post(server.http_base + "/affectline.v1.AnalyticsService/GetVideoTimeline",
                           json={"videoId": "demo"}, headers=bearer(server.create_key("analytics:read")))
        assert other.status_code == 404


BAD_STARTS = [
    ("viewer.consent.notice_version", lambda r: setattr(r.viewer.consent, "notice_version", "v" * 65)),
    ("viewer.consent.notice_version", lambda r: setattr(r.viewer.consent, "notice_version", "v1\n")),
    ("viewer.consent.consented_at", lambda r: r.viewer.consent.consented_at.FromSeconds(10**10)),
    ("viewer.consent.consented_at", lambda r: r.viewer.consent.consented_at.FromSeconds(0)),
    ("viewer.consent.scopes", lambda r: r.viewer.consent.scopes.append("Bad Scope")),
    ("viewer.consent.scopes", lambda r: r.viewer.consent.scopes.extend(f"s{i}" for i in range(20))),
    ("viewer.demographics.gender", lambda r: setattr(r.viewer.demographics, "gender", "x" * 65)),
    ("viewer.demographics.region", lambda r: setattr(r.viewer.demographics, "region", "D\x00E")),
    ("frames_per_batch", lambda r: setattr(r, "frames_per_batch", 10_000)),
    ("video_id", lambda r: setattr(r, "video_id", "../etc/passwd")),
    ("viewer.viewer_id", lambda r: setattr(r.viewer, "viewer_id", "x" * 129)),
]


def _frame(size: int, **kw) -> session_pb2.CropFrame:
    f = session_pb2.CropFrame(video_time_ms=kw.pop("video_time_ms", 0), face_present=kw.pop("face", True), **kw)
    if f.face_present and "crop" not in kw:
        f.crop = bytes(size * size)
    return f


def test_every_field_is_validated_with_a_precise_invalid_argument(tmp_path, crop_size):
    with running_server(Settings(data_dir=tmp_path)) as server:
        partner = GrpcPartner(server.grpc_target)
        for field, spoil in BAD_STARTS:
            request = start_request(ec.generate_private_key(ec.SECP256R1()), video_id="v", viewer_id="x",
                                    scopes=("emotion", "demographics"))
            spoil(request)
            with pytest.raises(grpc.RpcError) as bad:
                partner.sessions.StartSession(request)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in bad.value.details(), (field, bad.value.details())

        session = partner.start()
        bad_frames = [
            ("video_time_ms", _frame(crop_size, video_time_ms=40 * 24 * 3600 * 1000)),
            ("without a face carries no crop", _frame(crop_size, face=False, crop=b"\x01" * 16)),
            ("head_yaw_deg", _frame(crop_size, head_yaw_deg=float("nan"))),
            ("head_pitch_deg", _frame(crop_size, head_pitch_deg=91.0)),
            ("face_box_size", _frame(crop_size, face_box_size=-0.5)),
        ]
        for what, frame in bad_frames:
            with pytest.raises(grpc.RpcError) as bad:
                partner.sessions.PushCrops(session.encrypt(session.next_seq(), session_pb2.CropBatch(frames=[frame])))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and what in bad.value.details(), bad.value.details()
        batch = session_pb2.CropBatch(frames=[_frame(crop_size)], achieved_fps=float("inf"))
        with pytest.raises(grpc.RpcError) as bad:
            partner.sessions.PushCrops(session.encrypt(session.next_seq(), batch))
        assert "achieved_fps" in bad.value.details()

        for request, field in (
            (session_pb2.EndSessionRequest(session_id=session.session_id, session_token=session.token, reason="r" * 65), "reason"),
            (session_pb2.EndSessionRequest(session_id="bad id!", session_token="t"), "session_id"),
            (session_pb2.EndSessionRequest(session_id=session.session_id, session_token="t" * 300), "session_token"),
        ):
            with pytest.raises(grpc.RpcError) as bad:
                partner.sessions.EndSession(request)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in bad.value.details()
        analyst = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
        for request, field in (
            (analytics_pb2.GetSessionTimelineRequest(session_id="x" * 200), "session_id"),
            (analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id, page_token="p" * 600), "page_token"),
            (analytics_pb2.GetVideoTimelineRequest(video_id="demo", variant_id="a b"), "variant_id"),
        ):
            method = analyst.analytics.GetSessionTimeline if isinstance(request, analytics_pb2.GetSessionTimelineRequest) \
                else analyst.analytics.GetVideoTimeline
            with pytest.raises(grpc.RpcError) as bad:
                method(request)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in bad.value.details()
        analyst.close()
        partner.close()


def _leaks(text: str) -> list[str]:
    return [s for s in ("Traceback", "/work", ".py", "File \"", "boom-secret") if s in text]


def test_an_internal_error_reaches_no_client_as_a_trace_or_a_path(tmp_path, monkeypatch):
    with running_server(Settings(data_dir=tmp_path)) as server:
        def boom(*_a, **_k):
            raise RuntimeError(f"boom-secret at {__file__}, line 1\nTraceback (most recent call last):")

        monkeypatch.setattr(server.parts.store, "get_session", boom)
        request = analytics_pb2.GetSessionTimelineRequest(session_id="s1")
        key = server.analyst_key
        analyst = GrpcPartner(server.grpc_target, api_key=key)
        with pytest.raises(grpc.RpcError) as failed:
            analyst.analytics.GetSessionTimeline(request)
        analyst.close()
        assert failed.value.code() == grpc.StatusCode.INTERNAL and not _leaks(failed.value.details() or "")
        url = server.http_base + "/affectline.v1.AnalyticsService/GetSessionTimeline"
        bodies = {
            "connect": httpx.post(url, json={"sessionId": "s1"}, headers=bearer(key)),
            "grpc-web": httpx.post(url, content=b"\x00" + len(request.SerializeToString()).to_bytes(4, "big")
                                   + request.SerializeToString(),
                                   headers={**bearer(key), "content-type": "application/grpc-web+proto"}),
            "jsonrpc": httpx.post(server.http_base + "/jsonrpc", headers=bearer(key), json={
                "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
                "params": {"sessionId": "s1"}}),
        }
        for transport, r in bodies.items():
            everything = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
            assert r.status_code in (200, 500), transport
            assert not _leaks(everything), (transport, everything)
        assert bodies["connect"].json()["code"] == "internal"
        grpc_web = bodies["grpc-web"]
        assert grpc_web.headers.get("grpc-status") == "13" or "grpc-status: 13" in grpc_web.text
        assert bodies["jsonrpc"].json()["error"]["code"] == -32603
        monkeypatch.setattr(server.parts.store, "get_video", boom)
        page = httpx.get(server.http_base + "/watch/demo")
        assert page.status_code == 500 and not _leaks(page.text)


def test_pages_carry_security_headers_and_a_csp_without_inline_script():
    for html in STATIC.glob("*.html"):
        text = html.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{html.name}: inline <script>"
        assert "<style" not in text and " style=" not in text, f"{html.name}: inline style"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{html.name}: inline event handler"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "'unsafe-eval'" not in CONTENT_SECURITY_POLICY


def test_security_headers_and_cors_only_for_configured_origins(tmp_path):
    with running_server(Settings(data_dir=tmp_path)) as server:
        for path in ("/watch/demo", "/", "/watch.css"):
            r = httpx.get(server.http_base + path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self' 'wasm-unsafe-eval'" in csp and "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "camera=(self)" in r.headers["permissions-policy"]
            assert "strict-transport-security" not in r.headers  # plaintext (loopback): no HSTS
        preflight = {"origin": "https://evil.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "content-type"}
        r = httpx.options(server.http_base + "/jsonrpc", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = httpx.post(server.http_base + "/jsonrpc", headers={"origin": "https://evil.example"}, json={})
        assert "access-control-allow-origin" not in r.headers
    with running_server(Settings(data_dir=tmp_path, cors_origins="https://studio.example")) as server:
        url = server.http_base + "/affectline.v1.AnalyticsService/GetVideoTimeline"
        ok = httpx.options(url, headers={**preflight, "origin": "https://studio.example",
                                         "access-control-request-headers": "content-type,authorization"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://studio.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        refused = httpx.options(url, headers=preflight)
        assert refused.headers.get("access-control-allow-origin") != "https://evil.example"
    with pytest.raises(ValueError, match="wildcards"):
        with running_server(Settings(data_dir=tmp_path, cors_origins="*")):
            pass


def test_logs_hold_no_token_key_or_crop_bytes(tmp_path, crop_size, caplog):
    kek = "ab" * 32
    with caplog.at_level(logging.DEBUG):
        with running_server(Settings(data_dir=tmp_path, kek_hex=kek)) as server:
            key = server.analyst_key
            partner = GrpcPartner(server.grpc_target)
            session = partner.start()
            frames = _crops(4, crop_size, seed=7)
            partner.sessions.PushCrops(session.push_request(frames))
            bad = session_pb2.PushCropsRequest(session_id=session.session_id, session_token=session.token + "x",
                                               seq=5, nonce=b"n" * 12, ciphertext=b"c" * 40)
            with pytest.raises(grpc.RpcError):
                partner.sessions.PushCrops(bad)
            tampered = session.push_request(frames)
            tampered.ciphertext = bytes([tampered.ciphertext[0] ^ 1]) + tampered.ciphertext[1:]
            with pytest.raises(grpc.RpcError):
                partner.sessions.PushCrops(tampered)
            httpx.post(server.http_base + "/jsonrpc", headers=bearer(key), json={
                "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetVideoTimeline",
                "params": {"videoId": "nope"}})
            httpx.post(server.http_base + "/jsonrpc", headers=bearer(key + "x"), json={
                "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetVideoTimeline",
                "params": {"videoId": "nope"}})
            partner.sessions.EndSession(session.end_request())
            partner.close()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 5
    secrets = {"session token": session.token, "API key": key, "API key secret": key.rsplit("_", 1)[-1],
               "session key (hex)": session.key.hex(), "session key (base64)": base64.b64encode(session.key).decode(),
               "KEK": kek, "KEK (bytes)": repr(bytes.fromhex(kek))[2:-1]}
    for what, value in secrets.items():
        assert value not in text, f"the log holds the {what}"
    for f in frames:
        row = f.crop[10].tobytes()
        assert row.hex() not in text and repr(row)[2:-1] not in text and base64.b64encode(row).decode() not in text
