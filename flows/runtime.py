"""The task-flow decorator both surfaces use, above the steps.

A task flow is ``async def name(params: XParams, account: str = LOCAL_ACCOUNT)``. The
decorator turns it into a Prefect flow whose run is named as its surface names tasks (the
task key for Stupeflix, the run's UUID for VimQu), runs the body in a run scope
(``flows.run_scope``: a scratch directory that is always removed, a ``TaskError`` as a
Failed state with the client-facing message), puts the run's tokens back into the
parameters for the body and forgets them after, records the result as a ``result``
artifact (what the API reads; on failure the partial result a ``TaskError`` carries) and,
as its last task, sends the status it ends with where its surface says (``url_callback``
or ``url_errback``; VimQu's ``webhook_url``): one try, later ones in a ``send-callback``
run. Runs that never get there (crashed, cancelled, refused for invalid parameters) get
their errback from an automation (``flows/callbacks.py``).

The run-scope names (``current_run``, ``report_progress``, ...) are re-exported here, where
task flows have always imported them.
"""

import functools
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from uuid import UUID

from prefect import flow, runtime
from prefect.states import Completed

from flows.contract import secrets
from flows.contract.keys import key_for
from flows.contract.runs import record_result
from flows.params import TaskParams
from flows.run_scope import (
    LOCAL_ACCOUNT, PROGRESS_INTERVAL, Outcome, RunScope, current_run, publish_partial, report_progress, run_in_scope,
)
from flows.steps.notify import send_status

__all__ = ["LOCAL_ACCOUNT", "PROGRESS_INTERVAL", "Outcome", "RunScope", "Surface", "STUPEFLIX", "VIMQU",
           "current_run", "publish_partial", "report_progress", "run_in_scope", "task_flow"]


@dataclass(frozen=True)
class Surface:
    """How a surface's task runs are named (``name_for(run_id)``) and where their ending is
    sent: ``ending(params, failed)`` is the URL (or None) and the kind of notice
    (``callback``, ``errback``, ``webhook``)."""

    name_for: Callable[[UUID], str]
    ending: Callable[[Any, bool], tuple[str | None, str]]

    def run_name(self) -> str:
        """The running flow run's name."""
        return self.name_for(runtime.flow_run.id)


STUPEFLIX = Surface(
    name_for=key_for,
    ending=lambda params, failed: (params.url_errback, "errback") if failed else (params.url_callback, "callback"),
)
VIMQU = Surface(name_for=str, ending=lambda params, failed: (params.webhook_url, "webhook"))


def task_flow(name: str, surface: Surface = STUPEFLIX) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Make ``fn(params, account)`` the Prefect flow of task ``name`` on ``surface``."""

    def decorate(fn: Callable[..., Awaitable[Any]]):
        @functools.wraps(fn)
        async def run(params: TaskParams, account: str = LOCAL_ACCOUNT):
            async def body(scope: RunScope) -> Any:
                scope.params = await secrets.reveal(params)  # tokens are kept out of run parameters
                return await fn(scope.params, account)

            run_id = runtime.flow_run.id
            try:
                outcome = await run_in_scope(surface.run_name(), account, params, body)
            finally:
                await secrets.forget_quietly(getattr(params, "secrets", None))
            url, kind = surface.ending(params, outcome.failed is not None)
            if outcome.failed is not None:
                if outcome.partial is not None:
                    await record_result(outcome.partial)
                await send_status(run_id, url, kind, outcome.failed)
                return outcome.failed
            await record_result(outcome.value)
            await send_status(run_id, url, kind, Completed())
            return outcome.value

        made = flow(name=name, flow_run_name=surface.run_name, persist_result=False, validate_parameters=True)(run)
        made.run_name_for = surface.name_for  # lets the warm worker name the run in its first update
        return made

    return decorate
