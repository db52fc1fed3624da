"""Task keys: a flow run id as unpadded upper-case base32 (26 characters), both ways."""

from __future__ import annotations

import base64
import binascii
from uuid import UUID


def key_for(run_id: UUID | str) -> str:
    """The task key clients see for a flow run id."""
    raw = run_id.bytes if isinstance(run_id, UUID) else UUID(str(run_id)).bytes
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def run_id_for(key: str) -> UUID | None:
    """The flow run id a task key names, or None when the key does not decode."""
    text = key.strip().upper()
    if len(text) != 26:
        return None
    try:
        return UUID(bytes=base64.b32decode(text + "======"))
    except (binascii.Error, ValueError):
        return None
