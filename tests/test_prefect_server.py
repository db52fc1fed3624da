"""The embedded Prefect server replays requests that lost a SQLite write race."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import httpx
import pytest
import sqlalchemy.exc
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.server.api.server import custom_internal_exception_handler
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Scheduled, to_state_create
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from deployments import prefect_server
from deployments.prefect_server import MAX_REPLAY_BODY, RETRY_AFTER, RETRYABLE_BODY, ReplayOn503
from deployments.server import retention_env
from flows.settings import Settings

CONCURRENT_WRITES = 40


class Endpoint:
    """A Prefect-like endpoint: its first ``failures`` calls hit a locked SQLite database
    (answered by Prefect's own handler); it records every request body it read."""

    def __init__(self, failures: int, answer: Response | None = None):
        self.failures, self.answer = failures, answer
        self.bodies: list[bytes] = []
        self.sent: list[Message] = []  # what the middleware sent to the client

    async def handle(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        if len(self.bodies) <= self.failures:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return self.answer or Response(self.bodies[-1], status_code=201)

    def client(self) -> httpx.AsyncClient:
        app = Starlette(
            routes=[Route("/", self.handle, methods=["GET", "POST"])],
            exception_handlers={Exception: custom_internal_exception_handler},
        )
        middleware = ReplayOn503(app)

        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            async def record(message: Message) -> None:
                self.sent.append(message)
                await send(message)

            await middleware(scope, receive, record)

        transport = httpx.ASGITransport(recorded, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://prefect")

    def sent_bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_lost_races_are_replayed_with_the_same_body():
    endpoint = Endpoint(failures=2)
    body = os.urandom(100_000)
    async with endpoint.client() as client:
        response = await client.post("/", content=chunks(body, 30_000))
    assert response.status_code == 201
    assert response.content == body
    assert endpoint.bodies == [body, body, body]


async def test_spent_budget_answers_503_with_retry_after(monkeypatch):
    monkeypatch.setattr(prefect_server, "BUDGET", 0.3)
    endpoint = Endpoint(failures=1_000)
    async with endpoint.client() as client:
        started = time.monotonic()
        response = await client.post("/", content=b"payload")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503
    assert response.headers["retry-after"] == RETRY_AFTER.decode()
    assert response.content == RETRYABLE_BODY
    assert len(endpoint.bodies) >= 3 and set(endpoint.bodies) == {b"payload"}


async def test_large_bodies_and_other_503s_are_not_replayed():
    endpoint = Endpoint(failures=1_000)
    body = os.urandom(MAX_REPLAY_BODY + 1)
    async with endpoint.client() as client:
        response = await client.post("/", content=chunks(body, 256 * 1024))
    assert (response.status_code, response.headers["retry-after"]) == (503, RETRY_AFTER.decode())
    assert endpoint.bodies == [body]

    maintenance = Endpoint(failures=0, answer=Response(b"maintenance", status_code=503))
    async with maintenance.client() as client:
        response = await client.get("/")
    assert (response.status_code, response.content) == (503, b"maintenance")
    assert response.headers["retry-after"] == RETRY_AFTER.decode()
    assert len(maintenance.bodies) == 1


async def test_streamed_answers_pass_through_untouched():
    parts = [os.urandom(64 * 1024) for _ in range(32)]
    delivered_before: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        for part in parts:
            delivered_before.append(len(endpoint.sent_bodies()))
            yield part

    endpoint = Endpoint(failures=0, answer=StreamingResponse(stream(), media_type="application/octet-stream"))
    async with endpoint.client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.content == b"".join(parts)
    assert endpoint.sent_bodies() == [*parts, b""]
    assert delivered_before == list(range(len(parts)))  # each part went out before the next was made
    assert len(endpoint.bodies) == 1


async def test_concurrent_writes_on_sqlite_all_succeed(service):
    """Colliding writes all succeed although the client never retries a 503 itself."""
    later = datetime.now(timezone.utc) + timedelta(days=1)
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("hello/hello")
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
                results = await asyncio.gather(
                    *(
                        client.create_flow_run_from_deployment(
                            deployment.id,
                            parameters={"params": {"name": f"race-{i}"}},
                            state=Scheduled(scheduled_time=later),
                        )
                        for i in range(CONCURRENT_WRITES)
                    ),
                    return_exceptions=True,
                )
            created = [run for run in results if not isinstance(run, BaseException)]
            try:
                failures = [repr(error) for error in results if isinstance(error, BaseException)]
                assert not failures, f"{len(failures)} of {CONCURRENT_WRITES} writes failed: {failures[:3]}"
                assert len({run.id for run in created}) == CONCURRENT_WRITES
                assert all(run.state.is_scheduled() for run in created)
            finally:
                await asyncio.gather(*(client.delete_flow_run(run.id) for run in created))


async def test_bulk_creates_not_refused_while_other_writes_commit(service):
    """Write transactions take SQLite's lock first (BEGIN IMMEDIATE): bulk creates racing
    with single creates are all accepted (DEFERRED ones were refused run by run with
    "database is locked")."""
    later = datetime.now(timezone.utc) + timedelta(days=1)  # not for the worker
    run = DeploymentFlowRunCreate(parameters={"params": {"name": "bulk"}}, state=to_state_create(Scheduled(scheduled_time=later)))
    body = [run.model_dump(mode="json", exclude_unset=True)] * 30
    with temporary_settings({PREFECT_API_URL: service.prefect_api, PREFECT_CLIENT_MAX_RETRIES: 0}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("hello/hello")

            async def bulk():
                response = await client.request(
                    "POST", "/deployments/{id}/create_flow_run/bulk", path_params={"id": deployment.id}, json=body
                )
                return response.json()["results"]

            async def single():
                return await client.create_flow_run_from_deployment(
                    deployment.id, parameters={"params": {"name": "single"}}, state=Scheduled(scheduled_time=later)
                )

            answers = await asyncio.gather(*[bulk() for _ in range(3)], *[single() for _ in range(20)])
            results = [r for answer in answers[:3] for r in answer]
            try:
                assert [r["status"] for r in results] == ["CREATED"] * 90, {r.get("error") for r in results}
            finally:
                ids = [r["flow_run_id"] for r in results if r["flow_run_id"]] + [str(r.id) for r in answers[3:]]
                await asyncio.gather(*[client.delete_flow_run(i) for i in ids])


async def test_patches_refuse_another_prefect(monkeypatch):
    """The SQLite patch, the suspension observer and the warm worker rely on Prefect 3.8.8's
    private internals: with another Prefect they refuse to start, naming the pin."""
    import prefect

    from deployments.suspension import shared_suspension_observer
    from deployments.worker import WarmWorker

    monkeypatch.setattr(prefect, "__version__", "3.9.0")
    for apply in (
        prefect_server.immediate_sqlite_writes,
        lambda: WarmWorker(work_pool_name="nowhere"),
    ):
        try:
            apply()
        except RuntimeError as exc:
            assert "3.8.8" in str(exc) and "3.9.0" in str(exc)
        else:
            raise AssertionError("a patch was applied to another Prefect")
    try:
        async with shared_suspension_observer():
            raise AssertionError("the suspension observer was patched into another Prefect")
    except RuntimeError as exc:
        assert "pin prefect==3.8.8" in str(exc)


def test_the_embedded_server_vacuums_runs_older_than_the_retention_setting(service):
    """``DRAGONFLOW_RUN_RETENTION_DAYS`` (default 30) turns on Prefect's flow-run vacuum
    in the process that runs Prefect's services; 0 leaves it off; under an hour is refused."""
    port = service.prefect_api.rsplit(":", 1)[1].split("/")[0]
    pids = [p for p in os.listdir("/proc") if p.isdigit() and f"--port\0{port}" in _cmdline(p)
            and "deployments.prefect_server" in _cmdline(p)]
    assert pids, "the embedded Prefect server process was not found"
    environ = dict(item.split("=", 1) for item in open(f"/proc/{pids[0]}/environ").read().split("\0") if "=" in item)
    assert environ["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == "events,flow_runs"
    assert environ["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == str(30 * 86400)
    assert retention_env(Settings(run_retention_days=0)) == {}
    assert retention_env(Settings(run_retention_days=0.5))["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == "43200"
    with pytest.raises(ValidationError, match="at least an hour"):
        Settings(run_retention_days=0.01)


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""
