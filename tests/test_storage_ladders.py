"""Every registered-storage driver (S3 on moto, the GCS emulator, Azurite, FTP, SFTP) as the
OUTPUT target of a whole VimQu task, through the REST API of the running service: a 3-rung
HLS + DASH ladder and thumbnails with a sprite, uploaded with the product's own upload
concurrency into a ``target_path`` several folders deep that does not exist yet. Every
listed file is on the server, non-empty, and every file a playlist, manifest or sprite index
names is there. Then a re-run into the same paths (every file overwritten, the storage's
other files left, no temporary file), a transient FTP refusal (only that file is sent
again), and concurrent uploads into one new folder on each driver (folder creation is
idempotent)."""

from __future__ import annotations

import asyncio
import collections
import posixpath
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.handlers import TLS_FTPHandler

from blocks.registered import RegisteredStorage
from flows.outputs import package as pkg
from flows.outputs.task import UPLOAD_CONCURRENCY
from tests.media_tools import ffprobe_json, run
from tests.storage_servers import ftp_server
from tests.test_vimqu_api import VimquClient, new_account, unique, wait_until

SERVERS = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azure_server", "ftp": "ftp_storage_server",
           "sftp": "sftp_storage_server"}
RERUN = ("ftp", "sftp")  # the file servers: temporary name + rename onto the earlier file
DURATION, SEGMENT, FPS = 3, 1.0, 24
LADDER = {"variants": [{"height": 90, "video_bitrate": 120}, {"height": 144, "video_bitrate": 200}, "240p"],
          "segment_duration": SEGMENT, "audio_bitrate": 48}
HEIGHTS = {90, 144, 240}
THUMBS = {"times": [0.5, 1.5, 2.5], "width": 160, "sprite": True}
THUMB_NAMES = {"sprite.jpg", "sprite.vtt", "thumb_00001.jpg", "thumb_00002.jpg", "thumb_00003.jpg"}
TASK_TIMEOUT = 240
STALE = b"stale bytes of an earlier task\n"


@pytest.fixture(scope="module")
def clip(media) -> str:
    """3 s of 426x240 24 fps testsrc2 with a tone, served over HTTP: its URL."""
    path = media.directory / f"ladder-{uuid.uuid4().hex[:8]}.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=426x240:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:d={DURATION}:r=48000", "-ac", "2", "-c:v", "libx264",
        "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(path))
    return f"{media.base}/{path.name}"


@pytest.fixture(scope="module")
def client(service) -> VimquClient:
    return new_account(service, unique("ladders"))


def task_body(clip: str, storage_id: str, base: str) -> dict[str, Any]:
    """HLS and DASH of one ladder and thumbnails with a sprite, all to ``storage_id`` under
    ``base``."""
    return {"input": {"source_type": "url", "path": clip}, "outputs": [
        {"storage_id": storage_id, "target_path": f"{base}/hls", "type": "hls", "type_specific_config": LADDER},
        {"storage_id": storage_id, "target_path": f"{base}/dash", "type": "dash", "type_specific_config": LADDER},
        {"storage_id": storage_id, "target_path": f"{base}/thumbs", "type": "thumbnail",
         "type_specific_config": THUMBS}]}


def run_tasks(client: VimquClient, bodies: dict[str, dict]) -> dict[str, dict]:
    """Create every task at once and wait until all ended (one ``GET /api/tasks`` a second,
    within the rate limit): key -> the final task object."""
    ids = {}
    for key, body in bodies.items():
        created = client.post("/api/task", body)
        assert created.status_code == 201, created.text
        ids[key] = created.json()["data"]["id"]

    def ended() -> dict | None:
        response = client.get("/api/tasks", params={"per_page": 100})
        assert response.status_code == 200, response.text
        tasks = {task["id"]: task for task in response.json()["data"]}
        done = {key: tasks[i] for key, i in ids.items()
                if i in tasks and tasks[i]["status"] in ("completed", "failed", "canceled")}
        return done if len(done) == len(ids) else None

    return wait_until(ended, TASK_TIMEOUT, f"tasks {sorted(ids)} ended", every=1.0)


