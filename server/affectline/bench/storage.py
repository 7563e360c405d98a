"""Storage benchmark: sustained frames/s written to PostgreSQL, and bytes per session-minute.

    python -m affectline.bench.storage --database-url postgresql://postgres@127.0.0.1:5432/test

Two fresh databases are made next to the one named (dropped at the end unless --keep):

1. **Ingest** (schema at head): `--sessions` sessions send batches of `--batch-frames` frames
   at `--fps`; every round, one group commit stores the next batch of every session, as the
   server's batch writer does (TimelineStore.append_batches: binary COPY into a staging
   table, INSERT .. ON CONFLICT, rollups upserted in the same transaction). The batches are
   made before the clock starts. `--writers` processes write at once, each its own sessions
   (as server replicas do). Reported: frames/s, the writers' CPU per frame and PostgreSQL's
   (the backends serving this database), medians over `--repeats` runs, rollups on and off.
2. **Bytes**: the same frames written in the previous layout (revision 0009: one `frames`
   row per frame, by COPY) into the second database, measured, converted by migration 0010
   and measured again; sizes include indexes and TOAST, without VACUUM.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Engine, make_url, text

from affectline.bench.scratch_database import fresh_database
from affectline.storage.database import make_engine, upgrade
from affectline.storage.records import BatchRecord, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo
from affectline.storage.timeline_store import TimelineStore

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu_s(database: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to `database` (local server)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not cmdline.startswith(b"postgres: ") or f" {database} ".encode() not in cmdline.replace(b"\0", b" "):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / CLOCK_TICKS


def make_batches(rng: np.random.Generator, sessions: int, seconds: float, fps: float, per_batch: int,
                 start: datetime) -> list[list[BatchRecord]]:
    """Per session, its batches as the server would store them (97 % of frames with a face)."""
    n = int(seconds * fps)
    out = []
    for _ in range(sessions):
        probs = rng.dirichlet(np.ones(7), n).astype(np.float32).astype(float)
        face = rng.random(n) > 0.03
        yaw = rng.normal(0, 12, n)
        batches = []
        for seq, lo in enumerate(range(0, n, per_batch)):
            frames = []
            for i in range(lo, min(n, lo + per_batch)):
                t = int(i * 1000 / fps)
                p = tuple(probs[i].tolist()) if face[i] else None
                frames.append(FrameRecord(seq, i - lo, t, start + timedelta(milliseconds=t), bool(face[i]), p,
                                          head_yaw_deg=float(yaw[i]) if p else None,
                                          head_pitch_deg=2.0 if p else None, face_box_size=0.4 if p else None,
                                          smoothed=p))
            batches.append(BatchRecord(seq, secrets.token_bytes(12), secrets.token_bytes(32), tuple(frames)))
        out.append(batches)
    return out


def create_sessions(store: TimelineStore, prefix: str, count: int, start: datetime) -> list[str]:
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    for sid in ids:
        store.create_session(SessionRecord(sid, "bench-video", "a", ViewerInfo(f"viewer-{sid}"),
                                           ConsentInfo("bench", start, ("emotion",)), 30.0, "bench/1", start,
                                           start + timedelta(hours=2), b"\0" * 32, b"bench"))
    return ids


@dataclass
class IngestRun:
    frames: int
    wall_s: float
    writer_cpu_s: float
    db_cpu_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s

    def us_per_frame(self, cpu_s: float) -> float:
        return cpu_s / self.frames * 1e6


def ingest(store: TimelineStore, ids: Sequence[str], batches: Sequence[Sequence[BatchRecord]],
           group: int) -> tuple[int, float, float]:
    """Stores every batch, `group` sessions' next batches per group commit, round after round.
    Returns (frames, wall seconds, this process's CPU seconds)."""
    frames = sum(len(b.frames) for bs in batches for b in bs)
    rounds = max(len(bs) for bs in batches)
    wall, cpu = time.perf_counter(), time.process_time()
    for seq in range(rounds):
        items = [(sid, bs[seq]) for sid, bs in zip(ids, batches) if seq < len(bs)]
        for lo in range(0, len(items), group):
            store.append_batches(items[lo:lo + group])
    return frames, time.perf_counter() - wall, time.process_time() - cpu


@dataclass(frozen=True)
class WriterJob:
    url: str
    prefix: str
    sessions: int
    seconds: float
    fps: float
    per_batch: int
    group: int
    rollups: bool
    seed: int
    start: datetime


def _writer(job: WriterJob, ready: Any, go: Any, results: Any, measured: Any) -> None:
    """One writer process: makes its sessions and batches, waits for the start, stores them."""
    engine = make_engine(job.url)
    store = TimelineStore(engine, rollups=job.rollups)
    ids = create_sessions(store, job.prefix, job.sessions, job.start)
    batches = make_batches(np.random.default_rng(job.seed), job.sessions, job.seconds, job.fps, job.per_batch, job.start)
    ready.release()
    go.wait()
    results.put(ingest(store, ids, batches, job.group))
    measured.wait()  # keep the connections (their backends' CPU counters) until they are read
    engine.dispose()


def run_writers(jobs: Sequence[WriterJob], database: str) -> IngestRun:
    """Runs one writer process per job at once; frames/s over the slowest writer's wall time."""
    ctx = multiprocessing.get_context("fork")
    ready, go, measured, results = ctx.Semaphore(0), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(job, ready, go, results, measured)) for job in jobs]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    db = backend_cpu_s(database)
    go.set()
    done = [results.get() for _ in procs]
    db = backend_cpu_s(database) - db
    measured.set()
    for proc in procs:
        proc.join()
    return IngestRun(sum(d[0] for d in done), max(d[1] for d in done), sum(d[2] for d in done), db)


