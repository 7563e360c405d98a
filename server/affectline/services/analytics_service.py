"""AnalyticsService: read-only views of stored timelines."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline import analytics as al
from affectline import export
from affectline.analytics.curves import curves_from_stats
from affectline.services import analytics_messages as msg
from affectline.services import validation
from affectline.services.analytics_filter import ParsedFilter, invalid, parse_filter
from affectline.services.proto_convert import scores_message, timestamp, top_emotion
from affectline.storage.records import EMOTIONS, FrameRecord
from affectline.storage.rollup_store import RollupStore, SecondStats, SessionTotals
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import analytics_pb2

DEFAULT_BUCKET_MS = 1000
MIN_BUCKET_MS = 10
MAX_BUCKET_MS = 3_600_000
# GetSessionTimeline pages (docs/api.md): ~100 bytes a frame, so a full page is ~1 MB.
DEFAULT_PAGE_SIZE = 5_000
MAX_PAGE_SIZE = 10_000
_TOKEN_VERSION = 1
# ExportAnalytics: the largest `data` of one ExportChunk (gRPC's default message limit is 4 MiB).
EXPORT_CHUNK_BYTES = 1 << 20
_EXPORT_TABLES = {
    analytics_pb2.EXPORT_TABLE_UNSPECIFIED: "curves",
    analytics_pb2.EXPORT_TABLE_TIMELINES: "timelines",
    analytics_pb2.EXPORT_TABLE_CURVES: "curves",
    analytics_pb2.EXPORT_TABLE_SUMMARIES: "summaries",
}
_EXPORT_FORMATS = {
    analytics_pb2.EXPORT_FORMAT_UNSPECIFIED: "csv",
    analytics_pb2.EXPORT_FORMAT_CSV: "csv",
    analytics_pb2.EXPORT_FORMAT_PARQUET: "parquet",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def export_file_name(video_id: str, what: str, fmt: str) -> str:
    """The suggested name of an export: `<video>-<what>.<format>`, safe in a header and a path."""
    return f"{_SAFE_NAME.sub('_', video_id)}-{what}.{fmt}"


def page_token(session_id: str, last: FrameRecord) -> str:
    """Opaque, versioned token: the last frame served (keyset paging), bound to its session.
    A later version can add fields; an unknown version is refused, not misread."""
    raw = json.dumps({"v": _TOKEN_VERSION, "s": session_id, "seq": last.seq, "i": last.index}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_page_token(session_id: str, token: str) -> tuple[int, int] | None:
    if not token:
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if fields["v"] != _TOKEN_VERSION or fields["s"] != session_id:
            raise ValueError("wrong version or session")
        seq, index = fields["seq"], fields["i"]
        if not (isinstance(seq, int) and isinstance(index, int)):
            raise ValueError("bad position")
        return seq, index
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, "page_token is not a next_page_token of this session") from exc


def _timeline_frame(f: FrameRecord) -> analytics_pb2.TimelineFrame:
    return analytics_pb2.TimelineFrame(
        video_time_ms=f.video_time_ms,
        face_present=f.face_present,
        scores=scores_message(f.probs),
        top_emotion=top_emotion(f.smoothed or f.probs),
        smoothed_scores=scores_message(f.smoothed or f.probs),
        head_yaw_deg=f.head_yaw_deg,
        head_pitch_deg=f.head_pitch_deg,
        face_box_size=f.face_box_size,
    )


# What CompareVariants compares (per-viewer session means) and what curves can show.
COMPARABLE = (*EMOTIONS, *al.rollup.SUMMED, "attention_share")
CURVE_METRICS = al.METRICS
_SEGMENT_FIELDS = {
    analytics_pb2.SEGMENT_FIELD_AGE_BAND: "age_band",
    analytics_pb2.SEGMENT_FIELD_GENDER: "gender",
    analytics_pb2.SEGMENT_FIELD_REGION: "region",
    analytics_pb2.SEGMENT_FIELD_VARIANT: "variant_id",
}


def _summaries(totals: list[SessionTotals]) -> list[al.SessionSummary]:
    return [al.summarize_session(t.meta.session_id, [t.totals]) for t in totals if t.totals.frames > 0]


def _mean(totals: al.SecondRollup, metric: str) -> float:
    """A session summary's mean of `metric` from its totals row (summarize_session's arithmetic)."""
    total, n = totals.total("attention" if metric == "attention_share" else metric)
    return total / n if n else math.nan


def _attentive_enough(totals: list[SessionTotals], share: float | None) -> list[SessionTotals]:
    """Sessions whose attentive share reaches `share` (unknown share: left out when one is set)."""
    if share is None:
        return totals
    return [t for t in totals if t.totals.pose_known and t.totals.attentive / t.totals.pose_known >= share]


def _video_and_filter(request: object, variants_allowed: bool = True) -> tuple[str, ParsedFilter]:
    video_id = getattr(request, "video_id")
    if not video_id:
        raise invalid("video_id is required")
    return video_id, parse_filter(getattr(request, "filter"), variants_allowed=variants_allowed)


class AnalyticsService:
    def __init__(self, *, store: TimelineStore, rollups: RollupStore | None = None,
                 config: al.MetricConfig = al.DEFAULT_CONFIG, ab: al.ABConfig = al.ABConfig()) -> None:
        self._store = store
        self._rollups = rollups
        self._config = config
        self._ab = ab

    # ---------------------------------------------------------------- rollup-based analytics

    def _video_rows(self, video_id: str, f: ParsedFilter) -> al.RollupColumns:
        """The video's (session, second) rows under the filter; NOT_FOUND for an unknown video."""
        assert self._rollups is not None, "AnalyticsService needs a RollupStore for the analytics calls"
        if not self._rollups.video_exists(video_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown video {video_id!r}")
        metrics = (*(f.emotions or EMOTIONS), *al.rollup.SUMMED, "attention")
        rows = self._rollups.second_rollups(video_id, f.selection, metrics)
        if f.min_attention_share is not None:
            rows = al.filter_attention(rows, f.min_attention_share)
        return rows  # type: ignore[return-value]

    def _curves(self, rows: al.RollupColumns, f: ParsedFilter) -> al.VideoCurves:
        return al.video_curves(rows, self._config, emotions=f.emotions, start_s=f.selection.start_s,
                               end_s=f.selection.end_s)

    def _stats(self, video_id: str, f: ParsedFilter, group_by: str | None = None) -> dict[str, SecondStats] | None:
        """Per-second statistics across viewers, computed in SQL (PostgreSQL; None elsewhere):
        what the curves need without reading every viewer's rows. NOT_FOUND for an unknown video."""
        assert self._rollups is not None, "AnalyticsService needs a RollupStore for the analytics calls"
        if not self._rollups.video_exists(video_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown video {video_id!r}")
        chosen = EMOTIONS if f.emotions is None else tuple(e for e in EMOTIONS if e in set(f.emotions))
        return self._rollups.second_stats(video_id, f.selection, (*chosen, *al.rollup.SUMMED, "attention"),
                                          f.min_attention_share, group_by)

    def _stats_curves(self, stats: SecondStats | None, f: ParsedFilter) -> al.VideoCurves:
        if stats is None:  # no rows under the filter: the empty curves video_curves gives
            return self._curves(al.RollupColumns.from_rows([]), f)
        return curves_from_stats(stats.seconds, stats.watched, stats.stats, stats.sessions, self._config,
                                 start_s=f.selection.start_s, end_s=f.selection.end_s)

    def _filtered_curves(self, video_id: str, f: ParsedFilter) -> al.VideoCurves:
        """The video's curves under the filter: from SQL statistics on PostgreSQL, from the rows
        elsewhere (the same curves, to floating-point rounding)."""
        stats = self._stats(video_id, f)
        if stats is None:
            return self._curves(self._video_rows(video_id, f), f)
        return self._stats_curves(stats.get(""), f)

    async def get_video_curves(self, request: analytics_pb2.GetVideoCurvesRequest, ctx: object = None
                               ) -> analytics_pb2.GetVideoCurvesResponse:
        video_id, f = _video_and_filter(request)
        return await asyncio.to_thread(self._video_curves, video_id, f)

    def _video_curves(self, video_id: str, f: ParsedFilter) -> analytics_pb2.GetVideoCurvesResponse:
        curves = self._filtered_curves(video_id, f)
        return analytics_pb2.GetVideoCurvesResponse(video_id=video_id, curves=msg.curves_message(curves))

    async def get_key_moments(self, request: analytics_pb2.GetKeyMomentsRequest, ctx: object = None
                              ) -> analytics_pb2.GetKeyMomentsResponse:
        video_id, f = _video_and_filter(request)
        for name in ("min_prominence", "min_duration_s"):
            value = getattr(request, name)
            if not value >= 0:
                raise invalid(f"{name} must be 0 (the default) or positive, got {value}")
        prominence = request.min_prominence or al.moments.DEFAULT_MIN_PROMINENCE
        duration = request.min_duration_s or al.moments.DEFAULT_MIN_DURATION_S
        return await asyncio.to_thread(self._key_moments, video_id, f, prominence, duration)

    def _key_moments(self, video_id: str, f: ParsedFilter, prominence: float, duration: float
                     ) -> analytics_pb2.GetKeyMomentsResponse:
        curves = self._filtered_curves(video_id, f)
        moments = al.key_moments(curves, min_prominence=prominence, min_duration_s=duration)
        return analytics_pb2.GetKeyMomentsResponse(
            video_id=video_id, moments=[msg.moment_message(m) for m in moments],
            suppressed=msg.spans(curves.suppressed_spans), sessions=curves.sessions,
        )

    async def compare_variants(self, request: analytics_pb2.CompareVariantsRequest, ctx: object = None
                               ) -> analytics_pb2.CompareVariantsResponse:
        video_id, f = _video_and_filter(request, variants_allowed=False)
        if request.variant_a == request.variant_b:
            raise invalid(f"variant_a and variant_b must differ, both are {request.variant_a!r}")
        metrics = tuple(dict.fromkeys(request.metrics)) or al.ab_test.DEFAULT_METRICS
        for m in metrics:
            if m not in COMPARABLE:
                raise invalid(f"metrics: unknown metric {m!r} (expected some of {', '.join(COMPARABLE)})")
        curve_metric = request.curve_metric or "engagement"
        if curve_metric not in CURVE_METRICS:
            raise invalid(f"curve_metric: unknown metric {curve_metric!r} (expected one of {', '.join(CURVE_METRICS)})")
        return await asyncio.to_thread(self._compare, video_id, request.variant_a, request.variant_b, f, metrics,
                                       curve_metric)

    def _compare(self, video_id: str, a: str, b: str, f: ParsedFilter, metrics: tuple[str, ...], curve_metric: str
                 ) -> analytics_pb2.CompareVariantsResponse:
        assert self._rollups is not None
        if not self._rollups.video_exists(video_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown video {video_id!r}")
        sel = f.selection
        # The curve difference's statistics (PostgreSQL; None elsewhere) are read on a second
        # connection while this thread runs the per-viewer tests: the database and numpy overlap.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._rollups.second_stats, video_id, replace(sel, variant_ids=(a, b)),
                                  (curve_metric,), f.min_attention_share, "variant_id")
            try:
                comparison, totals = self._compare_viewers(video_id, a, b, f, metrics)
            finally:
                grouped = pending.result()
        if grouped is not None:  # PostgreSQL: per-second statistics from SQL
            empty = (np.zeros(0, dtype=np.int64),) + (np.zeros(0),) * 3
            sides = [empty if v not in grouped else (grouped[v].seconds, *grouped[v].stats[curve_metric])
                     for v in (a, b)]
            diff = al.ab_test.curve_difference_from_stats(sides[0], sides[1], curve_metric, self._config,
                                                          start_s=sel.start_s, end_s=sel.end_s)
        else:
            rows = {v: self._rollups.second_rollups(video_id, replace(sel, variant_ids=(v,)), (curve_metric,))
                    .with_sessions(t.meta.session_id for t in totals[v]) for v in (a, b)}
            diff = al.curve_difference(rows[a], rows[b], curve_metric, self._config, start_s=sel.start_s,
                                       end_s=sel.end_s)
        return analytics_pb2.CompareVariantsResponse(
            video_id=video_id, variant_a=a, variant_b=b, metrics=msg.comparison_rows(comparison),
            verdict=comparison.verdict, suppressed_reason=comparison.suppressed or "",
            sample_size_warning=msg.sample_size_warning(comparison.verdict),
            curve_difference=msg.difference_message(diff),
        )

    def _compare_viewers(self, video_id: str, a: str, b: str, f: ParsedFilter, metrics: tuple[str, ...]
                         ) -> tuple[al.Comparison, dict[str, list[SessionTotals]]]:
        """compare_variants on the viewers' session totals, and the totals of each variant."""
        assert self._rollups is not None
        both = self._rollups.session_totals(video_id, replace(f.selection, variant_ids=(a, b)))  # one read
        totals = {v: _attentive_enough([t for t in both if t.meta.variant_id == v], f.min_attention_share)
                  for v in (a, b)}
        # compare_variants on the session summaries' means, read straight off the totals (a
        # summary's mean of a metric is its one row's sum / frames): no summary objects built
        values = [{m: [_mean(t.totals, m) for t in totals[v] if t.totals.frames > 0] for m in metrics}
                  for v in (a, b)]
        comparison = al.ab_test.compare_values(values[0], values[1], self._ab, min_viewers=self._config.min_viewers,
                                               labels=(a or "default", b or "default"))
        return comparison, totals

    async def get_segments(self, request: analytics_pb2.GetSegmentsRequest, ctx: object = None
                           ) -> analytics_pb2.GetSegmentsResponse:
        video_id, f = _video_and_filter(request)
        field = _SEGMENT_FIELDS.get(request.field)
        if field is None:
            raise invalid(f"field must be one of AGE_BAND, GENDER, REGION, VARIANT, got {request.field}")
        return await asyncio.to_thread(self._segments, video_id, f, request.field, field)

    def _segments(self, video_id: str, f: ParsedFilter, field_value: int, field: str
                  ) -> analytics_pb2.GetSegmentsResponse:
        assert self._rollups is not None
        grouped = self._stats(video_id, f, field)
        if grouped is not None:
            segments = []
            for value in sorted(grouped):
                viewers = grouped[value].members
                reason = al.below_floor(viewers, self._config.min_viewers)
                segment = analytics_pb2.Segment(value=value, viewers=viewers, suppressed=reason is not None,
                                                reason=reason or "")
                if reason is None:
                    segment.curves.CopyFrom(msg.curves_message(self._stats_curves(grouped[value], f)))
                segments.append(segment)
            return analytics_pb2.GetSegmentsResponse(video_id=video_id, field=field_value, segments=segments)
        rows = self._video_rows(video_id, f)
        meta = self._rollups.sessions(video_id, f.selection)
        by_value: dict[str, list[str]] = {}
        for i in np.unique(rows.session).tolist():
            session_id = rows.sessions[i]
            by_value.setdefault(getattr(meta[session_id], field), []).append(session_id)
        segments = []
        for value in sorted(by_value):
            seg_rows = rows.with_sessions(by_value[value])
            viewers = len(by_value[value])
            reason = al.below_floor(viewers, self._config.min_viewers)
            segment = analytics_pb2.Segment(value=value, viewers=viewers, suppressed=reason is not None,
                                            reason=reason or "")
            if reason is None:
                segment.curves.CopyFrom(msg.curves_message(self._curves(seg_rows, f)))
            segments.append(segment)
        return analytics_pb2.GetSegmentsResponse(video_id=video_id, field=field_value, segments=segments)

    def _summaries_by_video(self, f: ParsedFilter, target: str | None) -> dict[str, list[al.SessionSummary]]:
        """Every video's session summaries under the filter; variant_ids apply to `target` only
        (None: to every video)."""
        assert self._rollups is not None
        sel = f.selection if target is None else replace(f.selection, variant_ids=())
        by_video: dict[str, list[SessionTotals]] = {}
        for t in _attentive_enough(self._rollups.session_totals(None, sel), f.min_attention_share):
            if target is not None and t.meta.video_id == target and f.selection.variant_ids \
                    and t.meta.variant_id not in f.selection.variant_ids:
                continue
            by_video.setdefault(t.meta.video_id, []).append(t)
        return {v: _summaries(ts) for v, ts in by_video.items()}

    async def get_norms(self, request: analytics_pb2.GetNormsRequest, ctx: object = None
                        ) -> analytics_pb2.GetNormsResponse:
        video_id, f = _video_and_filter(request)
        return await asyncio.to_thread(self._norms, video_id, f)

    def _norms(self, video_id: str, f: ParsedFilter) -> analytics_pb2.GetNormsResponse:
        assert self._rollups is not None
        if not self._rollups.video_exists(video_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown video {video_id!r}")
        by_video = self._summaries_by_video(f, video_id)
        by_video.setdefault(video_id, [])
        norms = al.video_norms(video_id, by_video, min_viewers=self._config.min_viewers)
        return analytics_pb2.GetNormsResponse(video_id=video_id, norms=[msg.norm_message(n) for n in norms])

    async def list_campaigns(self, request: analytics_pb2.ListCampaignsRequest, ctx: object = None
                             ) -> analytics_pb2.ListCampaignsResponse:
        f = parse_filter(request.filter)
        return await asyncio.to_thread(self._campaigns, f)

    def _campaigns(self, f: ParsedFilter) -> analytics_pb2.ListCampaignsResponse:
        assert self._rollups is not None
        totals = _attentive_enough(self._rollups.session_totals(None, f.selection), f.min_attention_share)
        by_video: dict[str, list[SessionTotals]] = {}
        for t in totals:
            by_video.setdefault(t.meta.video_id, []).append(t)
        summaries = {v: _summaries(ts) for v, ts in by_video.items()}
        campaigns = []
        for video in self._rollups.videos():
            vid = video["video_id"]
            ts = by_video.get(vid, [])
            variants: dict[str, int] = {}
            for t in ts:
                variants[t.meta.variant_id] = variants.get(t.meta.variant_id, 0) + 1
            campaign = analytics_pb2.Campaign(
                video_id=vid, title=video["title"], viewers=len(ts),
                variants=[analytics_pb2.VariantSummary(variant_id=k, viewers=n) for k, n in sorted(variants.items())],
                scores=[msg.norm_message(n) for n in al.video_norms(vid, {**summaries, vid: summaries.get(vid, [])},
                                                                    min_viewers=self._config.min_viewers)],
            )
            if ts:
                campaign.last_session_at.CopyFrom(timestamp(max(t.meta.started_at for t in ts)))
            campaigns.append(campaign)
        return analytics_pb2.ListCampaignsResponse(campaigns=campaigns)

    # ---------------------------------------------------------------- export

    async def export_analytics(self, request: analytics_pb2.ExportRequest, ctx: object = None
                               ) -> AsyncIterator[analytics_pb2.ExportChunk]:
        """export.py's CSV or Parquet file in chunks of at most EXPORT_CHUNK_BYTES. The reads and
        the encoding run in worker threads, one chunk of rows (a Parquet row group) at a time, so
        neither the event loop nor the memory holds a whole video's frames; the next rows are
        read only once the previous chunk was taken (a slow reader slows the export)."""
        video_id, f = _video_and_filter(request)
        validation.check_id(video_id, "video_id")
        what, fmt = _EXPORT_TABLES.get(request.what), _EXPORT_FORMATS.get(request.format)
        if what is None:
            raise invalid(f"what: unknown table {request.what} (expected TIMELINES, CURVES or SUMMARIES)")
        if fmt is None:
            raise invalid(f"format: unknown format {request.format} (expected CSV or PARQUET)")
        parts = await asyncio.to_thread(self._export_parts, video_id, f, what, fmt)
        first = analytics_pb2.ExportChunk(content_type=export.CONTENT_TYPES[fmt],
                                          file_name=export_file_name(video_id, what, fmt))
        try:
            while (part := await asyncio.to_thread(next, parts, None)) is not None:
                data = part.encode() if isinstance(part, str) else part
                for at in range(0, len(data), EXPORT_CHUNK_BYTES):
                    chunk, first = (first if first is not None else analytics_pb2.ExportChunk()), None
                    chunk.data = data[at:at + EXPORT_CHUNK_BYTES]
                    yield chunk
            if first is not None:  # nothing written at all (cannot happen: CSV has a header)
                yield first
        finally:
            try:
                parts.close()
            except ValueError:  # still running in its worker thread (the client went away)
                pass

    def _export_parts(self, video_id: str, f: ParsedFilter, what: str, fmt: str) -> Iterator[str | bytes]:
        """The table's pieces, once the video is known (NOT_FOUND) and a summary is allowed
        (FAILED_PRECONDITION below the viewer floor)."""
        assert self._rollups is not None, "AnalyticsService needs a RollupStore for the export"
        if not self._rollups.video_exists(video_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown video {video_id!r}")
        options = {"emotions": f.emotions, "min_attention_share": f.min_attention_share}
        try:
            if what == "timelines":
                table = export.timelines(self._store, self._rollups, video_id, f.selection, **options)
            elif what == "curves":
                table = export.curves(self._rollups, video_id, f.selection, self._config, **options)
            else:
                table = export.summaries(self._rollups, video_id, f.selection, self._config, **options)
        except export.BelowFloor as exc:
            raise ConnectError(Code.FAILED_PRECONDITION, str(exc)) from exc
        return export.csv_parts(table) if fmt == "csv" else export.parquet_parts(table)

    # ---------------------------------------------------------------- timelines

    async def get_session_timeline(
        self, request: analytics_pb2.GetSessionTimelineRequest, ctx: object = None
    ) -> analytics_pb2.GetSessionTimelineResponse:
        if not request.session_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "session_id is required")
        validation.check_id(request.session_id, "session_id")
        validation.check_text(request.page_token, "page_token", validation.MAX_PAGE_TOKEN_CHARS)
        after = parse_page_token(request.session_id, request.page_token)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # The reads and the message building both run in a worker thread: a page is up to
        # 10,000 frames, too much work for the event loop that serves every live session.
        return await asyncio.to_thread(self._timeline_page, request.session_id, after, size)

    def _timeline_page(self, session_id: str, after: tuple[int, int] | None, size: int) -> analytics_pb2.GetSessionTimelineResponse:
        record = self._store.get_session(session_id)
        if record is None:
            raise ConnectError(Code.NOT_FOUND, f"unknown session {session_id!r}")
        frames = self._store.session_frames_page(session_id, after, size + 1)  # one more: is there a next page?
        response = analytics_pb2.GetSessionTimelineResponse(
            session_id=record.session_id,
            video_id=record.video_id,
            variant_id=record.variant_id,
            frames=[_timeline_frame(f) for f in frames[:size]],
        )
        if len(frames) > size:
            response.next_page_token = page_token(session_id, frames[size - 1])
        return response

    async def get_video_timeline(
        self, request: analytics_pb2.GetVideoTimelineRequest, ctx: object = None
    ) -> analytics_pb2.GetVideoTimelineResponse:
        if not request.video_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "video_id is required")
        validation.check_id(request.video_id, "video_id")
        validation.check_id(request.variant_id, "variant_id", allow_empty=True)
        bucket_ms = request.bucket_ms or DEFAULT_BUCKET_MS
        if not MIN_BUCKET_MS <= bucket_ms <= MAX_BUCKET_MS:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"bucket_ms must be within {MIN_BUCKET_MS}..{MAX_BUCKET_MS}, got {bucket_ms}"
            )
        variant = request.variant_id or None
        sessions = await asyncio.to_thread(self._store.count_sessions, request.video_id, variant)
        if sessions == 0:
            what = f"video {request.video_id!r}" + (f" variant {variant!r}" if variant else "")
            raise ConnectError(Code.NOT_FOUND, f"no sessions recorded for {what}")
        buckets = await asyncio.to_thread(self._store.video_timeline, request.video_id, variant, bucket_ms)
        return analytics_pb2.GetVideoTimelineResponse(
            video_id=request.video_id,
            variant_id=request.variant_id,
            bucket_ms=bucket_ms,
            sessions=sessions,
            buckets=[
                analytics_pb2.TimelineBucket(
                    start_ms=b.start_ms,
                    mean_scores=scores_message(b.mean_probs),
                    viewers=b.viewers,
                    frames=b.frames,
                    frames_with_face=b.frames_with_face,
                )
                for b in buckets
            ],
        )
