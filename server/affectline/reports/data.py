"""Everything a report shows, fetched from the AnalyticsService in-process.

The report calls the service's own RPC methods with request messages, so each number is
what GetVideoCurves, GetKeyMoments, CompareVariants, GetSegments, GetNorms and ListCampaigns
answer over the network for the same filter; nothing is recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from affectline.reports.params import ReportRequest
from affectline.v1 import analytics_pb2 as pb

# GetSegments fields of the segment breakdown, in the order shown.
SEGMENT_FIELDS = (("age band", pb.SEGMENT_FIELD_AGE_BAND), ("gender", pb.SEGMENT_FIELD_GENDER),
                  ("region", pb.SEGMENT_FIELD_REGION))
AB_CURVE_METRIC = "engagement"


class Analytics(Protocol):
    """The AnalyticsService methods a report calls (services/analytics_service.py)."""

    async def get_video_curves(self, request: pb.GetVideoCurvesRequest, ctx: Any = None) -> pb.GetVideoCurvesResponse: ...
    async def get_key_moments(self, request: pb.GetKeyMomentsRequest, ctx: Any = None) -> pb.GetKeyMomentsResponse: ...
    async def compare_variants(self, request: pb.CompareVariantsRequest, ctx: Any = None) -> pb.CompareVariantsResponse: ...
    async def get_segments(self, request: pb.GetSegmentsRequest, ctx: Any = None) -> pb.GetSegmentsResponse: ...
    async def get_norms(self, request: pb.GetNormsRequest, ctx: Any = None) -> pb.GetNormsResponse: ...
    async def list_campaigns(self, request: pb.ListCampaignsRequest, ctx: Any = None) -> pb.ListCampaignsResponse: ...


class Videos(Protocol):
    def get_video(self, video_id: str) -> dict[str, Any] | None: ...


@dataclass
class ABSection:
    comparison: pb.CompareVariantsResponse
    # Each variant's curve of AB_CURVE_METRIC (GetVideoCurves with that variant only).
    curves: dict[str, pb.Curves] = field(default_factory=dict)


@dataclass
class ReportData:
    request: ReportRequest
    title: str
    media_path: Path | None
    generated_at: datetime
    campaign: pb.Campaign | None  # ListCampaigns' entry, under the filter without its variants
    curves: pb.Curves
    moments: pb.GetKeyMomentsResponse
    norms: list[pb.Norm]
    ab: ABSection | None
    ab_note: str  # why there is no A/B section, when there is none
    segments: list[tuple[str, pb.GetSegmentsResponse]]

    @property
    def synthetic(self) -> bool:
        """Demo data (`affectline demo-data`, the demo campaign) says so in its video id or title."""
        return "synthetic" in f"{self.request.video_id} {self.title}".lower()


def _without_variants(f: pb.AnalyticsFilter) -> pb.AnalyticsFilter:
    out = pb.AnalyticsFilter()
    out.CopyFrom(f)
    del out.variant_ids[:]
    return out


def _ab_variants(request: ReportRequest, campaign: pb.Campaign | None) -> tuple[tuple[str, str] | None, str]:
    if request.compare is not None:
        return request.compare, ""
    if request.variants:
        return None, "A report on chosen variants has no A/B section unless --compare names two."
    with_viewers = [v.variant_id for v in (campaign.variants if campaign else []) if v.viewers > 0]
    if len(with_viewers) < 2:
        return None, "The video has fewer than two variants with viewers under this filter: no A/B comparison."
    return (with_viewers[0], with_viewers[1]), ""


async def gather(service: Analytics, videos: Videos, request: ReportRequest) -> ReportData:
    """Calls the service as a client would; its ConnectErrors (NOT_FOUND, INVALID_ARGUMENT) pass through."""
    vid, f = request.video_id, request.filter
    curves = await service.get_video_curves(pb.GetVideoCurvesRequest(video_id=vid, filter=f))
    moments = await service.get_key_moments(pb.GetKeyMomentsRequest(video_id=vid, filter=f))
    norms = await service.get_norms(pb.GetNormsRequest(video_id=vid, filter=f))
    campaigns = await service.list_campaigns(pb.ListCampaignsRequest(filter=_without_variants(f)))
    campaign = next((c for c in campaigns.campaigns if c.video_id == vid), None)
    segments = [(name, await service.get_segments(pb.GetSegmentsRequest(video_id=vid, filter=f, field=value)))
                for name, value in SEGMENT_FIELDS]
    pair, ab_note = _ab_variants(request, campaign)
    ab = None
    if pair is not None:
        base = _without_variants(f)
        comparison = await service.compare_variants(pb.CompareVariantsRequest(
            video_id=vid, variant_a=pair[0], variant_b=pair[1], filter=base, curve_metric=AB_CURVE_METRIC))
        ab = ABSection(comparison)
        if not comparison.suppressed_reason:
            for v in pair:
                one = pb.AnalyticsFilter()
                one.CopyFrom(base)
                one.variant_ids.append(v)
                ab.curves[v] = (await service.get_video_curves(pb.GetVideoCurvesRequest(video_id=vid, filter=one))).curves
    video = videos.get_video(vid) or {}
    media = video.get("media_path")
    return ReportData(
        request=request, title=video.get("title") or (campaign.title if campaign else "") or vid,
        media_path=Path(media) if media else None, generated_at=datetime.now(UTC), campaign=campaign,
        curves=curves.curves, moments=moments, norms=list(norms.norms), ab=ab, ab_note=ab_note, segments=segments,
    )
