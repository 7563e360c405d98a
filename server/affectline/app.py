"""The composition root: builds config, store, model, services and servers, and runs them.

Nothing else in the package constructs these parts; everything is passed in from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from sqlalchemy import Engine, text

from affectline.auth.authenticator import Authenticator
from affectline.auth.bootstrap import FirstKey, ensure_admin_key
from affectline.config import Settings
from affectline.crypto import KEY_BYTES, KeyWrapper
from affectline.inference.batcher import BatcherConfig, DynamicBatcher
from affectline.inference.smoothing import SmoothingConfig
from affectline.inference.engine import EmotionModel
from affectline.inference.run_budget import RunLayout, fit_to_run_budget
from affectline.inference.variant_probe import PROBE_BATCH, describe as describe_timings
from affectline.metrics import Metrics
from affectline.models.registry import ModelRegistry
from affectline.rate_limit import KeyLimiter, KeyRateLimitMiddleware, RateLimiter, grpc_key_interceptor
from affectline.redis_rate_limit import SharedRateLimiter
from affectline.redis_shared import RedisShared
from affectline.serving.grpc_server import GrpcServer, build_grpc_server
from affectline.serving.http_app import build_http_app
from affectline.serving.pages import page_routes
from affectline.serving.uploads import upload_routes
from affectline.reports.route import report_routes
from affectline.serving.export_route import export_routes
from affectline.serving.web_security import harden
from affectline.serving.rpc_methods import ServiceBinding
from affectline.analytics.definitions import DEFAULT_CONFIG as ANALYTICS_DEFAULTS
from affectline.services.analytics_service import AnalyticsService
from affectline.services.recording_service import MAX_CHUNK_BYTES, RecordingService
from affectline.services.live_feed import LiveFeed
from affectline.services.live_service import LiveService
from affectline.services.live_stream import LiveStream, pseudonyms
from affectline.services.session_events import SessionEventFanOut, SessionEvents
from affectline.services.webhook_service import WebhookService
from affectline.services.send_pacer import SendPacer
from affectline.services.session_service import CropSpec, SessionService
from affectline.storage.api_key_store import ApiKeyStore
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.database import make_engine, redact_url, upgrade
from affectline.storage.rollup_store import RollupStore
from affectline.storage.privacy_store import PrivacyStore
from affectline.storage.timeline_store import TimelineStore
from affectline.tls import transport_security
from affectline.videos import ensure_demo
from affectline.v1 import analytics_pb2, live_pb2, recording_pb2, session_pb2, webhooks_pb2
from affectline.webhooks.delivery import DeliveryQueue, HttpSender
from affectline.webhooks.dispatcher import WebhookDispatcher
from affectline.webhooks.events import KEY_MOMENTS_CHANGED
from affectline.webhooks.key_moments_watch import KeyMomentsSource, KeyMomentsWatch, analytics_source, moment_identity
from affectline.webhooks.retry import RetryPolicy
from affectline.webhooks.store import WebhookStore
from affectline.webhooks.urls import EndpointPolicy

log = logging.getLogger("affectline")


def load_or_create_kek(settings: Settings) -> bytes:
    """The key-encryption key for stored session keys: from AFFECTLINE_KEK, else a 0600 file."""
    if settings.kek_hex:
        try:
            kek = bytes.fromhex(settings.kek_hex)
        except ValueError as exc:
            raise ValueError("AFFECTLINE_KEK must be 64 hex characters") from exc
        if len(kek) != KEY_BYTES:
            raise ValueError("AFFECTLINE_KEK must be 64 hex characters (32 bytes)")
        return kek
    path = settings.data_dir / "kek.bin"
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(KEY_BYTES))
    return path.read_bytes()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # name the address: "[Errno 98] Address already in use" alone does not
        sock.close()
        raise OSError(exc.errno, f"could not bind the HTTP server to {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


# /healthz reports the database as failing when SELECT 1 takes longer than this.
HEALTH_DB_TIMEOUT_S = 2.0


@dataclass
class Parts:
    """Everything `serve` runs, built once from Settings."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    store: TimelineStore
    writer: GroupCommitWriter
    model: EmotionModel
    batcher: DynamicBatcher
    session_service: SessionService
    analytics_service: AnalyticsService
    bindings: list[ServiceBinding]
    api_keys: ApiKeyStore
    authenticator: Authenticator
    live_service: LiveService
    webhooks: Webhooks
    recording_service: RecordingService | None = None
    # With AFFECTLINE_REDIS_URL: the shared Redis and the live feed's fan-out through it.
    redis: RedisShared | None = None
    live_stream: LiveStream | None = None


