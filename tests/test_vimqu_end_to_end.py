"""The VimQu API end to end, through REST only, on the running service and real storage
servers on 127.0.0.1: storages registered with ``POST /api/storages``; one task reading its
input from FTP and writing HLS (3 rungs) to S3, DASH to Azure, thumbnails with a sprite to
SFTP and a 360p mp4 to GCS, polled until ``completed``; every listed file checked on its
server and the manifests played by ffprobe; webhooks per output; a storage that goes down
mid-task; and seed 003's example requests as the seed writes them."""

from __future__ import annotations

import posixpath
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flows.outputs import package as pkg
from flows.steps.notify import verify_signature
from tests.media_tools import extinf_durations, ffprobe_json, mpd_segment_durations, run
from tests.storage_servers import ROOT, ftp_server
from tests.test_vimqu_api import VimquClient, new_account, unique, wait_until
from tests.test_vimqu_flow import decoded_frames, key_times
from tests.test_webhooks import receiver  # noqa: F401 (fixture)

FPS = 30
DURATION = 8
SEGMENT = 2.0
RUNGS = {"180p": (320, 180), "240p": (426, 240), "360p": (640, 360)}
TASK_TIMEOUT = 180


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """8 s of 640x360 30 fps testsrc2, H.264 + stereo AAC."""
    path = tmp_path_factory.mktemp("e2e-input") / "clip.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:d={DURATION}:r=48000", "-ac", "2", "-c:v", "libx264",
        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path))
    return path


def wait_ended(client: VimquClient, task_id: str, timeout: float = TASK_TIMEOUT) -> dict[str, Any]:
    """Poll ``GET /api/task/{id}`` (once a second: the rate limit) until the task ended."""
    def ended() -> dict | None:
        response = client.get(f"/api/task/{task_id}")
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data if data["status"] in ("completed", "failed", "canceled") else None

    return wait_until(ended, timeout, f"task {task_id} ended", every=1.0)


def server_files(server, target: str) -> set[str]:
    """Every file under storage path ``target`` on ``server``, as storage paths."""
    fs, base = server.filesystem()
    root = base.strip("/")
    return {"/" + posixpath.relpath(path.strip("/"), root)
            for path in fs.find(posixpath.join(base, target.lstrip("/")))}


def download(server, files: list[dict], target: str, into: Path) -> Path:
    """The listed files, read from ``server`` itself, keeping their layout under ``target``."""
    fs, base = server.filesystem()
    for entry in files:
        local = into / posixpath.relpath(entry["path"], target)
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(posixpath.join(base, entry["path"].lstrip("/")), str(local))
    return into


def readme_verifier():
    """``verify_webhook`` as docs/vimqu.md (linked from the README's VimQu section) writes it."""
    text = (ROOT / "docs" / "vimqu.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_webhook" in block]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify_webhook"]


# --- one task, five servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(service) -> VimquClient:
    return new_account(service, unique("e2e"))


@pytest.fixture(scope="module")
def storages(client, ftp_storage_server, s3_server, azure_server, sftp_storage_server, gcs_server) -> dict:
    """The five servers registered over the API: driver -> (storage id, server)."""
    servers = {"ftp": ftp_storage_server, "s3": s3_server, "azure": azure_server, "sftp": sftp_storage_server,
               "gcs": gcs_server}
    return {driver: (client.storage(server.storage(f"e2e {driver}")), server) for driver, server in servers.items()}


@pytest.fixture(scope="module")
def task(client, storages, clip, receiver) -> dict[str, Any]:  # noqa: F811 (fixture)
    """The task, created with per-output webhooks and waited for: its create answer, its
    final result object, its outputs by type, the webhook path."""
    tag = uuid.uuid4().hex[:8]
    ftp_id, ftp = storages["ftp"]
    (ftp.root / "inputs").mkdir(exist_ok=True)
    (ftp.root / "inputs" / f"{tag}.mp4").write_bytes(clip.read_bytes())
    ladder = {"variants": ["240p", "360p", {"height": 180, "video_bitrate": 250}], "segment_duration": SEGMENT,
              "audio_bitrate": 96}
    hook = f"/e2e-{tag}"
    body = {
        "input": {"source_type": "storage", "storage_id": ftp_id, "path": f"/inputs/{tag}.mp4"},
        "outputs": [
            {"storage_id": storages["s3"][0], "target_path": f"/e2e/{tag}/hls", "type": "hls",
             "type_specific_config": ladder, "reference_id": "hls-ref"},
            {"storage_id": storages["azure"][0], "target_path": f"/e2e/{tag}/dash", "type": "dash",
             "type_specific_config": ladder, "reference_id": "dash-ref"},
            {"storage_id": storages["sftp"][0], "target_path": f"/e2e/{tag}/thumbs", "type": "thumbnail",
             "type_specific_config": {"count": 4, "width": 320, "sprite": True}},
            {"storage_id": storages["gcs"][0], "target_path": f"/e2e/{tag}/video", "type": "video",
             "type_specific_config": {"height": 360}},
        ],
        "webhook_url": receiver.url(hook),
        "webhook_per_output": True,
    }
    started = time.monotonic()
    created = client.post("/api/task", body)
    assert created.status_code == 201, created.text
    final = wait_ended(client, created.json()["data"]["id"])
    print(f"\nREST task create -> completed: {time.monotonic() - started:.1f} s")
    return {"created": created.json()["data"], "final": final, "hook": hook,
            "outputs": {o["type"]: o for o in final["outputs"]}}


