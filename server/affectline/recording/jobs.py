"""Recording analyses the server runs: their state and progress, and at most N at once.

A Job goes UPLOADING -> ANALYSING -> STORING -> DONE, or ends FAILED or CANCELLED. Its
progress is updated on the event loop by the pipeline's hooks, and readers either take a
snapshot or follow its changes (`Job.changes`). The slot limit keeps recordings from taking
more than N analyses' worth of CPU, temp disk and low-priority batcher share at a time.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from affectline.recording.job import Outcome, ProgressHooks, RecordingRequest
from affectline.recording.uploads import Upload


class Runner(Protocol):
    """recording.job.analyse_and_store with its parts bound (app.py)."""

    def __call__(self, path: Path, request: RecordingRequest, *, hooks: ProgressHooks) -> Awaitable[Outcome]: ...


class JobState(enum.Enum):
    UPLOADING = 1
    ANALYSING = 2
    STORING = 3
    DONE = 4
    FAILED = 5
    CANCELLED = 6


FINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class Busy(Exception):
    """All analysis slots are taken."""


@dataclass(frozen=True, slots=True)
class Progress:
    bytes_received: int
    total_bytes: int
    frames_expected: int
    frames_decoded: int
    frames_scored: int
    percent: float  # of the current state, 0..100
    eta_s: float | None


@dataclass(eq=False)
class Job:
    upload: Upload
    request: RecordingRequest
    clock: Callable[[], float] = time.monotonic
    state: JobState = JobState.UPLOADING
    frames_expected: int = 0
    frames_decoded: int = 0
    frames_scored: int = 0
    outcome: Outcome | None = None
    error: BaseException | None = None
    finished_at: float | None = None
    has_slot: bool = False
    task: asyncio.Task[None] | None = None
    _phase_started: float = field(default=0.0)
    _version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._phase_started = self.clock()

    @property
    def recording_id(self) -> str:
        return self.upload.recording_id

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def touch(self) -> None:
        """Something changed: wakes the readers following this job."""
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def set_state(self, state: JobState) -> None:
        if self.finished:
            return
        self.state = state
        self._phase_started = self.clock()
        if state in FINAL:
            self.finished_at = self.clock()
        self.touch()

    def _add(self, name: str, n: int) -> None:
        setattr(self, name, getattr(self, name) + n)
        self.touch()

    def hooks(self) -> ProgressHooks:
        def expected(n: int) -> None:
            self.frames_expected = n
            self.touch()

        return ProgressHooks(expected=expected, decoded=lambda n: self._add("frames_decoded", n),
                             scored=lambda n: self._add("frames_scored", n),
                             storing=lambda: self.set_state(JobState.STORING))

    def progress(self) -> Progress:
        if self.state is JobState.UPLOADING:
            done, total = self.upload.received, self.upload.total_bytes
        elif self.state is JobState.ANALYSING:
            done, total = self.frames_scored, self.frames_expected
        else:
            done, total = (1, 1) if self.state is not JobState.CANCELLED else (0, 0)
        frac = min(1.0, done / total) if total > 0 else 0.0
        eta = None
        if 0 < frac < 1 and not self.finished:
            eta = (self.clock() - self._phase_started) * (1 - frac) / frac
        return Progress(self.upload.received, self.upload.total_bytes, self.frames_expected,
                        self.frames_decoded, self.frames_scored, round(100 * frac, 1), eta)

    async def changes(self, min_interval_s: float) -> AsyncIterator[None]:
        """Yields now, then after each change (at most every min_interval_s), ending after the
        job's final state was yielded."""
        seen = -1
        while True:
            if self._version == seen:
                await self._changed.wait()
                continue
            seen, final = self._version, self.finished
            yield
            if final:
                return
            await asyncio.sleep(min_interval_s)


class Jobs:
    """The registry of jobs (finished ones kept `keep_s` for status reads) and the slot limit."""

    def __init__(self, run: Runner, *, max_running: int, keep_s: float,
                 on_finished: Callable[[Job], None] = lambda job: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self.max_running = max(1, max_running)
        self._keep_s = keep_s
        self._on_finished = on_finished
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._slots_taken = 0

    def add(self, upload: Upload, request: RecordingRequest) -> Job:
        self._forget_old()
        job = Job(upload, request, clock=self._clock)
        self._jobs[job.recording_id] = job
        return job

    def get(self, recording_id: str) -> Job:
        """KeyError for an unknown (or long finished) recording."""
        self._forget_old()
        return self._jobs[recording_id]

    def forget(self, recording_id: str) -> None:
        self._jobs.pop(recording_id, None)

    def reserve(self, job: Job) -> None:
        """Takes an analysis slot for the job (Busy when all are taken)."""
        if job.has_slot:
            return
        if self._slots_taken >= self.max_running:
            raise Busy(f"{self._slots_taken} recordings are being analysed, the most allowed "
                       "(AFFECTLINE_RECORDING_MAX_CONCURRENT); retry later")
        self._slots_taken += 1
        job.has_slot = True

    def release(self, job: Job) -> None:
        if job.has_slot:
            job.has_slot = False
            self._slots_taken -= 1

    def start(self, job: Job) -> asyncio.Task[None]:
        """Runs the analysis of a reserved job in a task of its own; its result lands on the job."""
        self.reserve(job)
        job.set_state(JobState.ANALYSING)
        job.task = asyncio.create_task(self._execute(job), name="affectline-recording")
        return job.task

    async def _execute(self, job: Job) -> None:
        try:
            job.outcome = await self._run(job.upload.path, job.request, hooks=job.hooks())
            job.set_state(JobState.DONE)
        except asyncio.CancelledError:
            job.set_state(JobState.CANCELLED)
        except Exception as exc:  # noqa: BLE001 - kept on the job; the service reports it
            job.error = exc
            job.set_state(JobState.FAILED)
        finally:
            self.finish(job)

    def finish(self, job: Job) -> None:
        """Releases the job's slot and hands it to on_finished (which deletes its file)."""
        if not job.finished:
            job.set_state(JobState.CANCELLED)
        self.release(job)
        self._on_finished(job)

    def cancel(self, job: Job) -> None:
        if job.task is not None and not job.task.done():
            job.task.cancel()
        elif not job.finished:
            self.finish(job)

    async def close(self) -> None:
        """Cancels every running analysis and waits for it to clean up."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        cutoff = self._clock() - self._keep_s
        for rid in [rid for rid, j in self._jobs.items() if j.finished_at is not None and j.finished_at < cutoff]:
            del self._jobs[rid]