def stored(server, target: str) -> dict[str, int]:
    """Storage path -> size of every file under ``target`` on the server itself."""
    fs, base = server.filesystem()
    root = base.strip("/")
    found = fs.find(posixpath.join(base, target.lstrip("/")), detail=True)
    return {"/" + posixpath.relpath(path.strip("/"), root): info["size"] for path, info in found.items()}


def read(server, path: str) -> bytes:
    fs, base = server.filesystem()
    return fs.cat_file(posixpath.join(base, path.lstrip("/")))


# --- what manifests name --------------------------------------------------------------------


def m3u8_references(text: str) -> list[str]:
    """URIs an HLS playlist names: its URI lines and every ``URI="..."`` attribute."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")] + re.findall(r'URI="([^"]+)"', text)


def mpd_references(text: str) -> list[str]:
    """Every init and media segment a DASH MPD's SegmentTemplates name."""
    ns = {"mpd": pkg.MPD_NS}
    names = []
    for aset in ET.fromstring(text).iter(f"{{{pkg.MPD_NS}}}AdaptationSet"):
        for rep in aset.findall("mpd:Representation", ns):
            template = rep.find("mpd:SegmentTemplate", ns)
            template = template if template is not None else aset.find("mpd:SegmentTemplate", ns)
            count = sum(int(s.get("r", "0")) + 1 for s in template.findall("mpd:SegmentTimeline/mpd:S", ns))
            start = int(template.get("startNumber", "1"))

            def expand(pattern: str, number: int) -> str:
                pattern = pattern.replace("$RepresentationID$", rep.get("id"))
                return re.sub(r"\$Number(%0(\d+)d)?\$", lambda m: str(number).zfill(int(m.group(2) or 0)), pattern)

            names.append(expand(template.get("initialization"), start))
            names += [expand(template.get("media"), start + k) for k in range(count)]
    return names


def referenced(server, output: dict) -> set[str]:
    """Storage paths of every file the output's manifests (HLS playlists, followed from the
    master; the MPD; the sprite's VTT) name, read back from the server."""
    target = output["target_path"]
    found: set[str] = set()
    pending = [posixpath.join(target, name) for name in (pkg.MASTER, pkg.MPD, "sprite.vtt")
               if posixpath.join(target, name) in {f["path"] for f in output["files"]}]
    assert pending, f"no manifest among {output['files']}"
    while pending:
        path = pending.pop()
        text = read(server, path).decode()
        if path.endswith(".m3u8"):
            names = m3u8_references(text)
        elif path.endswith(".mpd"):
            names = mpd_references(text)
        else:
            names = [line.split("#", 1)[0] for line in text.splitlines() if "#xywh=" in line]
        for name in names:
            full = posixpath.normpath(posixpath.join(posixpath.dirname(path), name))
            if full not in found:
                found.add(full)
                if full.endswith(".m3u8"):
                    pending.append(full)
    return found


def download(server, output: dict, into: Path) -> Path:
    """The output's files, read from the server at once, laid out under ``into``."""
    fs, base = server.filesystem()
    paths = {posixpath.join(base, f["path"].lstrip("/")): f["path"] for f in output["files"]}
    contents = fs.cat(list(paths))
    assert set(contents) == set(paths), set(contents) ^ set(paths)
    for remote, data in contents.items():
        local = into / posixpath.relpath(paths[remote], output["target_path"])
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    return into


