"""Group commit: many sessions' batches in one transaction; a faulty batch fails alone."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from affectline.metrics import Metrics
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.timeline_store import TimelineStore
from test_storage import batch, frame, session_record


@pytest.fixture
def store(db_engine) -> TimelineStore:
    s = TimelineStore(db_engine)
    for i in range(8):
        s.create_session(session_record(f"s{i}"))
    return s


def face_batch(seq: int, nonce: bytes | None = None):
    probs = (0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0)
    return batch(seq, [frame(seq, i, seq * 100 + i, probs) for i in range(3)], nonce=nonce)


async def test_concurrent_writes_are_grouped_and_all_stored(store):
    metrics = Metrics.create()
    writer = GroupCommitWriter(store, metrics=metrics)
    results = await asyncio.gather(*(writer.write(f"s{i}", face_batch(seq)) for i in range(8) for seq in range(4)))
    writer.close()
    assert results == [True] * 32
    assert store.count_frames() == 96
    groups = metrics.registry.get_sample_value("affectline_db_group_commit_batches_count")
    assert groups < 32  # 32 batches arrived at once: fewer transactions than batches


async def test_a_faulty_batch_fails_alone_and_retries_are_idempotent(store):
    writer = GroupCommitWriter(store)
    reused = b"n" * 12
    first = await writer.write("s0", face_batch(0, nonce=reused))
    results = await asyncio.gather(
        writer.write("s0", face_batch(1, nonce=reused)),  # nonce reuse: the DB refuses it
        writer.write("s1", face_batch(0)),
        writer.write("s0", face_batch(0, nonce=reused)),  # a retry of an accepted seq
        return_exceptions=True,
    )
    writer.close()
    assert first is True
    assert isinstance(results[0], IntegrityError)
    assert results[1] is True and results[2] is False
    assert store.count_frames("s0") == 3 and store.count_frames("s1") == 3


async def test_close_finishes_queued_writes(store):
    writer = GroupCommitWriter(store)
    pending = [asyncio.ensure_future(writer.write("s2", face_batch(seq))) for seq in range(5)]
    await asyncio.sleep(0)
    await asyncio.to_thread(writer.close)
    assert [await p for p in pending] == [True] * 5
    assert store.count_frames("s2") == 15
