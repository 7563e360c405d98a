"""A bounded look at a serialized CropBatch before it is parsed.

Parsing builds every frame message at once, so a small batch of millions of empty frames costs
hundreds of MB. Walking the top-level wire format first costs nothing and stops at the limit.
"""

from __future__ import annotations


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def count_crop_frames(data: bytes, stop_after: int) -> int:
    """Counts the `frames` (field 1) of a serialized CropBatch by walking its top-level wire
    format, without building any message; stops once past `stop_after`. ValueError when the
    bytes are not a well-formed protobuf message."""
    n = pos = 0
    end = len(data)
    while pos < end:
        tag, pos = _varint(data, pos)
        wire_type = tag & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            pos += length
            if tag >> 3 == 1:
                n += 1
                if n > stop_after:
                    return n
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated field")
    return n
