"""Register what the service needs on the Prefect server: block types and documents,
the work pool, one deployment per registered task, and the maintenance schedule."""

from __future__ import annotations

import re
from datetime import timedelta
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists
from prefect.filesystems import LocalFileSystem

from blocks import BLOCKS
from blocks.storage import STORE_NAMES, StorageBlock
from flows.callbacks import send_errback
from flows.recovery import BEAT, RELEASED, recover_run
from flows.contract.runs import ERRBACK_TAG, INVALID_PARAMETERS
from flows.registry import DEPLOYED, SYSTEM_FLOWS
from flows.settings import Settings

WORKER_TYPE = "dragonflow-warm"
CRASH_AUTOMATION = "dragonflow: crash runs whose worker died"
ERRBACK_AUTOMATION = "dragonflow: errback runs that crashed, were cancelled or refused"
# Ends of a task's run that its flow's code never sees, so never sends the errback of.
ERRBACK_STATES = ("Crashed", "Cancelled", INVALID_PARAMETERS)
STORE_EXPIRY_DAYS = {"persistent": 0, "volatile": 7}
# Prefect's default result storage for the worker's runs. Task flows persist no results,
# but without a configured block the engine asks the server for its default twice a run.
RESULTS_BLOCK_NAME = "dragonflow-results"
RESULTS_BLOCK = f"local-file-system/{RESULTS_BLOCK_NAME}"


def store_url(settings: Settings, name: str) -> str:
    """Where the API serves the files of local store ``name``."""
    return f"{settings.public_url.rstrip('/')}/storage/{name}"


async def register_blocks(settings: Settings) -> None:
    """Block types, and the storage documents unless an operator already made them."""
    for block_class in BLOCKS:
        await block_class.aregister_type_and_schema()
    for name in STORE_NAMES:
        try:
            await StorageBlock.aload(name)
        except ValueError:
            await StorageBlock(
                root=str(settings.storage_dir / name),
                public_url=store_url(settings, name),
                expire_days=STORE_EXPIRY_DAYS[name],
            ).asave(name)
    try:
        await LocalFileSystem.aload(RESULTS_BLOCK_NAME)
    except ValueError:
        await LocalFileSystem(basepath=str(settings.home / "results")).asave(RESULTS_BLOCK_NAME)


async def point_default_stores_at_api(settings: Settings) -> None:
    """Storage documents still on their defaults (the local directory, served by this
    machine's API) follow the API's address ``settings.public_url``, so that starting the
    service on another port keeps output URLs working; documents an operator edited are
    left alone. Called by ``up``, which knows where its API listens."""
    for name in STORE_NAMES:
        block = await StorageBlock.aload(name)
        public_url = store_url(settings, name)
        on_defaults = block.root == str(settings.storage_dir / name) and re.fullmatch(
            rf"http://127\.0\.0\.1:\d+/storage/{name}", block.public_url
        )
        if on_defaults and block.public_url != public_url:
            block.public_url = public_url
            await block.asave(name, overwrite=True)


async def ensure_work_pool(client: PrefectClient, settings: Settings) -> None:
    """The warm workers' pool, with no base job template (they start no infrastructure;
    see ``WarmWorker.get_default_base_job_template``); an older install's template is
    removed."""
    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=settings.work_pool,
                type=WORKER_TYPE,
                description="dragonflow warm workers: runs flows in long-lived processes.",
            )
        )
    except ObjectAlreadyExists:
        pool = await client.read_work_pool(settings.work_pool)
        if pool.base_job_template:
            await client.update_work_pool(settings.work_pool, WorkPoolUpdate(base_job_template={}))


async def _deploy(client: PrefectClient, flow: Flow, settings: Settings, **extra) -> None:
    flow_id = await client.create_flow_from_name(flow.name)
    await client.create_deployment(
        flow_id=flow_id,
        name=flow.name,
        work_pool_name=settings.work_pool,
        entrypoint=f"{flow.fn.__module__}:{flow.fn.__name__}",
        parameter_openapi_schema=flow.parameters.model_dump(mode="json"),
        enforce_parameter_schema=False,
        description=flow.description,
        **extra,
    )


async def register_deployments(client: PrefectClient, settings: Settings) -> None:
    """One deployment per deployed flow of the registry: each task, named after it, and
    each system flow (errbacks, callback tries, crash recovery, file expiry)."""
    await ensure_work_pool(client, settings)
    for spec in DEPLOYED:
        await _deploy(client, spec.flow, settings, tags=[spec.name])
    for system in SYSTEM_FLOWS:
        schedules = [DeploymentScheduleCreate(schedule=IntervalSchedule(interval=system.every),
                                              slug=system.schedule)] if system.every else None
        await _deploy(client, system.flow, settings, **({"schedules": schedules} if schedules else {}))


async def ensure_automation(client: PrefectClient, automation: AutomationCore) -> None:
    """Create ``automation``, or replace the one of that name when it differs (a setting
    changed); left alone when it is the same."""
    existing = await client.read_automations_by_name(automation.name)
    fields = set(AutomationCore.model_fields)
    if len(existing) == 1 and existing[0].model_dump(include=fields) == automation.model_dump(include=fields):
        return
    for old in existing:
        await client.delete_automation(old.id)
    await client.create_automation(automation)


def crash_automation(settings: Settings, recovery_deployment: UUID) -> AutomationCore:
    """A claimed or running task whose heartbeats stop for ``heartbeat_timeout`` (its
    worker died), or that never sent one after it was claimed (Pending: a worker killed
    between claiming and starting it, or while running it before its first beat), is
    handed to the ``recover-run`` deployment: run again, or marked Crashed, so its client
    never waits forever.

    Each event it follows costs the Prefect server a database transaction (its bucket per
    run), so it follows the fewest that keep that promise: a watch opens at Pending and at
    each beat, and closes at a beat or at the worker's release of the run (sent after the
    run's end is recorded). Running needs no watch of its own (the worker beats within
    ``heartbeat_timeout / 3`` of claiming a run), and a run that ended without a release
    (its worker died right after) is left alone by ``recover-run``."""
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="Runs again (or marks Crashed) flow runs whose heartbeats stop.",
        trigger=EventTrigger(
            after={"prefect.flow-run.Pending", BEAT},
            expect={BEAT, RELEASED},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.heartbeat_timeout),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=recovery_deployment,
                parameters={"flow_run_id": "{{ event.resource.id | replace('prefect.flow-run.', '') }}"},
            )
        ],
    )


def errback_automation(errback_deployment: UUID) -> AutomationCore:
    """A task's run with a ``url_errback`` (tagged ``errback``) that crashed, was cancelled or was refused
    for invalid parameters gets its errback from a run of the ``send-errback`` deployment
    (once per state change: Prefect's action is idempotent per firing)."""
    return AutomationCore(
        name=ERRBACK_AUTOMATION,
        description="Sends the errback of task runs whose flow could not send it.",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in ERRBACK_STATES},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{ERRBACK_TAG}"}
            ),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=errback_deployment,
                parameters={"flow_run_id": "{{ event.resource.id | replace('prefect.flow-run.', '') }}"},
            )
        ],
    )


async def register_all(client: PrefectClient, settings: Settings) -> None:
    await register_blocks(settings)
    await register_deployments(client, settings)
    recovery = await client.read_deployment_by_name(f"{recover_run.name}/{recover_run.name}")
    await ensure_automation(client, crash_automation(settings, recovery.id))
    errback = await client.read_deployment_by_name(f"{send_errback.name}/{send_errback.name}")
    await ensure_automation(client, errback_automation(errback.id))
