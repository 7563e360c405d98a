"""One held recording -> one stored session: analyse, smooth, store, summarise.

`affectline analyze-video` and RecordingService both run this, so a recording becomes the
same timeline whichever way it arrives. Nothing is stored unless the whole recording was
decoded and scored, and a failure while storing deletes what was stored (analyse.store_timeline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectline.inference.smoothing import SmoothingConfig
from affectline.recording import analyse as an
from affectline.recording.decode import RecordingError
from affectline.storage.records import (
    EMOTIONS,
    ConsentInfo,
    SessionRecord,
    SessionSummaryRecord,
)


def _ignore(_: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class RecordingRequest:
    video_id: str
    variant_id: str
    viewer_id: str | None  # None: a new random rec-<hex> id (analyse.new_viewer_id)
    consent: ConsentInfo
    offset_ms: int = 0


@dataclass(frozen=True, slots=True)
class ProgressHooks:
    """Where progress goes (a CLI progress bar, an RPC's status); each defaults to nothing."""

    expected: Callable[[int], None] = _ignore  # the container's frame count, once (0: unknown)
    decoded: Callable[[int], None] = _ignore  # n more frames decoded and detected
    scored: Callable[[int], None] = _ignore  # n more frames scored
    storing: Callable[[], None] = lambda: None  # analysis done, the timeline is being written


@dataclass(frozen=True, slots=True)
class Outcome:
    record: SessionRecord
    frames: list[an.FrameResult]
    summary: SessionSummaryRecord
    analysis: an.Analysis

    @property
    def dominant(self) -> str:
        """Top emotion of the mean probabilities over face frames (EndSession's rule); "" without."""
        mean = self.summary.mean_probs
        return EMOTIONS[int(np.argmax(mean))] if mean is not None else ""


async def analyse_and_store(path: Path, request: RecordingRequest, analyser: an.RecordingAnalyser, *,
                            store: Any, writer: Any, smoothing: SmoothingConfig, model_key: str,
                            hooks: ProgressHooks = ProgressHooks()) -> Outcome:
    """Raises RecordingError (a subclass says why) with nothing stored."""
    result = await analyser.analyse(path, offset_ms=request.offset_ms, progress=hooks.scored,
                                    total=hooks.expected, decoded=hooks.decoded)
    frames = an.smooth(result.frames, smoothing)
    if not frames:
        raise RecordingError("every frame falls before the video's start with this offset; nothing is stored")
    hooks.storing()
    record = an.session_record(video_id=request.video_id, variant_id=request.variant_id,
                               viewer_id=request.viewer_id or an.new_viewer_id(), consent=request.consent,
                               model=model_key, capture_fps=an.capture_fps(frames, result.info))
    started = time.perf_counter()
    await an.store_timeline(store, writer, record, frames)
    result.times.store = time.perf_counter() - started
    result.times.wall += result.times.store
    summary = await asyncio.to_thread(store.session_summary, record.session_id)
    return Outcome(record, frames, summary, result)
