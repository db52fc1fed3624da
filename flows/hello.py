"""``hello``: the documentation's demo task (no network, no files)."""

from pydantic import Field

from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, task_flow


class HelloParams(TaskParams):
    """Parameters of ``hello``."""

    name: str = Field(description="Who to greet.")


@task_flow("hello")
async def hello(params: HelloParams, account: str = LOCAL_ACCOUNT) -> str:
    """Greet ``name``: the result is ``"Hello <name>"``."""
    return f"Hello {params.name}"
