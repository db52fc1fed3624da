"""``vimqu.task``: one VimQu task (seed 003) as one Prefect flow run, one subflow per output.

The run's parameters are the contract's (``flows.contract.vimqu``): ``{"params":
VimquTaskParams, "account": NAME}``. The flow

1. fetches the input once (an http(s) URL, or ``path`` on one of the account's registered
   storages through ``storage://ID/path``) and probes it once; when either fails the task
   is Failed with a message naming the input and why;
2. runs one subflow per output (flow ``vimqu.output``, its run named ``hls → s3 'name'``), all
   at once: each runs its engine (``flows.outputs``: thumbnails, video, package), then uploads
   every file to its registered storage under ``target_path`` (``RegisteredStorage.put``:
   atomic, so a file is listed only once it is complete under its name; segments before
   playlists before the master/MPD, so a player never sees a manifest whose files are
   missing). Outputs of type ``hls`` and ``dash`` with the same ladder (variants, segment
   duration, audio) share one ``package_streams`` call that writes every asked manifest over
   the same CMAF segments; each of them then uploads its own files. At most
   ``ENGINE_SLOTS`` engines encode at a time (measured on 2 cores, see below); uploads
   overlap with the other outputs' encoding;
3. records, as each output ends, the result artifact ``{"outputs": {ID: {"status",
   "files": [{"path", "uploaded_at"}], "message"}}}`` (partial while running, final at the
   end), and progress over the outputs (input 10 %, each output's engine 80 % and upload 20 %
   of its share).

An output whose storage is unknown, whose engine fails or whose upload fails is ``failed``
with a message naming the storage and the reason (its subflow run ends Failed), and the
others go on. The task ends Completed even then (the contract's renderer shows status
``failed`` with the message), unless every output failed: then it is Failed too. A
completed output whose ladder dropped rungs (above the input: never upscaled) says so in its
``message``.

Engines at once (``ENGINE_SLOTS``), measured on the shared 2-core machine (load average
11-23 from other work, so best of 3 rounds): hls+dash 360p/720p, a 360p mp4 and 10 thumbnails
with a sprite of a 20 s 720p30 clip, engine wall time one after the other 35.2 s, two at a time
26.2 s, all three at once 28.2 s. Each ffmpeg already uses both cores, but the serial parts
(process starts, demuxing, the audio, muxing, image writing) of one overlap another's encode;
beyond two there is no gain, only more memory.

The run is named by the task id (its UUID, what VimQu clients see); the webhook goes through
``flows.steps.notify.send_status`` to ``webhook_url`` (and the account's) when the task ends,
and, with ``webhook_per_output``, as each output's result is published (before the final one).
"""

import asyncio
import logging
import posixpath
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal
from urllib.parse import quote, urlsplit
from uuid import uuid4

from prefect import flow, get_run_logger, runtime
from prefect.states import Failed, State
from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, ValidationInfo, field_validator, model_validator,
)
from pydantic_core import PydanticCustomError, ValidationError

from blocks.registered import RegisteredStorage, StorageUnavailable, lookup_registered
from flows.contract.vimqu import output_failure, utc_text
from flows.errors import TaskError
from flows.outputs import package as packaging
from flows.outputs.config import OutputConfigError, StreamingConfig, parse_output_config
from flows.outputs.package import package_streams
from flows.outputs.thumbnails import make_thumbnails
from flows.outputs.video import encode_output
from flows.runtime import LOCAL_ACCOUNT, VIMQU, current_run, publish_partial, report_progress, task_flow
from flows.steps.fetch import fetch
from flows.steps.notify import send_webhooks
from flows.steps.step import step, step_log
from flows.steps.tools.probe import MediaProbe, probe_input

TASK_NAME = "vimqu.task"
OUTPUT_FLOW_NAME = "vimqu.output"
OUTPUT_TYPES = ("thumbnail", "video", "hls", "dash")
MAX_OUTPUTS = 100
INPUT_SHARE = 10.0
"""Percent of the task's progress for fetching and probing the input."""
ENGINE_SHARE = 0.8
"""Part of an output's progress for its engine (the rest: its upload)."""
ENGINE_SLOTS = 2
"""Engines encoding at once (measured: see the module docstring)."""
UPLOAD_CONCURRENCY = 4
"""Files of one output uploaded at once."""
UPLOAD_RETRY_DELAYS = (0.5, 2.0)
"""Waits before retrying an upload the server could not even be reached for."""


