"""The ``dragonflow`` command: run the service, its parts, one task, manage accounts."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import typer
import uvicorn
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments import service_file
from deployments.local import free_port
from deployments.server import api_url_for, is_healthy, prefect_env, start_server, stop, wait_until
from deployments.service_file import ServiceError
from deployments.supervise import Supervisor
from flows.settings import Settings, get_settings

# Our API answers 503 soon when Prefect is down instead of retrying for minutes (the
# workers' engines keep Prefect's long retries: they must not lose a run's state change).
API_CLIENT_RETRIES = "1"
app = typer.Typer(help="dragonflow: the Stupeflix Tasks API on Prefect 3.", no_args_is_help=True)
account_app = typer.Typer(help="Manage API accounts (stored as Prefect blocks).", no_args_is_help=True)
app.add_typer(account_app, name="account")


NO_SERVICE = ("no running dragonflow service in DRAGONFLOW_HOME={home}: start it with `{start}`, or set"
              " PREFECT_API_URL (and PREFECT_API_AUTH_STRING if that Prefect requires auth)")


@contextmanager
def _service_prefect(may_start: bool, port: Optional[int] = None) -> Iterator[None]:
    """Run the block against the Prefect API of this command: PREFECT_API_URL when set (the
    user's choice); else that of the service running in DRAGONFLOW_HOME (as ``up`` recorded
    it, with its Prefect auth); else, when ``may_start`` and the home's database is the
    SQLite one, a temporary SQLite server over it (on ``port``, default a free one), stopped
    afterwards. Otherwise exits saying what to do."""
    if PREFECT_API_URL.value():
        yield
        return
    settings = get_settings()
    server = None
    try:
        state = service_file.running(settings.home)
        if state:
            client = service_file.prefect_client(settings.home, state)
        else:
            topology = service_file.last_topology(settings.home)
            if not may_start or topology not in (None, "sqlite"):
                start = "dragonflow up --scale" if topology == "scale" else "dragonflow up"
                raise ServiceError(NO_SERVICE.format(home=settings.home, start=start))
            client, server = _temporary_server(settings, port or free_port())
        with temporary_settings(_prefect_settings(client)):
            yield
    except ServiceError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1)
    finally:
        if server:
            stop([server])
            service_file.release(settings.home)


def _temporary_server(settings: Settings, port: int) -> tuple[dict[str, str], subprocess.Popen]:
    """A SQLite Prefect server over the home's database, recorded as the home's service
    while it runs (``up`` and other commands then see it)."""
    url = api_url_for(port)
    settings.home.mkdir(parents=True, exist_ok=True)
    service_file.claim(settings.home, {"topology": "temporary", "prefect_apis": [url]})
    typer.echo(f"No dragonflow service runs in DRAGONFLOW_HOME={settings.home}: starting a temporary SQLite"
               f" Prefect server on 127.0.0.1:{port} ...", err=True)
    try:
        return {"PREFECT_API_URL": url}, start_server(settings, port)
    except BaseException:
        service_file.release(settings.home)
        raise


async def _register(starting_service: bool) -> dict[str, str] | None:
    """Register everything; when starting the service, also point the default stores at
    its API and return the ``local`` account's credentials."""
    from blocks.account import create_account
    from deployments.register import point_default_stores_at_api, register_all

    async with get_client() as client:
        await register_all(client, get_settings())
    if starting_service:
        await point_default_stores_at_api(get_settings())
        return (await create_account("local", initial=_new_account_settings())).credentials()
    return None


def _new_account_settings() -> dict[str, Any]:
    """What a new account starts with: the initial VimQu credits, granted now."""
    from datetime import datetime, timezone

    return {"credits_minutes": get_settings().vimqu_initial_credits_minutes,
            "credits_since": datetime.now(timezone.utc)}


