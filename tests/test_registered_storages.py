"""Registered storages (VimQu's /api/storages drivers) against real servers on 127.0.0.1:
moto's S3, gcp-storage-emulator, Azurite, pyftpdlib (FTP and FTPS) and asyncssh (SFTP).
Each driver checks, uploads (atomically, nested directories made), downloads, refuses with
the backend's reason, never shows a secret, and round-trips as a Prefect block document."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import blocks
from blocks.registered import (
    MASK, PROBE_PREFIX, REGISTERED_STORAGES, FTPStorage, RegisteredStorage, S3Storage, SFTPStorage,
    StorageFieldError, StorageNotFound, StorageUnavailable, delete_registered, list_registered, load_registered,
    lookup_registered, save_registered,
)
from blocks.storage import OutputStore
from flows.settings import Settings
from flows.steps.sources import RegisteredStorageSource
from tests.storage_servers import free_port
from tests.test_blocks import logo_from_the_checkout  # noqa: F401  (autouse: the logo's bytes)

ACCOUNT = "acme"
# driver variant -> (server fixture, payload overrides)
VARIANTS = {
    "s3": ("s3_server", {}),
    "gcs": ("gcs_server", {}),
    "azure": ("azure_server", {}),
    "azure-connection-string": ("azure_server", "connection_string"),
    "ftp": ("ftp_storage_server", {}),
    "ftps": ("ftp_storage_server", {"tls": True}),
    "sftp": ("sftp_storage_server", {}),
    "sftp-key": ("sftp_storage_server", "private_key"),
}


def _payload(request, variant: str) -> tuple[dict, object]:
    fixture, overrides = VARIANTS[variant]
    server = request.getfixturevalue(fixture)
    if overrides == "connection_string":
        overrides = {"account_name": None, "account_key": None, "endpoint_url": None,
                     "connection_string": server.connection_string}
    elif overrides == "private_key":
        overrides = {"password": None, "private_key": server.private_key, "host_key": server.host_key}
    return server.storage(name=f"{variant} storage", **overrides), server


def _secrets(payload: dict) -> list[str]:
    """The secret strings of a payload (and the parts of a connection string that are)."""
    values = [str(payload[key]) for key in ("secret_access_key", "account_key", "connection_string", "password",
                                            "private_key", "credentials_json") if payload.get(key)]
    if payload.get("connection_string"):
        values.append(payload["connection_string"].split("AccountKey=")[1].split(";")[0])
    return values


@pytest.fixture(params=list(VARIANTS))
def storage(request) -> tuple[RegisteredStorage, dict, object]:
    payload, server = _payload(request, request.param)
    return RegisteredStorage.from_api(payload, account=ACCOUNT), payload, server


@pytest.fixture
def local_file(tmp_path) -> Path:
    path = tmp_path / "segment.m4s"
    path.write_bytes(bytes(range(256)) * 1200)  # 300 KiB
    return path


async def test_check_passes_and_leaves_no_probe(storage):
    block, _, _ = storage
    await block.check()
    listing = await _listing(block)
    assert not [path for path in listing if PROBE_PREFIX in path]


async def _listing(block: RegisteredStorage) -> list[str]:
    def find() -> list[str]:
        fs = block._operation_fs()
        try:
            return sorted(fs.find(block.object_path("/")))
        finally:
            block._release(fs)

    return await asyncio.to_thread(find)


async def test_put_then_get_round_trip_with_nested_directories(storage, local_file, tmp_path):
    block, _, server = storage
    assert isinstance(block, OutputStore)
    stored = await block.put(local_file, f"/outputs/{block.name}/hls/720p/seg_00001.m4s")
    assert stored == f"/outputs/{block.name}/hls/720p/seg_00001.m4s"
    await block.get(stored, tmp_path / "back.m4s")
    assert (tmp_path / "back.m4s").read_bytes() == local_file.read_bytes()
    # a second upload replaces the file whole; nothing temporary stays behind
    local_file.write_bytes(b"second version")
    await block.put(local_file, stored.lstrip("/"))
    await block.get(stored, tmp_path / "again.m4s")
    assert (tmp_path / "again.m4s").read_bytes() == b"second version"
    listing = [path for path in await _listing(block) if f"/{block.name}/" in path]
    assert [path.rsplit("/", 1)[1] for path in listing] == ["seg_00001.m4s"]
    if isinstance(block, (FTPStorage, SFTPStorage)):  # the directories exist on the server's disk
        on_disk = server.root / "outputs" / block.name / "hls" / "720p" / "seg_00001.m4s"
        assert on_disk.read_bytes() == b"second version"


async def test_get_of_a_missing_file_is_file_not_found(storage, tmp_path):
    block, _, _ = storage
    with pytest.raises(FileNotFoundError):
        await block.get("/no/such/input.webm", tmp_path / "input.webm")
    assert not list(tmp_path.iterdir())  # no partial download left


FAKE_KEY_FILE = json.dumps({"type": "service_account", "project_id": "vimqu", "private_key_id": "k1",
                            "private_key": "-----BEGIN PRIVATE KEY-----\ngcs-secret-key\n-----END PRIVATE KEY-----\n",
                            "client_email": "uploader@vimqu.iam.gserviceaccount.com"})


async def test_public_view_shows_no_secret(storage):
    block, payload, _ = storage
    if payload["driver"] == "gcs":  # the emulator takes no credentials: show a key file's fate
        payload = payload | {"credentials_json": FAKE_KEY_FILE}
        block = RegisteredStorage.from_api(payload, account=ACCOUNT)
    view = block.public_view()
    assert view["driver"] == payload["driver"] and view["name"] == payload["name"]
    text = json.dumps(view) + repr(block) + str(block)
    secrets = _secrets(payload)
    assert secrets and not [secret for secret in secrets if secret in text]
    assert MASK in view.values()


async def test_paths_never_leave_the_root(tmp_path, local_file, sftp_storage_server, ftp_storage_server):
    for server in (sftp_storage_server, ftp_storage_server):
        block = RegisteredStorage.from_api(server.storage(root="/jail"), account=ACCOUNT)
        assert await block.put(local_file, "../../escape/../x.bin") == "/x.bin"
        assert (server.root / "jail" / "x.bin").exists()


# --- refusals carry the backend's reason ------------------------------------------------

def _bad(variant: str, server) -> tuple[dict, list[str]]:
    """A bad configuration of ``variant`` and words its failure must contain."""
    down = f"http://127.0.0.1:{free_port()}"
    cases = {
        "s3-missing-bucket": ({"bucket": "no-such-bucket"}, ["bucket 'no-such-bucket' does not exist", "NoSuchBucket"]),
        "s3-down": ({"endpoint_url": down}, ["cannot connect", "refused"]),
        "gcs-missing-bucket": ({"bucket": "no-such-bucket"}, ["bucket 'no-such-bucket' does not exist"]),
        "gcs-down": ({"endpoint_url": down}, ["cannot connect", "refused"]),
        "azure-wrong-key": ({"account_key": "V3Jvbmcga2V5IGZvciBBenVyaXRlIQ=="}, ["AuthorizationFailure"]),
        "azure-missing-container": ({"container": "no-such-container"}, ["ContainerNotFound"]),
        "ftp-wrong-password": ({"password": "wrong-password"}, ["530"]),
        "ftp-down": ({"port": free_port()}, ["cannot connect", "refused"]),
        "sftp-wrong-password": ({"password": "wrong-password"}, ["Permission denied"]),
        "sftp-other-host-key": ({"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFwhTlvOLGNCwBBaW0o+YmfUfjUrgCeP2q6yVSVdxLd2"},
                                ["Host key is not trusted"]),
        "sftp-down": ({"port": free_port()}, ["cannot connect", "refused"]),
    }
    overrides, words = cases[variant]
    return server.storage(**overrides), words


@pytest.mark.parametrize("variant", ["s3-missing-bucket", "s3-down", "gcs-missing-bucket", "gcs-down",
                                     "azure-wrong-key", "azure-missing-container", "ftp-wrong-password", "ftp-down",
                                     "sftp-wrong-password", "sftp-other-host-key", "sftp-down"])
async def test_check_fails_with_the_backends_reason(request, variant):
    server = request.getfixturevalue(VARIANTS[variant.split("-")[0]][0])
    payload, words = _bad(variant, server)
    block = RegisteredStorage.from_api(payload, account=ACCOUNT)
    with pytest.raises(StorageUnavailable) as failure:
        await block.check()
    message = str(failure.value)
    assert message.startswith(f"{payload['driver']} storage {payload['name']!r}: check ("), message
    for word in words:
        assert word in message, message
    assert failure.value.transient == variant.endswith("-down")
    assert not [secret for secret in _secrets(payload) if secret in message]


async def test_upload_to_a_stopped_server_fails_fast_and_transient(local_file, tmp_path):
    from tests.storage_servers import ftp_server

    with ftp_server(tmp_path / "ftp") as server:
        block = RegisteredStorage.from_api(server.storage(), account=ACCOUNT)
        await block.check()
    with pytest.raises(StorageUnavailable) as failure:
        await block.put(local_file, "/x.bin")
    assert failure.value.transient and "upload to /x.bin" in str(failure.value)


# --- the API's JSON ---------------------------------------------------------------------

@pytest.mark.parametrize("payload, errors", [
    ({"name": "x", "driver": "dropbox"}, {"driver": ["must be one of s3, gcs, azure, ftp, sftp"]}),
    ("not an object", {"storage": ["must be a JSON object"]}),
    ({"name": "x", "driver": "s3", "bucket": "a/b", "access_key_id": "k", "region": "eu-west-1", "shoe": 1},
     {"shoe": ["not a field of s3 storages"], "bucket": ["a bucket name has no slash"],
      "secret_access_key": ["Field required"]}),
    ({"name": "x", "driver": "s3", "bucket": "bucket", "access_key_id": "k", "secret_access_key": "s",
      "endpoint_url": "ftp://host"}, {"endpoint_url": ["must be an http:// or https:// URL"]}),
    ({"name": "x", "driver": "gcs", "bucket": "bucket"}, {"credentials_json": ["is required (the service account key JSON)"]}),
    ({"name": "x", "driver": "gcs", "bucket": "bucket", "credentials_json": "{not json"},
     {"credentials_json": ["must be the JSON of a service account key"]}),
    ({"name": "x", "driver": "azure", "container": "videos", "account_name": "me"},
     {"account_key": ["is required (or give connection_string)"]}),
    ({"name": "", "driver": "ftp", "host": "ftp.example.com", "port": 0},
     {"name": ["String should have at least 1 character"], "port": ["Input should be greater than or equal to 1"]}),
    ({"name": "x", "driver": "sftp", "host": "h", "username": "u"}, {"password": ["is required (or give private_key)"]}),
    ({"name": "x", "driver": "sftp", "host": "h", "username": "u", "private_key": "not a key"},
     {"private_key": ["cannot be read: Invalid private key"]}),
    ({"name": "x", "driver": "ftp", "host": "h", "account": "someone-else"}, {"account": ["not a field of ftp storages"]}),
])
def test_from_api_names_each_bad_field(payload, errors):
    with pytest.raises(StorageFieldError) as failure:
        RegisteredStorage.from_api(payload, account=ACCOUNT)
    found = failure.value.errors
    assert set(found) == set(errors), found
    for field, messages in errors.items():
        assert all(any(message in got for got in found[field]) for message in messages), found


def test_gcs_service_account_key_makes_the_client(tmp_path):
    """A real key file's JSON (string or object) becomes gcsfs's credentials, no network
    needed (the emulator takes none, so uploads with a key are not exercised here)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = json.loads(FAKE_KEY_FILE) | {"private_key": key, "token_uri": "https://oauth2.googleapis.com/token"}
    for credentials in (json.dumps(info), info):
        block = RegisteredStorage.from_api({"name": "g", "driver": "gcs", "bucket": "videos",
                                            "credentials_json": credentials}, account=ACCOUNT)
        fs = block._filesystem()
        assert fs.project == "vimqu" and fs.credentials.credentials.service_account_email == info["client_email"]
        assert key not in json.dumps(block.public_view())


