"""The whole Stupeflix REST surface against the running service: streams, v1, storage
API, details, limits, idempotency, CORS and Prefect outages."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from deployments.local import ROOT, free_port


def stream_lines(service, method: str, path: str, **kwargs) -> list:
    """Read a newline-delimited JSON response line by line until the server closes it."""
    lines = []
    with service.http.stream(method, path, timeout=60, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.strip():
                lines.append(json.loads(line))
    return lines


def test_create_stream_progress_partial_and_final(service):
    body = {
        "secret": service.account["secret"],
        "tasks": [{"task_name": "hello", "name": "John", "delay": 1}, {"task_name": "hello", "name": "Jane"}],
    }
    lines = stream_lines(service, "POST", "/v2/create_stream", json=body)
    first = lines[0]
    assert isinstance(first, list) and len(first) == 2
    keys = [s["key"] for s in first]
    updates = lines[1:]
    john = [u for u in updates if u["key"] == keys[0]]
    assert john[-1]["status"] == "success" and john[-1]["result"] == "Hello John"
    assert [u for u in updates if u["key"] == keys[1]][-1]["result"] == "Hello Jane"
    executing = [u for u in john if u["status"] == "executing"]
    assert any(isinstance(u["progress"], (int, float)) and 0 < u["progress"] < 100 for u in executing), john
    assert any(u.get("result") == {"name": "John"} for u in executing), john
    progress = [u["progress"] for u in executing if u["progress"] is not None]
    assert progress == sorted(progress)


def test_status_stream_get_and_v1_alias(service):
    created = service.create({"task_name": "hello", "name": "S", "delay": 0.3}).json()
    key = created[0]["key"]
    secret = service.account["secret"]
    lines = stream_lines(service, "GET", "/v2/stream", params={"tasks": key, "secret": secret})
    assert lines[0][0]["key"] == key
    assert lines[-1]["status"] == "success"
    v1 = stream_lines(service, "POST", "/v1/status_stream", json={"tasks": [key], "secret": secret})
    assert v1 == [[{**lines[-1]}]]  # already finished: one line, the final status


def test_v1_statuses_defaults_and_errors(service, media):
    secret = service.account["secret"]
    response = service.http.post("/v1/create", json={"secret": secret, "block": True,
                                                      "tasks": {"task_name": "image.thumb", "width": 5}})
    status = response.json()[0]
    assert status["status"] == "error" and "error" not in status
    assert status["result"]["parameters"]["url"] == ["this field is required"]
    url = media.image("v1.jpg", size=(100, 80))
    done = service.http.post("/v1/create", json={"secret": secret, "block": True,
                                                 "tasks": {"task_name": "image.thumb", "url": url, "width": 50}}).json()[0]
    assert done["status"] == "success"
    assert "/storage/volatile/" in done["result"]["output"]  # v1 default store
    again = service.http.get("/v1/status", params={"tasks": done["key"], "secret": secret}).json()[0]
    assert again["result"] == done["result"]


def test_v1_create_file_and_file(service, media):
    secret = service.account["secret"]
    url = media.image("cat.jpg", size=(300, 200))
    response = service.http.get(
        "/v1/create_file/cat.jpg",
        params={"task_name": "image.thumb", "url": url, "width": 150, "secret": secret},
    )
    assert response.status_code == 302
    image = Image.open(io.BytesIO(httpx.get(response.headers["location"]).content))
    assert image.size == (150, 100)
    posted = service.http.post(
        "/v1/create_file/small.png",
        json={"secret": secret, "task": {"task_name": "image.thumb", "url": url, "width": 30, "format": "png"}},
    )
    assert posted.status_code == 302 and posted.headers["location"].endswith(".png")
    key = posted.headers["location"].rstrip("/").split("/")[-2]
    file = service.http.get("/v1/file/x.png", params={"task": key, "secret": secret})
    assert file.status_code == 302 and file.headers["location"] == posted.headers["location"]
    failing = service.http.get(
        "/v1/create_file/a.jpg",
        params={"task_name": "image.thumb", "url": f"{media.base}/nope.jpg", "secret": secret},
    )
    assert failing.status_code == 400
    assert failing.json()["status"] == "error" and "404" in failing.json()["result"]
    no_file = service.http.get(
        "/v1/create_file/info.json", params={"task_name": "image.info", "url": url, "secret": secret}
    )
    assert no_file.status_code == 404


def test_storage_list_delete_and_expiration(service, media):
    account = json.loads(service.cli("account", "create", "storer").stdout)
    secret = account["secret"]
    urls = [media.image(f"st{i}.jpg", size=(64, 48)) for i in range(3)]
    results = [service.run({"task_name": "image.thumb", "url": u, "width": 32}, secret=secret) for u in urls]
    keys = [r["key"] for r in results]
    listing = service.http.get("/v2/storage/files", params={"secret": secret}).json()
    assert sorted(listing["directories"]) == sorted(k + "/" for k in keys)
    assert listing["files"] == [] and listing["usage"] == 0
    recursive = service.http.get("/v2/storage/files/", params={"secret": secret, "recursive": "true"}).json()
    assert sorted(f["name"] for f in recursive["files"]) == sorted(f"{k}/output.jpg" for k in keys)
    assert recursive["usage"] == sum(f["size"] for f in recursive["files"]) > 0
    assert all(f["last_modified"].endswith("Z") for f in recursive["files"])
    one_dir = service.http.get(f"/v2/storage/files/{keys[0]}", params={"secret": secret}).json()
    assert [f["name"] for f in one_dir["files"]] == ["output.jpg"]
    # another account sees none of it
    other = service.http.get("/v2/storage/files", params={"secret": service.account["secret"], "recursive": 1}).json()
    assert not any(k in f["name"] for f in other["files"] for k in keys)
    # dry run deletes nothing
    dry = service.http.request("DELETE", f"/v2/storage/files/{keys[0]}", json={"secret": secret, "dry_run": True}).json()
    assert dry["deleted"] == [f"{keys[0]}/output.jpg"]
    assert httpx.get(results[0]["result"]["output"]).status_code == 200
    # by URL
    by_url = service.http.request("DELETE", "/v2/storage/files",
                                  json={"secret": secret, "urls": [results[1]["result"]["output"]]}).json()
    assert by_url["deleted"] == [f"{keys[1]}/output.jpg"] and by_url["freed"] > 0
    assert httpx.get(results[1]["result"]["output"]).status_code == 404
    # by date: nothing is older than a day, everything is newer than an hour ago (UTC without zone)
    assert service.http.request("DELETE", "/v2/storage/files", json={"secret": secret, "max_age": 1}).json()["deleted"] == []
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600))
    rest = service.http.request("DELETE", "/v2/storage/files", json={"secret": secret, "from": since}).json()
    assert sorted(rest["deleted"]) == sorted([f"{keys[0]}/output.jpg", f"{keys[2]}/output.jpg"])
    assert rest["usage"] == 0
    # expiration setting round trip
    assert service.http.post("/v2/storage/expiration", json={"secret": secret, "days": 3}).json() == 3
    assert service.http.get("/v2/storage/expiration", params={"secret": secret}).json() == 3
    bad = service.http.post("/v2/storage/expiration", json={"secret": secret, "days": -1})
    assert bad.status_code == 400 and bad.json()["errors"][0]["name"] == "days"


def test_expiration_enforced_by_scheduled_flow(service, media):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    account = json.loads(service.cli("account", "create", "expiring").stdout)
    status = service.run({"task_name": "image.thumb", "url": media.image("old.jpg"), "width": 20},
                         secret=account["secret"])
    fresh = service.run({"task_name": "image.thumb", "url": media.image("new.jpg"), "width": 20},
                        secret=account["secret"])
    home = Path(service.env["DRAGONFLOW_HOME"])
    old_file = home / "storage" / "persistent" / "expiring" / status["key"] / "output.jpg"
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old_file, (ten_days_ago, ten_days_ago))
    assert service.http.post("/v2/storage/expiration", json={"secret": account["secret"], "days": 2}).status_code == 200
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("expire-files/expire-files")
            run = client.create_flow_run_from_deployment(deployment.id)
            deadline = time.monotonic() + 60
            while not client.read_flow_run(run.id).state.is_final() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.read_flow_run(run.id).state.is_completed()
    assert not old_file.exists()
    assert httpx.get(fresh["result"]["output"]).status_code == 200


def test_details_echo_unknown_keys(service):
    status = service.run({"task_name": "hello", "name": "Meta", "task_metas": {"campaign": "x"}})
    detailed = service.http.get(
        "/v2/status", params={"tasks": status["key"], "details": "true", "secret": service.account["secret"]}
    ).json()[0]
    assert detailed["details"]["parameters"]["task_metas"] == {"campaign": "x"}
    assert detailed["details"]["storage"] == {"type": "persistent"}


def test_account_limits(service):
    limited = json.loads(service.cli("account", "create", "limited", "--max-concurrent", "1").stdout)
    two = service.create([{"task_name": "hello", "name": "a"}, {"task_name": "hello", "name": "b"}],
                         secret=limited["secret"])
    assert two.status_code == 401 and "account limits reached" in two.json()["errors"][0]["description"]
    assert service.create({"task_name": "hello", "name": "a"}, secret=limited["secret"], block=True).status_code == 200
    daily = json.loads(service.cli("account", "create", "daily", "--max-per-day", "2").stdout)
    assert service.create([{"task_name": "hello", "name": "x"}] * 2, secret=daily["secret"]).status_code == 200
    third = service.create({"task_name": "hello", "name": "x"}, secret=daily["secret"])
    assert third.status_code == 401 and "24 h" in third.json()["errors"][0]["description"]


def test_idempotency_key(service):
    tasks = [{"task_name": "hello", "name": "once"}, {"task_name": "hello", "name": "twice"}]
    body = {"secret": service.account["secret"], "tasks": tasks}
    first = service.http.post("/v2/create", json=body, headers={"Idempotency-Key": "order-42"}).json()
    again = service.http.post("/v2/create", json=body, headers={"Idempotency-Key": "order-42"}).json()
    other = service.http.post("/v2/create", json=body, headers={"Idempotency-Key": "order-43"}).json()
    assert [s["key"] for s in again] == [s["key"] for s in first]
    assert not {s["key"] for s in other} & {s["key"] for s in first}

    # More tasks than a Prefect page (200): the repeat still answers all of them, in order.
    # (Invalid tasks: their runs are recorded as errors at once, the worker is not involved.)
    many = {"secret": service.account["secret"], "tasks": [{"task_name": "hello", "delay": i} for i in range(201)]}
    first = service.http.post("/v2/create", json=many, headers={"Idempotency-Key": "order-44"}).json()
    again = service.http.post("/v2/create", json=many, headers={"Idempotency-Key": "order-44"}).json()
    assert len({s["key"] for s in first}) == 201 and {s["status"] for s in first} == {"error"}
    assert [s["key"] for s in again] == [s["key"] for s in first]


def test_cors_for_whitelisted_origins(service):
    service.cli("account", "create", "browser", "--referrer", "https://cors.example")
    time.sleep(0.1)
    headers = {"Origin": "https://cors.example", "Access-Control-Request-Method": "POST"}
    allowed = service.http.options("/v2/create", headers=headers)
    deadline = time.monotonic() + 15  # the API re-reads accounts for CORS every 10 s
    while allowed.headers.get("access-control-allow-origin") != "https://cors.example" and time.monotonic() < deadline:
        time.sleep(0.5)
        allowed = service.http.options("/v2/create", headers=headers)
    assert allowed.headers.get("access-control-allow-origin") == "https://cors.example"
    denied = service.http.options("/v2/create", headers={**headers, "Origin": "https://evil.example"})
    assert denied.headers.get("access-control-allow-origin") is None


class Switch:
    """A TCP forwarder on 127.0.0.1 to the Prefect server that can be turned off and on."""

    def __init__(self, target_port: int):
        self.port, self.target = free_port(), target_port
        self._listener = None

    def on(self):
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def off(self):
        self._listener.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, listener), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, listener):
        try:
            while data := src.recv(65536):
                if listener.fileno() == -1:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def test_503_while_prefect_is_down_and_recovery(service):
    prefect_port = int(service.prefect_api.rsplit(":", 1)[1].split("/")[0])
    switch = Switch(prefect_port)
    port = free_port()
    env = {**service.env, "PREFECT_API_URL": f"http://127.0.0.1:{switch.port}/api"}
    api = subprocess.Popen([sys.executable, "-m", "deployments.cli", "api", "--port", str(port)],
                           env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/openapi.json")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        body = {"secret": service.account["secret"], "tasks": {"task_name": "hello", "name": "down"}}
        down = client.post("/v2/create", json=body)
        assert down.status_code == 503
        assert down.json()["status"] == "error" and "retry" in down.json()["errors"][0]["description"]
        switch.on()
        body["block"] = True
        up = client.post("/v2/create", json=body)
        assert up.status_code == 200 and up.json()[0]["result"] == "Hello down"
        switch.off()
    finally:
        api.terminate()
        api.wait(10)


def test_status_of_more_keys_than_a_prefect_page(service):
    """Prefect answers at most 200 objects per call: statuses are read in chunks."""
    import uuid

    from flows.contract.keys import key_for

    mine = service.run({"task_name": "hello", "name": "paged"})["key"]
    keys = [key_for(uuid.uuid4()) for _ in range(230)] + [mine]
    statuses = service.http.post("/v2/status", json={"secret": service.account["secret"], "tasks": keys}).json()
    assert [s["key"] for s in statuses] == keys
    assert all(s["error"] == "unknown task key" for s in statuses[:-1])
    assert statuses[-1]["result"] == "Hello paged"


def account_runs(service, account: str) -> int:
    """How many flow runs the account has on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            return client.count_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"account:{account}"]))
            )


