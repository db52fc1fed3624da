"""The VimQu API (seed 003) on the running service: Bearer tokens, registered storages
(secrets never answered), task creation (201 result object, the run's contract parameters),
field errors and input checks (422), 401/402/403/404/429, listing and cancelling."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.local import free_port


class VimquClient:
    """An account of the running service on the VimQu surface."""

    def __init__(self, service, credentials: dict[str, Any]):
        self.service, self.credentials = service, credentials
        self.name, self.token = credentials["name"], credentials["token"]

    def request(self, method: str, path: str, *, wait_on_429: bool = True, **kwargs) -> httpx.Response:
        """One request; a 429 is waited out as its Retry-After says (as a client should)."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        while True:
            response = self.service.http.request(method, path, headers=headers, **kwargs)
            if response.status_code != 429 or not wait_on_429:
                return response
            time.sleep(int(response.headers["retry-after"]))

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs) -> httpx.Response:
        return self.request("POST", path, json=body, **kwargs)

    def storage(self, body: dict) -> str:
        response = self.post("/api/storages", body)
        assert response.status_code == 201, response.text
        return response.json()["data"]["id"]


def new_account(service, name: str, *args: str) -> VimquClient:
    result = service.cli("account", "create", name, *args)
    assert result.returncode == 0, result.stderr
    credentials = json.loads(result.stdout.strip().splitlines()[-1])
    assert credentials["token"] and credentials["webhook_secret"].startswith("whsec_")
    return VimquClient(service, credentials)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(check, timeout: float = 20.0, what: str = "condition", every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(every)


@pytest.fixture(scope="session")
def video(media) -> str:
    """A 2 s 320x240 H.264 mp4 served over HTTP on 127.0.0.1."""
    path = media.directory / "vimqu-input.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=2",
                        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)
    (media.directory / "page.html").write_text("<html><body>not a video</body></html>")
    return f"{media.base}/vimqu-input.mp4"


@pytest.fixture(scope="session")
def long_video(media) -> str:
    """A 60 s 1280x720 mp4 (long enough to cancel while it renders), served over HTTP."""
    path = media.directory / "vimqu-long.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30:d=60",
                        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)
    return f"{media.base}/vimqu-long.mp4"


@pytest.fixture(scope="module")
def alice(service) -> VimquClient:
    return new_account(service, unique("alice"))


@pytest.fixture(scope="module")
def bob(service) -> VimquClient:
    return new_account(service, unique("bob"))


@pytest.fixture(scope="module")
def alice_s3(alice, s3_server) -> str:
    return alice.storage(s3_server.storage("alice s3"))


def thumbnail_output(storage_id: str, **extra) -> dict:
    return {"storage_id": storage_id, "target_path": "/outputs/thumbs", "type": "thumbnail",
            "type_specific_config": {"width": 160, "count": 1}, "reference_id": "ref-1", **extra}


def flow_run(service, task_id: str):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            return client.read_flow_run(uuid.UUID(task_id))


# --- storages --------------------------------------------------------------------------------

def test_storages_crud_never_answers_a_secret(alice, s3_server, ftp_storage_server):
    secrets = [s3_server.secret_access_key, ftp_storage_server.password]
    answers: list[str] = []

    def keep(response: httpx.Response) -> httpx.Response:
        answers.append(response.text)
        return response

    created = keep(alice.post("/api/storages", s3_server.storage("crud s3")))
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["driver"] == "s3" and data["name"] == "crud s3" and data["secret_access_key"] == "****"
    storage_id = data["id"]
    ftp = keep(alice.post("/api/storages", ftp_storage_server.storage("crud ftp")))
    assert ftp.status_code == 201 and ftp.json()["data"]["password"] == "****"

    listed = keep(alice.get("/api/storages"))
    assert {s["id"] for s in listed.json()["data"]} >= {storage_id, ftp.json()["data"]["id"]}
    one = keep(alice.get(f"/api/storages/{storage_id}"))
    assert one.status_code == 200 and one.json()["data"]["bucket"] == s3_server.bucket

    renamed = keep(alice.request("PATCH", f"/api/storages/{storage_id}", json={"name": "renamed"}))
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "renamed"
    view = renamed.json()["data"]  # the view sent back whole: the masked secret keeps its value
    again = keep(alice.request("PUT", f"/api/storages/{storage_id}", json={**view, "name": "again"}))
    assert again.status_code == 200, again.text
    assert again.json()["data"]["name"] == "again" and again.json()["data"]["secret_access_key"] == "****"

    deleted = alice.request("DELETE", f"/api/storages/{storage_id}")
    assert deleted.status_code == 204
    gone = alice.get(f"/api/storages/{storage_id}")
    assert gone.status_code == 404 and gone.json()["message"]
    for text in answers:
        for secret in secrets:
            assert secret not in text


