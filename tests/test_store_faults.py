"""A storage backend that fails mid-write: an FTP server whose disk fills after a few bytes
(pyftpdlib answering ``426 ...; transfer aborted``). The task ends ``error`` with that
message, no output URL is reported and nothing is left under the final name; with room on
the disk, the same store writes the whole file under its final name."""

from __future__ import annotations

import errno
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.storage import StorageBlock
from deployments.local import LocalService, serve_directory
from tests.conftest import Service

PUBLIC = "http://files.test/volatile"


class FillingFile:
    """A file being written that runs out of disk after ``room`` bytes (None: never)."""

    room: int | None = None

    def __init__(self, file):
        self._file, self._written = file, 0

    def write(self, data: bytes) -> int:
        if self.room is not None and self._written + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._written += len(data)
        return self._file.write(data)

    def __getattr__(self, name: str):
        return getattr(self._file, name)


@pytest.fixture(scope="module")
def ftp_home(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A pyftpdlib server whose uploads go through ``FillingFile``; (root URL, its home)."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

    class FillingFS(AbstractedFS):
        def open(self, filename, mode):
            file = super().open(filename, mode)
            return FillingFile(file) if "w" in mode or "a" in mode else file

    home = tmp_path_factory.mktemp("ftp-home")
    password = uuid.uuid4().hex
    authorizer = DummyAuthorizer()
    authorizer.add_user("store", password, str(home), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "abstracted_fs": FillingFS})
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.ioloop.loop(timeout=0.05, blocking=False)
        server.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"ftp://store:{password}@127.0.0.1:{server.address[1]}/out", home
    stop.set()
    thread.join(5)


@pytest.fixture(scope="module")
def service(tmp_path_factory, ftp_home) -> Iterator[Service]:
    """The service with its ``volatile`` store on the FTP server (set before any task uses it)."""
    with LocalService(tmp_path_factory.mktemp("store-home")) as local:
        with temporary_settings({PREFECT_API_URL: local.prefect_api}):
            StorageBlock(root=ftp_home[0], public_url=PUBLIC, expire_days=7).save("volatile", overwrite=True)
        yield Service(local)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Iterator[str]:
    """A noisy picture (its thumbnail is tens of kilobytes) served over HTTP."""
    root = tmp_path_factory.mktemp("pictures")
    Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(root / "noise.png")
    with serve_directory(root) as url:
        yield f"{url}/noise.png"


def thumb(picture: str) -> dict:
    return {"task_name": "image.thumb", "url": picture, "width": 300, "height": 200, "task_store": {"type": "volatile"}}


def files_of(home: Path, key: str) -> list[Path]:
    return [path for path in home.rglob("*") if path.is_file() and key in str(path)]


def test_a_whole_file_lands_under_its_final_name(service, ftp_home, picture):
    FillingFile.room = None
    status = service.run(thumb(picture))
    assert status["status"] == "success", status
    key = status["key"]
    output = status["result"]["output"]
    assert output.startswith(f"{PUBLIC}/") and output.endswith(f"/{key}/output.jpg"), output
    [stored] = files_of(ftp_home[1], key)
    assert stored.name == "output.jpg" and stored.stat().st_size > 10_000


def test_a_disk_filling_mid_write_ends_the_task_in_error_with_nothing_stored(service, ftp_home, picture):
    FillingFile.room = 4096
    try:
        status = service.run(thumb(picture))
    finally:
        FillingFile.room = None
    assert status["status"] == "error"
    # pyftpdlib's reply to a failed write: "426 <strerror>; transfer aborted."
    assert status["error"].startswith("could not store output.jpg: 426 ") and "transfer aborted" in status["error"]
    assert "result" not in status or not status["result"]
    assert files_of(ftp_home[1], status["key"]) == []  # no partial file, under any name