@app.command()
def up(
    port: int = typer.Option(get_settings().api_port, help="Port of the REST API."),
    prefect_port: int = typer.Option(get_settings().prefect_port, help="Port of the Prefect server (UI and API)."),
    scale: bool = typer.Option(False, "--scale", help="Run Prefect's scale-out topology: PostgreSQL + Redis +"
                               " several Prefect API processes + one services process (with Prefect auth)."),
    api_processes: int = typer.Option(2, min=1, help="Prefect API processes (--scale)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Warm workers (default: 1, with --scale 2)."),
    prefect_host: str = typer.Option("127.0.0.1", help="Address the Prefect API processes listen on (--scale)."),
) -> None:
    """Start everything: a Prefect server (unless PREFECT_API_URL is set; with --scale the
    whole scale-out tier), blocks and deployments, warm workers and the API on 127.0.0.1.
    Every process is supervised: one that dies is started again (a dead worker's running
    tasks are run again or marked Crashed by the crash automation). Ctrl-C stops it all."""
    settings = get_settings()
    if "public_url" not in settings.model_fields_set:  # not set by DRAGONFLOW_PUBLIC_URL
        settings.public_url = f"http://127.0.0.1:{port}"
    settings.home.mkdir(parents=True, exist_ok=True)
    topology = "scale" if scale else "external" if PREFECT_API_URL.value() else "sqlite"
    try:
        service_file.claim(settings.home, {"topology": topology, "api": f"http://127.0.0.1:{port}"})
    except ServiceError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1)
    service_file.record_topology(settings.home, topology)
    try:
        _check_ports_free(port, None if topology == "external" else prefect_port)
    except ServiceError as exc:
        service_file.release(settings.home)
        typer.echo(str(exc), err=True)
        raise typer.Exit(1)
    supervisor = Supervisor(lambda line: typer.echo(line, err=True))
    _stop_on_signals()
    try:
        clients = _start_prefect(supervisor, settings, prefect_port, scale, api_processes, prefect_host)
        service_file.update(settings.home, prefect_apis=[client["PREFECT_API_URL"] for client in clients],
                            prefect_auth=clients[0].get("PREFECT_API_AUTH_STRING") or _configured_auth())
        with temporary_settings(_prefect_settings(clients[0])):
            credentials = asyncio.run(_register(starting_service=True))
        command = [sys.executable, "-m", "deployments.cli"]
        for number in range(1, (workers or (2 if scale else 1)) + 1):
            env = prefect_env(settings, clients[number % len(clients)])
            name = f"warm-{socket.gethostname()}-{port}-{number}"
            supervisor.add(f"worker {number}", functools.partial(subprocess.Popen, [*command, "worker", "--name", name], env=env))
        env = {**prefect_env(settings, clients[0]), "PREFECT_CLIENT_MAX_RETRIES": API_CLIENT_RETRIES}
        supervisor.add("api", functools.partial(subprocess.Popen, [*command, "api", "--port", str(port)], env=env))
        wait_until(lambda: _answers_200(f"http://127.0.0.1:{port}/healthz"), "dragonflow API", 120, *supervisor.processes)
        typer.echo(json.dumps({
            "api": f"http://127.0.0.1:{port}",
            "prefect_ui": clients[0]["PREFECT_API_URL"].removesuffix("/api"),
            "prefect_apis": [client["PREFECT_API_URL"] for client in clients],
            **({"prefect_auth_file": str(settings.home / "prefect-auth")} if scale else {}),
            "account": credentials,
            "first_task": _first_task(port, credentials["secret"]),
        }))
        typer.echo("dragonflow is up. Ctrl-C stops it.", err=True)
        supervisor.run_forever()
    except KeyboardInterrupt:
        pass
    except ServiceError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1)
    finally:
        stop(supervisor.processes)
        service_file.release(settings.home)


def _check_ports_free(port: int, prefect_port: int | None) -> None:
    """Fail before starting anything if another program listens on a port ``up`` needs."""
    if not _port_free(port):
        raise ServiceError(f"another program already listens on 127.0.0.1:{port}: choose another --port")
    if prefect_port is not None and not _port_free(prefect_port):
        api_url = api_url_for(prefect_port)
        hint = f", or set PREFECT_API_URL={api_url} to use that Prefect server" if is_healthy(api_url) else ""
        raise ServiceError(f"another program already listens on 127.0.0.1:{prefect_port}:"
                           f" choose another --prefect-port{hint}")