def test_storage_field_errors_and_failed_check_are_422_with_the_reason(alice, s3_server, ftp_storage_server):
    fields = alice.post("/api/storages", {"name": "x", "driver": "s3", "bucket": "b"})
    assert fields.status_code == 422
    assert {"access_key_id", "secret_access_key"} <= set(fields.json()["errors"]) and fields.json()["message"]
    driver = alice.post("/api/storages", {"name": "x", "driver": "dropbox"})
    assert driver.status_code == 422 and "driver" in driver.json()["errors"]

    no_bucket = alice.post("/api/storages", s3_server.storage("missing bucket", bucket="no-such-bucket-here"))
    assert no_bucket.status_code == 422
    assert "NoSuchBucket" in no_bucket.json()["message"] and no_bucket.json()["errors"]["storage"]

    wrong = "wrong-password-" + uuid.uuid4().hex[:6]
    refused = alice.post("/api/storages", ftp_storage_server.storage("bad login", password=wrong))
    assert refused.status_code == 422 and "530" in refused.json()["message"]
    assert wrong not in refused.text


def test_another_accounts_storage_is_404(alice, bob, alice_s3):
    assert bob.get(f"/api/storages/{alice_s3}").status_code == 404
    assert bob.request("DELETE", f"/api/storages/{alice_s3}").status_code == 404
    assert bob.request("PATCH", f"/api/storages/{alice_s3}", json={"name": "mine"}).status_code == 404
    assert alice_s3 not in {s["id"] for s in bob.get("/api/storages").json()["data"]}
    assert alice.get(f"/api/storages/{alice_s3}").status_code == 200


# --- tasks -----------------------------------------------------------------------------------

def test_create_answers_201_with_the_result_object_and_the_run_has_the_contract_parameters(
        service, alice, alice_s3, video):
    body = {"input": {"source_type": "url", "path": video},
            "outputs": [thumbnail_output(alice_s3),
                        {"storage_id": alice_s3, "target_path": "/outputs/dash", "type": "mpeg_dash",
                         "type_specific_config": {"variants": ["240p"]}}]}
    response = alice.post("/api/task", body)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert uuid.UUID(data["id"]) and data["status"] == "active"
    assert time.strptime(data["created_at"], "%Y-%m-%d %H:%M:%S")
    first, second = data["outputs"]
    assert uuid.UUID(first["id"]) and uuid.UUID(second["id"]) and first["id"] != second["id"]
    assert first["reference_id"] == "ref-1" and second["reference_id"] is None
    assert first["storage"] == {"id": alice_s3, "name": "alice s3", "driver": "s3"}
    assert first["target_path"] == "/outputs/thumbs" and first["type"] == "thumbnail" and first["files"] == []
    assert second["type"] == "dash"

    run = flow_run(service, data["id"])
    assert run.parameters == {"account": alice.name, "params": {
        "input": {"source_type": "url", "path": video},
        "outputs": [
            {**thumbnail_output(alice_s3), "id": first["id"], "storage": first["storage"]},
            {"storage_id": alice_s3, "target_path": "/outputs/dash", "type": "dash",
             "type_specific_config": {"variants": ["240p"]}, "reference_id": None, "id": second["id"],
             "storage": second["storage"]},
        ],
        "webhook_url": None, "webhook_per_output": False}}
    assert {"task:vimqu.task", f"account:{alice.name}", "surface:vimqu"} <= set(run.tags)

    read = alice.get(f"/api/task/{data['id']}")
    assert read.status_code == 200 and read.json()["data"]["id"] == data["id"]


