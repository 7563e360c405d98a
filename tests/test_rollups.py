"""Rollups written at ingest (storage), on SQLite and PostgreSQL: equal to a recomputation from
the frames after ingest, restarts, late batches and opt-outs; gone with erasure and retention;
rebuilt by `affectline analytics rebuild`; migration 0007 up and down."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic import command
from db_backends import db_engine, db_url, empty_db_url, pg_admin_url, pg_migrated_url  # noqa: F401
from sqlalchemy import Engine, inspect, text

from affectline.analytics import frame_arrays, rollup_session
from affectline.analytics.rollup import SecondRollup
from affectline.storage import frame_pack
from affectline.storage.database import alembic_config, make_engine, upgrade
from affectline.storage.records import BatchRecord, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo
from affectline.storage.rollup_ingest import from_row
from affectline.storage.timeline_store import TimelineStore

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
HAPPY = (0.0, 0.0, 0.0, 0.5, 0.0, 0.25, 0.25)
SAD = (0.25, 0.0, 0.0, 0.0, 0.25, 0.0, 0.5)


def session_record(sid: str, *, viewer: str | None = None, allowed: tuple[str, ...] = (),
                   started: datetime = T0) -> SessionRecord:
    return SessionRecord(
        session_id=sid, video_id="vid", variant_id="", viewer=ViewerInfo(viewer or f"viewer-{sid}"),
        consent=ConsentInfo("v1", started, ("emotion",), allowed), capture_fps=10.0, model="m/1",
        started_at=started, expires_at=started + timedelta(hours=1), token_sha256=b"\0" * 32, wrapped_key=b"k" * 40,
    )


def timeline(times_ms: list[int], per_batch: int = 4) -> list[BatchRecord]:
    """Batches of frames at the given video times; faces alternate happy/sad, some without face or pose."""
    frames = []
    for i, t in enumerate(times_ms):
        probs = None if i % 7 == 3 else (HAPPY if i % 2 else SAD)
        yaw = None if i % 5 == 1 else (10.0 if i % 3 else 50.0)
        frames.append((t, probs, yaw))
    batches = []
    for seq, lo in enumerate(range(0, len(frames), per_batch)):
        batches.append(BatchRecord(seq, b"n%d" % seq, b"d", tuple(
            FrameRecord(seq, j, t, T0, p is not None, p, head_yaw_deg=y if p else None, smoothed=p)
            for j, (t, p, y) in enumerate(frames[lo:lo + per_batch]))))
    return batches


# watch 0-3 s, seek back to 1 s, watch on to 5 s, skip to 8 s
SEEKING = [*range(0, 3000, 250), *range(1000, 5000, 250), *range(8000, 9000, 250)]


def stored(engine: Engine, sid: str) -> list[SecondRollup]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM rollups WHERE session_id = :s ORDER BY second, pass_index"),
                            {"s": sid}).mappings().all()
    return [from_row(r) for r in rows]


def recomputed(store: TimelineStore, sid: str, allowed=None) -> list[SecondRollup]:
    return rollup_session(sid, frame_arrays(store.session_frames(sid)), allowed=allowed)[0]


def assert_same(a: list[SecondRollup], b: list[SecondRollup]) -> None:
    assert [r.key for r in a] == [r.key for r in b]
    for x, y in zip(a, b):
        assert (x.frames, x.frames_with_face, x.attentive, x.pose_known, x.emotion_frames) == (
            y.frames, y.frames_with_face, y.attentive, y.pose_known, y.emotion_frames)
        assert x.emotion_sums == pytest.approx(y.emotion_sums, abs=1e-9)
        for name in ("confidence", "valence", "expressiveness", "engagement", "sentiment"):
            assert getattr(x, f"{name}_frames") == getattr(y, f"{name}_frames")
            assert getattr(x, f"{name}_sum") == pytest.approx(getattr(y, f"{name}_sum"), abs=1e-9)


@pytest.fixture
def store(db_engine: Engine) -> TimelineStore:
    return TimelineStore(db_engine)


def test_rollups_after_ingest_equal_a_recomputation_from_the_frames(store: TimelineStore, db_engine: Engine) -> None:
    store.create_session(session_record("s1"))
    store.create_session(session_record("s2"))
    batches = timeline(SEEKING)
    # one batch at a time for s1; s2's batches in groups with s1's (one transaction each)
    for b in batches:
        assert store.append_batch("s1", b)
    for lo in range(0, len(batches), 3):
        store.append_batches([("s2", b) for b in batches[lo:lo + 3]])
    for sid in ("s1", "s2"):
        rows = stored(db_engine, sid)
        assert {r.pass_index for r in rows} == {0, 1}  # the seek back made a second pass
        assert 6 not in {r.second for r in rows}  # skipped: no row, never zero emotion
        assert_same(rows, recomputed(store, sid))
    # a retried batch adds nothing
    assert not store.append_batch("s1", batches[0])
    assert_same(stored(db_engine, "s1"), recomputed(store, "s1"))


def test_ingest_resumes_after_a_restart(db_url: str) -> None:
    batches = timeline(SEEKING)
    half = len(batches) // 2
    engine = make_engine(db_url)
    TimelineStore(engine).create_session(session_record("s1"))
    for b in batches[:half]:
        TimelineStore(engine).append_batch("s1", b)
    engine.dispose()
    engine = make_engine(db_url)  # a new process: nothing in memory, the state comes from the sessions row
    try:
        store = TimelineStore(engine)
        for b in batches[half:]:
            store.append_batch("s1", b)
        assert_same(stored(engine, "s1"), recomputed(store, "s1"))
    finally:
        engine.dispose()


def test_a_late_batch_rolls_the_session_up_anew(store: TimelineStore, db_engine: Engine) -> None:
    store.create_session(session_record("s1"))
    batches = timeline(SEEKING)
    order = [0, 1, 3, 2, *range(4, len(batches))]  # seq 2 arrives after seq 3
    for i in order:
        store.append_batch("s1", batches[i])
    assert_same(stored(db_engine, "s1"), recomputed(store, "s1"))


def test_withheld_emotions_are_stored_as_null_and_rolled_up_as_absent(store: TimelineStore, db_engine: Engine) -> None:
    store.create_session(session_record("s1", allowed=("happy", "neutral")))
    for b in timeline(SEEKING):
        store.append_batch("s1", b)
    assert store.get_session("s1").consent.allowed_emotions == ("happy", "neutral")
    with db_engine.connect() as conn:  # the stored bytes themselves hold no value for "sad"
        values = conn.execute(text("SELECT frame_data FROM batches WHERE session_id = 's1'")).scalars().all()
    frames, _ = frame_pack.unpack_many(values)
    faces = frames[frames["face_present"] == 1]
    assert len(faces) and np.isnan(faces["probs"][:, 4]).all() and np.isnan(faces["smoothed"][:, 4]).all()
    assert not np.isnan(faces["probs"][:, 3]).any() and not np.isnan(faces["smoothed"][:, 3]).any()
    face = next(f for f in store.session_frames("s1") if f.face_present)
    assert math.isnan(face.probs[4]) and face.smoothed is not None and math.isnan(face.smoothed[4])
    rows = stored(db_engine, "s1")
    assert all(r.emotion_frames[4] == 0 and r.valence_frames == 0 and r.confidence_frames == 0 for r in rows)
    assert any(r.emotion_frames[3] > 0 for r in rows)
    assert_same(rows, recomputed(store, "s1", allowed=("happy", "neutral")))
    with pytest.raises(ValueError, match="unknown emotions"):
        store.create_session(session_record("s2", allowed=("joy",)))


def test_erasure_and_retention_delete_the_rollups(store: TimelineStore, db_engine: Engine) -> None:
    store.create_session(session_record("keep"))
    store.create_session(session_record("erase", viewer="gone"))
    store.create_session(session_record("old", started=datetime(2020, 1, 1, tzinfo=UTC)))
    for sid in ("keep", "erase", "old"):
        store.append_batch(sid, timeline([0, 500, 1000, 1500])[0])
    assert store.erase_viewer("gone") == 1
    assert store.purge_sessions_started_before(datetime(2021, 1, 1, tzinfo=UTC)) == 1
    with db_engine.connect() as conn:
        left = set(conn.execute(text("SELECT DISTINCT session_id FROM rollups")).scalars())
    assert left == {"keep"}


def test_rebuild_restores_rollups_written_with_rollups_off(db_engine: Engine, db_url: str) -> None:
    off = TimelineStore(db_engine, rollups=False)
    off.create_session(session_record("s1"))
    for b in timeline(SEEKING):
        off.append_batch("s1", b)
    assert stored(db_engine, "s1") == []
    from affectline.commands.analytics import main as analytics_main

    assert analytics_main(["analytics", "rebuild", "--video", "vid", "--database-url", db_url]) == 0
    on = TimelineStore(db_engine)
    assert_same(stored(db_engine, "s1"), recomputed(on, "s1"))
    # ingest goes on from the rebuilt state
    for b in timeline([9000, 9250, 2000, 2250], per_batch=2):
        on.append_batch("s1", replace(b, seq=b.seq + 100, nonce=b"late%d" % b.seq,
                                       frames=tuple(replace(f, seq=b.seq + 100) for f in b.frames)))
    assert_same(stored(db_engine, "s1"), recomputed(on, "s1"))


def test_migration_0007_goes_down_and_up_keeping_the_frames(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        store = TimelineStore(engine)
        store.create_session(session_record("s1"))
        store.append_batch("s1", timeline([0, 500, 1000])[0])
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
        assert "rollups" not in inspect(engine).get_table_names()
        assert "allowed_emotions" not in {c["name"] for c in inspect(engine).get_columns("sessions")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM frames")).scalar_one() == 3  # 0010's downgrade unpacked them
        upgrade(engine)
        assert store.rebuild_rollups("s1") == 2
        assert_same(stored(engine, "s1"), recomputed(store, "s1"))
    finally:
        engine.dispose()


def test_rollup_group_equals_one_rollup_session_per_session() -> None:
    from affectline.analytics.rollup import rollup_group

    batches = timeline(SEEKING)
    arrays = [frame_arrays([f for b in batches[lo:lo + 3] for f in b.frames]) for lo in (0, 3, 6)]
    _, state = rollup_session("s", frame_arrays(list(batches[0].frames)))
    items = [("s1", arrays[0], None, None), ("s2", arrays[1], ("happy", "neutral"), None), ("s3", arrays[2], None, state)]
    rows, states = rollup_group(items)
    expected = [rollup_session(sid, a, allowed=al, state=st) for sid, a, al, st in items]
    assert rows == sorted((r for rs, _ in expected for r in rs), key=lambda r: r.key)
    assert states == [st for _, st in expected]
