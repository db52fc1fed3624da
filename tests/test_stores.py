"""Output stores: the type -> store mapping, the ``store`` step with an implicit or explicit
destination, and a StorageBlock on S3 (moto's server) with an S3Credentials block."""

from __future__ import annotations

import asyncio
import uuid
from typing import get_args

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import storage
from blocks.credentials import S3Credentials
from blocks.storage import STORE_NAMES, OutputStore, StorageBlock
from flows import run_scope
from flows.params import TaskParams, TaskStore
from flows.settings import Settings
from flows.steps.fetch import fetch
from tests.conftest import OWN
from flows.steps.store import RESOLVERS, resolve_store, store

pytestmark = pytest.mark.usefixtures("own_stores")  # real storage blocks (conftest)


@pytest.fixture
def output(tmp_path):
    path = tmp_path / "work" / "out.jpg"
    path.parent.mkdir()
    path.write_bytes(b"jpeg bytes")
    return path


def test_every_task_store_type_has_one_resolver():
    assert set(RESOLVERS) == set(get_args(TaskStore.model_fields["type"].annotation))


async def test_resolve_store_gives_the_storage_blocks(own_stores):
    for name in STORE_NAMES:
        resolved = await resolve_store(TaskStore(type=name))
        assert resolved is own_stores[name] and isinstance(resolved, OutputStore)


async def test_store_in_a_task_flow_scope(own_stores, output, tmp_path):
    scope = run_scope.RunScope("KEY1", "acct", TaskParams(task_store={"type": "volatile"}), tmp_path)
    token = run_scope._scope.set(scope)
    try:
        url = await store.fn(output, "output")
    finally:
        run_scope._scope.reset(token)
    assert url == f"{OWN}/volatile/acct/KEY1/output.jpg"
    assert (tmp_path / "stores" / "volatile" / "acct" / "KEY1" / "output.jpg").read_bytes() == b"jpeg bytes"


async def test_store_with_explicit_destination_needs_no_scope(own_stores, output, tmp_path):
    assert await store.fn(output, "output", relative="team/a/b.jpg") == f"{OWN}/persistent/team/a/b.jpg"
    url = await store.fn(output, "output", relative="x.jpg", to=own_stores["volatile"])
    assert url == f"{OWN}/volatile/x.jpg"
    assert (tmp_path / "stores" / "volatile" / "x.jpg").exists()


async def test_store_task_run_is_named_by_the_output(service, output):
    @flow
    async def store_one():
        return await store(output, "output", relative="named/output.jpg")

    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        state = await store_one(return_state=True)
        assert await state.result() == f"{OWN}/persistent/named/output.jpg"
        async with get_client() as client:
            for _ in range(100):  # the server records task runs from events, shortly after
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
                if runs and runs[0].state and runs[0].state.is_final():
                    break
                await asyncio.sleep(0.1)
    assert [(run.name, run.state.type.value) for run in runs] == [("store output.jpg", "COMPLETED")]


@pytest.fixture(scope="module")
def s3(s3_server):
    """Credentials for the session's S3 server (moto) and a fresh prefix in its bucket."""
    credentials = S3Credentials(aws_access_key_id=s3_server.access_key_id,
                                aws_secret_access_key=s3_server.secret_access_key,
                                region_name=s3_server.region, endpoint_url=s3_server.endpoint_url)
    return credentials, f"{s3_server.bucket}/stores-{uuid.uuid4().hex[:8]}"


async def test_s3_storage_block_through_credentials(s3, own_stores, output, tmp_path, monkeypatch):
    """A StorageBlock on s3:// with an S3Credentials block stores there, lists the file and
    serves it back to fetch as its own URL (no HTTP)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)  # no credentials but the block's
    s3, prefix = s3
    block = StorageBlock(root=f"s3://{prefix}", public_url="https://cdn.example.com/files", credentials=s3)
    assert s3.aws_secret_access_key.get_secret_value() not in repr(block)
    url = await block.put(output, "acct/KEY/output.jpg")
    assert url == "https://cdn.example.com/files/acct/KEY/output.jpg"
    assert s3.get_client().cat_file(f"{prefix}/acct/KEY/output.jpg") == b"jpeg bytes"
    assert [f.path for f in block.files("acct")] == ["acct/KEY/output.jpg"]
    monkeypatch.setitem(storage._loaded, "persistent", block)
    fetched = await fetch.fn(url, tmp_path / "in", settings=Settings(fetch_allow=[]))
    assert fetched.read_bytes() == b"jpeg bytes"