def test_field_errors_name_each_field(alice, alice_s3, video):
    response = alice.post("/api/task", {
        "input": {"source_type": "ftp", "path": video},
        "outputs": [
            {"storage_id": alice_s3, "target_path": "outputs", "type": "gif", "type_specific_config": {}},
            {"storage_id": str(uuid.uuid4()), "target_path": "/o", "type": "thumbnail",
             "type_specific_config": {"width": "wide"}},
        ]})
    assert response.status_code == 422
    errors = response.json()["errors"]
    for field in ("input.source_type", "outputs.0.target_path", "outputs.0.type", "outputs.1.storage_id",
                  "outputs.1.type_specific_config.width"):
        assert field in errors and all(isinstance(m, str) and m for m in errors[field]), (field, errors)
    assert response.json()["message"]

    missing = alice.post("/api/task", {"input": {"source_type": "storage", "path": "/in.mp4"}})
    assert missing.status_code == 422
    assert {"input.storage_id", "outputs"} <= set(missing.json()["errors"])
    empty = alice.post("/api/task", {"input": {"source_type": "url", "path": video}, "outputs": []})
    assert empty.status_code == 422 and "outputs" in empty.json()["errors"]
    not_json = alice.request("POST", "/api/task", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["message"]


def test_an_input_that_cannot_be_used_is_422_naming_the_input_and_why(alice, alice_s3, media, video):
    def create(path: str, **input_fields) -> httpx.Response:
        return alice.post("/api/task", {"input": {"source_type": "url", "path": path, **input_fields},
                                        "outputs": [thumbnail_output(alice_s3)]})

    closed = create(f"http://127.0.0.1:{free_port()}/movie.mp4")
    missing = create(f"{media.base}/no-such-movie.mp4")
    html = create(f"{media.base}/page.html")
    private = create("http://10.255.255.1/movie.mp4")
    for response, reason in ((closed, "ConnectError"), (missing, "404"), (html, "not a media file"),
                             (private, "private")):
        assert response.status_code == 422, response.text
        body = response.json()
        assert reason in body["message"] and "input.path" in body["errors"], body

    on_storage = alice.post("/api/task", {"input": {"source_type": "storage", "storage_id": alice_s3,
                                                    "path": "/inputs/nothing.mp4"},
                                          "outputs": [thumbnail_output(alice_s3)]})
    assert on_storage.status_code == 422
    assert "no file /inputs/nothing.mp4" in on_storage.json()["message"]


def test_storage_input_that_exists_is_accepted(alice, ftp_storage_server, video, media):
    (ftp_storage_server.root / "inputs").mkdir(exist_ok=True)
    (ftp_storage_server.root / "inputs" / "movie.mp4").write_bytes((media.directory / "vimqu-input.mp4").read_bytes())
    ftp = alice.storage(ftp_storage_server.storage("alice ftp"))
    response = alice.post("/api/task", {"input": {"source_type": "storage", "storage_id": ftp,
                                                  "path": "/inputs/movie.mp4"},
                                        "outputs": [thumbnail_output(ftp)]})
    assert response.status_code == 201, response.text


def test_another_accounts_task_is_404_and_its_storage_is_not_usable(alice, bob, alice_s3, video):
    created = alice.post("/api/task", {"input": {"source_type": "url", "path": video},
                                       "outputs": [thumbnail_output(alice_s3)]})
    task_id = created.json()["data"]["id"]
    assert bob.get(f"/api/task/{task_id}").status_code == 404
    assert bob.post(f"/api/task/{task_id}/cancel").status_code == 404
    assert bob.get(f"/api/task/{uuid.uuid4()}").status_code == 404
    assert bob.get("/api/task/not-a-uuid").json()["message"]
    assert task_id not in {t["id"] for t in bob.get("/api/tasks").json()["data"]}
    used = bob.post("/api/task", {"input": {"source_type": "url", "path": video},
                                  "outputs": [thumbnail_output(alice_s3)]})
    assert used.status_code == 422 and "outputs.0.storage_id" in used.json()["errors"]


def test_list_filters_and_paginates_newest_first(service, s3_server, video):
    carol = new_account(service, unique("carol"))
    storage = carol.storage(s3_server.storage("carol s3"))
    ids = []
    for _ in range(3):
        response = carol.post("/api/task", {"input": {"source_type": "url", "path": video},
                                            "outputs": [thumbnail_output(storage)]})
        assert response.status_code == 201
        ids.append(response.json()["data"]["id"])
    listed = carol.get("/api/tasks", params={"per_page": 2})
    body = listed.json()
    assert listed.status_code == 200 and body["meta"] == {"page": 1, "per_page": 2, "total": 3}
    assert [t["id"] for t in body["data"]] == ids[::-1][:2]
    second = carol.get("/api/tasks", params={"per_page": 2, "page": 2}).json()
    assert [t["id"] for t in second["data"]] == [ids[0]]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert carol.get("/api/tasks", params={"created_from": today}).json()["meta"]["total"] == 3
    assert carol.get("/api/tasks", params={"created_to": "2020-01-01"}).json()["meta"]["total"] == 0
    everything = {t["id"]: t["status"] for t in carol.get("/api/tasks").json()["data"]}
    for status in set(everything.values()):
        only = carol.get("/api/tasks", params={"status": status}).json()
        assert {t["id"] for t in only["data"]} == {i for i, s in everything.items() if s == status} or \
            all(t["status"] == status for t in only["data"])
    bad = carol.get("/api/tasks", params={"status": "done", "page": "0"})
    assert bad.status_code == 422 and {"status"} <= set(bad.json()["errors"])


def test_cancel_ends_the_task_canceled(service, alice, alice_s3, long_video):
    created = alice.post("/api/task", {"input": {"source_type": "url", "path": long_video},
                                       "outputs": [{"storage_id": alice_s3, "target_path": "/outputs/long",
                                                    "type": "video", "type_specific_config": {"crf": 30}}]})
    assert created.status_code == 201, created.text
    task_id = created.json()["data"]["id"]
    cancel = alice.post(f"/api/task/{task_id}/cancel")
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["data"]["status"] in ("canceled", "processing")
    final = wait_until(lambda: (d := alice.get(f"/api/task/{task_id}").json()["data"])["status"] == "canceled"
                       and d, 60, "status canceled", every=1.0)
    assert final["outputs"][0]["status"] == "canceled"
    again = alice.post(f"/api/task/{task_id}/cancel")
    assert again.status_code == 200 and again.json()["data"]["status"] == "canceled"


# --- errors and limits ---------------------------------------------------------------------

def test_401_for_a_missing_or_bad_token(service, alice):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": alice.token},
                    {"Authorization": f"Secret {alice.credentials['secret']}"}):
        response = service.http.get("/api/profile", headers=headers)
        assert response.status_code == 401 and response.json()["message"], headers
    unknown = service.http.get("/api/nothing-here", headers={"Authorization": f"Bearer {alice.token}"})
    assert unknown.status_code == 404 and set(unknown.json()) == {"message"}
    stupeflix = service.http.get("/v2/nothing-here")
    assert stupeflix.status_code == 404 and stupeflix.json()["status"] == "error"


