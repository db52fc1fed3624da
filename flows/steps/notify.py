"""Notifications: a task's ending sent to its client, signed, by one notifier for both surfaces.

- Stupeflix tasks: ``send_status`` POSTs the status JSON (the shape of the surface the task
  was created on) to ``url_callback`` / ``url_errback``.
- VimQu tasks: ``send_webhooks`` POSTs ``{"data": <Common Task Result Object>}`` to the
  task's own ``webhook_url`` and to the account's ``webhook_url`` when the task ends; a task
  created with ``webhook_per_output: true`` also sends, each time one of its outputs ends,
  ``{"output_id": ID, "data": ...}`` (the object at that moment, status ``processing``).

Each delivery's first try is a Prefect task of the run that sends it, named ``<kind>
<host>`` (``callback``, ``errback``, ``webhook``): a receiver that answers gets it with no
other run. When that try fails, the delivery is handed to a run of the ``send-callback``
deployment (``flows/callbacks.py``), which tries again on the documented schedule:
``callback_attempts`` tries in all (default 5), waiting ``callback_backoff`` seconds before
the 2nd and doubling each time (defaults: 0.5, 1, 2, 4 s), each try limited to
``callback_timeout`` seconds. Between tries that run waits ``AwaitingRetry`` (Scheduled),
holding no worker slot. A refused address is never retried. The outcome ("delivered (HTTP
200) after 3 tries", "gave up after 5 tries: HTTP 500") is a markdown artifact on the run
of the task the notification is about; a delivery that fails never changes that task's state.

**Signatures** (Standard Webhooks, https://www.standardwebhooks.com): when the task's account
has a ``webhook_secret`` (``whsec_`` + base64 of the key; every account made by ``dragonflow
account create`` has one), each POST carries::

    webhook-id: msg_...            the same for every retry of one notification
    webhook-timestamp: 1700000000  seconds since the epoch, of this try
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

Receivers check it with ``verify_signature(body, headers, secret)`` (below, standard library
only; the ``standardwebhooks`` package's ``Webhook(secret).verify`` gives the same answer).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping
from urllib.parse import urljoin, urlsplit
from uuid import UUID

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import arun_deployment

from blocks.account import AccountBlock
from flows.contract.net import check_url_allowed, send_pinned, tls_context
from flows.contract.runs import RunView, account_of, read_runs, surface_of
from flows.contract.stupeflix import stupeflix_status
from flows.contract.vimqu import vimqu_task
from flows.errors import FetchError
from flows.settings import Settings, get_settings
from flows.steps.step import step_log

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
WEBHOOK = "webhook"
TOLERANCE = 300  # seconds a receiver accepts between a signature's timestamp and its clock
CALLBACK_FLOW = "send-callback"  # the deployment that tries a delivery again (flows/callbacks.py)


class CallbackFailed(Exception):
    """The receiver did not take the notification (no answer, or not 2xx): worth another try."""


class InvalidSignature(ValueError):
    """A webhook whose signature does not verify (wrong secret, altered body, too old)."""


# --- signing ------------------------------------------------------------------------------

def _key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (its base64 part, decoded)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_headers(secret: str | None, body: bytes, message_id: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one signed POST (only ``webhook-id`` without a secret)."""
    headers = {"webhook-id": message_id}
    if secret:
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
    return headers


