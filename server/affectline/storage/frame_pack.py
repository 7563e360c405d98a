"""The packed form of a batch's frames: one binary value per batch in `batches.frame_data`.

One row per batch instead of one per frame is what lets one database take many sessions
(docs/scaling.md, "Database"). The layout is a version byte and then one fixed-size,
little-endian record per frame, in frame order (a frame's index is its position):

    video_time_ms   int64
    captured_at_us  int64    microseconds since the Unix epoch, UTC; INT64_MIN: none
    face_present    uint8
    probs           7 x float32   EMOTIONS order; NaN: no face, or an emotion withheld
    pose            3 x float32   yaw deg, pitch deg, face box size; NaN: none
    smoothed        7 x float32   NaN: none, or withheld

85 bytes a frame. float32 is what the per-frame columns held on PostgreSQL (REAL) before.
Readers decode many batches at once with numpy (`unpack_many`), so a timeline or a rollup
rebuild never builds per-frame Python objects unless it asks for FrameRecords.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from affectline.storage.records import EMOTIONS, FrameRecord

VERSION = 1
N = len(EMOTIONS)
FRAME_DTYPE = np.dtype([
    ("video_time_ms", "<i8"),
    ("captured_at_us", "<i8"),
    ("face_present", "u1"),
    ("probs", "<f4", (N,)),
    ("pose", "<f4", (3,)),
    ("smoothed", "<f4", (N,)),
])
FRAME_BYTES = FRAME_DTYPE.itemsize
NO_TIME = int(np.iinfo(np.int64).min)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAN = float("nan")
_NAN_N = (_NAN,) * N
_VERSION_BYTE = bytes((VERSION,))
# The same record for struct, which packs one frame faster than numpy assigns one.
_RECORD = struct.Struct(f"<qq?{N}f3f{N}f")
assert _RECORD.size == FRAME_BYTES


class PackError(ValueError):
    """A frame that cannot be stored, or a stored value that is not a packed batch."""


def pack(seq: int, frames: Sequence[FrameRecord], withheld: Sequence[int] = ()) -> bytes:
    """A batch's frames as one packed value; `withheld`: EMOTIONS positions stored as NaN.

    Frames are stored in index order, and their indices must be 0..n-1. Raises PackError (a
    ValueError) for a frame that does not belong in this batch: another seq, a missing or
    repeated index, probabilities without a face (or a face without seven), or a naive
    capture time.
    """
    parts = [_VERSION_BYTE]
    for i, f in enumerate(frames):
        if f.seq != seq:
            raise PackError(f"frame {f.index} has seq {f.seq}, its batch has seq {seq}")
        if f.index != i:
            ordered = sorted(frames, key=lambda g: g.index)
            if [g.index for g in ordered] != list(range(len(frames))):
                raise PackError(f"frame indices {sorted(g.index for g in frames)} are not 0..{len(frames) - 1}, each once")
            return pack(seq, ordered, withheld)
        probs, smoothed = f.probs, f.smoothed
        if f.face_present:
            if probs is None or len(probs) != N:
                raise PackError(f"frame {i}: a face needs {N} probabilities")
        elif probs is not None or smoothed is not None:
            raise PackError(f"frame {i}: probabilities given without a face")
        else:
            probs = _NAN_N
        if smoothed is None:
            smoothed = _NAN_N
        elif len(smoothed) != N:
            raise PackError(f"frame {i}: smoothed needs {N} probabilities")
        at = f.captured_at
        yaw, pitch, box = f.head_yaw_deg, f.head_pitch_deg, f.face_box_size
        parts.append(_RECORD.pack(
            f.video_time_ms, NO_TIME if at is None else _micros(at, i), f.face_present, *probs,
            _NAN if yaw is None else yaw, _NAN if pitch is None else pitch, _NAN if box is None else box,
            *smoothed))
    data = b"".join(parts)
    if withheld and len(data) > 1:
        frames_array = np.frombuffer(data, FRAME_DTYPE, offset=1).copy()
        frames_array["probs"][:, list(withheld)] = np.nan
        frames_array["smoothed"][:, list(withheld)] = np.nan
        data = _VERSION_BYTE + frames_array.tobytes()
    return data


def unpack(data: bytes | memoryview) -> np.ndarray:
    """One packed value as a FRAME_DTYPE array (read-only, a view on `data`)."""
    raw = memoryview(data)
    if len(raw) < 1 or raw[0] != VERSION or (len(raw) - 1) % FRAME_BYTES:
        raise PackError(f"not a version-{VERSION} packed batch ({len(raw)} bytes)")
    return np.frombuffer(raw, FRAME_DTYPE, offset=1)


def unpack_many(values: Sequence[bytes | memoryview]) -> tuple[np.ndarray, np.ndarray]:
    """Several batches' values as one FRAME_DTYPE array, and how many frames each value held."""
    parts = [unpack(v) for v in values]
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    return (np.concatenate(parts) if parts else np.zeros(0, FRAME_DTYPE)), counts


def to_records(seq: int, frames: np.ndarray, start: int = 0) -> list[FrameRecord]:
    """FrameRecords of one batch's unpacked frames (`start`: the index of frames[0])."""
    out = []
    probs = frames["probs"].astype(np.float64)
    smoothed = frames["smoothed"].astype(np.float64)
    has_smoothed = ~np.all(np.isnan(smoothed), axis=1)
    pose = frames["pose"].astype(np.float64).tolist()
    columns = zip(frames["video_time_ms"].tolist(), frames["captured_at_us"].tolist(),
                  frames["face_present"].tolist(), probs.tolist(), pose, smoothed.tolist(), has_smoothed.tolist())
    for i, (time_ms, captured_us, face, p, (yaw, pitch, box), s, smoothed_present) in enumerate(columns, start):
        out.append(FrameRecord(
            seq=seq,
            index=i,
            video_time_ms=time_ms,
            captured_at=None if captured_us == NO_TIME else _EPOCH + timedelta(microseconds=captured_us),
            face_present=bool(face),
            probs=tuple(p) if face else None,
            head_yaw_deg=_none_if_nan(yaw),
            head_pitch_deg=_none_if_nan(pitch),
            face_box_size=_none_if_nan(box),
            smoothed=tuple(s) if smoothed_present else None,
        ))
    return out


def _micros(at: datetime, i: int) -> int:
    if at.tzinfo is None:
        raise PackError(f"frame {i}: captured_at has no time zone")
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _nan_if_none(value: float | None) -> float:
    return _NAN if value is None else float(value)


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