def _port_free(port: int) -> bool:
    """Whether a server can listen on 127.0.0.1:``port`` (as uvicorn binds: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_on_signals() -> None:
    """SIGINT or SIGTERM stops ``up`` and everything it started, once: a second signal
    cannot interrupt the stopping. (SIGINT is set here explicitly: a shell that starts
    ``up`` in the background makes it inherit SIGINT ignored.)"""

    def stop_once(*_: Any) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop_once)


def _start_prefect(supervisor: Supervisor, settings: Settings, prefect_port: int, scale: bool,
                   api_processes: int, host: str) -> list[dict[str, str]]:
    """Start (and supervise) the Prefect tier; the client settings of each Prefect API."""
    if not scale:
        if PREFECT_API_URL.value():
            return [{"PREFECT_API_URL": PREFECT_API_URL.value()}]
        api_url = api_url_for(prefect_port)
        server = start_server(settings, prefect_port)
        supervisor.adopt("Prefect server", server, functools.partial(start_server, settings, prefect_port))
        return [{"PREFECT_API_URL": api_url}]
    from deployments.scale import PrefectTier

    tier = PrefectTier(settings, api_processes=api_processes, first_port=prefect_port, host=host)
    try:
        tier.start()
    finally:  # what started is stopped with the rest, and restarted if it dies
        for name, process, restart in [("PostgreSQL", tier.postgres, tier.restart_postgres),
                                       ("Redis", tier.redis, tier.restart_redis),
                                       *[(f"Prefect API {i}", p, functools.partial(tier.start_api, i))
                                         for i, p in enumerate(tier.apis)],
                                       ("Prefect services", tier.services, tier.start_services)]:
            if process is not None:
                supervisor.adopt(name, process, restart)
    return [tier.client_settings(replica) for replica in range(api_processes)]


def _configured_auth() -> str | None:
    from prefect.settings import PREFECT_API_AUTH_STRING

    return PREFECT_API_AUTH_STRING.value()


def _prefect_settings(client: dict[str, str]) -> dict[Any, str]:
    """Prefect settings of this process for a client's environment (URL and auth)."""
    from prefect.settings import PREFECT_API_AUTH_STRING

    keys = {"PREFECT_API_URL": PREFECT_API_URL, "PREFECT_API_AUTH_STRING": PREFECT_API_AUTH_STRING}
    return {keys[name]: value for name, value in client.items() if name in keys}


def _first_task(port: int, secret: str) -> dict[str, Any]:
    """Run a ``hello`` task through the service just started (it proves the whole path:
    API, Prefect, worker); its final status."""
    import httpx

    response = httpx.post(f"http://127.0.0.1:{port}/v2/create", timeout=120, json={
        "secret": secret, "tasks": {"task_name": "hello", "name": "dragonflow"}, "block": True})
    return response.json()[0] if response.is_success else {"status": "error", "error": response.text[:500]}