# --- parameters ----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "{what} must be an http:// or https:// URL", {"what": what})
    return value


def _absolute_path(value: str, what: str, example: str) -> str:
    if "\\" in value or not value.startswith("/"):
        raise PydanticCustomError("path", "{what} must be an absolute path with forward slashes ({example})",
                                  {"what": what, "example": example})
    return posixpath.normpath(value) if value != "/" else value


class TaskInput(_Model):
    """Where the input is: a URL, or a path on one of the account's registered storages."""

    source_type: Literal["url", "storage"] = Field(description="url or storage.")
    storage_id: str | None = Field(None, description="With storage: the registered storage's id.")
    path: str = Field(min_length=1, max_length=4096,
                      description="url: an http(s) URL; storage: the file's absolute path on the storage.")

    @model_validator(mode="after")
    def _check(self) -> "TaskInput":
        errors: list[tuple[str, str]] = []
        if self.source_type == "storage" and not self.storage_id:
            errors.append(("storage_id", "storage_id is required when source_type is storage"))
        try:
            if self.source_type == "storage":
                self.path = _absolute_path(self.path, "path", "/inputs/movie.mp4")
            else:
                _http_url(self.path, "path")
        except PydanticCustomError as exc:
            errors.append(("path", str(exc)))
        if errors:
            raise ValidationError.from_exception_data("TaskInput", [
                {"type": PydanticCustomError("value_error", message), "loc": (name,), "input": None}
                for name, message in errors])
        return self

    def url(self) -> str:
        """What ``fetch`` reads: the URL, or ``storage://ID/path``."""
        if self.source_type == "url":
            return self.path
        return f"storage://{self.storage_id}{quote(self.path, safe='/')}"


class StorageSnapshot(BaseModel):
    """The output's storage as it was when the task was created (the result shows it)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    driver: str | None = None


class TaskOutput(_Model):
    """One output: what to make (``type`` and its ``type_specific_config``) and where to
    upload it (``storage_id``, ``target_path``)."""

    id: str = Field(default_factory=lambda: str(uuid4()), description="The output's id (set by the API).")
    storage_id: str = Field(min_length=1, description="The registered storage the files go to.")
    storage: StorageSnapshot | None = Field(None, description="The storage's id, name and driver (set by the API).")
    target_path: str = Field(min_length=1, max_length=1024, description="Directory on the storage (absolute).")
    type: Literal["thumbnail", "video", "hls", "dash"] = Field(description="thumbnail, video, hls or dash"
                                                                           " (mpeg_dash is read as dash).")
    type_specific_config: dict[str, Any] = Field(default_factory=dict,
                                                 description="The type's settings (flows.outputs.config).")
    reference_id: Any = Field(None, description="Anything; echoed in the result and notifications.")
    _config: BaseModel | None = PrivateAttr(None)

    @field_validator("type", mode="before")
    @classmethod
    def _dash(cls, value: Any) -> Any:
        return "dash" if value == "mpeg_dash" else value

    @field_validator("target_path")
    @classmethod
    def _target(cls, value: str) -> str:
        return _absolute_path(value, "target_path", "/outputs/hls")

    @field_validator("type_specific_config", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("type_specific_config")
    @classmethod
    def _parse_config(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "type" not in info.data:  # the type's own error says what is wrong
            return value
        try:
            parse_output_config(info.data["type"], value)
        except OutputConfigError as exc:
            raise ValidationError.from_exception_data("TaskOutput", [
                {"type": PydanticCustomError("output_config", message), "input": value,
                 "loc": () if name == "type_specific_config" else tuple(
                     int(p) if p.isdigit() else p for p in name.split("."))}
                for name, messages in exc.errors.items() for message in messages
            ]) from None
        return value

    @property
    def config(self) -> BaseModel:
        """The validated ``type_specific_config`` (``flows.outputs.config``'s model)."""
        if self._config is None:
            self._config = parse_output_config(self.type, self.type_specific_config)
        return self._config

    def label(self) -> str:
        """How its subflow run is named: ``hls → s3 'videos'``."""
        storage = self.storage
        if storage is not None and storage.name:
            return f"{self.type} → {storage.driver or 'storage'} {storage.name!r}"
        return f"{self.type} → storage {self.storage_id}"


def _error(loc: tuple[str | int, ...], message: str) -> ValidationError:
    return ValidationError.from_exception_data("VimquTaskParams", [
        {"type": PydanticCustomError("value_error", message), "loc": loc, "input": None}])


class VimquTaskParams(_Model):
    """Parameters of ``vimqu.task``: seed 003's task (one input, many outputs), as the API
    passes it (output ids and storage snapshots added). Field errors name the field:
    ``outputs.1.type_specific_config.variants.0``, ``input.storage_id``."""

    input: TaskInput = Field(description="The input file.")
    outputs: list[TaskOutput] = Field(min_length=1, max_length=MAX_OUTPUTS, description="What to make of it.")
    webhook_url: str | None = Field(None, description="Also POSTed the task's result object when it ends.")
    webhook_per_output: StrictBool = Field(
        False, description="Also POST the result object to the webhooks each time an output ends (with output_id).")

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return _http_url(value, "webhook_url") if value else None

    @model_validator(mode="after")
    def _unique_ids(self) -> "VimquTaskParams":
        seen: set[str] = set()
        for i, output in enumerate(self.outputs):
            if output.id in seen:
                raise _error(("outputs", i, "id"), f"output id {output.id} is used twice")
            seen.add(output.id)
        return self


# --- the run's shared state ----------------------------------------------------------------------


@dataclass
class Outcome:
    """How one output ended: the contract's entry of ``result.outputs``."""

    status: Literal["completed", "failed"]
    files: list[dict[str, str]] = field(default_factory=list)
    message: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "files": self.files, "message": self.message}


