"""Real storage servers on 127.0.0.1 for the registered storages (VimQu's S3, GCS, Azure,
FTP and SFTP drivers): moto's S3 server, gcp-storage-emulator, Azurite's blob service (a
node process), pyftpdlib (plain FTP and explicit FTPS on one port) and an asyncssh SFTP
server with a generated host key, password and public-key authentication.

Each server is a context manager (``moto_s3()``, ``gcs_emulator()``, ``azurite()``,
``ftp_server(root)``, ``sftp_server(root)``) yielding its connection details, so a test can
start a private one and stop it mid-task; the session fixtures at the bottom start each once
per test session. A server that cannot start raises: the tests that need it error, they are
never skipped.

Every details object has ``storage(name)``: the body of ``POST /api/storages`` for it.
Each also has ``filesystem()``: an fsspec filesystem on the server's files (not through our
storage blocks) and the root of storage paths on it, to check what a task uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE_VERSION = "3.35.0"  # later releases need Node >= 22; Debian's Node is 20
AZURITE_DIR = ROOT / ".azurite"  # npm install --prefix .azurite azurite@3.35.0
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nothing listens on (for servers that cannot report the one they got)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# --- S3: moto's server ------------------------------------------------------------------

@dataclass
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    bucket: str

    def storage(self, name: str = "moto s3", **overrides: Any) -> dict:
        return {"name": name, "driver": "s3", "bucket": self.bucket, "region": self.region,
                "endpoint_url": self.endpoint_url, "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key, **overrides}

    def filesystem(self) -> tuple[Any, str]:
        """s3fs on the server, and the bucket (where storage paths start)."""
        import fsspec

        return fsspec.filesystem("s3", key=self.access_key_id, secret=self.secret_access_key,
                                 endpoint_url=self.endpoint_url, client_kwargs={"region_name": self.region},
                                 skip_instance_cache=True, use_listings_cache=False), self.bucket


@contextlib.contextmanager
def moto_s3(bucket: str = "vimqu-s3") -> Iterator[S3Server]:
    """moto's S3 server (in a thread of this process) with ``bucket``. moto accepts any
    key: wrong credentials cannot be provoked on it (missing buckets and a stopped server can)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        details = S3Server(f"http://{host}:{port}", "vimqu-access-key", "vimqu-s3-secret-" + uuid.uuid4().hex[:8],
                           "eu-west-1", bucket)
        boto3.client("s3", endpoint_url=details.endpoint_url, region_name=details.region,
                     aws_access_key_id=details.access_key_id,
                     aws_secret_access_key=details.secret_access_key).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": details.region})
        yield details
    finally:
        server.stop()


# --- GCS: gcp-storage-emulator -----------------------------------------------------------

@dataclass
class GCSServer:
    endpoint_url: str
    bucket: str

    def storage(self, name: str = "gcs emulator", **overrides: Any) -> dict:
        return {"name": name, "driver": "gcs", "bucket": self.bucket, "endpoint_url": self.endpoint_url,
                **overrides}

    def filesystem(self) -> tuple[Any, str]:
        """gcsfs (its JSON API core) on the emulator, and the bucket."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.endpoint_url, token="anon", project="test",
                             skip_instance_cache=True, use_listings_cache=False), self.bucket


@contextlib.contextmanager
def gcs_emulator(bucket: str = "vimqu-gcs") -> Iterator[GCSServer]:
    """gcp-storage-emulator (a thread of this process, in memory) with ``bucket``. It
    checks no credentials."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield GCSServer(f"http://127.0.0.1:{port}", bucket)
    finally:
        server.stop()


# --- Azure Blob: Azurite ------------------------------------------------------------------

@dataclass
class AzureServer:
    endpoint_url: str  # the blob endpoint, account in the path (Azurite's style)
    account_name: str
    account_key: str
    container: str
    process: subprocess.Popen = field(repr=False)

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.endpoint_url};")

    def storage(self, name: str = "azurite", **overrides: Any) -> dict:
        return {"name": name, "driver": "azure", "container": self.container, "account_name": self.account_name,
                "account_key": self.account_key, "endpoint_url": self.endpoint_url, **overrides}

    def filesystem(self) -> tuple[Any, str]:
        """adlfs on Azurite, and the container."""
        import fsspec

        return fsspec.filesystem("abfs", connection_string=self.connection_string, skip_instance_cache=True,
                                 use_listings_cache=False), self.container


