"""The composition root: builds config, store, model, services and servers, and runs them.

Nothing else in the package constructs these parts; everything is passed in from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from sqlalchemy import Engine, text

from affectline.config import Settings
from affectline.crypto import KEY_BYTES, KeyWrapper
from affectline.inference.batcher import BatcherConfig, DynamicBatcher
from affectline.inference.smoothing import SmoothingConfig
from affectline.inference.engine import EmotionModel
from affectline.inference.run_budget import RunLayout, fit_to_run_budget
from affectline.inference.variant_probe import PROBE_BATCH, describe as describe_timings
from affectline.metrics import Metrics
from affectline.models.registry import ModelRegistry
from affectline.serving.grpc_server import GrpcServer, build_grpc_server
from affectline.serving.http_app import build_http_app
from affectline.serving.pages import page_routes
from affectline.serving.rpc_methods import ServiceBinding
from affectline.services.analytics_service import AnalyticsService
from affectline.services.send_pacer import SendPacer
from affectline.services.session_service import CropSpec, SessionService
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.database import make_engine, redact_url, upgrade
from affectline.storage.timeline_store import TimelineStore
from affectline.videos import ensure_demo
from affectline.v1 import analytics_pb2, session_pb2

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
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


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


def build_parts(settings: Settings) -> Parts:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics.create()
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)  # migrations are the only way the schema is made
    store = TimelineStore(engine)
    try:  # /watch/demo works on a fresh data dir; a failure here must not stop the API
        ensure_demo(store, settings.data_dir)
    except Exception:
        log.exception("could not make the demo video")
    model = EmotionModel.load(ModelRegistry().get(settings.model), intra_op_threads=settings.inference_threads,
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
    session_service = SessionService(
        store=store,
        writer=writer,
        score=batcher.submit,
        crop_spec=CropSpec(width, height, 1, model.key, settings.max_frames_per_batch),
        key_wrapper=KeyWrapper(load_or_create_kek(settings)),
        metrics=metrics,
        session_ttl=timedelta(seconds=settings.session_ttl_s),
        smoothing=SmoothingConfig.parse(settings.smoothing),
        pacer=SendPacer() if settings.send_pacing else None,
        max_sessions_per_viewer=settings.max_sessions_per_viewer,
        idle_evict_s=settings.session_idle_evict_s,
    )
    analytics_service = AnalyticsService(store=store)
    bindings = [
        ServiceBinding(session_pb2.DESCRIPTOR.services_by_name["SessionService"], session_service),
        ServiceBinding(analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"], analytics_service),
    ]
    metrics.active_sessions.set(store.active_session_count(datetime.now(timezone.utc)))
    return Parts(settings, metrics, engine, store, writer, model, batcher, session_service, analytics_service, bindings)


class AffectlineServer:
    """Runs the native gRPC server and the HTTP server over one set of parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        s = parts.settings
        self._grpc: GrpcServer = build_grpc_server(parts.bindings, parts.metrics, f"{s.host}:{s.grpc_port}",
                                                   max_receive_bytes=s.max_request_bytes)
        self._http_socket: socket.socket | None = _bind(s.host, s.http_port)
        self._http_port: int = self._http_socket.getsockname()[1]
        self._shutdown = asyncio.Event()
        self._http_task: asyncio.Task[Any] | None = None
        self._retention_task: asyncio.Task[None] | None = None

    @property
    def grpc_port(self) -> int:
        return self._grpc.port

    @property
    def http_port(self) -> int:
        return self._http_port

    async def health(self) -> dict[str, Any]:
        try:
            with self.parts.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db = "ok"
        except Exception as exc:  # report, don't crash the probe
            db = f"error: {type(exc).__name__}"
        return {"status": "ok" if db == "ok" else "degraded", "database": db, "model": self.parts.model.key, "variant": self.parts.model.variant,
                "providers": self.parts.model.providers}

    async def _retention_loop(self) -> None:
        days = self.parts.settings.retention_days
        while days > 0:
            cutoff = datetime.now(timezone.utc) - timedelta(days=days)
            try:
                purged = await asyncio.to_thread(self.parts.store.purge_sessions_started_before, cutoff)
                if purged:
                    log.info("retention: deleted %d sessions started before %s", purged, cutoff.isoformat())
            except Exception:  # a failed purge must not stop the server; it is retried next hour
                log.exception("retention purge failed")
            await asyncio.sleep(3600)

    async def start(self) -> None:
        self._retention_task = asyncio.create_task(self._retention_loop(), name="affectline-retention")
        await self.parts.batcher.start()
        await self._grpc.start()
        config = HypercornConfig()
        assert self._http_socket is not None, "start() called twice"
        # Hypercorn owns the bound socket from here on (and closes it).
        config.bind = [f"fd://{self._http_socket.detach()}"]
        self._http_socket = None
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")  # our logging setup, printed once
        config.graceful_timeout = 5.0
        # A connection that sends nothing (mid-headers or mid-body) for this long is closed.
        config.read_timeout = self.parts.settings.http_read_timeout_s
        app = build_http_app(self.parts.bindings, self.parts.metrics, health_check=self.health,
                             extra_routes=page_routes(self.parts.store),
                             max_request_bytes=self.parts.settings.max_request_bytes)
        self._http_task = asyncio.create_task(hypercorn_serve(app, config, shutdown_trigger=self._shutdown.wait))
        log.info(
            "affectline serving: gRPC on %s:%d, HTTP on http://%s:%d (database %s, model %s (%s) on %s)",
            self.parts.settings.host, self.grpc_port, self.parts.settings.host, self.http_port,
            redact_url(self.parts.settings.resolved_database_url), self.parts.model.key, self.parts.model.variant,
            ",".join(self.parts.model.providers),
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stops taking new calls, lets in-flight ones finish, drains the batcher."""
        self._shutdown.set()
        if self._retention_task is not None:
            self._retention_task.cancel()
        await self._grpc.stop(grace_s)
        if self._http_task is not None:
            await self._http_task
        await self.parts.batcher.stop()
        await asyncio.to_thread(self.parts.writer.close)  # after the batcher: in-flight batches get stored
        if self._http_socket is not None:  # never started
            self._http_socket.close()
        self.parts.engine.dispose()

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