# ---------------------------------------------------------------- the 0009 layout, for "before"

_OLD_FRAME_COLUMNS = ("session_id", "seq", "frame_index", "video_time_ms", "captured_at", "face_present",
                      *(f"p_{e}" for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")),
                      "head_yaw_deg", "head_pitch_deg", "face_box_size",
                      *(f"s_{e}" for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")))


def write_0009(url: str, ids: Sequence[str], batches: Sequence[Sequence[BatchRecord]], start: datetime) -> None:
    """The frames as the store wrote them before migration 0010: batches rows, one frames row each."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn, conn.cursor() as cur:
        with cur.copy("COPY batches (session_id, seq, nonce, digest, frames, accepted_at) FROM STDIN") as copy:
            for sid, bs in zip(ids, batches):
                for b in bs:
                    copy.write_row((sid, b.seq, b.nonce, b.digest, len(b.frames), start))
        with cur.copy(f"COPY frames ({', '.join(_OLD_FRAME_COLUMNS)}) FROM STDIN") as copy:
            for sid, bs in zip(ids, batches):
                for b in bs:
                    for f in b.frames:
                        none7 = (None,) * 7
                        copy.write_row((sid, b.seq, f.index, f.video_time_ms, f.captured_at, f.face_present,
                                        *(f.probs or none7), f.head_yaw_deg, f.head_pitch_deg, f.face_box_size,
                                        *(f.smoothed or none7)))


def table_bytes(engine: Engine, table: str) -> int:
    """Heap, indexes and TOAST of a table, or of all its partitions."""
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.oid = CAST(:t AS regclass) OR c.oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = CAST(:t AS regclass))"), {"t": table}).scalar_one())


def table_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectline.bench.storage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="PostgreSQL server; fresh databases are made on it (default: %(default)s)")
    p.add_argument("--sessions", type=int, default=200, help="concurrent sessions (default 200)")
    p.add_argument("--seconds", type=float, default=20, help="seconds of video per session (default 20)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--batch-frames", type=int, nargs="+", default=[10, 30],
                   help="frames per batch: 10 is the browser's, 30 the partner client's (default: both)")
    p.add_argument("--group", type=int, default=200, help="batches per group commit (default 200)")
    p.add_argument("--writers", type=int, default=1,
                   help="writer processes, each with its own --sessions sessions, like server replicas (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration; medians reported (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    args = p.parse_args(argv)
    if not args.database_url.startswith("postgres"):
        p.error("the storage benchmark needs PostgreSQL (--database-url postgresql://...)")
    out = print
    rng = np.random.default_rng(7)
    start = datetime.now(UTC).replace(microsecond=0)
    load = os.getloadavg()[0]
    out(f"storage benchmark: {args.writers} writer(s) x {args.sessions} sessions x {args.seconds:g} s x {args.fps:g} fps, "
        f"group commit of {args.group} batches, {args.repeats} runs each; load {load:.2f}, {os.cpu_count()} CPUs")
    summary: dict[tuple[int, bool], IngestRun] = {}
    with fresh_database(args.database_url, args.keep) as url:
        upgrade(url)
        engine = make_engine(url)
        database = make_url(url).database or ""
        out(f"{'frames/batch':>12} {'rollups':>7} {'frames/s':>10} {'writer µs/frame':>15} {'PostgreSQL µs/frame':>19}")
        for per_batch in args.batch_frames:
            for rollups in (True, False):
                runs = []
                for r in range(args.repeats):
                    jobs = [WriterJob(url, f"b{per_batch}-r{int(rollups)}-{r}-w{w}", args.sessions, args.seconds,
                                      args.fps, per_batch, args.group, rollups, 100 * r + w, start)
                            for w in range(args.writers)]
                    runs.append(run_writers(jobs, database))
                    out(f"  run {r + 1}: {runs[-1].frames_per_s:,.0f} frames/s", file=sys.stderr)
                median = sorted(runs, key=lambda x: x.frames_per_s)[len(runs) // 2]
                summary[(per_batch, rollups)] = median
                out(f"{per_batch:>12} {'on' if rollups else 'off':>7} {median.frames_per_s:>10,.0f} "
                    f"{statistics.median(x.us_per_frame(x.writer_cpu_s) for x in runs):>15.2f} "
                    f"{statistics.median(x.us_per_frame(x.db_cpu_s) for x in runs):>19.2f}")
        engine.dispose()

    # Bytes per session-minute, before (0009) and after (0010), on the same frames.
    per_batch = args.batch_frames[0]
    with fresh_database(args.database_url, args.keep) as url:
        upgrade(url, "0009")
        engine = make_engine(url)
        sessions = min(args.sessions, 50)
        batches = make_batches(rng, sessions, 60.0, args.fps, per_batch, start)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO videos (video_id, title, created_at) VALUES ('bench-video', '', now())"))
            conn.execute(text("INSERT INTO variants (video_id, variant_id) VALUES ('bench-video', 'a')"))
        ids = [f"size-{i:03d}" for i in range(sessions)]
        with engine.begin() as conn:
            for sid in ids:
                conn.execute(text("INSERT INTO viewers (viewer_id, age_band, gender, region, created_at) VALUES (:v, '', '', '', now())"), {"v": f"viewer-{sid}"})
                conn.execute(text(
                    "INSERT INTO sessions (session_id, video_id, variant_id, viewer_id, consent_notice_version, "
                    "consent_at, consent_scopes, capture_fps, model, started_at, expires_at, end_reason, token_sha256, "
                    "wrapped_key) VALUES (:s, 'bench-video', 'a', :v, 'bench', now(), '[]', 30, 'bench/1', :t, :t, '', "
                    "'\\x00', '\\x00')"), {"s": sid, "v": f"viewer-{sid}", "t": start})
        write_0009(url, ids, batches, start)
        before = {t: table_bytes(engine, t) for t in ("frames", "batches")}
        rows_before = {t: table_rows(engine, t) for t in ("frames", "batches")}
        t0 = time.perf_counter()
        upgrade(engine)
        convert_s = time.perf_counter() - t0
        after = table_bytes(engine, "batches")
        frames_after = TimelineStore(engine).count_frames()
        engine.dispose()
    minutes = sessions * 1.0
    total_frames = rows_before["frames"]
    out(f"\nbytes per session-minute, {sessions} sessions x 60 s x {args.fps:g} fps, {per_batch} frames per batch "
        "(indexes and TOAST included, no VACUUM; rollups are the same in both layouts and not counted):")
    out(f"  before (0009): frames {before['frames']:,} B ({rows_before['frames']:,} rows) + batches "
        f"{before['batches']:,} B ({rows_before['batches']:,} rows) = {(before['frames'] + before['batches']) / minutes:,.0f} "
        f"B per session-minute, {(before['frames'] + before['batches']) / total_frames:.0f} B per frame")
    out(f"  after (0010):  batches {after:,} B ({rows_before['batches']:,} rows) = {after / minutes:,.0f} B per "
        f"session-minute, {after / total_frames:.0f} B per frame; {(before['frames'] + before['batches']) / after:.1f}x smaller")
    out(f"  migration 0010 converted {total_frames:,} frames in {convert_s:.1f} s "
        f"({total_frames / convert_s:,.0f} frames/s); frames after: {frames_after:,}")
    if frames_after != total_frames:
        out("error: the conversion lost frames", file=sys.stderr)
        return 1
    best = summary[(max(args.batch_frames), True)]
    out(f"\nrows per session-second at {args.fps:g} fps: before {args.fps + args.fps / per_batch + 1:.0f} "
        f"(frames, batches, rollups); after {args.fps / per_batch + 1:.0f} at {per_batch} frames per batch, "
        f"{args.fps / max(args.batch_frames) + 1:.0f} at {max(args.batch_frames)}")
    out(f"load after: {os.getloadavg()[0]:.2f}; best sustained with rollups: {best.frames_per_s:,.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
