"""Prometheus metrics of one server process.

All metrics live on a CollectorRegistry owned by the app (no global registry), so
tests can build several apps in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latencies around our 100 ms per-batch target get the finest buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    rpc_duration: Histogram
    rpc_errors: Counter
    frames: Counter
    batch_size: Histogram
    queue_delay: Histogram
    inference_duration: Histogram
    active_sessions: Gauge
    decrypt_failures: Counter
    db_write_duration: Histogram
    db_write_errors: Counter
    db_group_size: Histogram
    queued_crops: Gauge
    rejected_batches: Counter
    sessions_served: Counter
    live_stream_messages: Counter
    live_stream_lag: Histogram
    redis_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            rpc_duration=Histogram(
                "affectline_rpc_duration_seconds", "Server-side RPC handling time.",
                ["service", "method", "transport", "code"], buckets=LATENCY_BUCKETS, registry=r,
            ),
            rpc_errors=Counter(
                "affectline_rpc_errors_total", "RPCs that ended with a non-OK status.",
                ["service", "method", "transport", "code"], registry=r,
            ),
            frames=Counter(
                "affectline_frames_total", "Frames accepted and stored, by whether a face was present.",
                ["face_present"], registry=r,
            ),
            batch_size=Histogram(
                "affectline_inference_batch_size", "Crops per model run.", buckets=BATCH_SIZE_BUCKETS, registry=r,
            ),
            queue_delay=Histogram(
                "affectline_inference_queue_delay_seconds", "Time a request waited in the batcher queue.",
                buckets=LATENCY_BUCKETS, registry=r,
            ),
            inference_duration=Histogram(
                "affectline_inference_duration_seconds", "Time of one model run.", buckets=LATENCY_BUCKETS, registry=r,
            ),
            active_sessions=Gauge(
                "affectline_active_sessions", "Sessions started and not yet ended on this process.", registry=r,
            ),
            decrypt_failures=Counter(
                "affectline_decrypt_failures_total", "Crop batches rejected by the crypto layer.", ["reason"], registry=r,
            ),
            db_write_duration=Histogram(
                "affectline_db_write_duration_seconds", "Time of one group commit of crop batches.",
                buckets=LATENCY_BUCKETS, registry=r,
            ),
            db_write_errors=Counter(
                "affectline_db_write_errors_total", "Failed frame-batch writes.", registry=r,
            ),
            db_group_size=Histogram(
                "affectline_db_group_commit_batches", "Crop batches stored per database transaction.",
                buckets=BATCH_SIZE_BUCKETS, registry=r,
            ),
            queued_crops=Gauge(
                "affectline_inference_queued_crops", "Crops waiting in the batcher queue.", registry=r,
            ),
            rejected_batches=Counter(
                "affectline_rejected_batches_total", "Crop batches refused before inference, by reason "
                "(e.g. queue_full for backpressure).", ["reason"], registry=r,
            ),
            sessions_served=Counter(
                "affectline_sessions_served_total", "Sessions this process stored crop batches for, each "
                "counted once while it holds the session: behind a session-affine proxy the sum over "
                "replicas equals the sessions that sent batches (a session that moved counts on each).",
                registry=r,
            ),
            # With AFFECTLINE_REDIS_URL (services/live_stream.py, redis_rate_limit.py).
            live_stream_messages=Counter(
                "affectline_live_stream_messages_total", "Live-feed updates on the Redis stream: published by "
                "this replica, consumed from other replicas, or dropped (not published: Redis unreachable).",
                ["direction"], registry=r,
            ),
            live_stream_lag=Histogram(
                "affectline_live_stream_lag_seconds", "Time from another replica publishing a live-feed "
                "update to this replica merging it into its feed.", buckets=LATENCY_BUCKETS, registry=r,
            ),
            redis_errors=Counter(
                "affectline_redis_errors_total", "Failed Redis calls, by use (live_stream, rate_limit); the "
                "per-key rate limit then falls back to this replica's own buckets.", ["use"], registry=r,
            ),
        )