def concurrently(count: int, call) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_concurrent_idempotent_repeats_create_the_runs_once(service):
    account = json.loads(service.cli("account", "create", "idem-race").stdout)
    tasks = [{"task_name": "hello", "name": "a"}, {"task_name": "hello"}, {"task_name": "hello", "name": "b"}]
    body = {"secret": account["secret"], "tasks": tasks}
    answers = concurrently(6, lambda: httpx.post(
        service.api + "/v2/create", json=body, headers={"Idempotency-Key": "race-1"}, timeout=60
    ))
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    keys = [[s["key"] for s in r.json()] for r in answers]
    assert all(k == keys[0] for k in keys) and len(set(keys[0])) == 3
    assert account_runs(service, "idem-race") == 3
    # the same key from another account is another request
    other = service.http.post("/v2/create", json={**body, "secret": service.account["secret"]},
                              headers={"Idempotency-Key": "race-1"}).json()
    assert not {s["key"] for s in other} & set(keys[0])


def test_idempotent_create_then_details_and_v1_file(service, media):
    """Extra idempotency data on a run must not hide its task name (R4: a 500 on /v1/file)."""
    secret = service.account["secret"]
    body = {"secret": secret, "block": True,
            "tasks": {"task_name": "image.thumb", "url": media.image("idem.jpg", size=(90, 60)), "width": 30}}
    status = service.http.post("/v1/create", json=body, headers={"Idempotency-Key": "file-1"}).json()[0]
    assert status["status"] == "success", status
    detailed = service.http.get(
        "/v1/status", params={"tasks": status["key"], "details": "true", "secret": secret}
    ).json()[0]
    assert detailed["details"]["task_name"] == "image.thumb"
    file = service.http.get("/v1/file/output.jpg", params={"task": status["key"], "secret": secret})
    assert file.status_code == 302 and file.headers["location"] == status["result"]["output"]


