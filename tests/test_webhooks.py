"""Webhooks: signatures, the retry schedule, the URL policy and the delivery queue on exact
examples; then a real server delivering to a real local HTTPS receiver (its certificate made
with `cryptography` by dev_certs): signed session summaries, retries on 500 and on a hanging
endpoint, key-moment deliveries, and PushCrops latency unaffected by failing endpoints."""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
from affectline.auth.scopes import ADMIN
from affectline.config import Settings
from affectline.demo_data import DemoSpec, write_demo
from affectline.dev_certs import make_dev_certs
from affectline.v1 import session_pb2, webhooks_pb2, webhooks_pb2_grpc
from affectline.webhooks.delivery import Delivery, DeliveryQueue
from affectline.webhooks.key_moments_watch import KeyMomentsWatch
from affectline.webhooks.retry import RetryPolicy
from affectline.webhooks.signing import SIGNATURE_HEADER, signature_header, verify
from affectline.webhooks.urls import BadEndpoint, EndpointPolicy
from api_client import BearerAuth, GrpcPartner, frames_of
from server_harness import running_server

# --- exact examples -------------------------------------------------------------------------------

def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    header = signature_header("whsec_k", 1700000000, b'{"a":1}')
    expected = hmac.new(b"whsec_k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_k", header, b'{"a":1}', now=1700000100)
    assert not verify("whsec_k", header, b'{"a":2}', now=1700000100)  # body changed
    assert not verify("whsec_x", header, b'{"a":1}', now=1700000100)  # another secret
    assert not verify("whsec_k", header, b'{"a":1}', now=1700000000 + 301)  # too old: a replay
    assert verify("whsec_k", f"t=1700000000,v1=00,v1={expected}", b'{"a":1}', now=1700000000)  # rotated secrets
    assert not verify("whsec_k", "v1=" + expected, b'{"a":1}', now=1700000000)


def test_retry_delays_grow_exponentially_with_jitter_up_to_a_bound():
    policy = RetryPolicy(max_attempts=5, base_s=2.0, max_s=10.0)
    assert [policy.delay_s(n, rand=lambda: 1.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, None]
    assert [policy.delay_s(n, rand=lambda: 0.0) for n in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_endpoint_urls_are_https_unless_loopback_http_is_allowed():
    strict, dev = EndpointPolicy(), EndpointPolicy(allow_http_loopback=True)
    assert strict.check("https://partner.example/hooks?x=1") == "https://partner.example/hooks?x=1"
    for url in ("http://127.0.0.1:9000/h", "ftp://x/", "https://user:pw@x/", "https:///nohost", "https://x/#frag"):
        with pytest.raises(BadEndpoint):
            strict.check(url)
    assert dev.check("http://127.0.0.1:9000/h") and dev.check("http://localhost/h") and dev.check("http://[::1]/h")
    with pytest.raises(BadEndpoint):
        dev.check("http://partner.example/h")  # plain HTTP never leaves the machine


def _delivery(n: int = 0) -> Delivery:
    return Delivery("wh", "https://x/", "s", f"evt{n}", "session.ended", b"{}")


async def test_queue_retries_until_delivered_gives_up_at_the_bound_and_drops_when_full():
    attempts: dict[str, int] = {}

    async def send(d: Delivery) -> int:
        attempts[d.event_id] = attempts.get(d.event_id, 0) + 1
        if d.event_id == "evt0":
            return 200 if attempts["evt0"] == 3 else 500
        raise OSError("connection refused")

    queue = DeliveryQueue(send, RetryPolicy(max_attempts=4, base_s=0.01, max_s=0.02), size=2, workers=1)
    await queue.start()
    assert queue.offer(_delivery(0)) and queue.offer(_delivery(1))
    assert not queue.offer(_delivery(2))  # retries count against the bound: still full
    for _ in range(200):
        if queue.pending == 0:
            break
        await asyncio.sleep(0.01)
    await queue.stop()
    assert attempts == {"evt0": 3, "evt1": 4}


async def test_key_moments_watch_reports_only_changes_of_campaigns_with_ended_sessions():
    moments = {"a": {"peaks": [1]}, "b": None}
    changes: list[tuple[str, object]] = []

    async def source(video_id: str):
        return moments[video_id]

    watch = KeyMomentsWatch(source, lambda v, p: changes.append((v, p)), interval_s=60)
    for video in ("a", "b"):
        watch.session_ended(session_pb2.SessionSummary(video_id=video))
    await watch.check()
    watch.session_ended(session_pb2.SessionSummary(video_id="a"))
    await watch.check()  # same moments: no delivery
    moments["a"] = {"peaks": [1, 7]}
    await watch.check()  # not marked since: not checked
    watch.session_ended(session_pb2.SessionSummary(video_id="a"))
    await watch.check()
    assert changes == [("a", {"peaks": [1]}), ("a", {"peaks": [1, 7]})]


# --- a real HTTPS receiver ---------------------------------------------------------------------------

class Receiver:
    """An HTTPS server on 127.0.0.1: /ok answers 200, /flaky 500 twice per event then 200,
    /hang holds each request for `hang_s` before answering 200."""

    def __init__(self, cert: str, key: str, hang_s: float = 3.0) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append((self.path, headers, body))
                    tries = sum(1 for p, h, _ in receiver.requests
                                if p == self.path and h["affectline-delivery"] == headers["affectline-delivery"])
                if self.path == "/hang":
                    time.sleep(hang_s)
                status = 500 if self.path == "/flaky" and tries <= 2 else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("certs"), ["127.0.0.1"])


@pytest.fixture(scope="module")
def receiver(certs):
    r = Receiver(str(certs.path("server.pem")), str(certs.path("server-key.pem")))
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, certs):
    settings = Settings(data_dir=tmp_path_factory.mktemp("webhooks"), webhook_ca_bundle=str(certs.path("ca.pem")),
                        webhook_timeout_s=1.0, webhook_retry_base_s=0.1, webhook_retry_max_s=0.4,
                        webhook_max_attempts=4, webhook_key_moments_check_s=0.2)
    with running_server(settings) as s:
        yield s


