"""The task registry: task name -> flow, parameter model, output file names.

The single source of truth: API validation and its OpenAPI schemas, deployment
registration and the docs' task tables (``docs/generate.py``) read it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prefect import Flow

from flows import audio, create, hello, html, image, upload, video
from flows.callbacks import send_callback, send_errback
from flows.maintenance import expire_files
from flows.recovery import recover_run
from flows.outputs import task
from flows.params import TaskParams


@dataclass(frozen=True)
class TaskSpec:
    """One task type as clients name it."""

    flow: Flow[..., Any]
    outputs: tuple[str, ...] = ()
    v1_defaults: dict[str, Any] = field(default_factory=dict)
    """Parameter defaults where the v1 reference differs from v2 (applied on /v1 routes)."""

    @property
    def name(self) -> str:
        """The task name clients send as ``task_name`` (the flow's name)."""
        return self.flow.name

    @property
    def params(self) -> type[TaskParams]:
        """The parameter model (the annotation of the flow's ``params`` argument)."""
        return inspect.signature(self.flow.fn, eval_str=True).parameters["params"].annotation


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(hello.hello),
        TaskSpec(audio.info),
        TaskSpec(audio.convert, outputs=("output",)),
        TaskSpec(audio.waveform, outputs=("output",)),
        TaskSpec(audio.beats),
        TaskSpec(audio.tts, outputs=("output",)),
        TaskSpec(image.info),
        TaskSpec(image.thumb, outputs=("output",)),
        TaskSpec(image.gif, outputs=("output",)),
        TaskSpec(image.strip, outputs=("output",)),
        TaskSpec(image.face),
        TaskSpec(image.saliency),
        TaskSpec(image.smartcrop),
        TaskSpec(html.scrape),
        TaskSpec(video.info),
        TaskSpec(video.convert, outputs=("output",),
                 v1_defaults={"video_bitrate": 512, "audio_bitrate": 64, "sample_rate": 48000}),
        TaskSpec(video.reverse, outputs=("output",),
                 v1_defaults={"video_bitrate": 512, "audio_bitrate": 64, "sample_rate": 48000}),
        TaskSpec(video.strip, outputs=("output",)),
        TaskSpec(video.thumb, outputs=("output",)),
        TaskSpec(create.create, outputs=("export", "preview", "thumbnail"), v1_defaults={"preview": True}),
        TaskSpec(upload.youtube),
        TaskSpec(upload.vimeo),
        TaskSpec(upload.fb, outputs=("output",)),
    )
}

VIMQU_TASK = TaskSpec(task.vimqu_task)
"""The VimQu surface's one task type (``vimqu.task``: one input, many outputs); not a
Stupeflix task, so not in ``TASKS``."""

DEPLOYED: tuple[TaskSpec, ...] = (*TASKS.values(), VIMQU_TASK)
"""Every task flow with a deployment."""


@dataclass(frozen=True)
class SystemFlow:
    """A deployed flow that is not a task (run by automations or on a schedule)."""

    flow: Flow[..., Any]
    every: timedelta | None = None
    """Run on this interval (none: only when an automation or a call asks)..."""
    schedule: str = ""
    """...by the deployment schedule of this slug."""


SYSTEM_FLOWS: tuple[SystemFlow, ...] = (
    SystemFlow(send_errback),  # the errback automation: runs that ended without their code
    SystemFlow(send_callback),  # a callback's later tries
    SystemFlow(recover_run),  # the crash automation: runs whose worker stopped beating
    SystemFlow(expire_files, every=timedelta(hours=1), schedule="hourly"),
)
"""Every other deployed flow: with ``DEPLOYED``, the one list of deployments."""
