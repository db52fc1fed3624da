"""``hello``: the documentation's demo task (no network, no files)."""

import asyncio

from pydantic import Field

from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, publish_partial, report_progress, task_flow

__all__ = [  # the task flows, then their parameter and result models
    "hello", "HelloParams"
]

DELAY_STEPS = 10


class HelloParams(TaskParams):
    """Parameters of ``hello``."""

    name: str = Field(description="Who to greet.")
    delay: float = Field(
        0, ge=0, le=60, description="Seconds to take (for trying streams, progress and partial results)."
    )


@task_flow("hello")
async def hello(params: HelloParams, account: str = LOCAL_ACCOUNT) -> str:
    """Greet ``name``: the result is ``"Hello <name>"``.

    With ``delay``, the task reports progress in ten steps and publishes the partial
    result ``{"name": ...}`` halfway.
    """
    if params.delay:
        for step in range(DELAY_STEPS):
            await asyncio.sleep(params.delay / DELAY_STEPS)
            await report_progress(100 * (step + 1) / DELAY_STEPS, force=True)
            if step == DELAY_STEPS // 2 - 1:
                await publish_partial({"name": params.name})
    return f"Hello {params.name}"
