"""`affectline analyze-video`: a recorded webcam session -> the same timeline a live session stores."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from affectline.commands.flags import add_db_flags

PROG = "affectline analyze-video"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "analyze-video", help="analyse a recorded webcam session into a timeline (server-side detection)",
        description="Decodes a webcam recording (mp4, webm, mov, ...; each frame at its own timestamp), detects "
        "and crops the face in every frame exactly as the viewer page does, scores the crops at low priority and "
        "stores the timeline as a completed session of VIDEO, aligned to the video's time. Nothing is stored "
        "unless the whole recording is analysed. The recording itself is never stored or logged.")
    p.add_argument("recording", metavar="RECORDING", help="the recording file, or - to read it from stdin "
                   "(then held in a private temporary file, deleted afterwards)")
    p.add_argument("--video", required=True, dest="video_id", help="the campaign video's id")
    p.add_argument("--variant", default="", dest="variant_id", help="the video variant shown (default: none)")
    p.add_argument("--viewer-id", help="the pseudonymous viewer id (default: a new random rec-... id)")
    p.add_argument("--consent-file", type=Path, required=True,
                   help='JSON {"notice_version": ..., "consented_at": ISO 8601, "scopes": ["emotion", ...]}')
    p.add_argument("--offset-ms", type=int, default=0,
                   help="video time of the recording's first instant: video_time_ms = frame timestamp + offset "
                        "(frames that would fall before 0 are skipped)")
    p.add_argument("--out", type=Path, help="also write the timeline here: .csv, or JSON for any other name")
    p.add_argument("--model", help="registered model NAME[/VERSION] [AFFECTLINE_MODEL]")
    p.add_argument("--max-size-mb", type=float,
                   help="refuse recordings larger than this (default 2048) [AFFECTLINE_RECORDING_MAX_MB]")
    p.add_argument("--bench", action="store_true", help="print the time per frame of each stage and frames/s")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_db_flags(p)


def run(args: argparse.Namespace) -> int:
    from affectline.config import settings_from_env
    from affectline.recording.decode import RecordingError, held_recording

    try:
        max_bytes = int((args.max_size_mb or settings_from_env().recording_max_mb) * 2**20)
        # Spooled outside the event loop, so Ctrl-C during a stdin upload interrupts the read.
        with held_recording(args.recording, max_bytes=max_bytes) as path:
            return asyncio.run(_run(args, path))
    except RecordingError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: cancelled; nothing stored", file=sys.stderr)
        return 130


async def _run(args: argparse.Namespace, path: Path) -> int:
    from tqdm import tqdm

    from affectline.config import settings_from_env
    from affectline.inference.batcher import BatcherConfig, DynamicBatcher
    from affectline.inference.engine import EmotionModel
    from affectline.inference.smoothing import SmoothingConfig
    from affectline.models.registry import ModelRegistry
    from affectline.recording import analyse as an
    from affectline.recording.blazeface import BlazeFace
    from affectline.recording.decode import RecordingError
    from affectline.recording.job import (
        ProgressHooks,
        RecordingRequest,
        analyse_and_store,
    )
    from affectline.storage.batch_writer import GroupCommitWriter
    from affectline.storage.timeline_store import open_store

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir,
                                                  model=args.model)
    consent = an.load_consent(args.consent_file)
    if not args.video_id.strip():
        raise RecordingError("--video must not be empty")
    request = RecordingRequest(args.video_id, args.variant_id, args.viewer_id, consent, args.offset_ms)
    model = EmotionModel.load(ModelRegistry(settings.models_root).get(settings.model), intra_op_threads=1, spin=False)
    infer_s = [0.0]

    def predict(x):
        t = time.perf_counter()
        try:
            return model.predict(x)
        finally:
            infer_s[0] += time.perf_counter() - t

    batcher = DynamicBatcher(predict, BatcherConfig(max_batch_size=an.CHUNK_FRAMES, max_queue_delay_s=0.002))
    analyser = an.RecordingAnalyser(BlazeFace(threads=1), batcher.submit, model.crop_size, model.class_names,
                                    infer_seconds=lambda: infer_s[0])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(unit="frame", file=sys.stderr, disable=args.no_progress, desc="analysing", dynamic_ncols=True)
    hooks = ProgressHooks(expected=lambda n: setattr(bar, "total", n or None), scored=bar.update,
                          storing=bar.close)
    with open_store(settings.resolved_database_url, migrate=True) as store:
        writer = GroupCommitWriter(store)
        try:
            # run() deletes a stdin copy of the recording when this returns; only the timeline stays.
            outcome = await analyse_and_store(path, request, analyser, store=store, writer=writer,
                                              smoothing=SmoothingConfig.parse(settings.smoothing),
                                              model_key=model.key, hooks=hooks)
        finally:
            bar.close()
            await batcher.stop()
            writer.close()
    record, frames = outcome.record, outcome.frames
    if args.out:
        an.write_timeline(args.out, frames, {"session_id": record.session_id, "video_id": record.video_id,
                                             "variant_id": record.variant_id, "viewer_id": record.viewer.viewer_id,
                                             "model": model.key, "offset_ms": args.offset_ms})
    print(f"{record.session_id}\t{len(frames)} frames, {outcome.summary.frames_with_face} with a face, video time "
          f"{frames[0].video_time_ms}-{frames[-1].video_time_ms} ms, viewer {record.viewer.viewer_id}, "
          f"model {model.key}")
    if args.bench:
        print(bench_report(outcome.analysis.times, outcome.analysis.info), file=sys.stderr)
    return 0


def bench_report(times: Any, info: Any) -> str:
    per = times.per_frame_ms()
    parts = ", ".join(f"{k} {v:.2f}" for k, v in per.items())
    return (f"bench: {times.frames} frames {info.width}x{info.height}, {times.faces} with a face; ms/frame: {parts} "
            f"(stage times; decode, detect+crop and infer overlap); end to end {times.fps():.1f} frames/s "
            f"({times.wall:.2f} s)")