def check_outputs(server, final: dict, tmp_path: Path, others: frozenset[str] = frozenset()) -> None:
    """The task completed; every output's files are on the server, non-empty, nothing else
    (no temporary file; only ``others``, files that were there before) is under its target;
    every file its manifests name is there; HLS and DASH play every rung."""
    assert final["status"] == "completed" and "message" not in final, final
    outputs = {output["type"]: output for output in final["outputs"]}
    for kind, output in outputs.items():
        assert output["status"] == "completed", output
        listed = {f["path"] for f in output["files"]}
        on_server = {path: size for path, size in stored(server, output["target_path"]).items()
                     if path not in others}
        assert set(on_server) == listed, (kind, set(on_server) ^ listed)
        assert all(size > 0 for size in on_server.values()), (kind, on_server)
        names = referenced(server, output)
        assert names <= listed, (kind, names - listed)
        if kind in ("hls", "dash"):  # every segment is in the manifest (the stills are not in the VTT)
            manifests = {posixpath.join(output["target_path"], name) for name in (pkg.MASTER, pkg.MPD)}
            assert listed - names <= manifests, (kind, "files no manifest names", listed - names - manifests)
    assert {posixpath.basename(f["path"]) for f in outputs["thumbnail"]["files"]} == THUMB_NAMES
    for kind, manifest in (("hls", pkg.MASTER), ("dash", pkg.MPD)):
        local = download(server, outputs[kind], tmp_path / kind)
        segments = {folder.name: len(list(folder.glob("seg_*.m4s"))) for folder in local.iterdir() if folder.is_dir()}
        video = {name: count for name, count in segments.items() if not name.startswith("audio")}
        assert len(video) == 3 and set(video.values()) == {int(DURATION / SEGMENT)}, (kind, segments)
        streams = ffprobe_json("-show_entries", "stream=codec_type,height", str(local / manifest))["streams"]
        assert {s["height"] for s in streams if s["codec_type"] == "video"} == HEIGHTS, (kind, streams)
        assert any(s["codec_type"] == "audio" for s in streams), (kind, streams)


# --- every driver takes a full ladder --------------------------------------------------------


@pytest.fixture(scope="module")
def storages(request, client) -> dict[str, tuple[str, Any]]:
    """driver -> (registered storage id, server)."""
    servers = {driver: request.getfixturevalue(name) for driver, name in SERVERS.items()}
    return {driver: (client.storage(server.storage(f"ladders {driver}")), server)
            for driver, server in servers.items()}


@pytest.fixture(scope="module")
def ladders(client, storages, clip) -> dict[str, dict]:
    """One task per driver, all at once, each into a target several folders deep that does
    not exist: driver -> {"base", "body", "final"}."""
    tag = uuid.uuid4().hex[:8]
    bases = {driver: f"/ladders/{tag}/{driver}/deep/er/than/that" for driver in storages}
    bodies = {driver: task_body(clip, storage_id, bases[driver]) for driver, (storage_id, _) in storages.items()}
    for driver, (_, server) in storages.items():
        assert not stored(server, f"/ladders/{tag}"), driver
    started = time.monotonic()
    finals = run_tasks(client, bodies)
    print(f"\n{len(finals)} ladder tasks: {time.monotonic() - started:.1f} s")
    return {driver: {"base": bases[driver], "body": bodies[driver], "final": finals[driver]} for driver in bodies}


@pytest.mark.parametrize("driver", list(SERVERS))
def test_a_full_ladder_and_thumbnails_to_a_new_deep_folder(driver, ladders, storages, tmp_path):
    check_outputs(storages[driver][1], ladders[driver]["final"], tmp_path)


# --- a re-run into the same paths -----------------------------------------------------------


@pytest.fixture(scope="module")
def reruns(client, storages, ladders) -> dict[str, dict]:
    """The same tasks again, into the same paths on the file servers, after every file of the
    first run was replaced by stale bytes and a file of someone else's was put beside them:
    driver -> {"final", "extra"}."""
    extras = {}
    for driver in RERUN:
        server = storages[driver][1]
        fs, base = server.filesystem()
        for output in ladders[driver]["final"]["outputs"]:
            for entry in output["files"]:
                fs.pipe_file(posixpath.join(base, entry["path"].lstrip("/")), STALE)
        extras[driver] = f"{ladders[driver]['base']}/hls/not-ours.txt"
        fs.pipe_file(posixpath.join(base, extras[driver].lstrip("/")), b"kept\n")
    finals = run_tasks(client, {driver: ladders[driver]["body"] for driver in RERUN})
    return {driver: {"final": finals[driver], "extra": extras[driver]} for driver in RERUN}


