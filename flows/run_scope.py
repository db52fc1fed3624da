"""The running task's scope, below the steps: its key, account, parameters, scratch
directory and progress (``current_run``, ``report_progress``, ``publish_partial``), and
``run_in_scope``, which runs a task's body in one. Steps read it; the task-flow decorator
(``flows.runtime``) sets it."""

import shutil
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from uuid import UUID

from prefect import get_run_logger, runtime
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.schemas.objects import State
from prefect.states import Failed

from flows.contract.runs import PARTIAL_RESULT, record_result
from flows.errors import TaskError
from flows.params import TaskParams
from flows.settings import get_settings

LOCAL_ACCOUNT = "local"
PROGRESS_INTERVAL = 0.5


@dataclass
class RunScope:
    """The running task: its key, account, parameters, scratch directory and progress."""

    key: str
    account: str
    params: TaskParams
    work_dir: Path
    progress_artifact: UUID | None = None
    progress: float = -1.0
    progress_at: float = 0.0


_scope: ContextVar[RunScope] = ContextVar("dragonflow_run_scope")


def current_run() -> RunScope:
    """The scope of the task flow running in this context."""
    return _scope.get()


async def report_progress(percent: float, *, force: bool = False) -> None:
    """Publish the task's progress (0-100) as the run's progress artifact.

    Shown as the status ``progress`` and in the Prefect UI; throttled to whole percents
    and at most one update per ``PROGRESS_INTERVAL`` seconds unless ``force``.
    """
    run = current_run()
    percent = round(max(0.0, min(100.0, percent)))
    now = time.monotonic()
    if not force and (percent <= run.progress or now - run.progress_at < PROGRESS_INTERVAL):
        return
    run.progress, run.progress_at = percent, now
    if run.progress_artifact is None:
        run.progress_artifact = await acreate_progress_artifact(percent, description="Task progress")
    else:
        await aupdate_progress_artifact(run.progress_artifact, percent)


async def publish_partial(values: dict[str, Any]) -> None:
    """Publish part of the result early: the status stays ``executing`` with this ``result``."""
    await record_result(values, description=PARTIAL_RESULT)


@dataclass
class Outcome:
    """How a task's body ended: its value, or the Failed state to end the run with (and the
    partial result a ``TaskError`` may carry in ``result``)."""

    value: Any = None
    failed: State | None = None
    partial: Any = None


async def run_in_scope(key: str, account: str, params: Any, body: Callable[[RunScope], Awaitable[Any]]) -> Outcome:
    """Run ``body(scope)`` as the running flow's task: a scope with a scratch directory that
    is always removed; a ``TaskError`` becomes a Failed state with its message, any other
    exception one naming it (the traceback goes to the run's log)."""
    work_dir = get_settings().work_dir / str(runtime.flow_run.id)
    work_dir.mkdir(parents=True, exist_ok=True)
    scope = RunScope(key, account, params, work_dir)
    token = _scope.set(scope)
    try:
        return Outcome(value=await body(scope))
    except TaskError as exc:
        get_run_logger().error("%s", exc)
        return Outcome(failed=Failed(message=str(exc)), partial=getattr(exc, "result", None))
    except Exception as exc:
        get_run_logger().exception("task failed")
        return Outcome(failed=Failed(message=f"{type(exc).__name__}: {exc}"))
    finally:
        _scope.reset(token)
        shutil.rmtree(work_dir, ignore_errors=True)