def test_profile_shows_the_account_credits_and_rate_limit(alice):
    response = alice.get("/api/profile")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["account"] == alice.name and data["credits"]["minutes_left"] > 0
    assert data["rate_limit"]["per_minute"] == 60 and 0 <= data["rate_limit"]["remaining"] < 60


def test_new_token_revokes_the_old_one(service):
    dave = new_account(service, unique("dave"))
    assert dave.get("/api/profile").status_code == 200
    result = service.cli("account", "token", dave.name)
    assert result.returncode == 0, result.stderr
    token = json.loads(result.stdout.strip().splitlines()[-1])["token"]
    assert token != dave.token
    old = dave.token
    wait_until(lambda: dave.get("/api/profile").status_code == 401, 10, "old token refused")
    dave.token = token
    assert dave.get("/api/profile").status_code == 200
    dave.token = old


def test_402_without_credits(service, s3_server, video):
    erin = new_account(service, unique("erin"))
    storage = erin.storage(s3_server.storage("erin s3"))
    assert service.cli("account", "credits", erin.name, "1").returncode == 0
    body = {"input": {"source_type": "url", "path": video},
            "outputs": [thumbnail_output(storage), thumbnail_output(storage, target_path="/outputs/two")]}
    response = wait_until(lambda: (r := erin.post("/api/task", body)).status_code == 402 and r, 10, "402")
    assert "credit" in response.json()["message"]
    assert erin.get("/api/profile").json()["data"]["credits"]["minutes_left"] == 1
    one = erin.post("/api/task", {**body, "outputs": body["outputs"][:1]})
    assert one.status_code == 201, one.text
    assert erin.get("/api/profile").json()["data"]["credits"]["minutes_left"] == 0


def test_403_for_a_suspended_account(service):
    frank = new_account(service, unique("frank"))
    assert frank.get("/api/profile").status_code == 200
    assert service.cli("account", "suspend", frank.name, "--message", "Unpaid invoice #42").returncode == 0
    response = wait_until(lambda: (r := frank.get("/api/profile")).status_code == 403 and r, 10, "403")
    assert response.json() == {"message": "Unpaid invoice #42"}
    assert service.cli("account", "suspend", frank.name, "--lift").returncode == 0
    wait_until(lambda: frank.get("/api/profile").status_code == 200, 10, "suspension lifted")


def test_429_after_60_requests_a_minute_with_retry_after(service):
    gina = new_account(service, unique("gina"))
    statuses = [gina.get("/api/tasks", wait_on_429=False).status_code for _ in range(60)]
    assert statuses == [200] * 60
    refused = gina.get("/api/tasks", wait_on_429=False)
    assert refused.status_code == 429 and refused.json()["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other = new_account(service, unique("hank"))  # per token
    assert other.get("/api/tasks").status_code == 200
