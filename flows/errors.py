"""Errors a task reports to its client: the message is the status ``error`` string."""


class TaskError(Exception):
    """A task failed for a reason the client can act on (bad input, unreachable URL, ...)."""


class FetchError(TaskError):
    """An input URL could not be fetched; the message names the URL and the reason."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"could not fetch {url}: {reason}")
