"""Server configuration: one frozen dataclass, filled from env vars, then CLI flags.

Every field has a documented default (README, "Configuration"), so `affectline serve`
runs with no configuration at all: SQLite under ./data, CPU inference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from affectline.models.registry import DEFAULT_MODEL, PACKAGED_ROOT as PACKAGED_MODELS


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    data_dir: Path = Path("data")
    # Empty: SQLite file <data_dir>/affectline.db
    database_url: str = ""
    model: str = DEFAULT_MODEL
    # Another model registry folder (name/version/manifest.json + model files); empty: the packaged models.
    models_dir: str = ""
    # Precision variant: auto (per provider: TensorRT int8 > CUDA fp16 > fastest measured on CPU), fp32, fp16, int8.
    model_variant: str = "auto"
    # With model_variant=auto on CPU: 1 times the variants at start-up and serves the fastest on
    # this machine (0.3-2.5 s); 0 trusts the manifest's figures, measured on the build host.
    time_variants: int = 1
    # Dynamic batching knobs of the inference engine.
    max_batch_size: int = 32  # measured for affectline-vgg/2 int8 (v3: same graph) on 2 cores, docs/performance.md
    max_queue_delay_ms: float = 5.0
    # Longest one model run of max_batch_size crops may take, timed at start-up; on a host where the
    # model is slower, the workers become one multi-threaded worker and max_batch_size is lowered to
    # fit (inference/run_budget.py). 40 = (100 ms p99 target - ~15 ms of RPC and commit) / 2 runs:
    # a request can wait behind one run, then needs its own. 0: no cap.
    max_run_ms: float = 40.0
    # Past this many queued crops, PushCrops answers RESOURCE_EXHAUSTED with a retry hint.
    max_queued_crops: int = 4096
    # Most of one model batch that one session may fill (beyond its first request).
    max_session_share: float = 0.5
    # Defaults measured on a 2-core host (docs/performance.md): two single-threaded model runs
    # at once, threads sleeping between runs, used ~35 % less CPU than one 2-thread spinning run.
    inference_workers: int = 2  # concurrent model runs
    # Batches handed to each worker at once, so it never idles waiting for the event loop
    # (2: +2.6 % saturated throughput in interleaved runs, docs/performance.md).
    inference_runs_per_worker: int = 2
    inference_threads: int = 1  # onnxruntime intra-op threads per run; 0: onnxruntime decides
    # onnxruntime worker threads busy-wait between runs (1) or sleep (0).
    inference_spin: int = 0
    # Temporal smoothing of each session's probabilities: "ema:<tau ms>" or "none".
    smoothing: str = "ema:250"
    # Send pacing (services/send_pacer.py): 1 gives each session that announces its batch size a
    # slot in its batch period, so batches arrive spread out instead of queueing behind each other.
    send_pacing: int = 1
    # Largest CropBatch a client may send.
    max_frames_per_batch: int = 64
    session_ttl_s: int = 4 * 3600
    # Most sessions one viewer id may have open (not ended, not expired) at once; past it
    # StartSession answers RESOURCE_EXHAUSTED. Room for page reloads that never ended theirs.
    max_sessions_per_viewer: int = 16
    # A live session unused for this long leaves the server's memory (it is reloaded from the
    # database on its next batch); expired and ended ones leave at the next sweep.
    session_idle_evict_s: float = 600.0
    # Largest request body on every transport (native gRPC message, gRPC-web/Connect message,
    # JSON-RPC body), in bytes: 1 MiB is ~3x the largest PushCrops (64 crops of 64x64 in
    # JSON's base64). Larger ones get RESOURCE_EXHAUSTED (HTTP 413 on JSON-RPC) unread.
    max_request_bytes: int = 1024 * 1024
    # Seconds the HTTP server waits for the next bytes of a request (headers or body) before
    # closing the connection, so slow-body clients cannot hold connections open.
    http_read_timeout_s: float = 30.0
    # 1 keeps the per session-second rollups (analytics curves) current as batches land; 0 skips
    # them, for benchmark comparisons (then run `affectline analytics rebuild` before reading curves).
    rollups: int = 1
    # Fewest viewers a curve second, segment or variant may rest on; fewer are suppressed, not shown.
    min_segment_viewers: int = 5
    # 1: the first `serve` start writes a demo campaign, video "synthetic-demo": synthetic viewers
    # on two variants and a film, all marked synthetic (demo_campaign.py), so /dashboard shows data
    # at once. 0: never (production: its scores would join every video's norms).
    demo_data: int = 1
    # Sessions (and their frames) older than this are deleted; checked at start and hourly. 0 keeps all.
    retention_days: int = 180
    # Live feed (WatchLive): default ms between snapshots; seconds that rates and emotion mixes
    # cover; a session without a stored batch this long stops counting as active.
    live_interval_ms: int = 1000
    live_window_s: int = 5
    live_idle_s: float = 30.0
    # Webhook deliveries (webhooks/): 1 also allows http:// to loopback hosts (tests, development);
    # a CA bundle file for endpoints with a private CA; the retry schedule and the queue bound.
    webhook_allow_http_loopback: int = 0
    webhook_ca_bundle: str = ""
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 8
    webhook_retry_base_s: float = 2.0
    webhook_retry_max_s: float = 600.0
    webhook_queue_size: int = 1000
    webhook_workers: int = 4
    # Seconds between key-moment checks of campaigns whose sessions ended since the last one.
    webhook_key_moments_check_s: float = 60.0
    # Seconds a server trusts a verified API key before reading it again: a revocation takes up
    # to this long to reach running servers. 0: read the key on every call.
    api_key_cache_s: float = 30.0
    # An API key (afk_<id>_<secret>) to register as an admin key when absent. Empty: on the
    # first start with no key, `serve` makes one in <data_dir>/admin-key (auth/bootstrap.py).
    admin_key: str = field(default="", repr=False)
    # Transport security (tls.py, docs/security.md): PEM certificate and key for TLS on both
    # servers; a CA whose client certificates native gRPC then requires (mTLS). Without a
    # certificate, plaintext is served only on loopback, or off it with allow_plaintext=1 (logged).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    allow_plaintext: int = 0
    # Token buckets (rate_limit.py): PushCrops/StreamCrops batches per second per session, and
    # calls per second per API key; burst = the bucket size. 0 turns a limit off. A 30-fps
    # browser sends ~3 batches/s.
    rate_limit_session_rps: float = 50.0
    rate_limit_session_burst: int = 100
    rate_limit_key_rps: float = 500.0
    rate_limit_key_burst: int = 1000
    # Comma-separated origins allowed to call the HTTP server from other sites' pages (CORS);
    # empty: same-origin only.
    cors_origins: str = ""
    # Recordings (RecordingService, analyze-video): the largest accepted, in MiB; analyses run at
    # once (each takes about one core for face detection; more wait with RESOURCE_EXHAUSTED);
    # seconds an upload may go without a chunk before it is deleted.
    recording_max_mb: float = 2048.0
    recording_max_concurrent: int = 1
    recording_upload_ttl_s: float = 3600.0
    # Key-encryption key for stored session keys: 64 hex chars. Empty: <data_dir>/kek.bin, made on first start.
    kek_hex: str = ""
    # Shared live state across replicas (redis_shared.py): WatchLive's feed through a Redis Stream
    # and the per-API-key rate limit in Redis. Empty: both per process (one node needs no Redis).
    # May hold a password, so it stays out of repr.
    redis_url: str = field(default="", repr=False)
    # Prefix of every Redis key, so deployments (and test runs) can share one Redis.
    redis_prefix: str = "affectline:"
    # Approximate bound of the live stream (XADD MAXLEN ~): at most 4 messages/s per replica.
    redis_stream_maxlen: int = 10000

    @property
    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else PACKAGED_MODELS

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'affectline.db'}"

    def with_overrides(self, **overrides: Any) -> "Settings":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


ENV_PREFIX = "AFFECTLINE_"


def _env_name(field_name: str) -> str:
    return ENV_PREFIX + ("KEK" if field_name == "kek_hex" else field_name.upper())


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """AFFECTLINE_<FIELD> overrides each default (AFFECTLINE_KEK for kek_hex)."""
    environ = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(_env_name(f.name))
        if raw is None or raw == "":
            continue
        current = getattr(base, f.name)
        try:
            values[f.name] = type(current)(raw)
        except ValueError as exc:
            raise ValueError(f"{_env_name(f.name)}={raw!r}: expected {type(current).__name__}") from exc
    return replace(base, **values)


def env_table() -> list[tuple[str, str]]:
    """(env var, default) pairs, for --help and docs."""
    return [(_env_name(f.name), str(getattr(Settings(), f.name))) for f in fields(Settings)]
