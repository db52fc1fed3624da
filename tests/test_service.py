"""End to end: HTTP -> Prefect server -> warm worker -> storage -> status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import httpx
from PIL import Image

from flows.contract.keys import run_id_for
from deployments.local import ROOT


def test_health(service):
    response = service.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["workers"], response.json()


def test_hello_block(service):
    status = service.run({"task_name": "hello", "name": "John"})
    assert status["status"] == "success"
    assert status["result"] == "Hello John"
    assert len(status["key"]) == 26 and run_id_for(status["key"]) is not None
    events = status["events"]
    assert events["queued"] <= events["started"] <= events["completed"]


def test_create_answers_list_in_order_then_poll(service):
    """Several tasks, one invalid, in one create: answered in request order (valid runs
    are created in one bulk call, the invalid one on its own)."""
    names = ["Ann", "Bob", "Cid", "Dee"]
    tasks = [{"task_name": "hello", "name": n} for n in names]
    tasks[2:2] = [{"task_name": "hello"}, {"task_name": "hello", "name": "Eve", "delay": 0.2}]
    response = service.create(tasks)
    assert response.status_code == 200
    created = response.json()
    assert len(created) == 6
    assert created[2]["status"] == "error"  # refused at once: no worker involved
    assert {s["status"] for i, s in enumerate(created) if i != 2} <= {"queued", "executing", "success"}
    keys = [s["key"] for s in created]
    assert len(set(keys)) == 6
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = service.http.get(
            "/v2/status", params={"tasks": keys, "secret": service.account["secret"]}
        ).json()
        if all(s["status"] in ("success", "error") for s in statuses):
            break
        time.sleep(0.1)
    assert [s["key"] for s in statuses] == keys
    assert [s["status"] for s in statuses] == ["success", "success", "error", "success", "success", "success"]
    assert "name" in json.dumps(statuses[2]["error"])
    assert [s.get("result") for s in statuses if s["status"] == "success"] == [
        "Hello Ann", "Hello Bob", "Hello Eve", "Hello Cid", "Hello Dee"
    ]


def test_thumb_output_downloads_and_feeds_next_task(service, media):
    url = media.image("photo.jpg", size=(800, 600))
    status = service.run({"task_name": "image.thumb", "url": url, "width": 200, "height": 200})
    assert status["status"] == "success", status
    result = status["result"]
    assert (result["width"], result["height"]) == (200, 150)
    assert (result["original_width"], result["original_height"]) == (800, 600)
    download = httpx.get(result["output"])
    assert download.status_code == 200
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "JPEG" and image.size == (200, 150)
    # GET /v2/status answers the same final status
    again = service.http.get(
        "/v2/status", params={"tasks": status["key"], "secret": service.account["secret"]}
    ).json()[0]
    assert again["result"] == result and again["status"] == "success"
    # our own output URL is read straight from storage by the next task
    info = service.run({"task_name": "image.info", "url": result["output"]})
    assert info["status"] == "success", info
    assert (info["result"]["width"], info["result"]["height"]) == (200, 150)
    assert info["result"]["content_type"] == "image/jpeg"


def test_volatile_store_and_details(service, media):
    url = media.image("vol.png", size=(64, 64), fmt="PNG")
    status = service.run(
        {"task_name": "image.thumb", "url": url, "width": 32, "format": "png", "task_store": {"type": "volatile"}}
    )
    assert status["status"] == "success", status
    assert "/storage/volatile/local/" + status["key"] in status["result"]["output"]
    detailed = service.http.post(
        "/v2/status",
        json={"tasks": [status["key"]], "details": True, "secret": service.account["secret"]},
    ).json()[0]
    assert detailed["details"]["task_name"] == "image.thumb"
    assert detailed["details"]["parameters"]["width"] == 32
    assert detailed["details"]["prefect_ui"].endswith(str(run_id_for(status["key"])))


def test_callback_receives_full_status(service, media, callbacks):
    url = media.image("cb.jpg")
    status = service.run(
        {"task_name": "image.info", "url": url, "url_callback": callbacks.url("/done")}
    )
    received = callbacks.wait("/done")
    assert received["key"] == status["key"]
    assert received["status"] == "success"
    assert received["result"]["width"] == 400


def test_errback_on_failing_task(service, media, callbacks):
    missing = f"{media.base}/missing.jpg"
    status = service.run(
        {"task_name": "image.info", "url": missing, "url_errback": callbacks.url("/failed")}
    )
    assert status["status"] == "error"
    assert missing in status["error"] and "404" in status["error"]
    received = callbacks.wait("/failed")
    assert received["key"] == status["key"] and received["error"] == status["error"]


def test_validation_error_status(service):
    status = service.run({"task_name": "image.thumb", "width": "wide"})
    assert status["status"] == "error"
    assert status["error"]["parameters"]["url"] == ["this field is required"]
    assert "width" in status["error"]["parameters"]
    assert "completed" in status["events"]


def test_private_address_fetch_refused(service):
    status = service.run({"task_name": "image.info", "url": "http://127.0.0.2:9/x.jpg"})
    assert status["status"] == "error"
    assert "127.0.0.2" in status["error"] and "DRAGONFLOW_FETCH_ALLOW" in status["error"]


def test_not_an_image(service, media):
    (media.directory / "notes.txt").write_text("hello")
    status = service.run({"task_name": "image.info", "url": f"{media.base}/notes.txt"})
    assert status["status"] == "error"
    assert "image" in status["error"]


def test_auth_errors(service):
    response = service.create({"task_name": "hello", "name": "x"}, secret="wrong")
    assert response.status_code == 401
    assert response.json()["status"] == "error"
    response = service.http.post("/v2/create", json={"tasks": {"task_name": "hello", "name": "x"}})
    assert response.status_code == 401
    response = service.http.post(
        "/v2/create",
        json={"api_key": service.account["api_key"], "tasks": {"task_name": "hello", "name": "x"}},
        headers={"Referer": "https://evil.example/"},
    )
    assert response.status_code == 401
    assert "Referer" in response.json()["errors"][0]["description"]


def test_secret_header_text_plain_and_api_key_referrer(service):
    body = json.dumps({"tasks": {"task_name": "hello", "name": "Plain"}, "block": True})
    response = service.http.post(
        "/v2/create",
        content=body,
        headers={"Authorization": f"Secret {service.account['secret']}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["result"] == "Hello Plain"
    created = service.cli("account", "create", "webapp", "--referrer", "https://app.example")
    assert created.returncode == 0, created.stderr
    webapp = json.loads(created.stdout)
    response = service.http.post(
        "/v2/create",
        json={"tasks": {"task_name": "hello", "name": "Web"}, "block": True},
        headers={"Authorization": f"Api-Key {webapp['api_key']}", "Referer": "https://app.example/page"},
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["result"] == "Hello Web"


def test_accounts_see_only_their_tasks(service):
    other = json.loads(service.cli("account", "create", "other").stdout)
    status = service.run({"task_name": "hello", "name": "Mine"})
    seen = service.http.get(
        "/v2/status", params={"tasks": status["key"], "secret": other["secret"]}
    ).json()[0]
    assert seen["status"] == "error" and seen["error"] == "unknown task key"
    assert "result" not in seen


def test_bad_requests(service):
    response = service.http.post("/v2/create", json={"secret": service.account["secret"]})
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "errors": [{"name": "tasks", "location": "body", "description": "tasks is missing"}],
    }
    response = service.create({"task_name": "image.nope"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["name"] == "tasks.0.task_name"
    response = service.http.post("/v2/create", content="{not json")
    assert response.status_code == 400
    garbage = service.http.get(
        "/v2/status", params={"tasks": "NOTAKEY", "secret": service.account["secret"]}
    ).json()
    assert garbage[0]["status"] == "error" and garbage[0]["key"] == "NOTAKEY"


def test_cli_run_prints_status(service):
    done = service.cli("run", "hello", "name=CLI")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["status"] == "success" and status["result"] == "Hello CLI"
    failed = service.cli("run", "image.thumb", "width=10")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["parameters"]["url"] == ["this field is required"]


def test_crash_automation_registered(service):
    """A task whose worker dies is handed to the recover-run deployment by a Prefect
    automation on missed heartbeats."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.register import CRASH_AUTOMATION

    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            automations = client.read_automations_by_name(CRASH_AUTOMATION)
            recovery = client.read_deployment_by_name("recover-run/recover-run")
    assert len(automations) == 1
    automation = automations[0]
    assert automation.enabled
    assert automation.trigger.posture.value == "Proactive"
    assert "dragonflow.flow-run.beat" in automation.trigger.after
    assert automation.actions[0].type == "run-deployment" and automation.actions[0].deployment_id == recovery.id


PIPELINE = """
import asyncio, json, sys
from prefect import flow
from flows.image import ThumbParams, info, thumb, InfoParams

@flow
async def contact_sheet(urls: list[str]) -> list[dict]:
    thumbs = [await thumb(ThumbParams(url=u, width=64)) for u in urls]
    return [(await info(InfoParams(url=t.output))).model_dump() for t in thumbs]

print(json.dumps(asyncio.run(contact_sheet(sys.argv[1:]))))
"""


def test_flows_compose_in_a_pipeline(service, media):
    """A data engineer imports the flows and composes them into a larger Prefect flow."""
    urls = [media.image(f"pipe{i}.jpg", size=(320, 160 + 80 * i)) for i in range(2)]
    done = subprocess.run([sys.executable, "-c", PIPELINE, *urls], env=service.env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    infos = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(i["width"], i["height"]) for i in infos] == [(64, 32), (64, 48)]


def test_up_runs_a_first_task(service):
    """`dragonflow up` proves the whole path by running a hello task before it reports ready."""
    first = service.first_task
    assert first["status"] == "success" and first["result"] == "Hello dragonflow"
