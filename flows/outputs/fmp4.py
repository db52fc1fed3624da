"""Reading fragmented MP4 (CMAF) segments: where a segment's key frame lies, for the
``EXT-X-BYTERANGE`` of an HLS I-frame playlist.

An I-frame's range starts at its fragment's ``moof`` and ends with the frame's last byte in
the ``mdat`` (the way Apple's segmenter cuts them): a player fetches the fragment's header and
that one sample, and reads the sample's size, time and flags from the ``moof``.
"""

from __future__ import annotations

import struct
from pathlib import Path

_BASE_DATA_OFFSET, _DESCRIPTION_INDEX, _DEFAULT_DURATION, _DEFAULT_SIZE = 0x1, 0x2, 0x8, 0x10  # tfhd flags
_DATA_OFFSET, _FIRST_FLAGS, _DURATION, _SIZE = 0x1, 0x4, 0x100, 0x200  # trun flags


def _box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    """(start, end) of the first ``kind`` box between ``start`` and ``end``."""
    while start + 8 <= end:
        size, found = struct.unpack_from(">I4s", data, start)
        if size == 1:
            size = struct.unpack_from(">Q", data, start + 8)[0]
        if size < 8:
            break
        if found == kind:
            return start, start + size
        start += size
    raise ValueError(f"no {kind.decode()} box")


def keyframe_range(segment: Path) -> tuple[int, int]:
    """(offset, length) of the bytes from ``segment``'s first ``moof`` to the end of its first
    sample's data: the key frame every segment of the ladder starts with."""
    data = segment.read_bytes()
    moof, moof_end = _box(data, 0, len(data), b"moof")
    traf, traf_end = _box(data, moof + 8, moof_end, b"traf")
    tfhd, _ = _box(data, traf + 8, traf_end, b"tfhd")
    trun, _ = _box(data, traf + 8, traf_end, b"trun")
    tfhd_flags = struct.unpack_from(">I", data, tfhd + 8)[0] & 0xFFFFFF
    at = tfhd + 16  # after version/flags and track_ID
    base = moof
    if tfhd_flags & _BASE_DATA_OFFSET:
        base = struct.unpack_from(">Q", data, at)[0]
        at += 8
    at += 4 * bool(tfhd_flags & _DESCRIPTION_INDEX) + 4 * bool(tfhd_flags & _DEFAULT_DURATION)
    size = struct.unpack_from(">I", data, at)[0] if tfhd_flags & _DEFAULT_SIZE else None
    trun_flags = struct.unpack_from(">I", data, trun + 8)[0] & 0xFFFFFF
    at = trun + 16  # after version/flags and sample_count
    offset = 0
    if trun_flags & _DATA_OFFSET:
        offset = struct.unpack_from(">i", data, at)[0]
        at += 4
    at += 4 * bool(trun_flags & _FIRST_FLAGS) + 4 * bool(trun_flags & _DURATION)
    if trun_flags & _SIZE:
        size = struct.unpack_from(">I", data, at)[0]
    if size is None:
        raise ValueError(f"{segment.name}: no sample size in its moof")
    end = base + offset + size
    if not moof < end <= len(data):
        raise ValueError(f"{segment.name}: its first sample is not in the file")
    return moof, end - moof
