"""The parts behind RecordingService: the upload store (resume, idempotent overlap, expiry,
private files), the analysis slot limit, and the all-or-nothing store of a timeline."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime

import pytest
from affectline.recording import analyse as an
from affectline.recording.decode import RecordingError, RecordingTooLarge
from affectline.recording.job import RecordingRequest
from affectline.recording.jobs import Busy, Jobs, JobState
from affectline.recording.uploads import (
    OffsetGap,
    UploadNotFound,
    UploadSealed,
    UploadStore,
)
from affectline.storage.records import ConsentInfo
from affectline.storage.timeline_store import open_store

CONSENT = ConsentInfo("2026-11", datetime(2026, 12, 1, tzinfo=UTC), ("emotion",))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_uploads_resume_overlap_and_expire(tmp_path):
    clock = Clock()
    store = UploadStore(max_bytes=1000, ttl_s=60, parent=tmp_path, clock=clock)

    async def scenario() -> None:
        with pytest.raises(RecordingTooLarge):
            store.create(1001)
        up = store.create(10)
        assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
        assert stat.S_IMODE(up.path.stat().st_mode) == 0o600
        await store.write(up.recording_id, 0, b"01234")
        await store.write(up.recording_id, 3, b"34567")  # overlaps: only 567 is new
        await store.write(up.recording_id, 0, b"0123")  # a repeat: nothing changes
        with pytest.raises(OffsetGap) as gap:
            await store.write(up.recording_id, 9, b"9")
        assert gap.value.received == 8
        with pytest.raises(RecordingError):
            await store.write(up.recording_id, 8, b"89x")  # past the announced size
        await store.write(up.recording_id, 8, b"89")
        assert up.complete and up.path.read_bytes() == b"0123456789"
        await store.seal(up.recording_id)
        with pytest.raises(UploadSealed):
            await store.write(up.recording_id, 0, b"0")
        idle = store.create(5)
        clock.now += 61
        assert store.sweep() == [idle.recording_id], "a sealed upload (being analysed) never expires"
        assert not idle.path.exists()
        with pytest.raises(UploadNotFound):
            store.get(idle.recording_id)
        store.close()
        assert not up.path.exists() and not any(tmp_path.iterdir())

    asyncio.run(scenario())


def test_analysis_slots_and_cleanup(tmp_path):
    uploads = UploadStore(max_bytes=100, ttl_s=60, parent=tmp_path)
    gate = asyncio.Event

    async def scenario() -> None:
        release = gate()

        async def run(path, request, *, hooks):
            hooks.expected(2)
            hooks.scored(1)
            await release.wait()
            raise RecordingError("no frame could be decoded")

        jobs = Jobs(run, max_running=1, keep_s=60, on_finished=lambda j: uploads.discard(j.recording_id))
        request = RecordingRequest("v", "", None, CONSENT)
        a, b = (jobs.add(uploads.create(1), request) for _ in range(2))
        jobs.start(a)
        await asyncio.sleep(0)
        assert a.state is JobState.ANALYSING and a.progress().percent == 50.0
        with pytest.raises(Busy):
            jobs.reserve(b)
        release.set()
        await a.task
        assert a.state is JobState.FAILED and isinstance(a.error, RecordingError)
        assert not a.upload.path.exists(), "the file goes with the analysis"
        jobs.reserve(b)  # the slot is free again
        jobs.cancel(b)
        assert b.state is JobState.CANCELLED and not b.upload.path.exists()

    asyncio.run(scenario())


def test_a_store_that_fails_midway_leaves_nothing(tmp_path):
    """analyse.store_timeline: a batch fails after others were stored -> delete_session."""
    frames = [an.FrameResult(i, i * 33, i * 33, None, None) for i in range(100)]
    record = an.session_record(video_id="v", variant_id="", viewer_id="panel-1", consent=CONSENT, model="m",
                               capture_fps=30)

    class FailingWriter:
        def __init__(self, store) -> None:
            self.store, self.n = store, 0

        async def write(self, sid, batch):
            self.n += 1
            if self.n == 3:
                await asyncio.sleep(0.05)
                raise OSError("disk full")
            return await asyncio.to_thread(self.store.append_batch, sid, batch)

    with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=True) as store:
        with pytest.raises(OSError):
            asyncio.run(an.store_timeline(store, FailingWriter(store), record, frames))
        assert store.get_session(record.session_id) is None and store.count_frames() == 0
        assert store.delete_session(record.session_id) is False
