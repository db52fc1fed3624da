"""Metadata every dragonflow block shows in the Prefect UI: logo and documentation link.

Both are served by the dragonflow API at ``DRAGONFLOW_PUBLIC_URL`` (``/blocks/logo.png``
and ``/docs``); the logo is drawn here, so no binary lives in the repository.
"""

from __future__ import annotations

import os
import struct
import zlib
from functools import cache

PUBLIC_URL = os.environ.get("DRAGONFLOW_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
LOGO_PATH = "/blocks/logo.png"
LOGO_URL = PUBLIC_URL + LOGO_PATH
DOCUMENTATION_URL = PUBLIC_URL + "/docs"
LOGO_SIZE = 128
_GREEN, _GOLD = bytes((22, 90, 60)), bytes((236, 190, 70))


def _inside_arrow(x: float, y: float) -> bool:
    """An upward arrow head: the triangle (64,20)-(104,104)-(24,104) less a notch."""
    half = (y - 20) * 40 / 84
    in_head = 20 <= y <= 104 and abs(x - 64) <= half
    notch = y > 80 + abs(x - 64) * 24 / 40
    return in_head and not notch


@cache
def logo_png() -> bytes:
    """The blocks' logo: a 128 px square PNG."""
    rows = b"".join(
        b"\0" + b"".join(_GOLD if _inside_arrow(x + 0.5, y + 0.5) else _GREEN for x in range(LOGO_SIZE))
        for y in range(LOGO_SIZE)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", LOGO_SIZE, LOGO_SIZE, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