@pytest.mark.parametrize("driver", RERUN)
def test_a_rerun_into_the_same_path_overwrites_every_file(driver, ladders, reruns, storages, tmp_path):
    server = storages[driver][1]
    first, again = ladders[driver]["final"], reruns[driver]["final"]
    extra = reruns[driver]["extra"]
    assert again["status"] == "completed", again
    for before, after in zip(first["outputs"], again["outputs"]):
        assert {f["path"] for f in after["files"]} == {f["path"] for f in before["files"]}
        for entry in after["files"]:
            assert read(server, entry["path"]) != STALE, f"{entry['path']} was not overwritten"
    assert read(server, extra) == b"kept\n"  # files the output does not write are left alone
    fs, base = server.filesystem()
    leftovers = [path for path in fs.find(posixpath.join(base, ladders[driver]["base"].lstrip("/")))
                 if path.endswith(".part")]
    assert not leftovers, leftovers
    check_outputs(server, again, tmp_path, others=frozenset({extra}))


# --- a transient refusal: only that file is sent again ---------------------------------------


def _final_name(path: str) -> str:
    """The name an upload's temporary file (``.<name>.<8 hex>.part``) stands for."""
    folder, name = posixpath.split(path)
    match = re.fullmatch(r"\.(.+)\.[0-9a-f]{8}\.part", name)
    return posixpath.join(folder, match.group(1) if match else name)


def test_a_transient_ftp_refusal_retries_only_that_file(client, clip, tmp_path):
    root = tmp_path / "ftp"
    refuse = {"thumbs/thumb_00002.jpg", "hls/144p/init.mp4"}
    stors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def ftp_STOR(self, file: str, mode: str = "w"):
        name = _final_name(posixpath.relpath(file, str(root / "retry")))
        if name.startswith("../"):  # the storage check's probe, at registration
            return TLS_FTPHandler.ftp_STOR(self, file, mode)
        with lock:
            stors[name] += 1
            first = stors[name] == 1
        if first and name in refuse:
            self.respond("450 Busy: try again later.")
            return None
        return TLS_FTPHandler.ftp_STOR(self, file, mode)

    with ftp_server(root, commands={"ftp_STOR": ftp_STOR}) as server:
        storage_id = client.storage(server.storage("flaky ftp"))
        body = task_body(clip, storage_id, "/retry")
        body["outputs"] = [o for o in body["outputs"] if o["type"] != "dash"]
        final = run_tasks(client, {"retry": body})["retry"]
    assert final["status"] == "completed", final
    listed = {posixpath.relpath(f["path"], "/retry") for o in final["outputs"] for f in o["files"]}
    assert refuse <= listed and len(listed) > 20, listed
    assert {name: stors[name] for name in refuse} == dict.fromkeys(refuse, 2), stors
    assert {name: count for name, count in stors.items() if name not in refuse} == dict.fromkeys(
        listed - refuse, 1), stors
    assert not list(root.rglob("*.part"))


# --- folder creation is idempotent -----------------------------------------------------------


@pytest.mark.parametrize("driver", list(SERVERS))
async def test_concurrent_uploads_into_one_new_folder(driver, request, tmp_path):
    server = request.getfixturevalue(SERVERS[driver])
    storage = RegisteredStorage.from_api(server.storage(f"race {driver}"), account="race")
    local = tmp_path / "part.bin"
    local.write_bytes(b"\x00\x01" * 2048)
    base = f"/race/{uuid.uuid4().hex[:8]}/a/b"
    names = [f"{base}/{folder}/file_{i}.bin" for i in range(3 * UPLOAD_CONCURRENCY) for folder in ("x", "y")]
    for _ in range(2):  # the second round: every folder already there
        results = await asyncio.gather(*(storage.put(local, name) for name in names), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert not failures, failures[0]
    assert stored(server, base) == dict.fromkeys(names, local.stat().st_size)
