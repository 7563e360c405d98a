"""Field checks shared by the services: every string has a length and a character set, every
number a range, every timestamp a valid span. Each failure is INVALID_ARGUMENT naming the field,
the rule and (cut short, via repr) the value: never echoing control characters or megabytes.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.timestamp_pb2 import Timestamp

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,31}$")
MAX_SCOPES = 16
MAX_TOKEN_CHARS = 256
MAX_PAGE_TOKEN_CHARS = 512
# Printable text fields: (max characters).
TEXT_LIMITS = {
    "viewer.consent.notice_version": 64,
    "viewer.demographics.age_band": 16,
    "viewer.demographics.gender": 64,
    "viewer.demographics.region": 16,
    "reason": 64,
}
# A video position beyond 31 days is a client bug, not a video.
MAX_VIDEO_TIME_MS = 31 * 24 * 3600 * 1000
MAX_ACHIEVED_FPS = 1000.0
# Timestamps a client may send: from 2000 to a day past the server's clock (client clock skew).
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)


def invalid(message: str) -> ConnectError:
    return ConnectError(Code.INVALID_ARGUMENT, message)


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_id(value: str, what: str, *, allow_empty: bool = False) -> None:
    if allow_empty and value == "":
        return
    if not ID_RE.match(value):
        raise invalid(f"{what} must be 1-128 characters of letters, digits, '.', '_', ':' or '-', got {_shown(value)}")


def check_text(value: str, what: str, max_chars: int | None = None) -> None:
    limit = max_chars if max_chars is not None else TEXT_LIMITS[what]
    if len(value) > limit:
        raise invalid(f"{what} must be at most {limit} characters, got {len(value)}")
    if not value.isprintable():
        raise invalid(f"{what} must be printable text (no control characters), got {_shown(value)}")


def check_scopes(scopes: list[str] | tuple[str, ...], what: str = "viewer.consent.scopes") -> None:
    if len(scopes) > MAX_SCOPES:
        raise invalid(f"{what}: at most {MAX_SCOPES} scopes, got {len(scopes)}")
    for s in scopes:
        if not SCOPE_RE.match(s.strip()):
            raise invalid(f"{what}: each scope is 1-32 characters of a-z, 0-9, '_', '.', ':' or '-' starting "
                          f"with a letter, got {_shown(s)}")


def check_timestamp(ts: Timestamp, what: str, now: datetime) -> None:
    if not 0 <= ts.nanos <= 999_999_999:
        raise invalid(f"{what}.nanos must be within 0..999999999, got {ts.nanos}")
    latest = max(now, datetime.now(timezone.utc)) + FUTURE_SLACK  # the later of the service's and the wall clock
    if not EARLIEST.timestamp() <= ts.seconds <= latest.timestamp():
        raise invalid(f"{what} must be between {EARLIEST:%Y-%m-%d} and a day after the server's clock "
                      f"({latest:%Y-%m-%dT%H:%M}Z), got seconds={ts.seconds}")


def check_range(value: float, what: str, lo: float, hi: float) -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise invalid(f"{what} must be a finite number within {lo:g}..{hi:g}, got {value}")


def check_token(token: str, what: str = "session_token") -> None:
    if len(token) > MAX_TOKEN_CHARS:
        raise invalid(f"{what} must be at most {MAX_TOKEN_CHARS} characters, got {len(token)}")


def check_start(request: object, now: datetime, max_frames_per_batch: int) -> None:
    """StartSessionRequest fields beyond ids, consent presence and capture_fps."""
    consent = request.viewer.consent  # type: ignore[attr-defined]
    check_text(consent.notice_version, "viewer.consent.notice_version")
    check_timestamp(consent.consented_at, "viewer.consent.consented_at", now)
    check_scopes(list(consent.scopes))
    demo = request.viewer.demographics  # type: ignore[attr-defined]
    for name in ("age_band", "gender", "region"):
        check_text(getattr(demo, name), f"viewer.demographics.{name}")
    fpb = request.frames_per_batch  # type: ignore[attr-defined]
    if fpb > max_frames_per_batch:
        raise invalid(f"frames_per_batch must be within 0..{max_frames_per_batch} (the most a batch may hold), got {fpb}")


def check_batch(batch: object, seq: int) -> None:
    fps = batch.achieved_fps  # type: ignore[attr-defined]
    check_range(fps, f"seq {seq}: achieved_fps", 0.0, MAX_ACHIEVED_FPS)


def check_frame(f: object, seq: int, i: int, now: datetime) -> None:
    """One CropFrame, besides video_time_ms >= 0 and the crop size of face frames."""
    where = f"seq {seq} frame {i}"
    if f.video_time_ms > MAX_VIDEO_TIME_MS:  # type: ignore[attr-defined]
        raise invalid(f"{where}: video_time_ms must be at most {MAX_VIDEO_TIME_MS} (31 days), got {f.video_time_ms}")  # type: ignore[attr-defined]
    if not f.face_present and f.crop:  # type: ignore[attr-defined]
        raise invalid(f"{where}: a frame without a face carries no crop, got {len(f.crop)} bytes")  # type: ignore[attr-defined]
    if f.HasField("captured_at"):  # type: ignore[attr-defined]
        check_timestamp(f.captured_at, f"{where}: captured_at", now)  # type: ignore[attr-defined]
    if f.HasField("head_yaw_deg"):  # type: ignore[attr-defined]
        check_range(f.head_yaw_deg, f"{where}: head_yaw_deg", -180.0, 180.0)  # type: ignore[attr-defined]
    if f.HasField("head_pitch_deg"):  # type: ignore[attr-defined]
        check_range(f.head_pitch_deg, f"{where}: head_pitch_deg", -90.0, 90.0)  # type: ignore[attr-defined]
    if f.HasField("face_box_size"):  # type: ignore[attr-defined]
        check_range(f.face_box_size, f"{where}: face_box_size", 0.0, 1.0)  # type: ignore[attr-defined]