@pytest.fixture(scope="module")
def admin(server):
    channel = grpc.intercept_channel(grpc.insecure_channel(server.grpc_target), BearerAuth(server.create_key(ADMIN)))
    yield webhooks_pb2_grpc.WebhookServiceStub(channel)
    channel.close()


def register(admin, video_id: str, url: str, *events: str) -> webhooks_pb2.RegisterWebhookResponse:
    return admin.RegisterWebhook(webhooks_pb2.RegisterWebhookRequest(video_id=video_id, url=url, events=events))


def wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_register_list_delete_and_what_is_refused(server, admin):
    made = register(admin, "wh-crud", "https://partner.example/hook", "session.ended")
    assert made.signing_secret.startswith("whsec_") and made.webhook.events == ["session.ended"]
    everything = register(admin, "wh-crud", "https://partner.example/all")
    assert list(everything.webhook.events) == ["session.ended", "key_moments.changed"]
    listed = admin.ListWebhooks(webhooks_pb2.ListWebhooksRequest(video_id="wh-crud")).webhooks
    assert [w.webhook_id for w in listed] == [made.webhook.webhook_id, everything.webhook.webhook_id]
    assert all(not hasattr(w, "signing_secret") for w in listed)  # the secret is shown once
    admin.DeleteWebhook(webhooks_pb2.DeleteWebhookRequest(webhook_id=made.webhook.webhook_id))
    assert len(admin.ListWebhooks(webhooks_pb2.ListWebhooksRequest(video_id="wh-crud")).webhooks) == 1
    for bad in (("http://partner.example/h",), ("https://partner.example/h", "session.started")):
        with pytest.raises(grpc.RpcError) as info:
            register(admin, "wh-crud", *bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        admin.DeleteWebhook(webhooks_pb2.DeleteWebhookRequest(webhook_id=made.webhook.webhook_id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(server.grpc_target) as plain:
        analyst = webhooks_pb2_grpc.WebhookServiceStub(grpc.intercept_channel(plain, BearerAuth(server.analyst_key)))
        with pytest.raises(grpc.RpcError) as info:
            analyst.ListWebhooks(webhooks_pb2.ListWebhooksRequest())
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_session_summary_is_delivered_signed_and_retried_on_500(server, admin, receiver, crop_size):
    flaky = register(admin, "wh-sum", receiver.url("/flaky"), "session.ended")
    register(admin, "wh-sum", receiver.url("/ok"), "key_moments.changed")  # not subscribed to sessions
    partner = GrpcPartner(server.grpc_target)
    session = partner.start(video_id="wh-sum", viewer_id="wh-viewer")
    crop = np.full((crop_size, crop_size), 128, dtype=np.uint8)
    partner.sessions.PushCrops(session.push_request(frames_of([crop, None, crop])))
    summary = partner.sessions.EndSession(session.end_request()).summary
    partner.close()

    attempts = wait_for(lambda: (r := receiver.received("/flaky")) and len(r) >= 3 and r)
    assert len({h["affectline-delivery"] for h, _ in attempts}) == 1, "three attempts of one event"
    for headers, body in attempts:
        assert headers["content-type"] == "application/json" and headers["affectline-event"] == "session.ended"
        assert verify(flaky.signing_secret, headers[SIGNATURE_HEADER.lower()], body, now=time.time())
    event = json.loads(attempts[-1][1])
    assert event["type"] == "session.ended" and event["video_id"] == "wh-sum"
    assert event["id"] == attempts[0][0]["affectline-delivery"]
    assert event["data"]["sessionId"] == summary.session_id
    assert (int(event["data"]["framesTotal"]), int(event["data"]["framesWithFace"])) == (3, 2)
    assert receiver.received("/ok") == []


def test_key_moments_changed_goes_to_subscribed_endpoints(server, admin, receiver):
    ok = register(admin, "wh-km", receiver.url("/ok"), "key_moments.changed")
    # The analytics call this, from any thread; here the test's.
    server.parts.webhooks.dispatcher.key_moments_changed("wh-km", {"moments": [{"emotion": "happy", "start_s": 3}]})
    (headers, body), = wait_for(lambda: [r for r in receiver.received("/ok") if json.loads(r[1])["video_id"] == "wh-km"])
    assert headers["affectline-event"] == "key_moments.changed"
    assert verify(ok.signing_secret, headers[SIGNATURE_HEADER.lower()], body, now=time.time())
    assert json.loads(body)["data"] == {"moments": [{"emotion": "happy", "start_s": 3}]}


def test_key_moments_changed_is_sent_when_new_sessions_make_a_key_moment(server, admin, receiver):
    video = "wh-km-live"
    hook = register(admin, video, receiver.url("/ok"), "key_moments.changed")
    partner = GrpcPartner(server.grpc_target)

    def end_a_session(viewer: str) -> None:
        session = partner.start(video_id=video, viewer_id=viewer)
        partner.sessions.EndSession(session.end_request())

    def deliveries():
        return [r for r in receiver.received("/ok") if json.loads(r[1])["video_id"] == video]

    end_a_session("wh-km-first")  # a session, no frames: no rollups, so nothing to report yet
    time.sleep(0.6)
    assert deliveries() == []
    # Twelve viewers' frames land (variant b is happier in seconds 20-30), then a session ends:
    # the periodic check computes the campaign's key moments and sends them.
    write_demo(server.parts.store, DemoSpec(sessions=12, seconds=40, fps=4.0, video_id=video, seed=2))
    end_a_session("wh-km-second")
    (headers, body), = wait_for(deliveries)
    assert headers["affectline-event"] == "key_moments.changed"
    assert verify(hook.signing_secret, headers[SIGNATURE_HEADER.lower()], body, now=time.time())
    event = json.loads(body)
    assert event["type"] == "key_moments.changed" and event["data"]["videoId"] == video
    moments = event["data"]["moments"]
    assert moments and {m["kind"] for m in moments} <= {"peak", "drop"}
    assert any(m["metric"] == "happy" and m["kind"] == "peak" for m in moments), moments
    # Another session without frames leaves the moments as they are: nothing more is sent.
    end_a_session("wh-km-third")
    time.sleep(0.8)
    partner.close()
    assert len(deliveries()) == 1


def _push_latencies(server, video_id: str, crop_size: int, ends: int) -> list[float]:
    """Median-friendly sample: one session pushes 40 batches while `ends` short sessions of the
    same video end (each end is a webhook event for that video's endpoints)."""
    partner = GrpcPartner(server.grpc_target)
    crop = np.full((crop_size, crop_size), 100, dtype=np.uint8)
    pusher = partner.start(video_id=video_id, viewer_id=f"{video_id}-pusher")
    enders = [partner.start(video_id=video_id, viewer_id=f"{video_id}-v{i}") for i in range(ends)]
    latencies = []
    for i in range(40):
        if i % 4 == 0 and enders:
            partner.sessions.EndSession(enders.pop().end_request())
        started = time.perf_counter()
        partner.sessions.PushCrops(pusher.push_request(frames_of([crop] * 4, start_ms=i * 200)))
        latencies.append(time.perf_counter() - started)
    partner.sessions.EndSession(pusher.end_request())
    partner.close()
    return latencies


def test_failing_and_hanging_endpoints_do_not_slow_push_crops(server, admin, receiver, crop_size):
    _push_latencies(server, "wh-warm", crop_size, 0)  # warm-up
    baseline = _push_latencies(server, "wh-base", crop_size, 10)  # no endpoints
    register(admin, "wh-slow", receiver.url("/hang"), "session.ended")  # held 3 s > the 1 s timeout
    register(admin, "wh-slow", "https://127.0.0.1:9/refused", "session.ended")  # nothing listens
    register(admin, "wh-slow", receiver.url("/flaky"), "session.ended")
    with_failures = _push_latencies(server, "wh-slow", crop_size, 10)
    b, f = statistics.median(baseline), statistics.median(with_failures)
    print(f"PushCrops median: {b * 1000:.1f} ms without endpoints, {f * 1000:.1f} ms with failing ones; "
          f"max {max(baseline) * 1000:.1f} / {max(with_failures) * 1000:.1f} ms")
    assert f < 1.5 * b + 0.010, (b, f)
    assert max(with_failures) < 0.5  # never anywhere near the endpoint's 1 s timeout
    # ...and the deliveries were attempted and retried meanwhile.
    wait_for(lambda: len(receiver.received("/hang")) >= 2, 15)
    retries = server.parts.metrics.registry.get_sample_value("affectline_webhook_deliveries_total", {"outcome": "retry"})
    assert retries and retries >= 10