def verify_signature(body: bytes | str, headers: Mapping[str, str], secret: str, *,
                     tolerance: int = TOLERANCE, now: float | None = None) -> Any:
    """Check a received webhook and return its JSON payload; InvalidSignature otherwise.

    ``body`` is the raw request body as received (not re-serialized JSON), ``headers`` the
    request's headers (any mapping; names are matched case-insensitively), ``secret`` the
    account's ``webhook_secret``. A timestamp more than ``tolerance`` seconds from now is
    refused (replays)::

        from flows.steps.notify import verify_signature

        payload = verify_signature(request.body, request.headers, "whsec_...")
        task = payload["data"]
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lower = {name.lower(): value for name, value in headers.items()}
    message_id, stamp, signatures = (lower.get(name) for name in ("webhook-id", "webhook-timestamp",
                                                                  "webhook-signature"))
    if not (message_id and stamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp is too old or too new")
    expected = sign(secret, message_id, timestamp, raw).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            return json.loads(raw)
    raise InvalidSignature("no signature matches")


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# --- delivery -----------------------------------------------------------------------------

async def deliver(url: str, payload: dict[str, Any], secret: str | None = None,
                  message_id: str | None = None) -> str:
    """POST ``payload`` to ``url`` once, to the address that was checked, signed with
    ``secret`` when given; returns what answered: ``HTTP 200``, or after redirects
    ``HTTP 200 from <host:port>, redirected by HTTP 308``.

    URLs obey the same address rules as fetch (no private addresses unless allowed by
    ``DRAGONFLOW_FETCH_ALLOW``): FetchError when refused, CallbackFailed when the POST fails
    or takes more than ``callback_timeout`` seconds. Redirects: 301, 302, 307 and 308 are
    followed up to ``fetch_max_redirects`` hops, each hop's address checked again, POSTing
    the same body and signed headers (RFC 9110 keeps the method for 307/308; for 301/302
    webhook senders re-POST too rather than turn a notification into a GET); a 303 (See
    Other: the POST was handled, look elsewhere) counts as delivered and is not followed."""
    def place(target: str) -> str:  # a redirect target as shown: its path may hold a token
        parts = urlsplit(target)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    settings = get_settings()
    addresses = await check_url_allowed(url, settings)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               **signature_headers(secret, body, message_id or new_message_id())}
    current, hops = url, []
    try:
        async with asyncio.timeout(settings.callback_timeout):
            async with httpx.AsyncClient(timeout=settings.callback_timeout, verify=tls_context(),
                                         trust_env=False, follow_redirects=False) as client:
                while True:
                    response = await send_pinned(client, current, addresses, method="POST", content=body,
                                                 headers=headers)
                    await response.aclose()
                    code, location = response.status_code, response.headers.get("location")
                    if code not in (301, 302, 307, 308) or not location:
                        break
                    if len(hops) == settings.fetch_max_redirects:
                        raise CallbackFailed(f"too many redirects (more than {settings.fetch_max_redirects}),"
                                             f" the last HTTP {code} to {place(urljoin(current, location))}")
                    current = urljoin(current, location)
                    hops.append(f"HTTP {code}")
                    try:
                        addresses = await check_url_allowed(current, settings)
                    except FetchError as exc:
                        raise FetchError(url, f"redirected by {hops[-1]} to {place(current)}: {exc.reason}",
                                         exc.code) from None
    except (httpx.HTTPError, TimeoutError) as exc:
        raise CallbackFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
    answered = f"HTTP {code}" + (f" from {place(current)}, redirected by {', '.join(hops)}" if hops else "")
    if code in (301, 302, 307, 308):
        raise CallbackFailed(f"{answered} without a Location header")
    if not (response.is_success or code == 303):
        raise CallbackFailed(answered)
    return answered


async def post_status(url: str, status: dict[str, Any], secret: str | None = None) -> bool:
    """POST ``status`` to ``url`` once, outside Prefect; True when delivered."""
    try:
        await deliver(url, status, secret)
        return True
    except (FetchError, CallbackFailed) as exc:
        step_log("callback %s not delivered: %s", shown(url), exc, level=logging.WARNING)
        return False


async def signing_secret(account: str | None) -> str | None:
    """The account's ``webhook_secret`` (None for no account, or one without a secret)."""
    if not account:
        return None
    try:
        block = await AccountBlock.aload(AccountBlock.document_name(account))
    except ValueError:  # no such account block
        return None
    return block.webhook_secret.get_secret_value() if block.webhook_secret else None


def retry_delays(settings: Settings | None = None) -> list[float]:
    """Seconds before the 2nd, 3rd, ... try of a delivery (the documented schedule)."""
    settings = settings or get_settings()
    return [settings.callback_backoff * 2**n for n in range(settings.callback_attempts - 1)]


def tries(count: int) -> str:
    """``1 try``, ``3 tries``."""
    return f"{count} {'try' if count == 1 else 'tries'}"


async def record_delivery(flow_run_id: UUID | str, kind: str, url: str, outcome: str) -> None:
    """Show a delivery's outcome on the run of the task it is about (a markdown artifact:
    the Artifacts tab of the run's page). Names the receiver's host only: a URL may hold a
    token."""
    text = f"{kind} to {urlsplit(url).hostname}: {outcome}"
    async with get_client() as client:
        await client.create_artifact(ArtifactCreate(type="markdown", data=text, description=f"{kind} delivery",
                                                    flow_run_id=UUID(str(flow_run_id))))


async def hand_off(kind: str, url: str, status: dict[str, Any], account: str | None, message_id: str,
                   origin: UUID | str) -> FlowRun:
    """A run of the ``send-callback`` deployment that tries the delivery again, scheduled
    after the first delay of the schedule."""
    when = datetime.now(timezone.utc) + timedelta(seconds=retry_delays()[0])
    parameters = {"kind": kind, "url": url, "body": status, "origin": str(origin), "account": account,
                  "message_id": message_id}
    return await arun_deployment(f"{CALLBACK_FLOW}/{CALLBACK_FLOW}", parameters=parameters, scheduled_time=when,
                                 timeout=0, as_subflow=False)