def test_the_task_completes_with_every_output(task, storages):
    created, final = task["created"], task["final"]
    assert created["status"] == "active" and final["id"] == created["id"]
    assert final["status"] == "completed" and "message" not in final, final
    assert [o["id"] for o in final["outputs"]] == [o["id"] for o in created["outputs"]]
    for output, driver in zip(final["outputs"], ("s3", "azure", "sftp", "gcs")):
        assert output["status"] == "completed" and output["files"], output
        assert output["storage"] == {"id": storages[driver][0], "name": f"e2e {driver}", "driver": driver}
        assert all(f["path"].startswith(output["target_path"] + "/") for f in output["files"])
    assert task["outputs"]["hls"]["reference_id"] == "hls-ref"


def test_every_listed_file_is_on_its_server_and_nothing_else(task, storages):
    for kind, driver in (("hls", "s3"), ("dash", "azure"), ("thumbnail", "sftp"), ("video", "gcs")):
        output = task["outputs"][kind]
        listed = {f["path"] for f in output["files"]}
        assert server_files(storages[driver][1], output["target_path"]) == listed, (kind, driver)


def test_hls_and_dash_play_with_aligned_segments_on_every_rung(task, storages, tmp_path):
    hls, dash = task["outputs"]["hls"], task["outputs"]["dash"]
    hls_dir = download(storages["s3"][1], hls["files"], hls["target_path"], tmp_path / "hls")
    dash_dir = download(storages["azure"][1], dash["files"], dash["target_path"], tmp_path / "dash")
    for manifest in (hls_dir / pkg.MASTER, dash_dir / pkg.MPD):
        streams = ffprobe_json("-show_entries", "stream=codec_type,codec_name,width,height", str(manifest))["streams"]
        assert {(s["width"], s["height"]) for s in streams if s["codec_type"] == "video"} == set(RUNGS.values())
        assert any(s["codec_name"] == "aac" for s in streams), manifest
    segments = int(DURATION / SEGMENT)
    for folder in (hls_dir, dash_dir):
        for rung in RUNGS:  # every segment of every rung decodes to one segment's worth of frames
            frames = [decoded_frames(folder / rung, pkg.SEGMENT.format(i)) for i in range(1, segments + 1)]
            assert frames == [SEGMENT * FPS] * segments, (folder.name, rung, frames)
        times = {rung: key_times(folder / rung) for rung in RUNGS}
        assert len({tuple(t) for t in times.values()}) == 1, times  # all rungs share their keyframes
        assert times["360p"] == [i * SEGMENT for i in range(segments)], times
    for playlist in (hls_dir / rung / "index.m3u8" for rung in RUNGS):
        extinf = extinf_durations(playlist)
        assert all(abs(d - SEGMENT) <= 0.1 for d in extinf[:-1]) and abs(sum(extinf) - DURATION) < 0.1, extinf
    for rep, durations in mpd_segment_durations(dash_dir / pkg.MPD).items():
        assert all(abs(d - SEGMENT) <= 0.1 for d in durations[:-1]), (rep, durations)


