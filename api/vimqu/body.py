"""Request bodies of the VimQu surface: JSON whatever the Content-Type says, also as seed
003's examples write it (``//...`` comments, a comma before a closing bracket): a body that
is not strict JSON is read again without its comments and trailing commas, so a request
copied from the documentation gets its field errors (422) rather than a bare 400."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from api.vimqu.errors import bad_request

_GAP = r"(?:\s|//[^\n]*|/\*.*?\*/)*"
_TOKENS = re.compile(rf'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/|,(?={_GAP}[}}\]])', re.S)


def without_comments(text: str) -> str:
    """``text`` without ``//`` and ``/* */`` comments and trailing commas (strings kept)."""
    return _TOKENS.sub(lambda match: match.group() if match.group().startswith('"') else "", text)


def loads(raw: bytes) -> Any:
    """The JSON of ``raw`` (None when blank), read leniently as above; ValueError otherwise."""
    text = raw.decode()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as strict:
        try:
            return json.loads(without_comments(text))
        except json.JSONDecodeError:
            raise strict from None


async def read_json(request: Request) -> Any:
    """The request's JSON body, or 400."""
    try:
        return loads(await request.body())
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
        raise bad_request(f"Bad Request: the request body is not valid JSON ({exc})") from None