@dataclass
class TaskJob:
    """What the outputs of one run share: the input, its probe, the engines' results."""

    src: Path
    probe: MediaProbe
    work_dir: Path
    account: str
    params: VimquTaskParams
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    engines: dict[str, asyncio.Task] = field(default_factory=dict)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ENGINE_SLOTS))
    done: dict[str, float] = field(default_factory=dict)
    publishing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def result(self) -> dict[str, Any]:
        """The result artifact's value: every output that ended so far."""
        return {"outputs": {oid: outcome.as_json() for oid, outcome in self.outcomes.items()}}

    async def advance(self, output_ids: list[str], fraction: float) -> None:
        """Outputs ``output_ids`` are ``fraction`` (0-1) done: report the task's progress."""
        for oid in output_ids:
            self.done[oid] = max(self.done.get(oid, 0.0), min(1.0, fraction))
        outputs = len(self.params.outputs)
        percent = INPUT_SHARE + (100 - INPUT_SHARE) * sum(self.done.values()) / max(1, outputs)
        try:
            await report_progress(percent)
        except Exception as exc:  # progress is best effort; the task goes on
            step_log("progress not reported: %s", exc, level=logging.WARNING)


_job: ContextVar[TaskJob] = ContextVar("dragonflow_vimqu_job")


# --- engines -------------------------------------------------------------------------------------


def _ladder_key(config: StreamingConfig) -> str:
    """Outputs whose ladders are the same (same rungs, segments, audio) share one encode."""
    return repr((config.resolved_variants(), config.segment_duration, config.audio_bitrate, config.codec))


def _streaming_formats(job: TaskJob, key: str) -> tuple[list[str], tuple[str, ...]]:
    """(ids of the outputs sharing ladder ``key``, the formats they ask)."""
    sharing = [o for o in job.params.outputs if o.type in ("hls", "dash") and _ladder_key(o.config) == key]
    formats = tuple(f for f in packaging.FORMATS if any(o.type == f for o in sharing))
    return [o.id for o in sharing], formats


async def _engine(job: TaskJob, output: TaskOutput) -> tuple[Path, list[str], list[str]]:
    """Run (or join) the engine of ``output``: (directory, its files there, notes)."""
    config = output.config
    if output.type in ("hls", "dash"):
        key = _ladder_key(config)
        if key not in job.engines:
            sharers, formats = _streaming_formats(job, key)
            out_dir = job.work_dir / f"ladder-{len(job.engines) + 1}"

            async def progress(percent: float) -> None:
                await job.advance(sharers, ENGINE_SHARE * percent / 100)

            async def package():
                async with job.slots:
                    result = await package_streams(job.src, job.probe, config, out_dir, formats=formats,
                                                   progress=progress)
                return out_dir, result

            job.engines[key] = asyncio.create_task(package())
        out_dir, result = await asyncio.shield(job.engines[key])
        return out_dir, result.files(output.type), list(result.notes)

    out_dir = job.work_dir / f"output-{output.id}"

    async def own_progress(percent: float) -> None:
        await job.advance([output.id], ENGINE_SHARE * percent / 100)

    async with job.slots:
        if output.type == "thumbnail":
            result = await make_thumbnails(job.src, job.probe, config, out_dir, progress=own_progress)
        else:
            result = await encode_output(job.src, job.probe, config, out_dir, progress=own_progress)
    return out_dir, result.files, []