def test_thumbnails_and_the_mp4(task, storages, tmp_path):
    thumbs, video = task["outputs"]["thumbnail"], task["outputs"]["video"]
    names = sorted(posixpath.basename(f["path"]) for f in thumbs["files"])
    assert names == ["sprite.jpg", "sprite.vtt", *(f"thumb_{i:05d}.jpg" for i in range(1, 5))]
    local = download(storages["sftp"][1], thumbs["files"], thumbs["target_path"], tmp_path / "thumbs")
    vtt = (local / "sprite.vtt").read_text()
    assert vtt.startswith("WEBVTT") and vtt.count("sprite.jpg#xywh=") == 4
    mp4 = download(storages["gcs"][1], video["files"], video["target_path"], tmp_path / "video")
    [path] = list(mp4.glob("*.mp4"))
    info = ffprobe_json("-show_entries", "stream=codec_name,width,height:format=duration", str(path))
    assert {(s["codec_name"], s.get("width"), s.get("height")) for s in info["streams"]} == {
        ("h264", 640, 360), ("aac", None, None)}
    assert abs(float(info["format"]["duration"]) - DURATION) < 0.2


def test_a_signed_webhook_per_output_then_the_final_one(task, client, receiver):  # noqa: F811 (fixture)
    secret = client.credentials["webhook_secret"]
    received = [receiver.wait(task["hook"], 30) for _ in range(5)]
    payloads = [verify_signature(body, headers, secret) for headers, body in received]
    readme = readme_verifier()  # the docs' standard-library receiver agrees
    assert [readme(body, headers, secret) for headers, body in received] == payloads
    with pytest.raises(ValueError, match="bad signature"):
        readme(received[0][1].replace(b"completed", b"failed"), received[0][0], secret)
    assert len({headers["webhook-id"] for headers, _ in received}) == 5
    *per_output, final = payloads
    assert "output_id" not in final and final["data"] == task["final"]
    ids = [o["id"] for o in task["final"]["outputs"]]
    assert sorted(p["output_id"] for p in per_output) == sorted(ids)
    for payload in per_output:
        data = payload["data"]
        assert data["id"] == task["final"]["id"] and data["status"] == "processing"
        ended = next(o for o in data["outputs"] if o["id"] == payload["output_id"])
        assert ended["status"] == "completed" and ended["files"], ended


# --- a storage that goes down -------------------------------------------------------------------


def test_a_storage_that_goes_down_mid_task_fails_only_its_output(service, media, s3_server, clip, tmp_path):
    client = new_account(service, unique("down"))
    s3 = client.storage(s3_server.storage("down s3"))
    tag = uuid.uuid4().hex[:8]
    (media.directory / f"{tag}.mp4").write_bytes(clip.read_bytes())
    with ftp_server(tmp_path / "ftp") as details:
        doomed = client.storage(details.storage("doomed ftp"))
        created = client.post("/api/task", {
            "input": {"source_type": "url", "path": f"{media.base}/{tag}.mp4"},
            "outputs": [{"storage_id": doomed, "target_path": "/videos", "type": "video",
                         "type_specific_config": {"height": 180}},
                        {"storage_id": s3, "target_path": f"/down/{tag}", "type": "thumbnail",
                         "type_specific_config": {"times": [1, 3]}}]})
        assert created.status_code == 201, created.text
        task_id = created.json()["data"]["id"]
        wait_until(lambda: client.get(f"/api/task/{task_id}").json()["data"]["status"] != "active", 60,
                   "task started", every=0.2)
    # the FTP server is stopped while the task runs: the video's upload fails, the thumbnails go on
    final = wait_ended(client, task_id)
    video, thumbs = final["outputs"]
    assert thumbs["status"] == "completed" and len(thumbs["files"]) == 2, thumbs
    assert video["status"] == "failed" and video["files"] == [], video
    assert "doomed ftp" in video["message"] and "cannot connect" in video["message"], video["message"]
    assert final["status"] == "failed" and video["id"] in final["message"] and "doomed ftp" in final["message"]
    assert not list((tmp_path / "ftp").rglob("*.mp4")), "nothing half-uploaded"
    assert server_files(s3_server, f"/down/{tag}") == {f["path"] for f in thumbs["files"]}


# --- seed 003's example requests, as the seed writes them ---------------------------------------
# Only the host and the registered storage ids are ours; ``//...`` stands for what each
# example leaves out, and the API reads these comments (and the trailing commas they leave).