def test_concurrent_creates_respect_max_concurrent(service):
    limited = json.loads(service.cli("account", "create", "limit-race", "--max-concurrent", "3").stdout)
    body = {"secret": limited["secret"], "tasks": {"task_name": "hello", "name": "slow", "delay": 5}}
    idempotent = lambda: httpx.post(service.api + "/v2/create", json=body, headers={"Idempotency-Key": "one"})
    first = idempotent()
    assert first.status_code == 200
    answers = concurrently(8, lambda: httpx.post(service.api + "/v2/create", json=body, timeout=60))
    assert sorted(r.status_code for r in answers) == [200] * 2 + [401] * 6, [r.text for r in answers]
    assert account_runs(service, "limit-race") == 3
    # at the limit, a repeat is still answered: it queues nothing new
    again = idempotent()
    assert again.status_code == 200 and again.json()[0]["key"] == first.json()[0]["key"]


def test_status_block_get_bare_string_tasks_and_delete_to(service, media):
    secret = service.account["secret"]
    key = service.create({"task_name": "hello", "name": "later", "delay": 0.5}).json()[0]["key"]
    blocked = service.http.get("/v2/status", params={"tasks": key, "block": "true", "secret": secret}).json()
    assert blocked[0]["status"] == "success" and blocked[0]["result"] == "Hello later"
    bare = service.http.post("/v2/status", json={"tasks": key, "secret": secret}).json()
    assert [s["key"] for s in bare] == [key] and bare[0]["result"] == "Hello later"

    account = json.loads(service.cli("account", "create", "deleter").stdout)
    done = service.run({"task_name": "image.thumb", "url": media.image("to.jpg"), "width": 20},
                       secret=account["secret"])
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    in_an_hour = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    delete = {"secret": account["secret"]}
    assert service.http.request("DELETE", "/v2/storage/files", json={**delete, "to": hour_ago}).json()["deleted"] == []
    gone = service.http.request("DELETE", "/v2/storage/files", json={**delete, "to": in_an_hour}).json()
    assert gone["deleted"] == [f"{done['key']}/output.jpg"]
    assert httpx.get(done["result"]["output"]).status_code == 404


def test_block_logo_is_served_for_the_prefect_ui(service):
    from blocks.meta import LOGO_PATH, logo_png

    response = service.http.get(LOGO_PATH)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == logo_png()