def test_update_from_api_keeps_masked_secrets_and_the_driver():
    block = RegisteredStorage.from_api({"name": "videos", "driver": "sftp", "host": "h", "username": "u",
                                        "password": "first-secret"}, account=ACCOUNT)
    block.update_from_api(block.public_view() | {"name": "renamed", "port": 2222})  # the view sent back, edited
    assert (block.name, block.port, block.password.get_secret_value()) == ("renamed", 2222, "first-secret")
    block.update_from_api({"password": "second-secret"})
    assert block.password.get_secret_value() == "second-secret" and block.account == ACCOUNT
    with pytest.raises(StorageFieldError) as failure:
        block.update_from_api({"driver": "ftp", "port": "many"})
    assert set(failure.value.errors) == {"driver", "port"}
    assert block.port == 2222  # a refused update changes nothing


# --- Prefect block documents ------------------------------------------------------------

async def test_storages_round_trip_as_prefect_block_documents(service, request):
    account, other_account = f"acme-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        saved: dict[str, dict] = {}
        for variant in ("s3", "gcs", "azure", "ftp", "sftp-key"):
            payload, _ = _payload(request, variant)
            block = RegisteredStorage.from_api(payload, account=account)
            storage_id = await save_registered(block)
            assert block.storage_id == storage_id and block._block_document_name.startswith(f"vimqu-{account}-")
            saved[storage_id] = payload
        other = RegisteredStorage.from_api(request.getfixturevalue("s3_server").storage(), account=other_account)
        other_id = await save_registered(other)

        loaded = await asyncio.gather(*(load_registered(storage_id, account) for storage_id in saved))
        for storage, (storage_id, payload) in zip(loaded, saved.items()):
            assert (storage.driver, storage.public_view()["id"]) == (payload["driver"], storage_id)
            secrets = [getattr(storage, field).get_secret_value() for field in storage._secret_fields
                       if getattr(storage, field) is not None]
            assert set(_secrets(payload)) <= set(secrets)  # secrets come back whole
        await loaded[-1].check()  # a loaded storage works (SFTP with its private key)

        assert sorted(storage.storage_id for storage in await list_registered(account)) == sorted(saved)
        with pytest.raises(StorageNotFound):
            await load_registered(other_id, account)  # another account's
        assert await lookup_registered("not-a-uuid") is None
        assert await lookup_registered(str(uuid.uuid4())) is None
        assert (await lookup_registered(other_id)).account == other_account

        first = loaded[0]
        first.update_from_api({"name": "renamed", "secret_access_key": MASK})
        assert await save_registered(first) == first.storage_id  # same document, same id
        again = await load_registered(first.storage_id)
        assert again.name == "renamed" and again.secret_access_key.get_secret_value() == saved[first.storage_id][
            "secret_access_key"]

        await delete_registered(first.storage_id, account)
        with pytest.raises(StorageNotFound):
            await delete_registered(other_id, account)  # not this account's to delete
        await delete_registered(other_id)
        with pytest.raises(StorageNotFound):
            await load_registered(first.storage_id)
        assert len(await list_registered(account)) == len(saved) - 1


async def test_source_chain_reads_storage_urls(s3_server, local_file, tmp_path):
    """flows.steps.sources' RegisteredStorageSource reads ``storage://ID/path`` through a
    registered storage as it is (``fs`` and ``object_path``)."""
    block = S3Storage.model_validate(s3_server.storage() | {"account": ACCOUNT})
    await block.put(local_file, "/inputs/movie.webm")

    async def lookup(storage_id: str):
        return block if storage_id == "the-id" else None

    source = RegisteredStorageSource(lookup)
    assert await source.matches("storage://the-id/inputs/movie.webm")
    assert not await source.matches("storage://other/inputs/movie.webm")
    await source.copy("storage://the-id/inputs/movie.webm", tmp_path / "input", Settings())
    assert (tmp_path / "input").read_bytes() == local_file.read_bytes()


# --- Prefect's block standards ----------------------------------------------------------

def test_every_registered_storage_is_a_dragonflow_block():
    assert set(REGISTERED_STORAGES) <= set(blocks.BLOCKS)


@pytest.mark.parametrize("block", REGISTERED_STORAGES, indirect=True)
class TestRegisteredStoragesAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, request):
        return request.param
