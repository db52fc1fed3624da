"""What ``up`` registers, against the session's real Prefect server: storage documents on
their defaults follow the API's address; edited ones are left alone."""

from __future__ import annotations

from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.storage import StorageBlock
from deployments.register import point_default_stores_at_api
from flows.settings import Settings


async def test_default_storage_follows_the_api_address_edited_storage_is_kept(service):
    settings = Settings(home=Path(service.env["DRAGONFLOW_HOME"]), public_url=service.api)
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        block = await StorageBlock.aload("persistent")
        current = block.public_url
        assert current == f"{service.api}/storage/persistent"
        try:
            block.public_url = "http://127.0.0.1:1/storage/persistent"  # as left by an earlier `up`
            await block.asave("persistent", overwrite=True)
            await point_default_stores_at_api(settings)
            assert (await StorageBlock.aload("persistent")).public_url == current

            block.public_url = "https://cdn.example.com/files"  # an operator's choice
            await block.asave("persistent", overwrite=True)
            await point_default_stores_at_api(settings)
            assert (await StorageBlock.aload("persistent")).public_url == "https://cdn.example.com/files"
        finally:
            block.public_url = current
            await block.asave("persistent", overwrite=True)


async def test_automations_follow_the_settings(service):
    """Registering again keeps the automations as they are; a changed crash timeout
    replaces the crash automation (one of each name, always)."""
    from prefect.client.orchestration import get_client

    from deployments.register import CRASH_AUTOMATION, ERRBACK_AUTOMATION, crash_automation, ensure_automation

    settings = Settings(home=Path(service.env["DRAGONFLOW_HOME"]))
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            errback = await client.read_automations_by_name(ERRBACK_AUTOMATION)
            assert len(errback) == 1 and errback[0].trigger.posture.value == "Reactive"
            [before] = await client.read_automations_by_name(CRASH_AUTOMATION)
            recovery = before.actions[0].deployment_id
            await ensure_automation(client, crash_automation(settings, recovery))
            assert [a.id for a in await client.read_automations_by_name(CRASH_AUTOMATION)] == [before.id]
            try:
                await ensure_automation(client, crash_automation(Settings(heartbeat_timeout=45), recovery))
                [changed] = await client.read_automations_by_name(CRASH_AUTOMATION)
                assert changed.id != before.id and changed.trigger.within.total_seconds() == 45
            finally:
                await ensure_automation(client, crash_automation(settings, recovery))
