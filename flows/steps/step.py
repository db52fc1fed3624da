"""``step``: a task's step as a coarse Prefect task (seen on the run's page in the UI).

Every step is a ``prefect.task`` with caching and result persistence off (inputs are
paths and images; results stay in memory), named by what it does through
``task_run_name`` (``fetch photo.jpg``, ``store output.jpg``). The undecorated function
stays available as ``.fn`` for callers outside Prefect. With
``DRAGONFLOW_STEP_TASKS=false`` steps are plain functions (no task runs). ``step_log`` writes one line to
the step's run log (or to the ``dragonflow`` logger outside a run).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from flows.settings import get_settings

logger = logging.getLogger("dragonflow")


def step(
    name: str,
    *,
    run_name: str | Callable[[], str] | None = None,
    retries: int = 0,
    retry_delay_seconds: float | list[float] = 0,
    retry_condition_fn: Callable[..., bool] | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a step function as a Prefect task named ``name`` (run name ``run_name``,
    which may use the call's parameters: ``"fetch {url}"``)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        if not get_settings().step_tasks:  # DRAGONFLOW_STEP_TASKS=false: plain calls
            fn.fn = fn
            return fn
        return task(
            fn,
            name=name,
            task_run_name=run_name,
            cache_policy=NO_CACHE,
            persist_result=False,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            retry_condition_fn=retry_condition_fn,
            log_prints=False,
            **options,
        )

    return decorate


def step_log(message: str, *args: Any, level: int = logging.INFO) -> None:
    """One line in the current step's (or flow's) run log."""
    try:
        run_logger = get_run_logger()
    except MissingContextError:
        run_logger = logger
    run_logger.log(level, message, *args)
