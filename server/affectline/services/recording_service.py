"""RecordingService: recorded webcam sessions uploaded, analysed at low priority, stored.

The RPCs turn proto messages into a RecordingRequest, hand the bytes to the UploadStore and
the analysis to Jobs, and report a Job as RecordingStatus. The HTTP upload route
(serving/uploads.py) writes chunks through `write_chunk`, so progress followers see them.

Errors: each kind of bad recording has its own status, and nothing of it is stored:
not a video or truncated -> INVALID_ARGUMENT, no face -> FAILED_PRECONDITION, past the
size limit (or no free analysis slot) -> RESOURCE_EXHAUSTED, consent without "emotion" ->
PERMISSION_DENIED (as StartSession). The recording and the client's file name are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.recording.decode import (
    ConsentMissing,
    NoFaceFound,
    RecordingError,
    RecordingTooLarge,
    TruncatedRecording,
)
from affectline.recording.job import RecordingRequest
from affectline.recording.jobs import Busy, Job, Jobs, JobState
from affectline.recording.uploads import (
    OffsetGap,
    Upload,
    UploadNotFound,
    UploadSealed,
    UploadStore,
)
from affectline.services.proto_convert import from_timestamp, timestamp
from affectline.storage.records import EMOTIONS, ConsentInfo
from affectline.v1 import recording_pb2

log = logging.getLogger(__name__)

REQUIRED_SCOPE = "emotion"
UPLOAD_PATH = "/v1/recordings/{recording_id}"
MAX_CHUNK_BYTES = 8 * 2**20  # per HTTP upload request
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def status_code(exc: BaseException) -> Code:
    """The status a failed recording is answered with."""
    if isinstance(exc, (RecordingTooLarge, Busy)):
        return Code.RESOURCE_EXHAUSTED
    if isinstance(exc, (NoFaceFound, OffsetGap, UploadSealed)):
        return Code.FAILED_PRECONDITION
    if isinstance(exc, ConsentMissing):
        return Code.PERMISSION_DENIED
    if isinstance(exc, RecordingError):
        return Code.INVALID_ARGUMENT
    if isinstance(exc, (UploadNotFound, KeyError)):
        return Code.NOT_FOUND
    return Code.INTERNAL


def as_connect_error(exc: BaseException) -> ConnectError:
    if isinstance(exc, ConnectError):
        return exc
    code = status_code(exc)
    if code is Code.INTERNAL:  # its text may hold paths or SQL: logged by type only, never sent
        log.error("recording analysis failed: %s", type(exc).__name__)
        return ConnectError(code, "internal error")
    if code is Code.NOT_FOUND:
        return ConnectError(code, "unknown or expired recording_id")
    return ConnectError(code, str(exc))


def _checked_id(value: str, what: str, *, optional: bool = False) -> str:
    if optional and not value:
        return value
    if not _ID.fullmatch(value):
        raise ConnectError(Code.INVALID_ARGUMENT, f"{what} must be 1-128 characters of letters, digits, "
                                                  f"'.', '_', ':' or '-'")
    return value


def recording_request(meta: recording_pb2.RecordingMetadata) -> RecordingRequest:
    """Validates the metadata (INVALID_ARGUMENT / PERMISSION_DENIED) into a RecordingRequest."""
    viewer = meta.viewer
    consent = viewer.consent
    if not consent.notice_version or not consent.HasField("consented_at"):
        raise ConnectError(Code.INVALID_ARGUMENT, "viewer.consent needs notice_version and consented_at")
    scopes = tuple(dict.fromkeys(s.strip() for s in consent.scopes if s.strip()))
    if REQUIRED_SCOPE not in scopes:
        raise ConnectError(Code.PERMISSION_DENIED, f"the viewer has not consented to scope {REQUIRED_SCOPE!r}; "
                                                   "nothing is analysed")
    unknown = set(consent.allowed_emotions) - set(EMOTIONS)
    if unknown:
        raise ConnectError(Code.INVALID_ARGUMENT, f"unknown allowed_emotions {sorted(unknown)}; known: {EMOTIONS}")
    if viewer.HasField("demographics") and viewer.demographics.ByteSize():
        raise ConnectError(Code.INVALID_ARGUMENT, "demographics are not taken with recordings")
    allowed = tuple(e for e in EMOTIONS if e in set(consent.allowed_emotions))
    return RecordingRequest(
        video_id=_checked_id(meta.video_id, "video_id"),
        variant_id=_checked_id(meta.variant_id, "variant_id", optional=True),
        viewer_id=_checked_id(viewer.viewer_id, "viewer.viewer_id", optional=True) or None,
        consent=ConsentInfo(consent.notice_version, from_timestamp(consent.consented_at), scopes, allowed),
        offset_ms=meta.offset_ms,
    )


def status_message(job: Job) -> recording_pb2.RecordingStatus:
    p = job.progress()
    out = recording_pb2.RecordingStatus(
        recording_id=job.recording_id, state=job.state.value,
        progress=recording_pb2.RecordingProgress(
            bytes_received=p.bytes_received, total_bytes=p.total_bytes, frames_decoded=p.frames_decoded,
            frames_scored=p.frames_scored, frames_expected=p.frames_expected, percent=p.percent,
            eta_ms=round(p.eta_s * 1000) if p.eta_s is not None else 0))
    if job.outcome is not None and job.state is JobState.DONE:
        o, s = job.outcome, job.outcome.summary
        out.result.CopyFrom(recording_pb2.RecordingResult(
            session_id=o.record.session_id, frames=s.frames_total, frames_with_face=s.frames_with_face,
            dominant_emotion=o.dominant, viewer_id=o.record.viewer.viewer_id, model=o.record.model,
            first_video_time_ms=s.first_video_time_ms or 0, last_video_time_ms=s.last_video_time_ms or 0))
    if job.state is JobState.FAILED and job.error is not None:
        err = as_connect_error(job.error)
        out.error_code, out.error_message = err.code.name, err.message
    return out


class RecordingService:
    def __init__(self, *, uploads: UploadStore, jobs: Jobs, max_chunk_bytes: int,
                 progress_interval_s: float = 0.25) -> None:
        self._uploads = uploads
        self._jobs = jobs
        self.max_chunk_bytes = max_chunk_bytes
        self._interval_s = progress_interval_s
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def upload_dir(self) -> Path:
        """The private directory that holds recordings while they arrive and are analysed."""
        return self._uploads.root

    # --- the parts the HTTP upload route uses ---------------------------------------------

    def upload(self, recording_id: str) -> Upload:
        """The upload of a recording still taking bytes or being analysed (UploadNotFound)."""
        self._sweep()
        return self._uploads.get(recording_id)

    async def write_chunk(self, recording_id: str, offset: int, data: bytes) -> Upload:
        upload = await self._uploads.write(recording_id, offset, data)
        with contextlib.suppress(KeyError):
            self._jobs.get(recording_id).touch()
        return upload

    # --- RPCs ----------------------------------------------------------------------------

    def _new_job(self, meta: recording_pb2.RecordingMetadata) -> Job:
        request = recording_request(meta)
        try:
            upload = self._uploads.create(meta.total_bytes)
        except RecordingError as exc:
            raise as_connect_error(exc) from None
        self._ensure_sweeper()
        return self._jobs.add(upload, request)

    def _job(self, ref: recording_pb2.RecordingRef) -> Job:
        self._sweep()
        try:
            return self._jobs.get(ref.recording_id)
        except KeyError:
            raise ConnectError(Code.NOT_FOUND, "unknown or expired recording_id") from None

    def _reserve(self, job: Job) -> None:
        try:
            self._jobs.reserve(job)
        except Busy as exc:
            raise as_connect_error(exc) from None

    async def analyze_recording(self, requests: AsyncIterator[recording_pb2.AnalyzeRecordingRequest],
                                ctx: object = None) -> AsyncIterator[recording_pb2.RecordingStatus]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise ConnectError(Code.INVALID_ARGUMENT, "the first message must carry the recording's metadata")
        job = self._new_job(first.metadata)
        try:
            self._reserve(job)
            yield status_message(job)
            upload, loop = job.upload, asyncio.get_running_loop()
            last = loop.time()
            async for message in requests:
                if message.WhichOneof("part") != "chunk":
                    raise ConnectError(Code.INVALID_ARGUMENT, "metadata is sent once, first; then only chunks")
                try:
                    await self.write_chunk(job.recording_id, upload.received, message.chunk)
                except (RecordingError, UploadNotFound) as exc:
                    raise as_connect_error(exc) from None
                if loop.time() - last >= self._interval_s:
                    last = loop.time()
                    yield status_message(job)
            if not upload.complete:
                raise as_connect_error(TruncatedRecording(
                    f"the upload ended after {upload.received} of {upload.total_bytes} bytes"))
            await self._uploads.seal(job.recording_id)
            self._jobs.start(job)
            async for _ in job.changes(self._interval_s):
                if job.state is JobState.FAILED:
                    raise as_connect_error(job.error or RuntimeError())
                if job.state is JobState.CANCELLED:  # CancelRecording or a server shutdown
                    raise ConnectError(Code.CANCELLED, "the analysis was cancelled; nothing is stored")
                yield status_message(job)
        finally:
            if not job.finished:  # an error, or the client went away: stop, store nothing, delete
                self._jobs.cancel(job)

    async def create_recording_upload(self, request: recording_pb2.RecordingMetadata,
                                      ctx: object = None) -> recording_pb2.RecordingUpload:
        job = self._new_job(request)
        return recording_pb2.RecordingUpload(
            recording_id=job.recording_id, max_bytes=self._uploads.max_bytes,
            upload_url=UPLOAD_PATH.format(recording_id=job.recording_id), max_chunk_bytes=self.max_chunk_bytes,
            expires_at=timestamp(datetime.now(UTC) + timedelta(seconds=self._uploads.ttl_s)))

    async def start_recording_analysis(self, request: recording_pb2.RecordingRef,
                                       ctx: object = None) -> recording_pb2.RecordingStatus:
        job = self._job(request)
        if job.state is not JobState.UPLOADING:
            raise ConnectError(Code.FAILED_PRECONDITION, f"the recording is already {job.state.name.lower()}")
        if not job.upload.complete:
            raise ConnectError(Code.FAILED_PRECONDITION, f"{job.upload.received} of {job.upload.total_bytes} bytes "
                                                         "have arrived; upload the rest first")
        self._reserve(job)
        await self._uploads.seal(job.recording_id)
        self._jobs.start(job)
        return status_message(job)

    async def get_recording_status(self, request: recording_pb2.RecordingRef,
                                   ctx: object = None) -> recording_pb2.RecordingStatus:
        return status_message(self._job(request))

    async def watch_recording(self, request: recording_pb2.RecordingRef,
                              ctx: object = None) -> AsyncIterator[recording_pb2.RecordingStatus]:
        job = self._job(request)
        async for _ in job.changes(self._interval_s):
            if job.state is JobState.FAILED:
                raise as_connect_error(job.error or RuntimeError())
            yield status_message(job)

    async def cancel_recording(self, request: recording_pb2.RecordingRef,
                               ctx: object = None) -> recording_pb2.RecordingStatus:
        job = self._job(request)
        self._jobs.cancel(job)
        if job.task is not None:
            await asyncio.wait([job.task], timeout=10)
        return status_message(job)

    # --- housekeeping --------------------------------------------------------------------

    def _sweep(self) -> None:
        for rid in self._uploads.sweep():  # abandoned uploads: their file is gone, so is the job
            self._jobs.forget(rid)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="affectline-upload-sweeper")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(60.0, self._uploads.ttl_s / 4)))
            self._sweep()

    async def close(self) -> None:
        """Cancels running analyses (nothing of them stays stored) and deletes every upload."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._jobs.close()
        self._uploads.close()