def announce_first_key(first: FirstKey | None) -> None:
    """Says where the key made on first start is. The key itself is printed only to a terminal:
    stderr that is not one (a container, a service manager) ends up in logs, where keys never go."""
    if first is None:
        return
    log.warning("no API key existed: made admin key %s and saved it to %s (mode 0600); make others with "
                "`affectline keys create`", first.key_id, first.path)
    if sys.stderr.isatty():
        print(f"affectline: the first admin API key (shown once; also in {first.path}):\n  {first.token}",
              file=sys.stderr, flush=True)


@dataclass
class Webhooks:
    """Webhook delivery: what the server starts and stops (webhooks/)."""

    sender: HttpSender
    deliveries: DeliveryQueue
    dispatcher: WebhookDispatcher
    key_moments_watch: KeyMomentsWatch | None


def build_webhooks(settings: Settings, store: WebhookStore, metrics: Metrics,
                   key_moments: KeyMomentsSource | None) -> Webhooks:
    sender = HttpSender(timeout_s=settings.webhook_timeout_s, ca_bundle=settings.webhook_ca_bundle)
    policy = RetryPolicy(settings.webhook_max_attempts, settings.webhook_retry_base_s, settings.webhook_retry_max_s)
    deliveries = DeliveryQueue(sender, policy, size=settings.webhook_queue_size, workers=settings.webhook_workers,
                               registry=metrics.registry)
    dispatcher = WebhookDispatcher(store.targets, deliveries, max_events=settings.webhook_queue_size)
    # The periodic key-moments check runs only where the analytics provide the moments.
    watch = (KeyMomentsWatch(key_moments, dispatcher.key_moments_changed, interval_s=settings.webhook_key_moments_check_s,
                             identity=moment_identity)
             if key_moments is not None else None)
    return Webhooks(sender, deliveries, dispatcher, watch)


def build_recording_service(settings: Settings, store: TimelineStore, writer: GroupCommitWriter,
                            model: EmotionModel, batcher: DynamicBatcher) -> RecordingService:
    """Recordings go through the live path's batcher at LOW priority and its writer."""
    from functools import partial

    from affectline.recording.analyse import RecordingAnalyser
    from affectline.recording.blazeface import BlazeFace
    from affectline.recording.job import analyse_and_store
    from affectline.recording.jobs import Jobs
    from affectline.recording.uploads import UploadStore

    analyser = RecordingAnalyser(BlazeFace(threads=1), batcher.submit, model.crop_size, model.class_names)
    run = partial(analyse_and_store, analyser=analyser, store=store, writer=writer,
                  smoothing=SmoothingConfig.parse(settings.smoothing), model_key=model.key)
    uploads = UploadStore(max_bytes=int(settings.recording_max_mb * 2**20), ttl_s=settings.recording_upload_ttl_s)
    jobs = Jobs(run, max_running=settings.recording_max_concurrent, keep_s=settings.recording_upload_ttl_s,
                on_finished=lambda job: uploads.discard(job.recording_id))
    return RecordingService(uploads=uploads, jobs=jobs, max_chunk_bytes=MAX_CHUNK_BYTES)