def _answers_200(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@app.command()
def api(
    port: int = typer.Option(get_settings().api_port, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
) -> None:
    """Serve the REST API alone (against PREFECT_API_URL, else the service running in
    DRAGONFLOW_HOME)."""
    with _service_prefect(may_start=False):
        uvicorn.run("api.app:app", host=host, port=port, log_level="warning")


@app.command()
def worker(name: Optional[str] = typer.Option(None, help="Worker name shown in the UI.")) -> None:
    """Run one warm worker alone (start many, on many machines, against one server: the
    PREFECT_API_URL, else the service running in DRAGONFLOW_HOME)."""
    from deployments.worker import serve_worker

    with _service_prefect(may_start=False):
        try:
            asyncio.run(serve_worker(name))
        except KeyboardInterrupt:
            pass


def _parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` arguments; values are read as JSON when they parse (numbers, true, lists)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r}: expected key=value")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


async def _run_task(definition: dict[str, Any]) -> dict[str, Any]:
    from flows.contract.keys import key_for
    from api.stupeflix.tasks import TaskService, check_definitions
    from deployments.worker import load_entrypoint
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    async with get_client() as client:
        service = TaskService(client)
        run = await service.create_one(check_definitions(definition)[0], "local", state=Pending())
        if run.state is not None and run.state.is_pending():
            deployment = await client.read_deployment(run.deployment_id)
            await run_flow(load_entrypoint(deployment.entrypoint), flow_run=run, return_type="state")
        return (await service.statuses([key_for(run.id)], "local", details=False))[0]


@app.command()
def run(
    task_name: str = typer.Argument(..., help="Task name, e.g. image.thumb."),
    params: list[str] = typer.Argument(None, help="Task parameters as key=value."),
    prefect_port: Optional[int] = typer.Option(None, help="Port of the temporary Prefect server started when no"
                                               " service runs in DRAGONFLOW_HOME (default: a free one)."),
) -> None:
    """Run one task through Prefect in this process and print its status JSON (against
    PREFECT_API_URL, else the service running in DRAGONFLOW_HOME, else a temporary SQLite
    server over the home's database)."""
    from api.errors import ApiError

    try:
        with _service_prefect(may_start=True, port=prefect_port):
            asyncio.run(_register(starting_service=False))
            status = asyncio.run(_run_task({"task_name": task_name, **_parse_pairs(params or [])}))
    except ApiError as exc:
        typer.echo(json.dumps({"status": "error", "errors": exc.errors}, indent=2))
        raise typer.Exit(2)
    typer.echo(json.dumps(status, indent=2))
    raise typer.Exit(0 if status["status"] == "success" else 1)


def _with_prefect(work: Any) -> Any:
    """Run coroutine function ``work`` against the Prefect API of this command (see
    ``_service_prefect``), after registering the block types."""
    from deployments.register import register_blocks

    async def _work() -> Any:
        await register_blocks(get_settings())
        return await work()

    with _service_prefect(may_start=True):
        return asyncio.run(_work())


def _load_or_exit(name: str):
    from blocks.account import load_account

    async def _load():
        try:
            return await load_account(name)
        except ValueError:
            typer.echo(f"no account {name!r}: create it with `dragonflow account create {name}`", err=True)
            raise typer.Exit(1)

    return _load


@account_app.command("create")
def account_create(
    name: str = typer.Argument(..., help="Account name (lower-case letters, digits, dashes)."),
    referrer: list[str] = typer.Option([], help="Origin allowed with the api key (repeatable)."),
    max_concurrent: Optional[int] = typer.Option(None, help="Tasks queued or running at once (0: no limit)."),
    max_per_day: Optional[int] = typer.Option(None, help="Tasks created per 24 h (0: no limit)."),
    webhook_url: Optional[str] = typer.Option(None, help="URL receiving every VimQu task's result when it ends"
                                                         " ('' removes it)."),
) -> None:
    """Create an account, or update an existing one's referrers, limits and webhook URL;
    prints its name, secret and api key (Stupeflix API), token (VimQu API, Bearer) and
    webhook_secret (verifies the signatures of webhooks and callbacks) as JSON."""
    from blocks.account import create_account

    settings = {
        field: value
        for field, value in {
            "referrers": referrer or None,
            "max_concurrent": max_concurrent,
            "max_per_day": max_per_day,
            "webhook_url": webhook_url,
        }.items()
        if value is not None
    }
    if settings.get("webhook_url") == "":
        settings["webhook_url"] = None

    async def _create() -> dict[str, Any]:
        return (await create_account(name, initial=_new_account_settings(), **settings)).credentials()

    typer.echo(json.dumps(_with_prefect(_create)))


@account_app.command("token")
def account_token(name: str = typer.Argument(..., help="Account name.")) -> None:
    """Issue a new VimQu API token for an account (the old one stops working at once);
    prints the account's name and new token as JSON."""
    from pydantic import SecretStr

    from blocks.account import new_token, update_account

    async def _token() -> dict[str, Any]:
        await _load_or_exit(name)()
        account = await update_account(name, token=SecretStr(new_token()))
        return {"name": account.name, "token": account.token.get_secret_value()}

    typer.echo(json.dumps(_with_prefect(_token)))


@account_app.command("credits")
def account_credits(
    name: str = typer.Argument(..., help="Account name."),
    minutes: float = typer.Argument(..., min=0, help="Credits, in output minutes, the account has from now on."),
) -> None:
    """Set an account's VimQu credits: it has MINUTES left from now on (tasks created before
    no longer count)."""
    from datetime import datetime, timezone

    from blocks.account import update_account

    async def _credits() -> dict[str, Any]:
        await _load_or_exit(name)()
        account = await update_account(name, credits_minutes=minutes, credits_since=datetime.now(timezone.utc))
        return {"name": account.name, "credits_minutes": account.credits_minutes,
                "credits_since": account.credits_since.isoformat()}

    typer.echo(json.dumps(_with_prefect(_credits)))


@account_app.command("suspend")
def account_suspend(
    name: str = typer.Argument(..., help="Account name."),
    message: Optional[str] = typer.Option(None, help="What the account is told (403 on the VimQu API)."),
    lift: bool = typer.Option(False, "--lift", help="End the suspension."),
) -> None:
    """Suspend an account (its VimQu requests answer 403 with the message), or lift it."""
    from blocks.account import update_account

    async def _suspend() -> dict[str, Any]:
        await _load_or_exit(name)()
        account = await update_account(name, suspended=not lift, suspended_message=None if lift else message)
        return {"name": account.name, "suspended": account.suspended, "message": account.suspended_message}

    typer.echo(json.dumps(_with_prefect(_suspend)))


if __name__ == "__main__":
    app()
