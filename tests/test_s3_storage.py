"""Storage on S3 (moto's S3 server on 127.0.0.1): a storage block on s3:// answering
presigned result URLs (lifetime from the block), listing, deleting and expiring files
through fsspec; ``s3_signed`` PUTs to a real presigned URL made by boto3; and, through the
API, ``persistent``/``volatile`` on S3 with the storage API (list, usage, delete)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import storage
from blocks.credentials import S3Credentials
from blocks.storage import StorageBlock
from deployments.local import LocalService
from flows.maintenance import expire
from flows.contract.keys import run_id_for
from flows.settings import get_settings
from flows.steps.store import SignedUrlStore, retry_policy
from tests import conftest

BUCKET = "outputs"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server with a bucket; its credentials block and a boto3 client."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    credentials = S3Credentials(aws_access_key_id="testing", aws_secret_access_key="testing-secret",
                                region_name="eu-west-1", endpoint_url=f"http://{host}:{port}")
    client = boto3.client("s3", endpoint_url=credentials.endpoint_url, aws_access_key_id="testing",
                          aws_secret_access_key="testing-secret", region_name="eu-west-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield credentials, client
    server.stop()


@pytest.fixture
def output(tmp_path) -> Path:
    path = tmp_path / "out.jpg"
    path.write_bytes(b"jpeg bytes " * 100)
    return path


@pytest.fixture(autouse=True)
def no_environment_credentials(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


async def test_presigned_result_urls_with_the_blocks_lifetime(s3, output, monkeypatch):
    credentials, client = s3
    block = StorageBlock(root=f"s3://{BUCKET}/tasks", credentials=credentials, url_lifetime=3600)
    url = await block.put(output, "acct/KEY/output.jpg")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{credentials.endpoint_url}/{BUCKET}/tasks/acct/KEY/output.jpg?")
    assert query["X-Amz-Expires"] == ["3600"] and "X-Amz-Signature" in query
    assert httpx.get(url).content == output.read_bytes()  # a client downloads it
    assert block.relative_for_url(url) == "acct/KEY/output.jpg"
    assert block.relative_for_url(f"{credentials.endpoint_url}/other/acct/x.jpg") is None
    monkeypatch.setitem(storage._loaded, "persistent", block)
    fs, path = await storage.open_stored(url)  # a later task reads it straight from S3
    assert fs.cat_file(path) == output.read_bytes()
    assert client.head_object(Bucket=BUCKET, Key="tasks/acct/KEY/output.jpg")["ContentType"] == "image/jpeg"


async def test_public_url_wins_over_presigning(s3, output):
    credentials, _ = s3
    block = StorageBlock(root=f"s3://{BUCKET}/pub", public_url="https://cdn.example.com/f", credentials=credentials)
    assert await block.put(output, "a/K/o.jpg") == "https://cdn.example.com/f/a/K/o.jpg"


async def test_list_remove_and_expire_on_s3(s3, output):
    credentials, _ = s3
    block = StorageBlock(root=f"s3://{BUCKET}/expiry", credentials=credentials)
    for name in ("acct/K1/output.jpg", "acct/K2/output.jpg", "other/K3/output.jpg"):
        await block.put(output, name)
    listed = block.files("acct")
    assert [(f.path, f.size) for f in listed] == [("acct/K1/output.jpg", 1100), ("acct/K2/output.jpg", 1100)]
    assert all(f.modified.tzinfo is not None for f in listed)
    block.remove("acct/K1/output.jpg")
    assert [f.path for f in block.files("acct")] == ["acct/K2/output.jpg"]
    assert expire(block, "acct", 1) == (0, 0)  # nothing a day old
    assert expire(block, "acct", 0) == (1, 1100)  # everything older than now
    assert block.files("acct") == [] and [f.path for f in block.files("other")] == ["other/K3/output.jpg"]


async def test_s3_signed_put_to_a_presigned_url(s3, output, monkeypatch):
    _, client = s3
    monkeypatch.setenv("DRAGONFLOW_FETCH_ALLOW", "127.0.0.1")
    get_settings.cache_clear()
    try:
        signed = client.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "signed/out.jpg"},
                                               ExpiresIn=600)
        url = await SignedUrlStore(signed, retry_policy()).put(output, "acct/KEY/output.jpg")
    finally:
        get_settings.cache_clear()
    assert url == signed.split("?", 1)[0] and "Signature" not in url
    stored = client.get_object(Bucket=BUCKET, Key="signed/out.jpg")
    assert stored["Body"].read() == output.read_bytes() and stored["ContentType"] == "image/jpeg"


def test_s3_signed_task_store_through_the_api(service, media, s3):
    _, client = s3
    signed = client.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "api/thumb.jpg"},
                                           ExpiresIn=600)
    status = service.run({"task_name": "image.thumb", "url": media.image("s3signed.jpg"), "width": 40,
                          "task_store": {"type": "s3_signed", "url": signed}})
    assert status["status"] == "success", status.get("error")
    assert status["result"]["output"] == signed.split("?", 1)[0]
    assert client.get_object(Bucket=BUCKET, Key="api/thumb.jpg")["Body"].read()[:2] == b"\xff\xd8"

    async def parameters():
        with temporary_settings({PREFECT_API_URL: service.prefect_api}):
            async with get_client() as prefect:
                return (await prefect.read_flow_run(run_id_for(status["key"]))).parameters

    assert "Signature" not in str(asyncio.run(parameters()))


def test_s3_signed_needs_its_url(service, media):
    status = service.run({"task_name": "image.thumb", "url": media.image("nourl.jpg"), "task_store": {"type": "s3_signed"}})
    assert status["error"] == {"parameters": {"task_store": ["storage s3_signed requires url"]}}


@pytest.fixture(scope="module")
def s3_service(s3, tmp_path_factory):
    """A service whose persistent and volatile storages are on S3 (saved before any run
    or storage call loads them)."""
    credentials, _ = s3
    with LocalService(tmp_path_factory.mktemp("s3-home"), DRAGONFLOW_CALLBACK_BACKOFF="0.1") as local:
        with temporary_settings({PREFECT_API_URL: local.prefect_api}):
            for name, days in (("persistent", 0), ("volatile", 7)):
                StorageBlock(root=f"s3://{BUCKET}/{name}", credentials=credentials, expire_days=days,
                             url_lifetime=900).save(name, overwrite=True)
        yield conftest.Service(local)


def test_persistent_and_volatile_on_s3_through_the_api(s3_service, media, s3):
    _, client = s3
    service = s3_service
    first = service.run({"task_name": "image.thumb", "url": media.image("s3a.jpg"), "width": 40})
    second = service.run({"task_name": "image.thumb", "url": media.image("s3b.jpg"), "width": 40,
                          "task_store": {"type": "volatile"}})
    assert first["status"] == second["status"] == "success", (first, second)
    account = service.account["name"]
    for status, name in ((first, "persistent"), (second, "volatile")):
        url = status["result"]["output"]
        assert f"/{BUCKET}/{name}/{account}/{status['key']}/output.jpg?" in url and "X-Amz-Expires=900" in url
        assert httpx.get(url).content[:2] == b"\xff\xd8"
    # a task reads another's output from S3 (own store, no HTTP), v1 on volatile
    info = service.http.post("/v1/create", json={"secret": service.account["secret"], "block": True, "tasks": [
        {"task_name": "image.info", "url": first["result"]["output"]}]}).json()[0]
    assert info["status"] == "success" and info["result"]["width"] == 40
    auth = {"secret": service.account["secret"]}
    listing = service.http.get("/v2/storage/files", params={**auth, "recursive": "true"}).json()
    assert [f["name"] for f in listing["files"]] == [f"{first['key']}/output.jpg"]
    assert listing["usage"] == listing["files"][0]["size"] > 0
    dry = service.http.request("DELETE", "/v2/storage/files", json={**auth, "urls": [first["result"]["output"]],
                                                                    "dry_run": True}).json()
    assert dry["deleted"] == [f"{first['key']}/output.jpg"] and dry["usage"] == 0
    deleted = service.http.request("DELETE", f"/v2/storage/files/{first['key']}", json=auth).json()
    assert deleted["deleted"] == [f"{first['key']}/output.jpg"] and deleted["usage"] == 0
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=f"persistent/{account}/")
