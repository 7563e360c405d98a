"""AnalyticsFilter (the one filter of every analytics call) -> a storage Selection, validated.

Every refusal is INVALID_ARGUMENT naming the field and the rule it breaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.services.proto_convert import from_timestamp
from affectline.storage.records import EMOTIONS
from affectline.storage.rollup_store import Selection
from affectline.v1 import analytics_pb2

_PASSES = {
    analytics_pb2.PASS_SELECTION_UNSPECIFIED: "first",
    analytics_pb2.PASS_SELECTION_FIRST: "first",
    analytics_pb2.PASS_SELECTION_REWATCHES: "rewatches",
    analytics_pb2.PASS_SELECTION_ALL: "all",
}


@dataclass(frozen=True, slots=True)
class ParsedFilter:
    selection: Selection
    emotions: tuple[str, ...] | None  # None: all seven
    min_attention_share: float | None


def invalid(message: str) -> ConnectError:
    return ConnectError(Code.INVALID_ARGUMENT, message)


def emotion_names(values: list[str] | tuple[str, ...], field: str) -> tuple[str, ...]:
    """Names checked against EMOTIONS, deduplicated, in EMOTIONS order."""
    unknown = [v for v in values if v not in EMOTIONS]
    if unknown:
        raise invalid(f"{field}: unknown emotion {unknown[0]!r} (expected some of {', '.join(EMOTIONS)})")
    return tuple(e for e in EMOTIONS if e in set(values))


def parse_filter(f: analytics_pb2.AnalyticsFilter, *, variants_allowed: bool = True) -> ParsedFilter:
    if f.variant_ids and not variants_allowed:
        raise invalid("filter.variant_ids must be empty here: variant_a and variant_b choose the variants")
    if f.passes not in _PASSES:
        raise invalid(f"filter.passes: unknown value {f.passes}")
    start = f.start_s if f.HasField("start_s") else None
    end = f.end_s if f.HasField("end_s") else None
    if start is not None and end is not None and start >= end:
        raise invalid(f"filter.start_s ({start}) must be below filter.end_s ({end}): the range is [start_s, end_s)")
    since = from_timestamp(f.sessions_from) if f.HasField("sessions_from") else None
    until = from_timestamp(f.sessions_to) if f.HasField("sessions_to") else None
    if since is not None and until is not None and since >= until:
        raise invalid("filter.sessions_from must be before filter.sessions_to")
    share = f.min_attention_share if f.HasField("min_attention_share") else None
    if share is not None and not (0.0 <= share <= 1.0):  # NaN fails too
        raise invalid(f"filter.min_attention_share must lie in [0, 1], got {share}")
    emotions = emotion_names(list(f.emotions), "filter.emotions") if f.emotions else None
    selection = Selection(
        variant_ids=tuple(dict.fromkeys(f.variant_ids)),
        age_bands=tuple(dict.fromkeys(f.age_bands)),
        genders=tuple(dict.fromkeys(f.genders)),
        regions=tuple(dict.fromkeys(f.regions)),
        sessions_from=since,
        sessions_to=until,
        start_s=start,
        end_s=end,
        passes=_PASSES[f.passes],
    )
    return ParsedFilter(selection, emotions, None if share is None or math.isnan(share) else share)
