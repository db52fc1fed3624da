"""A flow that kills the process running it, as a native-library fault in a decoder would:
deployed by tests/test_scale.py to show that such an input cannot take the service down."""

from __future__ import annotations

import os
import signal

from prefect import flow


@flow(name="poison")
async def poison() -> None:
    """SIGKILL the worker process running this flow."""
    os.kill(os.getpid(), signal.SIGKILL)