def shown(url: str) -> str:
    """``url`` as logged: without its query string, which may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _run_name(parameters: dict[str, Any]) -> str:
    return f"{parameters['kind']} {urlsplit(parameters['url']).hostname}"


@task(name="callback", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False)
async def send(kind: str, url: str, status: dict[str, Any], origin: UUID | str, account: str | None = None,
               message_id: str | None = None) -> None:
    """The first try of a ``kind`` (callback, errback, webhook) POST to ``url`` about the
    task run ``origin``, signed with ``account``'s secret when it has one. When it fails
    the task run fails, and unless the address was refused or tries are used up, the
    delivery goes on in a ``send-callback`` run (same ``message_id``)."""
    message_id = message_id or new_message_id()
    try:
        answered = await deliver(url, status, await signing_secret(account), message_id)
    except FetchError as exc:
        await record_delivery(origin, kind, url, f"refused, not sent: {exc.reason}")
        raise
    except CallbackFailed as exc:
        reason = str(exc)
        if get_settings().callback_attempts > 1:
            try:
                run = await hand_off(kind, url, status, account, message_id, origin)
            except Exception as failure:  # no send-callback deployment (flows used outside the service)
                reason = f"{exc}; not tried again: {failure}"
            else:
                step_log("%s to %s: try 1 failed (%s); tried again by run %s", kind, shown(url), exc, run.name,
                         level=logging.WARNING)
                raise
        await record_delivery(origin, kind, url, f"gave up after 1 try: {reason}")
        raise
    await record_delivery(origin, kind, url, f"delivered ({answered}) after 1 try")
    data = status.get("data") if isinstance(status.get("data"), dict) else status
    step_log("%s delivered to %s (%s)", kind, shown(url), data.get("status"))


# --- what is sent -----------------------------------------------------------------------

async def ending_view(flow_run_id: UUID | str, state: State | None = None) -> RunView | None:
    """The run with its artifacts; with ``state``, as if it had already ended in it (the
    run's own state still reads Running while its flow sends)."""
    flow_run_id = UUID(str(flow_run_id))
    async with get_client() as client:
        view = (await read_runs(client, [flow_run_id])).get(flow_run_id)
    if view is not None and state is not None:
        view.run = view.run.model_copy(update={"state": state})
    return view


def body_of(view: RunView) -> dict[str, Any]:
    """What the run's client receives, in its surface's shape."""
    surface = surface_of(view.run)
    if surface == "vimqu":
        return {"data": vimqu_task(view)}
    return stupeflix_status(view, version=surface)


async def ending_status(flow_run_id: UUID | str, state: State | None = None) -> dict[str, Any] | None:
    """The run's status as its client sees it, in its surface's shape."""
    view = await ending_view(flow_run_id, state)
    return body_of(view) if view is not None else None


async def send_status(flow_run_id: UUID | str, url: str | None, kind: str, state: State | None = None) -> None:
    """Send the run's status to ``url`` as a ``kind`` task run (nothing without ``url``);
    kind ``webhook`` (a VimQu task) sends to all its webhooks (``send_webhooks``: the task's
    ``webhook_url``, which ``url`` is, and the account's). A failed delivery is logged and
    leaves the task run Failed; it is never raised."""
    if kind == WEBHOOK:
        return await send_webhooks(flow_run_id, state)
    if not url:
        return
    try:
        view = await ending_view(flow_run_id, state)
    except Exception as exc:  # Prefect's API gone after its client's own retries
        step_log("%s to %s not sent: the run could not be read: %s", kind, shown(url), exc, level=logging.WARNING)
        return
    if view is not None:
        await send(kind, url, body_of(view), flow_run_id, account_of(view.run), new_message_id(), return_state=True)


async def webhook_targets(view: RunView) -> list[str]:
    """Where a VimQu task's ending goes: its own ``webhook_url``, then its account's."""
    params = view.run.parameters.get("params") or {}
    targets = [params.get("webhook_url")]
    account = account_of(view.run)
    if account:
        try:
            targets.append((await AccountBlock.aload(AccountBlock.document_name(account))).webhook_url)
        except ValueError:
            pass
    return list(dict.fromkeys(url for url in targets if isinstance(url, str) and url))


async def send_webhooks(flow_run_id: UUID | str, state: State | None = None, output_id: str | None = None) -> None:
    """Send a VimQu task's Common Task Result Object (``{"data": ...}``) to its webhooks, one
    ``webhook <host>`` task run each (one message id per notification, kept by its retries);
    with ``output_id``, the body names the output that just ended (``{"output_id", "data"}``).
    Failures are logged, never raised."""
    try:
        view = await ending_view(flow_run_id, state)
        targets = await webhook_targets(view) if view is not None else []
    except Exception as exc:  # Prefect's API gone after its client's own retries
        step_log("webhooks not sent: the run could not be read: %s", exc, level=logging.WARNING)
        return
    if targets:
        body, account = body_of(view), account_of(view.run)
        if output_id is not None:
            body = {"output_id": output_id, **body}
        await asyncio.gather(*(send(WEBHOOK, url, body, flow_run_id, account, new_message_id(), return_state=True)
                               for url in targets))


async def send_ending(flow_run_id: UUID | str, state: State | None = None) -> None:
    """The ending notification of a run whose flow could not send it (crashed, cancelled,
    refused): a VimQu task's webhooks, a Stupeflix task's ``url_errback``."""
    view = await ending_view(flow_run_id, state)
    if view is None:
        return
    if surface_of(view.run) == "vimqu":
        await send_webhooks(flow_run_id, state)
    else:
        await send_status(flow_run_id, (view.run.parameters.get("params") or {}).get("url_errback"), "errback", state)
