"""TimelineStore and migrations, run on SQLite and on PostgreSQL (see db_backends.py).

Probabilities in the hand-made examples are sums of powers of two, so they are exact in
float32 (PostgreSQL REAL) and their means can be compared with ==.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from db_backends import db_engine, db_url, empty_db_url, pg_admin_url, pg_migrated_url  # noqa: F401
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from affectline.storage.database import alembic_config, current_revision, head_revision, make_engine, upgrade
from affectline.storage.records import (
    BatchRecord,
    BucketRecord,
    ConsentInfo,
    FrameRecord,
    SessionRecord,
    ViewerInfo,
)
from affectline.storage import partitions
from affectline.storage.timeline_store import TimelineStore

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = {"videos", "variants", "viewers", "sessions", "batches", "webhooks", "rollups", "api_keys"}
P1 = (0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.015625)
P2 = (0.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125)
P3 = (0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0)


def session_record(session_id: str = "s1", *, video: str = "vid", variant: str = "") -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        video_id=video,
        variant_id=variant,
        viewer=ViewerInfo(viewer_id=f"viewer-{session_id}", age_band="25-34", gender="f", region="EU"),
        # A non-UTC zone on purpose: it must come back as the same instant, in UTC.
        consent=ConsentInfo("v3", T0.astimezone(timezone(timedelta(hours=2))), ("emotion", "head_pose", "demographics")),
        capture_fps=7.5,
        model="emo-net/1.2.0",
        started_at=T0,
        expires_at=T0 + timedelta(hours=1),
        token_sha256=b"\x01" * 32,
        wrapped_key=b"\x00\xffkey" * 10,
    )


def frame(seq: int, index: int, time_ms: int, probs: tuple[float, ...] | None) -> FrameRecord:
    return FrameRecord(
        seq=seq,
        index=index,
        video_time_ms=time_ms,
        captured_at=T0 + timedelta(milliseconds=time_ms),
        face_present=probs is not None,
        probs=probs,
        head_yaw_deg=-12.5 if probs else None,
        head_pitch_deg=3.25 if probs else None,
        face_box_size=0.375 if probs else None,
    )


def batch(seq: int, frames: list[FrameRecord], *, nonce: bytes | None = None) -> BatchRecord:
    return BatchRecord(
        seq=seq,
        nonce=nonce if nonce is not None else b"nonce-%d" % seq,
        digest=b"digest-%d" % seq,
        frames=tuple(frames),
    )


@pytest.fixture
def store(db_engine: Engine) -> TimelineStore:
    return TimelineStore(db_engine)


# ------------------------------------------------------------------------- migrations


def test_migrations_from_empty_make_exactly_the_schema(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision() == "0010"
        with engine.connect() as conn:
            day_partitions = partitions.partition_tables(conn)
            if engine.dialect.name == "postgresql":  # the default partition, today's and tomorrow's
                assert {"batches_default", partitions.partition_name(datetime.now(UTC).date())} <= day_partitions
            assert set(inspect(engine).get_table_names()) - day_partitions == TABLES | {"alembic_version"}
            # Columns, types, nullability, keys, indexes and unique constraints of tables.py.
            context = MigrationContext.configure(conn, opts={
                "include_name": lambda name, kind, _: not (kind == "table" and name in day_partitions)})
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_from_0003_drops_the_unused_time_index_and_keeps_the_frames(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        # The data is written by today's store, then the schema goes down to 0003 (0010's
        # downgrade unpacks the frames, 0007's keeps them), up to 0004, and back to the head.
        upgrade(engine)
        store = TimelineStore(engine)
        store.create_session(session_record())
        assert store.append_batch("s1", batch(0, [frame(0, 0, 0, P1), frame(0, 1, 33, None)]))
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")
        indexes = lambda: {ix["name"] for ix in inspect(engine).get_indexes("frames")}  # noqa: E731
        assert "ix_frames_session_time" in indexes()
        upgrade(engine, "0004")
        assert current_revision(engine) == "0004"
        assert "ix_frames_session_time" not in indexes()
        upgrade(engine)
        assert [(f.index, f.video_time_ms, f.probs) for f in store.session_frames("s1")] == [(0, 0, P1), (1, 33, None)]
    finally:
        engine.dispose()


def test_migration_0010_packs_and_unpacks_every_field(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        store = TimelineStore(engine)
        record = replace(session_record("s1"), consent=replace(session_record().consent, allowed_emotions=("happy", "sad")))
        store.create_session(record)
        store.create_session(session_record("s2"))
        smoothed = replace(frame(0, 2, 66, P2), smoothed=P3, captured_at=None, face_box_size=None)
        store.append_batch("s1", batch(0, [frame(0, 0, 0, P1), frame(0, 1, 33, None), smoothed]))
        store.append_batch("s1", batch(1, [frame(1, 0, 100, P3)]))
        store.append_batch("s2", batch(5, [frame(5, 0, -40, P2)]))
        store.append_batch("s2", batch(6, []))
        before = {sid: repr(store.session_frames(sid)) for sid in ("s1", "s2")}
        batches = {sid: repr([store.get_batch(sid, q) for q in (0, 1, 5, 6)]) for sid in ("s1", "s2")}
        assert "nan" in before["s1"]  # the emotions s1 withheld
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0009")
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT session_id, seq, frame_index, video_time_ms, captured_at IS NULL, "
                                        "p_angry, p_happy, s_happy, face_box_size FROM frames "
                                        "ORDER BY session_id, seq, frame_index").all()
            counts = conn.exec_driver_sql("SELECT session_id, seq, frames FROM batches ORDER BY 1, 2").all()
        assert [tuple(r) for r in rows] == [
            ("s1", 0, 0, 0, False, None, P1[3], None, 0.375), ("s1", 0, 1, 33, False, None, None, None, None),
            ("s1", 0, 2, 66, True, None, P2[3], P3[3], None), ("s1", 1, 0, 100, False, None, P3[3], None, 0.375),
            ("s2", 5, 0, -40, False, P2[0], P2[3], None, 0.375)]
        assert [tuple(c) for c in counts] == [("s1", 0, 3), ("s1", 1, 1), ("s2", 5, 1), ("s2", 6, 0)]
        upgrade(engine)
        assert {sid: repr(store.session_frames(sid)) for sid in ("s1", "s2")} == before
        assert {sid: repr([store.get_batch(sid, q) for q in (0, 1, 5, 6)]) for sid in ("s1", "s2")} == batches
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_noop(db_engine: Engine, store: TimelineStore) -> None:
    store.ensure_video("vid", "", "Title")
    upgrade(db_engine)
    assert current_revision(db_engine) == head_revision()
    assert store.count_sessions("vid") == 0
    store.ensure_video("vid", "")  # the row survived: an empty title does not overwrite
    store.create_session(session_record())
    assert store.count_sessions("vid") == 1


# ------------------------------------------------------------------------- sessions


def test_session_round_trip_and_end(store: TimelineStore) -> None:
    record = session_record()
    store.create_session(record)
    got = store.get_session("s1")
    assert got == record
    assert got is not None and got.consent.consented_at.utcoffset() == timedelta(0)
    assert store.get_session("nope") is None
    assert store.active_session_count(T0 + timedelta(minutes=1)) == 1
    assert store.active_session_count(T0 + timedelta(hours=2)) == 0  # expired

    ended = store.end_session("s1", "viewer_stopped", T0 + timedelta(minutes=5))
    assert ended == replace(record, ended_at=T0 + timedelta(minutes=5), end_reason="viewer_stopped")
    assert ended.ended_at is not None and ended.ended_at.tzinfo is not None
    # Ending again keeps the first end.
    assert store.end_session("s1", "expired", T0 + timedelta(hours=1)) == ended
    assert store.active_session_count(T0 + timedelta(minutes=1)) == 0
    with pytest.raises(KeyError):
        store.end_session("nope", "x", T0)


def test_create_session_upserts_viewer_and_video(store: TimelineStore) -> None:
    store.create_session(session_record("s1", variant="a"))
    again = replace(session_record("s2", variant="b"), viewer=ViewerInfo("viewer-s1", "35-44", "m", "US"))
    store.create_session(again)
    assert store.get_session("s1").viewer == ViewerInfo("viewer-s1", "35-44", "m", "US")  # type: ignore[union-attr]
    assert store.count_sessions("vid") == 2
    assert store.count_sessions("vid", "a") == 1
    assert store.count_sessions("other") == 0
    with pytest.raises(IntegrityError):
        store.create_session(session_record("s1"))


# ------------------------------------------------------------------------- batches


def test_append_batch_bulk_and_idempotent_retry(store: TimelineStore) -> None:
    store.create_session(session_record())
    first = batch(1, [frame(1, i, 100 * i, P1 if i % 3 else None) for i in range(10)])
    assert store.append_batch("s1", first) is True
    assert store.count_frames("s1") == store.count_frames() == 10
    assert store.get_batch("s1", 1) == first

    # A retry, or a replay of the seq with other content, writes nothing.
    assert store.append_batch("s1", first) is False
    assert store.append_batch("s1", replace(first, nonce=b"other", digest=b"other")) is False
    assert store.count_frames() == 10
    assert store.get_batch("s1", 1) == first
    assert not store.nonce_used("s1", b"other")
    assert store.get_batch("s1", 2) is None


def test_fast_batch_insert_stores_times_as_core_does(db_engine: Engine, store: TimelineStore) -> None:
    # On SQLite the batch path bypasses Core; its stored text must be what Core writes, or
    # time-range queries and sorting would break. Compare with a row Core wrote (sessions).
    store.create_session(session_record())
    store.append_batch("s1", batch(1, [frame(1, 0, 250, P1)]))
    with db_engine.connect() as conn:
        started = conn.exec_driver_sql("SELECT started_at FROM sessions").scalar_one()
        accepted = conn.exec_driver_sql("SELECT accepted_at FROM batches").scalar_one()
        day = conn.exec_driver_sql("SELECT session_day FROM batches").scalar_one()
    assert type(started) is type(accepted)
    if isinstance(accepted, str):  # SQLite keeps text: same format as Core's
        assert len(accepted) == len(str(started)) and accepted[10] == str(started)[10]
        assert day == "2025-03-01"
    else:
        assert str(day) == "2025-03-01"
    assert store.session_frames("s1")[0].captured_at == T0 + timedelta(milliseconds=250)


def test_failed_batch_leaves_nothing(store: TimelineStore) -> None:
    store.create_session(session_record())
    # The 3rd frame repeats index 1: refused before anything is written.
    bad = batch(1, [frame(1, 0, 0, P1), frame(1, 1, 100, P2), frame(1, 1, 200, None)])
    with pytest.raises(ValueError, match="indices"):
        store.append_batch("s1", bad)
    assert store.get_batch("s1", 1) is None
    assert store.count_frames() == 0
    assert not store.nonce_used("s1", bad.nonce)

    # The same seq can then be stored properly.
    good = batch(1, [frame(1, 0, 0, P1), frame(1, 1, 100, P2)])
    assert store.append_batch("s1", good) is True
    # A nonce reused under another seq is refused by the database as well.
    with pytest.raises(IntegrityError):
        store.append_batch("s1", batch(2, [frame(2, 0, 300, P1)], nonce=good.nonce))
    with pytest.raises(IntegrityError):  # unknown session
        store.append_batch("nope", batch(1, [frame(1, 0, 0, P1)]))
    assert store.count_frames() == 2
    assert store.get_batch("s1", 2) is None


def test_malformed_frames_are_refused_before_writing(store: TimelineStore) -> None:
    store.create_session(session_record())
    naive = replace(frame(1, 0, 0, P1), captured_at=datetime(2025, 1, 1))
    for frames in ([naive], [frame(2, 0, 0, P1)], [replace(frame(1, 0, 0, P1), probs=(0.5,))]):
        with pytest.raises(ValueError):
            store.append_batch("s1", batch(1, frames))
    assert store.get_batch("s1", 1) is None


def test_nonce_used(store: TimelineStore) -> None:
    store.create_session(session_record("s1"))
    store.create_session(session_record("s2"))
    store.append_batch("s1", batch(1, [frame(1, 0, 0, P1)], nonce=b"n1"))
    assert store.nonce_used("s1", b"n1")
    assert not store.nonce_used("s1", b"n2")
    assert not store.nonce_used("s2", b"n1")  # nonces are per session


def test_session_frames_are_ordered_by_seq_then_index(store: TimelineStore) -> None:
    store.create_session(session_record())
    store.append_batch("s1", batch(2, [frame(2, 1, 900, P1), frame(2, 0, 800, None)]))
    store.append_batch("s1", batch(1, [frame(1, 2, 300, P2), frame(1, 0, 100, P3), frame(1, 1, 200, P1)]))
    frames = store.session_frames("s1")
    assert [(f.seq, f.index) for f in frames] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]
    assert frames[0] == frame(1, 0, 100, P3)
    assert frames[3] == frame(2, 0, 800, None)
    assert store.session_frames("nope") == []


def test_session_summary(store: TimelineStore) -> None:
    store.create_session(session_record())
    store.append_batch("s1", batch(1, [frame(1, 0, 40, P1), frame(1, 1, 140, None)]))
    store.append_batch("s1", batch(2, [frame(2, 0, 240, P2), frame(2, 1, 340, P3)]))
    summary = store.session_summary("s1")
    assert summary.frames_total == 4
    assert summary.frames_with_face == 3
    assert summary.mean_probs == tuple((a + b + c) / 3 for a, b, c in zip(P1, P2, P3, strict=True))
    assert (summary.first_video_time_ms, summary.last_video_time_ms) == (40, 340)

    empty = store.session_summary("nope")
    assert (empty.frames_total, empty.frames_with_face, empty.mean_probs) == (0, 0, None)
    assert empty.first_video_time_ms is None and empty.last_video_time_ms is None


def mean(*probs: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(sum(column) / len(probs) for column in zip(*probs, strict=True))


def test_video_timeline(store: TimelineStore) -> None:
    store.create_session(session_record("a", variant=""))
    store.create_session(session_record("b", variant="alt"))
    store.create_session(session_record("x", video="other"))
    store.append_batch("a", batch(1, [frame(1, 0, 0, P1), frame(1, 1, 500, P2), frame(1, 2, 1500, P3)]))
    store.append_batch("a", batch(2, [frame(2, 0, 1999, None)]))
    store.append_batch("b", batch(1, [frame(1, 0, 900, P3), frame(1, 1, 1000, P1), frame(1, 2, 2500, None)]))
    store.append_batch("x", batch(1, [frame(1, 0, 100, P1)]))  # another video: never counted

    assert store.video_timeline("vid", None, 1000) == [
        BucketRecord(0, mean(P1, P2, P3), viewers=2, frames=3, frames_with_face=3),
        BucketRecord(1000, mean(P3, P1), viewers=2, frames=3, frames_with_face=2),
        BucketRecord(2000, None, viewers=1, frames=1, frames_with_face=0),
    ]
    assert store.video_timeline("vid", "", 1000) == [
        BucketRecord(0, mean(P1, P2), viewers=1, frames=2, frames_with_face=2),
        BucketRecord(1000, P3, viewers=1, frames=2, frames_with_face=1),
    ]
    assert store.video_timeline("vid", "alt", 2000) == [
        BucketRecord(0, mean(P3, P1), viewers=1, frames=2, frames_with_face=2),
        BucketRecord(2000, None, viewers=1, frames=1, frames_with_face=0),
    ]
    assert store.video_timeline("vid", "missing", 1000) == []
    with pytest.raises(ValueError):
        store.video_timeline("vid", None, 0)


def test_video_timeline_floors_negative_times(store: TimelineStore) -> None:
    store.create_session(session_record())
    store.append_batch("s1", batch(1, [frame(1, 0, -1, P1), frame(1, 1, -1000, P2), frame(1, 2, -1001, P3)]))
    starts = [(b.start_ms, b.frames) for b in store.video_timeline("vid", None, 1000)]
    assert starts == [(-2000, 1), (-1000, 2)]


def test_300_frame_batch_in_one_call(store: TimelineStore) -> None:
    store.create_session(session_record())
    frames = [frame(7, i, 40 * i, (P1, P2, None)[i % 3]) for i in range(300)]
    assert store.append_batch("s1", batch(7, frames)) is True
    assert store.count_frames("s1") == 300
    assert store.session_frames("s1") == frames
    summary = store.session_summary("s1")
    assert (summary.frames_total, summary.frames_with_face) == (300, 200)
    assert summary.mean_probs == mean(P1, P2)


def test_concurrent_appends_from_threads(store: TimelineStore) -> None:
    store.create_session(session_record())
    batches = [batch(seq, [frame(seq, i, 1000 * seq + i, P1) for i in range(10)]) for seq in range(20)]
    # Every batch is sent twice at once, as a client retrying on a timeout would.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda b: store.append_batch("s1", b), batches + batches))
    assert sorted(results) == [False] * 20 + [True] * 20
    assert store.count_frames("s1") == 200


def test_erase_viewer_removes_their_sessions_and_frames_only(store: TimelineStore):
    store.create_session(session_record("a"))
    other = session_record("b")
    other = replace(other, viewer=replace(other.viewer, viewer_id="someone-else"))
    store.create_session(other)
    for sid in ("a", "b"):
        store.append_batch(sid, batch(0, [frame(0, 0, 0, (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))]))
    viewer = session_record("a").viewer.viewer_id
    assert store.erase_viewer(viewer) == 1
    assert store.get_session("a") is None and store.count_frames("a") == 0
    assert store.get_session("b") is not None and store.count_frames("b") == 1
    assert store.erase_viewer(viewer) == 0


def test_retention_purges_old_sessions_and_their_frames(store: TimelineStore):
    old = replace(session_record("old"), started_at=datetime(2020, 1, 1, tzinfo=UTC))
    store.create_session(old)
    store.create_session(session_record("new"))
    store.append_batch("old", batch(0, [frame(0, 0, 0, None)]))
    assert store.purge_sessions_started_before(datetime(2021, 1, 1, tzinfo=UTC)) == 1
    assert store.get_session("old") is None and store.count_frames("old") == 0
    assert store.get_session("new") is not None


def test_retention_drops_whole_days_of_batches_as_partitions(db_engine: Engine, store: TimelineStore) -> None:
    from affectline.storage.privacy_store import PrivacyStore

    now = datetime.now(UTC)
    days = {"d40": now - timedelta(days=40), "d39": now - timedelta(days=39), "d20": now - timedelta(days=20),
            "kept": now - timedelta(days=39) + timedelta(microseconds=1), "today": now}
    for sid, started in days.items():
        video = "long-campaign" if sid == "kept" else "vid"
        store.create_session(replace(session_record(sid, video=video), started_at=started))
        store.append_batch(sid, batch(0, [frame(0, 0, 0, P1), frame(0, 1, 33, None)]))
    privacy = PrivacyStore(db_engine)
    privacy.set_retention("long-campaign", 60)
    with db_engine.connect() as conn:
        before = partitions.list_days(conn) if db_engine.dialect.name == "postgresql" else []
    assert privacy.purge_expired(now, default_days=30) == 2  # d40 and d39; "kept" has 60 days
    assert [store.count_frames(sid) for sid in days] == [0, 0, 2, 2, 2]
    assert store.get_session("kept") is not None and store.get_session("d40") is None
    if db_engine.dialect.name == "postgresql":
        with db_engine.connect() as conn:
            after = partitions.list_days(conn)
        day = {sid: partitions.session_day(t) for sid, t in days.items()}
        assert {day["d40"], day["d39"], day["d20"], day["today"]} <= set(before)
        # d40's day went as a partition; d39's holds a session of the 60-day campaign, so its
        # other session went row by row; d20 is within 30 days.
        assert day["d40"] not in after and {day["d39"], day["d20"], day["today"]} <= set(after)
        with db_engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM batches_default").scalar_one() == 0


# ------------------------------------------------------------------------- issue 42 defects


def test_seq_past_2_pow_31_is_stored_and_read_back(store: TimelineStore) -> None:
    """seq is u64 on the wire: on PostgreSQL it was a 32-bit INTEGER (migration 0005)."""
    store.create_session(session_record())
    big = 2**31 + 5
    frames = [frame(big, 0, 0, P1), frame(big, 1, 33, None)]
    assert store.append_batch("s1", batch(big, frames))
    assert store.append_batch("s1", batch(2**63 - 1, [frame(2**63 - 1, 0, 66, P2)]))
    assert store.get_batch("s1", big).frames == tuple(frames)  # type: ignore[union-attr]
    assert [f.seq for f in store.session_frames("s1")] == [big, big, 2**63 - 1]
    assert store.max_seq("s1") == 2**63 - 1
    assert not store.append_batch("s1", batch(big, frames))  # a retry is still recognised


def test_a_session_without_demographics_never_wipes_the_known_ones(store: TimelineStore) -> None:
    store.create_session(session_record("s1"))  # 25-34 / f / EU, with the demographics scope
    known = ViewerInfo("viewer-s1", "25-34", "f", "EU")
    bare = replace(session_record("s2"), viewer=ViewerInfo("viewer-s1", "", "", ""))
    store.create_session(bare)
    assert store.get_session("s2").viewer == known  # type: ignore[union-attr]
    # Values sent without the demographics scope are not stored either.
    no_scope = replace(session_record("s3"), viewer=ViewerInfo("viewer-s1", "65+", "m", "US"),
                       consent=replace(session_record().consent, scopes=("emotion",)))
    store.create_session(no_scope)
    assert store.get_session("s3").viewer == known  # type: ignore[union-attr]
    # Non-empty values under the scope do update, field by field.
    store.create_session(replace(session_record("s4"), viewer=ViewerInfo("viewer-s1", "35-44", "", "")))
    assert store.get_session("s1").viewer == ViewerInfo("viewer-s1", "35-44", "f", "EU")  # type: ignore[union-attr]


def test_open_sessions_per_viewer_are_capped(store: TimelineStore) -> None:
    from affectline.storage.timeline_store import TooManyOpenSessions

    for i in range(3):
        store.create_session(session_record(f"s{i}"), max_open_per_viewer=3)
    viewer = session_record("s0").viewer
    same_viewer = lambda sid: replace(session_record(sid), viewer=viewer)  # noqa: E731
    for i in range(1, 3):
        store.create_session(same_viewer(f"t{i}"), max_open_per_viewer=3)
    with pytest.raises(TooManyOpenSessions) as info:
        store.create_session(same_viewer("t3"), max_open_per_viewer=3)
    assert info.value.open_sessions == 3 and store.get_session("t3") is None
    store.end_session("t1", "completed", T0)  # an ended session no longer counts
    store.create_session(same_viewer("t3"), max_open_per_viewer=3)
    late = replace(same_viewer("t4"), started_at=T0 + timedelta(hours=2), expires_at=T0 + timedelta(hours=3))
    store.create_session(late, max_open_per_viewer=1)  # the others have expired by then


def test_session_frames_page_concatenates_to_the_whole_timeline(store: TimelineStore) -> None:
    store.create_session(session_record())
    for seq in range(4):
        store.append_batch("s1", batch(seq, [frame(seq, i, seq * 100 + i, P1 if i % 2 else None) for i in range(7)]))
    whole = store.session_frames("s1")
    pages, after = [], None
    while True:
        page = store.session_frames_page("s1", after, 5)
        pages.append(page)
        if len(page) < 5:
            break
        after = (page[-1].seq, page[-1].index)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 5, 3]
    assert [f for p in pages for f in p] == whole and len(whole) == 28


def test_get_video_is_one_video_and_its_variants(store: TimelineStore) -> None:
    store.create_session(session_record("a", variant="b"))
    store.create_session(session_record("c", variant="a"))
    store.create_session(session_record("x", video="other"))
    video = store.get_video("vid")
    assert video is not None and video["video_id"] == "vid" and video["variants"] == ["a", "b"]
    assert store.get_video("nope") is None