def azurite_command() -> str:
    """``azurite-blob`` from ``$DRAGONFLOW_AZURITE``, ``.azurite/`` of the checkout or PATH;
    installed into ``.azurite/`` with npm when none is found."""
    candidates = [os.environ.get("DRAGONFLOW_AZURITE"), str(AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"),
                  shutil.which("azurite-blob")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("Azurite is not installed and npm is missing: apt-get install nodejs npm")
    subprocess.run([npm, "install", "--prefix", str(AZURITE_DIR), "--no-audit", "--no-fund", "--silent", "--save-exact",
                    f"azurite@{AZURITE_VERSION}"], check=True, timeout=600)
    return str(AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob")


@contextlib.contextmanager
def azurite(workdir: Path, container: str = "vimqu-azure") -> Iterator[AzureServer]:
    """Azurite's blob service (a node process, in memory) with ``container``. It checks the
    shared-key signature, so a wrong account key is refused."""
    port = free_port()
    log = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(
        [azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    try:
        try:
            _wait_for_port(port, process)
        except RuntimeError as exc:
            raise RuntimeError(f"Azurite did not start: {exc}; see {workdir / 'azurite.log'}") from None
        details = AzureServer(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", AZURITE_ACCOUNT, AZURITE_KEY,
                              container, process)
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(details.connection_string) as client:
            client.create_container(container)
        yield details
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- FTP and FTPS: pyftpdlib --------------------------------------------------------------

@dataclass
class FTPServer:
    host: str
    port: int
    username: str
    password: str
    root: Path  # the user's home directory: "/" on the server

    def storage(self, name: str = "ftp server", **overrides: Any) -> dict:
        return {"name": name, "driver": "ftp", "host": self.host, "port": self.port, "username": self.username,
                "password": self.password, "root": "/", **overrides}

    def filesystem(self) -> tuple[Any, str]:
        """The server's home directory, on this machine."""
        import fsspec

        return fsspec.filesystem("file"), str(self.root)


def _self_signed_certificate(directory: Path) -> Path:
    """A PEM file with a self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    path = directory / "ftps.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + certificate.public_bytes(serialization.Encoding.PEM))
    return path


@contextlib.contextmanager
def ftp_server(root: Path, username: str = "vimqu", password: str | None = None,
               commands: dict[str, Any] | None = None) -> Iterator[FTPServer]:
    """pyftpdlib on 127.0.0.1 with one user whose home is ``root``; plain FTP and explicit
    FTPS (AUTH TLS, self-signed certificate) on the same port. ``commands`` replaces the
    handler's methods (``{"ftp_STOR": fn}``), e.g. to count or refuse some uploads."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer as PyFTPServer

    root.mkdir(parents=True, exist_ok=True)
    password = password or "ftp-secret-" + uuid.uuid4().hex[:8]
    authorizer = DummyAuthorizer()
    authorizer.add_user(username, password, str(root), perm="elradfmwMT")
    handler = type("Handler", (TLS_FTPHandler,), dict(commands or {}))
    handler.authorizer = authorizer
    certificates = tempfile.TemporaryDirectory(prefix="ftps-")
    handler.certfile = str(_self_signed_certificate(Path(certificates.name)))
    handler.tls_control_required = handler.tls_data_required = False
    handler.banner = "dragonflow test FTP server"
    handler.auth_failed_timeout = 0.1  # answer a wrong password at once (default 3 s)
    server = PyFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())  # not the shared default loop
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.ioloop.loop(timeout=0.05, blocking=False)
        server.close_all()

    ftp_log = logging.getLogger("pyftpdlib")  # no line per command, and no handler of its own
    ftp_log.setLevel(logging.WARNING)
    if not ftp_log.handlers:
        ftp_log.addHandler(logging.NullHandler())
    thread = threading.Thread(target=serve, name="ftp-server", daemon=True)
    thread.start()
    try:
        yield FTPServer("127.0.0.1", server.address[1], username, password, root)
    finally:
        stop.set()
        thread.join(10)
        certificates.cleanup()


# --- SFTP: asyncssh --------------------------------------------------------------------

@dataclass
class SFTPServer:
    host: str
    port: int
    username: str
    password: str
    private_key: str  # OpenSSH private key text of a key the server accepts
    host_key: str  # the server's public host key, OpenSSH format
    root: Path  # chroot of every session: "/" on the server

    def storage(self, name: str = "sftp server", **overrides: Any) -> dict:
        return {"name": name, "driver": "sftp", "host": self.host, "port": self.port, "username": self.username,
                "password": self.password, "root": "/", **overrides}

    def filesystem(self) -> tuple[Any, str]:
        """The server's chroot, on this machine."""
        import fsspec

        return fsspec.filesystem("file"), str(self.root)


@contextlib.contextmanager
def sftp_server(root: Path, username: str = "vimqu", password: str | None = None) -> Iterator[SFTPServer]:
    """An asyncssh SFTP server (its own event loop in a thread) chrooted to ``root``, with a
    generated host key; ``username`` logs in with ``password`` or the generated client key."""
    import asyncssh

    root.mkdir(parents=True, exist_ok=True)
    password = password or "sftp-secret-" + uuid.uuid4().hex[:8]
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, user: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, user: str, given: str) -> bool:
            return user == username and given == password

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, user: str, key: asyncssh.SSHKey) -> bool:
            return user == username and key.export_public_key() == client_key.export_public_key()

    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        state["server"] = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key], server_factory=Server,
            sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=str(root)),
            allow_scp=False)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the fixture below
            state["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        state["server"].close()
        loop.run_until_complete(state["server"].wait_closed())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name="sftp-server", daemon=True)
    thread.start()
    started.wait(START_TIMEOUT)
    if "error" in state or "server" not in state:
        raise RuntimeError(f"SFTP server did not start: {state.get('error', 'timed out')}")
    try:
        port = state["server"].sockets[0].getsockname()[1]
        yield SFTPServer("127.0.0.1", port, username, password, client_key.export_private_key().decode(),
                         host_key.export_public_key().decode().strip(), root)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# --- session fixtures ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with moto_s3() as details:
        yield details


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    with gcs_emulator() as details:
        yield details


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory) -> Iterator[AzureServer]:
    with azurite(tmp_path_factory.mktemp("azurite")) as details:
        yield details


@pytest.fixture(scope="session")
def ftp_storage_server(tmp_path_factory) -> Iterator[FTPServer]:
    with ftp_server(tmp_path_factory.mktemp("ftp") / "home") as details:
        yield details


@pytest.fixture(scope="session")
def sftp_storage_server(tmp_path_factory) -> Iterator[SFTPServer]:
    with sftp_server(tmp_path_factory.mktemp("sftp") / "root") as details:
        yield details