def build_parts(settings: Settings) -> Parts:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics.create()
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)  # migrations are the only way the schema is made
    api_keys = ApiKeyStore(engine)
    announce_first_key(ensure_admin_key(api_keys, settings.data_dir, settings.admin_key))
    store = TimelineStore(engine, rollups=bool(settings.rollups))
    try:  # /watch/demo works on a fresh data dir; a failure here must not stop the API
        ensure_demo(store, settings.data_dir)
    except Exception:
        log.exception("could not make the demo video")
    model = EmotionModel.load(ModelRegistry(settings.models_root).get(settings.model), intra_op_threads=settings.inference_threads,
                               spin=bool(settings.inference_spin), variant=settings.model_variant,
                               time_variants_here=bool(settings.time_variants))
    if model.variant_timings:
        log.info("model variants timed on this machine (crops/s, batch %d): %s -> serving %s", PROBE_BATCH,
                 describe_timings(model.variant_timings), model.variant)
    configured = RunLayout(settings.inference_workers, settings.inference_threads, settings.max_batch_size)
    model, layout, change = fit_to_run_budget(
        model, configured, settings.max_run_ms / 1000.0,
        lambda threads: EmotionModel.load(model.registered, providers=model.providers, intra_op_threads=threads,
                                          spin=bool(settings.inference_spin), variant=model.variant),
        speed=model.variant_timings.get(model.variant) if settings.max_batch_size == PROBE_BATCH else None,
    )
    if change:
        log.warning("%s (AFFECTLINE_MAX_RUN_MS=0 keeps the configured layout)", change)
    batcher = DynamicBatcher(
        model.predict,
        BatcherConfig(
            max_batch_size=layout.max_batch_size,
            max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
            max_queued_crops=settings.max_queued_crops,
            max_sequence_share=settings.max_session_share,
            workers=layout.workers,
            runs_per_worker=settings.inference_runs_per_worker,
        ),
        metrics=metrics,
    )
    width, height = model.crop_size
    writer = GroupCommitWriter(store, metrics=metrics)
    kek = load_or_create_kek(settings)
    key_wrapper = KeyWrapper(kek)
    redis = RedisShared.connect(settings.redis_url, settings.redis_prefix) if settings.redis_url else None
    # Live feed and webhooks hear of stored batches and ended sessions from the session service.
    # One minimum-viewers floor (AFFECTLINE_MIN_SEGMENT_VIEWERS) for the analytics and the live
    # feed's emotion mixes, so a configured floor cannot be read around through WatchLive.
    analytics_config = replace(ANALYTICS_DEFAULTS, min_viewers=settings.min_segment_viewers)
    # With Redis, the feed names viewers and sessions by keyed pseudonyms (the KEK is shared by
    # replicas), so the viewer floor counts a viewer once across replicas and no id leaves the pod.
    live_feed = LiveFeed(window_s=settings.live_window_s, idle_s=settings.live_idle_s,
                         min_viewers=analytics_config.min_viewers, pseudonym=pseudonyms(kek) if redis else None)
    live_stream = (LiveStream(live_feed, redis.commands, redis.reader, redis.key("live"),
                              maxlen=settings.redis_stream_maxlen, metrics=metrics)
                   if redis else None)
    webhook_store = WebhookStore(engine, key_wrapper)
    analytics_service = AnalyticsService(store=store, rollups=RollupStore(engine), config=analytics_config)
    # key_moments.changed: every AFFECTLINE_WEBHOOK_KEY_MOMENTS_CHECK_S, the campaigns with ended
    # sessions and a subscribed endpoint get their key moments from the analytics (docs/api.md).
    key_moments = analytics_source(analytics_service.get_key_moments,
                                   lambda video_id: bool(webhook_store.targets(video_id, KEY_MOMENTS_CHANGED)))
    webhooks = build_webhooks(settings, webhook_store, metrics, key_moments=key_moments)
    # The live stream counts each batch in the feed itself and publishes it: the feed is not a listener then.
    listeners: list[SessionEvents] = [live_stream or live_feed, webhooks.dispatcher]
    if webhooks.key_moments_watch is not None:
        listeners.append(webhooks.key_moments_watch)
    session_service = SessionService(
        store=store,
        writer=writer,
        score=batcher.submit,
        crop_spec=CropSpec(width, height, 1, model.key, settings.max_frames_per_batch),
        key_wrapper=key_wrapper,
        metrics=metrics,
        session_ttl=timedelta(seconds=settings.session_ttl_s),
        smoothing=SmoothingConfig.parse(settings.smoothing),
        pacer=SendPacer() if settings.send_pacing else None,
        max_sessions_per_viewer=settings.max_sessions_per_viewer,
        idle_evict_s=settings.session_idle_evict_s,
        # Per session the bucket stays in memory even with Redis: all of a session's batches reach
        # the one replica holding it (session affinity), so the bucket there is exact and costs no
        # round trip; after a re-hash the session starts a full bucket on its new replica.
        rate_limiter=RateLimiter(settings.rate_limit_session_rps, settings.rate_limit_session_burst)
        if settings.rate_limit_session_rps > 0 else None,
        events=SessionEventFanOut(listeners),
    )
    live_service = LiveService(live_feed, default_interval_ms=settings.live_interval_ms)
    recording_service = build_recording_service(settings, store, writer, model, batcher)
    bindings = [
        ServiceBinding(recording_pb2.DESCRIPTOR.services_by_name["RecordingService"], recording_service),
        ServiceBinding(session_pb2.DESCRIPTOR.services_by_name["SessionService"], session_service),
        ServiceBinding(analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"], analytics_service),
        ServiceBinding(live_pb2.DESCRIPTOR.services_by_name["LiveService"], live_service),
        ServiceBinding(webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"],
                       WebhookService(webhook_store, EndpointPolicy(bool(settings.webhook_allow_http_loopback)))),
    ]
    metrics.active_sessions.set(store.active_session_count(datetime.now(timezone.utc)))
    return Parts(settings, metrics, engine, store, writer, model, batcher, session_service, analytics_service, bindings,
                 api_keys=api_keys, authenticator=Authenticator(api_keys, cache_s=settings.api_key_cache_s),
                 live_service=live_service, webhooks=webhooks, recording_service=recording_service,
                 redis=redis, live_stream=live_stream)


class AffectlineServer:
    """Runs the native gRPC server and the HTTP server over one set of parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        s = parts.settings
        self.tls = transport_security(s)  # TLS files, and plaintext only on loopback unless allowed
        local_keys = RateLimiter(s.rate_limit_key_rps, s.rate_limit_key_burst)
        # With Redis, one bucket per key for all replicas; this replica's own while Redis fails.
        self._key_limiter: KeyLimiter = (SharedRateLimiter(parts.redis.commands, parts.redis.key("ratelimit:"),
                                                           local_keys, errors=parts.metrics.redis_errors)
                                         if parts.redis is not None else local_keys)
        self._grpc: GrpcServer = build_grpc_server(parts.bindings, parts.metrics, f"{s.host}:{s.grpc_port}",
                                                   authorize=parts.authenticator.authorize,
                                                   credentials=self.tls.grpc_credentials(),
                                                   interceptors=[grpc_key_interceptor(self._key_limiter)],
                                                   max_receive_bytes=s.max_request_bytes)
        self._http_socket: socket.socket | None = _bind(s.host, s.http_port)
        self._http_port: int = self._http_socket.getsockname()[1]
        self._shutdown = asyncio.Event()
        self._http_task: asyncio.Task[Any] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="affectline-health")
        self._health_check: asyncio.Future[None] | None = None

    @property
    def grpc_port(self) -> int:
        return self._grpc.port

    async def _database_health(self) -> str:
        """"ok", or why not, within HEALTH_DB_TIMEOUT_S: a database that accepts connections but
        never answers must turn /healthz 503, not hang the probe. The query runs on one thread of
        its own (never the event loop, nor the pool the store's calls use); while a stuck check
        is still out, the next probe waits on that one instead of starting another."""
        if self._health_check is None or self._health_check.done():
            self._health_check = asyncio.get_running_loop().run_in_executor(self._health_pool, self._ping_database)
        try:
            await asyncio.wait_for(asyncio.shield(self._health_check), HEALTH_DB_TIMEOUT_S)
        except asyncio.TimeoutError:
            return f"error: no answer within {HEALTH_DB_TIMEOUT_S:g} s"
        except Exception as exc:  # report, don't crash the probe
            return f"error: {type(exc).__name__}"
        return "ok"

    def _ping_database(self) -> None:
        with self.parts.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @property
    def http_port(self) -> int:
        return self._http_port

    async def health(self) -> dict[str, Any]:
        db = await self._database_health()
        return {"status": "ok" if db == "ok" else "degraded", "database": db, "model": self.parts.model.key, "variant": self.parts.model.variant,
                "providers": self.parts.model.providers}

    async def _retention_loop(self) -> None:
        days = self.parts.settings.retention_days
        privacy = PrivacyStore(self.parts.engine)
        while True:  # the global default (0: keep) and each campaign's own retention (videos.retention_days)
            try:
                # Today's and tomorrow's partitions (PostgreSQL): at start, then the next day's well
                # before its first session (a day's partition is also made for its first session).
                await asyncio.to_thread(self.parts.store.partitions.prepare)
                purged = await asyncio.to_thread(privacy.purge_expired, datetime.now(timezone.utc), days)
                if purged:
                    log.info("retention: deleted %d sessions past their retention (default %d days)", purged, days)
            except Exception:  # a failed purge must not stop the server; it is retried next hour
                log.exception("retention purge failed")
            await asyncio.sleep(3600)

    async def start(self) -> None:
        self._retention_task = asyncio.create_task(self._retention_loop(), name="affectline-retention")
        await self.parts.batcher.start()
        if self.parts.redis is not None and self.parts.live_stream is not None:
            await self.parts.live_stream.start()
            log.info("live feed and per-key rate limits shared through Redis at %s (key prefix %r)",
                     self.parts.redis.url, self.parts.settings.redis_prefix)
        await self.parts.webhooks.deliveries.start()
        await self.parts.webhooks.dispatcher.background.start()
        if self.parts.webhooks.key_moments_watch is not None:
            await self.parts.webhooks.key_moments_watch.background.start()
        await self._grpc.start()
        config = HypercornConfig()
        assert self._http_socket is not None, "start() called twice"
        # Hypercorn owns the bound socket from here on (and closes it).
        config.bind = [f"fd://{self._http_socket.detach()}"]
        self._http_socket = None
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")  # our logging setup, printed once
        config.graceful_timeout = 5.0
        # A request body that stalls this long is closed by the app (serving/client_watch.py), not
        # by hypercorn's read_timeout, which would also close server streams (WatchLive) whose
        # client has nothing left to send; until a request's headers are in, keep_alive_timeout
        # applies, so it is capped by the read timeout too.
        config.read_timeout = None
        config.keep_alive_timeout = min(config.keep_alive_timeout, self.parts.settings.http_read_timeout_s)
        app = build_http_app(self.parts.bindings, self.parts.metrics, health_check=self.health,
                             authorize=self.parts.authenticator.authorize,
                             extra_routes=[*page_routes(self.parts.store), *self._upload_routes(),
                                           *report_routes(self.parts.analytics_service, self.parts.store,
                                                          self.parts.authenticator.authorize),
                                           *export_routes(self.parts.analytics_service,
                                                          self.parts.authenticator.authorize)],
                             max_request_bytes=self.parts.settings.max_request_bytes,
                             read_timeout_s=self.parts.settings.http_read_timeout_s)
        self.tls.configure_hypercorn(config)  # HTTPS when a certificate is configured
        app = harden(KeyRateLimitMiddleware(app, self._key_limiter), tls=self.tls.enabled,
                     cors_origins=self.parts.settings.cors_origins)
        self._http_task = asyncio.create_task(hypercorn_serve(app, config, shutdown_trigger=self._shutdown.wait))
        log.info(
            "affectline serving: gRPC on %s:%d, HTTP on %s://%s:%d (%s; database %s, model %s (%s) on %s)",
            self.parts.settings.host, self.grpc_port, "https" if self.tls.enabled else "http",
            self.parts.settings.host, self.http_port, self.tls.describe(),
            redact_url(self.parts.settings.resolved_database_url), self.parts.model.key, self.parts.model.variant,
            ",".join(self.parts.model.providers),
        )

    def _upload_routes(self) -> list[Any]:
        rec = self.parts.recording_service
        return upload_routes(rec, self.parts.authenticator.authorize) if rec is not None else []

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stops taking new calls, lets in-flight ones finish, drains the batcher."""
        self._shutdown.set()
        self._health_pool.shutdown(wait=False, cancel_futures=True)  # a stuck check must not hold the exit
        self.parts.live_service.close()  # live streams end now instead of holding the grace period
        if self._retention_task is not None:
            self._retention_task.cancel()
        await self._grpc.stop(grace_s)
        if self._http_task is not None:
            await self._http_task
        if self.parts.recording_service is not None:  # before the batcher: cancels analyses, deletes uploads
            await self.parts.recording_service.close()
        await self.parts.batcher.stop()
        await asyncio.to_thread(self.parts.writer.close)  # after the batcher: in-flight batches get stored
        if self._http_socket is not None:  # never started
            self._http_socket.close()
        await self.parts.authenticator.close()
        webhooks = self.parts.webhooks
        if webhooks.key_moments_watch is not None:
            await webhooks.key_moments_watch.background.stop()
        await webhooks.dispatcher.background.stop()
        await webhooks.deliveries.stop()  # deliveries still waiting are dropped (docs/api.md, "Webhooks")
        await webhooks.sender.close()
        if self.parts.live_stream is not None:
            await self.parts.live_stream.stop()
        if self.parts.redis is not None:
            await self.parts.redis.close()
        self.parts.engine.dispose()

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
