"""Synthetic viewing sessions with a known planted effect, for demos, tests and benchmarks.

Everything written is marked synthetic: viewer ids start with "synthetic-" and the video's
title says so. Variant "b" is happier than "a" in seconds 20-30 (+0.1 P(happy), taken from
neutral); every viewer smiles around 40-44 s and is surprised around 10-11 s.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from affectline.storage.records import BatchRecord, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo
from affectline.storage.timeline_store import TimelineStore

TITLE = "Synthetic demo data (affectline demo-data; not real viewers)"
VARIANTS = ("a", "b")
EFFECT = (20, 30, 0.1)  # variant b: +0.1 happy in seconds [20, 30)
AGE_BANDS = (("18-24", 0.2), ("25-34", 0.3), ("35-44", 0.22), ("45-54", 0.16), ("55+", 0.12))
GENDERS = (("f", 0.48), ("m", 0.48), ("", 0.04))
REGIONS = (("US", 0.4), ("GB", 0.15), ("DE", 0.15), ("FR", 0.12), ("BR", 0.1), ("JP", 0.08))
HAPPY, SURPRISE, NEUTRAL = 3, 5, 6
BATCH_FRAMES = 30


@dataclass(frozen=True, slots=True)
class DemoSpec:
    sessions: int = 1000
    seconds: int = 60
    fps: float = 30.0
    video_id: str = "synthetic-demo"
    seed: int = 0


def _pick(rng: np.random.Generator, table: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*table)
    return str(rng.choice(names, p=np.asarray(weights) / sum(weights)))


def session_probs(rng: np.random.Generator, t_s: np.ndarray, variant: str) -> np.ndarray:
    """(frames, 7) probabilities: a neutral-heavy base, the shared moments, the planted effect."""
    base = np.array([0.03, 0.02, 0.03, 0.15, 0.05, 0.07, 0.65]) + rng.normal(0, 0.02, 7)
    p = np.tile(np.clip(base, 0.005, None), (len(t_s), 1))
    p += rng.normal(0, 0.01, p.shape)
    p[:, HAPPY] += 0.25 * np.exp(-0.5 * ((t_s - 42.0) / 1.5) ** 2)  # everyone laughs at 42 s
    p[:, SURPRISE] += 0.2 * np.exp(-0.5 * ((t_s - 10.5) / 0.8) ** 2)  # a scare at 10.5 s
    if variant == "b":
        lo, hi, size = EFFECT
        planted = (t_s >= lo) & (t_s < hi)
        p[planted, HAPPY] += size
        p[planted, NEUTRAL] -= size
    p = np.clip(p, 0.001, None)
    return p / p.sum(axis=1, keepdims=True)


def session_batches(rng: np.random.Generator, spec: DemoSpec, variant: str, start: datetime) -> list[BatchRecord]:
    n = int(spec.seconds * spec.fps)
    t_ms = (np.arange(n) * 1000.0 / spec.fps).astype(np.int64)
    if rng.random() < 0.1:  # one viewer in ten seeks back 5-15 s once, two thirds of the way in
        cut = int(n * 2 / 3)
        back = int(rng.integers(5, 15) * 1000)
        t_ms = np.concatenate([t_ms[:cut], t_ms[cut:] - back])
    t_ms = np.clip(t_ms, 0, None)
    probs = session_probs(rng, t_ms / 1000.0, variant)
    face = rng.random(n) > 0.03
    yaw = rng.normal(0, 12, n) + np.where(rng.random(n) < 0.05, 60.0, 0.0)  # occasional look-aways
    batches = []
    for seq, lo in enumerate(range(0, n, BATCH_FRAMES)):
        frames = []
        for i in range(lo, min(n, lo + BATCH_FRAMES)):
            p = tuple(probs[i].tolist()) if face[i] else None
            frames.append(FrameRecord(seq, i - lo, int(t_ms[i]), start + timedelta(milliseconds=int(t_ms[i])),
                                      bool(face[i]), p, head_yaw_deg=float(yaw[i]) if face[i] else None,
                                      smoothed=p))
        batches.append(BatchRecord(seq, secrets.token_bytes(12), b"synthetic", tuple(frames)))
    return batches


def write_demo(store: TimelineStore, spec: DemoSpec, progress: Callable[[int], object] = lambda n: None) -> int:
    """Writes spec.sessions synthetic sessions (one transaction each); returns the frames written."""
    rng = np.random.default_rng(spec.seed)
    store.ensure_video(spec.video_id, "", TITLE)
    now = datetime.now(UTC)
    frames = 0
    run = secrets.token_hex(3)  # repeated runs add sessions instead of colliding
    for i in range(spec.sessions):
        variant = VARIANTS[i % 2]
        started = now - timedelta(days=float(rng.uniform(0, 30)))
        sid = f"synthetic-{spec.video_id}-{run}-{i:06d}"
        viewer = ViewerInfo(f"synthetic-{run}-{i:06d}", _pick(rng, AGE_BANDS), _pick(rng, GENDERS), _pick(rng, REGIONS))
        store.create_session(SessionRecord(
            session_id=sid, video_id=spec.video_id, variant_id=variant, viewer=viewer,
            consent=ConsentInfo("synthetic", started, ("emotion", "attention", "demographics")),
            capture_fps=spec.fps, model="synthetic/1", started_at=started, expires_at=started + timedelta(hours=4),
            token_sha256=secrets.token_bytes(32), wrapped_key=b"synthetic: no key", ended_at=started, end_reason="completed",
        ))
        batches = session_batches(rng, spec, variant, started)
        store.append_batches([(sid, b) for b in batches])
        frames += sum(len(b.frames) for b in batches)
        progress(1)
    return frames