# --- upload --------------------------------------------------------------------------------------


class UploadFailed(Exception):
    """Some file could not be uploaded; ``files`` are those that were, completely."""

    def __init__(self, error: Exception, files: list[dict[str, str]]):
        super().__init__(str(error))
        self.error, self.files = error, files


def upload_rank(name: str) -> int:
    """When a file is uploaded: media and images (0), then media playlists (1), then what a
    client opens first (2: the master playlist, the MPD, a sprite's VTT index), so that every
    file a manifest names is on the storage before the manifest."""
    if name in (packaging.MASTER, packaging.MPD) or name.endswith(".vtt"):
        return 2
    return 1 if name.endswith(".m3u8") else 0


def _upload_run_name(parameters: dict[str, Any]) -> str:
    storage = parameters["storage"]
    return f"upload {len(parameters['files'])} files → {storage.driver} {storage.name!r}"


@step("upload", run_name=_upload_run_name)
async def upload_files(storage: RegisteredStorage, local_dir: Path, files: list[str], target_path: str,
                       progress: Callable[[float], Awaitable[None]] | None = None) -> list[dict[str, str]]:
    """Upload ``files`` (relative to ``local_dir``) to ``storage`` under ``target_path``,
    ``UPLOAD_CONCURRENCY`` at a time, rank after rank (``upload_rank``); each retried when the
    server could not be reached. Returns ``[{"path", "uploaded_at"}]`` in the order of ``files``;
    UploadFailed (with the files that made it) at the first file that fails for good."""
    uploaded: dict[str, dict[str, str]] = {}
    gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)
    failure: list[Exception] = []
    started = time.monotonic()

    async def one(name: str) -> None:
        async with gate:
            if failure:
                return
            for attempt in range(len(UPLOAD_RETRY_DELAYS) + 1):
                try:
                    path = await storage.put(local_dir / name, posixpath.join(target_path, name))
                    break
                except StorageUnavailable as exc:
                    if not exc.transient or attempt == len(UPLOAD_RETRY_DELAYS) or failure:
                        failure.append(exc)
                        return
                    await asyncio.sleep(UPLOAD_RETRY_DELAYS[attempt])
                except Exception as exc:  # noqa: BLE001 - reported as the output's failure
                    failure.append(exc)
                    return
            uploaded[name] = {"path": path, "uploaded_at": utc_text(datetime.now(timezone.utc))}
            if progress is not None:
                await progress(len(uploaded) / len(files))

    for rank in sorted({upload_rank(name) for name in files}):
        await asyncio.gather(*(one(name) for name in files if upload_rank(name) == rank))
        if failure:
            break
    done = [uploaded[name] for name in files if name in uploaded]
    if failure:
        raise UploadFailed(failure[0], done)
    size = sum((local_dir / name).stat().st_size for name in files)
    step_log("uploaded %d files (%.1f MB) to %s %r under %s in %.1f s", len(files), size / 1e6, storage.driver,
             storage.name, target_path, time.monotonic() - started)
    return done


# --- one output: a subflow -----------------------------------------------------------------------


def _storage_words(output: TaskOutput, storage: RegisteredStorage | None = None) -> str:
    if storage is not None:
        return f"{storage.driver} storage {storage.name!r}"
    snapshot = output.storage
    if snapshot is not None and snapshot.name:
        return f"{snapshot.driver or ''} storage {snapshot.name!r}".strip()
    return f"storage {output.storage_id}"