SEED_HOST = "https://vimqu.com"
SEED_TASK_SERVICE = """POST https://vimqu.com/api/task
{
"input": {
//...
//...
},
"outputs": [
{
//...
//...
},
{
//...
//...
},
]
}"""
SEED_INPUT = """POST https://vimqu.com/api/task
{
"input": {
"source_type": "url",
"path": "https://<your_video_url>.mp4"
},
"outputs": [
{
//...
},
{
//...
}
]
}"""
SEED_STORAGES = """POST https://vimqu.com/api/task
{
"input": {
"source_type": "storage",
"storage_id": "<your_ftp_storage_id>",
"path": "/itx_case_4k.webm"
},
"outputs": [
{
"storage_id": "<your_s3_storage_id>",
"target_path" : "/outputs/hls",
//...
},
{
"storage_id": "<your_azure_storage_id>",
"target_path" : "/outputs/mpeg_dash",
//...
}
]
}"""
SEED_OUTPUT_TYPES = """POST https://vimqu.com/api/task
{
"input": {
"source_type": "storage",
"storage_id": "<your_ftp_storage_id>",
"path": "/itx_case_4k.webm"
},
"outputs": [
{
"storage_id": "<your_s3_storage_id>",
"target_path" : "/outputs/thumbnail",
"type": "thumbnail",
"type_specific_config" : {
//...
}
//...
},
{
"storage_id": "<your_azure_storage_id>",
"target_path" : "/outputs/hls",
"type": "hls",
"type_specific_config" : {
//...
}
//...
}
]
}"""


@pytest.fixture(scope="module")
def seed(service, media, clip, ftp_storage_server, s3_server, azure_server):
    """An account with the seed's three storages (FTP, S3, Azure), ``/itx_case_4k.webm`` on
    the FTP server and an mp4 behind ``https://<your_video_url>.mp4``; ``send(example)``
    sends an example with our host and ids and returns the response."""
    client = new_account(service, unique("seed"))
    ids = {f"<your_{driver}_storage_id>": client.storage(server.storage(f"seed {driver}"))
           for driver, server in (("ftp", ftp_storage_server), ("s3", s3_server), ("azure", azure_server))}
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}:d=4", "-f", "lavfi",
        "-i", "sine=f=330:d=4:r=48000", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-b:v", "500k", "-c:a", "libopus", str(ftp_storage_server.root / "itx_case_4k.webm"))
    (media.directory / "seed-input.mp4").write_bytes(clip.read_bytes())
    substitutions = {**ids, "https://<your_video_url>": f"{media.base}/seed-input"}

    def send(example: str):
        request, _, body = example.partition("\n")
        method, url = request.split(" ")
        assert url.startswith(SEED_HOST)
        for placeholder, value in substitutions.items():
            body = body.replace(placeholder, value)
        return client.request(method, url.replace(SEED_HOST, service.api), content=body.encode(),
                              headers={"Content-Type": "application/json"})

    return client, ids, send


def test_seed_task_service_example_is_422_naming_every_missing_field(seed):
    _, _, send = seed
    response = send(SEED_TASK_SERVICE)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert {"input.source_type", "input.path", *(f"outputs.{i}.{field}" for i in (0, 1)
                                                  for field in ("storage_id", "target_path", "type"))} <= set(errors)


def test_seed_input_example_is_accepted_and_its_placeholder_outputs_named(seed):
    _, _, send = seed
    response = send(SEED_INPUT)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert not [name for name in errors if not name.startswith("outputs.")], errors  # the input is fine
    assert {f"outputs.{i}.{field}" for i in (0, 1) for field in ("storage_id", "target_path", "type")} \
        <= set(errors)


def test_seed_storages_example_needs_only_the_output_types(seed):
    _, _, send = seed
    response = send(SEED_STORAGES)
    assert response.status_code == 422, response.text
    assert set(response.json()["errors"]) == {"outputs.0.type", "outputs.1.type"}
    assert "type" in response.json()["message"]


def test_seed_output_types_example_completes(seed, s3_server, azure_server):
    client, ids, send = seed
    response = send(SEED_OUTPUT_TYPES)
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert [(o["storage"]["id"], o["target_path"], o["type"]) for o in created["outputs"]] == [
        (ids["<your_s3_storage_id>"], "/outputs/thumbnail", "thumbnail"),
        (ids["<your_azure_storage_id>"], "/outputs/hls", "hls")]
    final = wait_ended(client, created["id"])
    assert final["status"] == "completed", final
    thumbnail, hls = final["outputs"]
    assert [posixpath.basename(f["path"]) for f in thumbnail["files"]] == ["thumb_00001.jpg"]
    assert "720p" in hls["message"] and "1080p" in hls["message"]  # above the 360p input: dropped
    for server, output in ((s3_server, thumbnail), (azure_server, hls)):
        assert {f["path"] for f in output["files"]} <= server_files(server, output["target_path"])
    assert "/outputs/hls/master.m3u8" in {f["path"] for f in hls["files"]}
