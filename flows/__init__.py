"""dragonflow's task flows and steps, to compose into Prefect pipelines of your own.

The public API (loaded on first use, so ``import flows`` stays cheap):

- the task families, each module's ``__all__`` naming its task flows and their parameter
  and result models: ``image`` (``thumb``, ``ImageThumbParams``, ``ImageThumbResult``, ...),
  ``audio``, ``video``, ``html``, ``upload``, ``hello``, ``create`` (video.create);
- ``TASKS``, the registry: task name -> flow, parameter model, output files;
- the shared steps: ``fetch`` (an input URL into a directory) and ``store`` (a file to the
  task's storage, its URL back), each a Prefect task; ``probe_media`` (ffprobe, typed);
- writing a task flow of your own: ``task_flow``, ``TaskParams``, ``TaskError``,
  ``current_run``, ``report_progress``, ``publish_partial``.

Calling a task flow from a flow runs it as a subflow: ``await thumb(ImageThumbParams(...))``.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    **{family: f"flows.{family}" for family in ("image", "audio", "video", "html", "upload", "hello", "create")},
    "TASKS": "flows.registry",
    "fetch": "flows.steps.fetch",
    "store": "flows.steps.store",
    "probe_media": "flows.steps.tools.probe",
    "task_flow": "flows.runtime",
    "current_run": "flows.runtime",
    "report_progress": "flows.runtime",
    "publish_partial": "flows.runtime",
    "TaskParams": "flows.params",
    "TaskError": "flows.errors",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'flows' has no attribute {name!r}")
    module = import_module(_WHERE[name])
    return module if module.__name__ == f"flows.{name}" else getattr(module, name)
