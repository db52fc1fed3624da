"""Errors a task reports to its client: the message is the status ``error`` string."""

from __future__ import annotations

from typing import Literal

FetchCode = Literal["bad_request", "refused", "not_found", "upstream", "timeout", "too_large"]


class TaskError(Exception):
    """A task failed for a reason the client can act on (bad input, unreachable URL, ...)."""


class FetchError(TaskError):
    """An input URL could not be fetched; the message names the URL and the reason.

    ``code`` says why (thumbor's loader codes): ``bad_request`` (not a URL we read),
    ``refused`` (a private address), ``not_found``, ``upstream`` (the source failed),
    ``timeout``, ``too_large``. ``transient`` errors (5xx, 429, a dropped connection, a
    timeout) are worth retrying; the others are not.
    """

    def __init__(self, url: str, reason: str, code: FetchCode = "upstream", *, transient: bool | None = None):
        self.url = url
        self.reason = reason
        self.code = code
        self.transient = code == "timeout" if transient is None else transient
        super().__init__(f"could not fetch {url}: {reason}")