@flow(name=OUTPUT_FLOW_NAME, flow_run_name="{label}", persist_result=False, validate_parameters=False)
async def vimqu_output(output: TaskOutput, label: str) -> dict[str, Any]:
    """One output of the running ``vimqu.task``: its engine, then the upload of every file to
    its storage. Ends Failed (with the reason) when either fails; the task goes on."""
    job = _job.get()
    logger = get_run_logger()
    storage = await lookup_registered(output.storage_id, job.account)
    if storage is None:
        message = f"storage {output.storage_id} is not registered (or not this account's)"
        job.outcomes[output.id] = Outcome("failed", message=message)
        logger.error("%s", message)
        return Failed(message=message)
    try:
        out_dir, files, notes = await _engine(job, output)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the output fails, the others go on
        reason = str(exc) if isinstance(exc, TaskError) else f"{type(exc).__name__}: {exc}"
        message = f"{output.type} failed before the upload to {_storage_words(output, storage)}: {reason}"
        job.outcomes[output.id] = Outcome("failed", message=message)
        logger.error("%s", message)
        return Failed(message=message)

    async def progress(fraction: float) -> None:
        await job.advance([output.id], ENGINE_SHARE + (1 - ENGINE_SHARE) * fraction)

    try:
        uploaded = await upload_files(storage, out_dir, files, output.target_path, progress=progress)
    except UploadFailed as exc:
        error = exc.error
        reason = str(error) if isinstance(error, StorageUnavailable) else (
            f"upload to {_storage_words(output, storage)} failed: {type(error).__name__}: {error}")
        message = f"{reason} ({len(exc.files)} of {len(files)} files uploaded)"
        job.outcomes[output.id] = Outcome("failed", files=exc.files, message=message)
        logger.error("%s", message)
        return Failed(message=message)
    job.outcomes[output.id] = Outcome("completed", files=uploaded, message="; ".join(notes) or None)
    return job.outcomes[output.id].as_json()


# --- the task ------------------------------------------------------------------------------------


class OutputsFailed(TaskError):
    """Every output failed: the task fails, its result still lists each output's reason."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def vimqu_flow(name: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """``flows.runtime.task_flow`` for the VimQu surface: the run is named by the task id
    (the run's UUID, as VimQu clients see it) and the ending is sent to ``webhook_url``."""
    return task_flow(name, VIMQU)


async def _fetch_input(task_input: TaskInput, account: str, dest: Path) -> Path:
    if task_input.source_type == "storage" and await lookup_registered(task_input.storage_id, account) is None:
        raise TaskError(f"input: storage {task_input.storage_id} is not registered (or not this account's)")
    try:
        return await fetch(task_input.url(), dest)
    except TaskError as exc:
        raise TaskError(f"input: {exc}") from None


async def _one_output(job: TaskJob, output: TaskOutput) -> None:
    """Run ``output``'s subflow and publish the result once it ended."""
    try:
        state: State = await vimqu_output(output, output.label(), return_state=True)
        if output.id not in job.outcomes:  # the subflow ended before saying how
            job.outcomes[output.id] = Outcome("failed" if not state.is_completed() else "completed",
                                              message=state.message or f"ended {state.name}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - Prefect could not run the subflow
        job.outcomes.setdefault(output.id, Outcome("failed", message=f"{type(exc).__name__}: {exc}"))
    await job.advance([output.id], 1.0)
    async with job.publishing:
        try:
            await publish_partial(job.result())
        except Exception as exc:  # noqa: BLE001 - the final result is recorded anyway
            step_log("partial result not published: %s", exc, level=logging.WARNING)
            return
    if job.params.webhook_per_output:
        await send_webhooks(runtime.flow_run.id, output_id=output.id)


@vimqu_flow(TASK_NAME)
async def vimqu_task(params: VimquTaskParams, account: str = LOCAL_ACCOUNT) -> dict[str, Any]:
    """A VimQu task: fetch and probe the input once, then make and upload every output (one
    subflow each, concurrently); see the module."""
    run = current_run()
    await report_progress(0, force=True)
    src = await _fetch_input(params.input, account, run.work_dir / "input")
    probe = await probe_input(src)
    await report_progress(INPUT_SHARE)
    job = TaskJob(src, probe, run.work_dir, account, params)
    token = _job.set(job)
    try:
        await asyncio.gather(*(_one_output(job, output) for output in params.outputs))
    finally:
        _job.reset(token)
        for engine in job.engines.values():
            engine.cancel()
    result = job.result()
    failures = [output_failure(o.model_dump(mode="json"), job.outcomes[o.id].message)
                for o in params.outputs if job.outcomes[o.id].status == "failed"]
    if len(failures) == len(params.outputs):
        raise OutputsFailed("every output failed: " + "; ".join(failures), result)
    await report_progress(100, force=True)
    if failures:
        step_log("%d of %d outputs failed: %s", len(failures), len(params.outputs), "; ".join(failures),
                 level=logging.WARNING)
    return result
