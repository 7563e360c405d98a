"""What a report is asked for: `key=value` filter pairs (CLI `--filter`, HTTP query) -> ReportRequest.

The keys are the dashboard's URL parameters (docs/dashboard.md, "Filters in the URL"), so a
dashboard view and its report read the same filter:

| key | AnalyticsFilter field | example |
| --- | --- | --- |
| variant | variant_ids | variant=b |
| age, gender, region | age_bands, genders, regions | age=25-34,35-44 |
| emotions | emotions | emotions=happy,surprise |
| start, end | start_s, end_s (video seconds, [start, end)) | start=10 |
| from, to | sessions_from, sessions_to (UTC days, both included) | from=2026-11-01 |
| minAttention | min_attention_share (0..1) | minAttention=0.5 |
| passes | passes: first, rewatches, all | passes=all |

Lists are comma-separated or repeated. The checks of each value's meaning (known emotions,
start < end, ...) are the AnalyticsService's own; this module only reads the syntax.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from affectline.v1 import analytics_pb2

_LISTS = {"variant": "variant_ids", "age": "age_bands", "gender": "genders", "region": "regions",
          "emotions": "emotions"}
_PASSES = {"first": analytics_pb2.PASS_SELECTION_FIRST, "rewatches": analytics_pb2.PASS_SELECTION_REWATCHES,
           "all": analytics_pb2.PASS_SELECTION_ALL}
FILTER_KEYS = (*_LISTS, "start", "end", "from", "to", "minAttention", "passes")


@dataclass(frozen=True, slots=True)
class ReportRequest:
    video_id: str
    # variant_ids in it narrow every section; the A/B section compares `compare` (or, with no
    # variant filter, the video's first two variants with viewers).
    filter: analytics_pb2.AnalyticsFilter
    compare: tuple[str, str] | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.filter.variant_ids)


def split_pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    """["region=DE", ...] -> [("region", "DE"), ...]; ValueError for an item without '='."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--filter {item!r}: expected key=value with a key among {', '.join(FILTER_KEYS)}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _day(key: str, value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected a day as YYYY-MM-DD") from None


def _seconds(key: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{key}={value!r}: expected whole video seconds (0 or more)")
    return int(value)


def parse_filter(pairs: Iterable[tuple[str, str]]) -> analytics_pb2.AnalyticsFilter:
    """The AnalyticsFilter the pairs describe; ValueError naming the pair for a bad key or value."""
    f = analytics_pb2.AnalyticsFilter()
    for key, value in pairs:
        if key in _LISTS:
            field = getattr(f, _LISTS[key])
            for v in (s.strip() for s in value.split(",")):
                if v not in field:
                    field.append(v)
        elif key in ("start", "end"):
            setattr(f, f"{key}_s", _seconds(key, value))
        elif key == "from":
            f.sessions_from.FromDatetime(_day(key, value))
        elif key == "to":  # the whole day: up to the next midnight
            f.sessions_to.FromDatetime(_day(key, value) + timedelta(days=1))
        elif key == "minAttention":
            try:
                share = float(value)
            except ValueError:
                share = math.nan
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"minAttention={value!r}: expected a share between 0 and 1")
            f.min_attention_share = share
        elif key == "passes":
            if value not in _PASSES:
                raise ValueError(f"passes={value!r}: expected one of {', '.join(_PASSES)}")
            f.passes = _PASSES[value]
        else:
            raise ValueError(f"unknown filter {key!r}; known: {', '.join(FILTER_KEYS)}")
    return f


def report_request(video_id: str, pairs: Iterable[tuple[str, str]], *, variant: str | None = None,
                   compare: tuple[str, str] | None = None) -> ReportRequest:
    """`variant` adds to the variant filter; `compare` names the A/B section's two variants."""
    if not video_id:
        raise ValueError("a video id is required")
    f = parse_filter(pairs)
    if variant is not None and variant not in f.variant_ids:
        f.variant_ids.append(variant)
    if compare is not None and compare[0] == compare[1]:
        raise ValueError(f"--compare needs two different variants, got {compare[0]!r} twice")
    return ReportRequest(video_id, f, compare)
