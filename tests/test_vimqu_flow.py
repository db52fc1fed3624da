"""The VimQu task flow (``vimqu.task``, flows/outputs/task.py) end to end on the running
service with real storage servers on 127.0.0.1: the input read from FTP (or an http URL),
outputs uploaded to S3 (HLS), Azure (DASH), SFTP (thumbnails + sprite/VTT) and GCS (an mp4);
one subflow per output; a storage that goes down fails only its output. Runs are created from
the ``vimqu.task`` deployment through the Prefect client, as the VimQu API does."""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
import time
import uuid
from pathlib import Path

import pytest

from tests.media_tools import extinf_durations, ffprobe_json, mpd_segment_durations, run
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import ValidationError

from blocks.registered import RegisteredStorage, save_registered
from flows.contract.runs import read_runs, run_tags
from flows.contract.vimqu import vimqu_task as render
from flows.outputs import package as pkg
from flows.outputs.task import TASK_NAME, VimquTaskParams, upload_rank
from flows.params import parameter_errors
from tests.storage_servers import ftp_server

ACCOUNT = "local"
FPS = 30
DURATION = 6
SEGMENT = 2.0
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
RUN_TIMEOUT = 150


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """6 s of 640x360 30 fps testsrc2, H.264 + stereo AAC."""
    path = tmp_path_factory.mktemp("vimqu-input") / "clip.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:d={DURATION}:r=48000", "-ac", "2", "-c:v", "libx264",
        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path))
    return path


@pytest.fixture
def prefect_api(service):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        yield


async def register(payload: dict) -> RegisteredStorage:
    storage = RegisteredStorage.from_api(payload, account=ACCOUNT)
    await save_registered(storage)
    return storage


def output(storage: RegisteredStorage, target: str, type_: str, config: dict, reference: str | None = None) -> dict:
    """An output as the API passes it: its id and its storage's snapshot added."""
    return {"id": str(uuid.uuid4()), "storage_id": storage.storage_id,
            "storage": {"id": storage.storage_id, "name": storage.name, "driver": storage.driver},
            "target_path": target, "type": type_, "type_specific_config": config, "reference_id": reference}


async def create_task(params: dict) -> uuid.UUID:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{TASK_NAME}/{TASK_NAME}")
        flow_run = await client.create_flow_run_from_deployment(
            deployment.id, parameters={"params": params, "account": ACCOUNT},
            tags=run_tags(TASK_NAME, ACCOUNT, "vimqu"))
    return flow_run.id


async def wait_final(run_id: uuid.UUID, timeout: float = RUN_TIMEOUT):
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flow_run = await client.read_flow_run(run_id)
            if flow_run.state and flow_run.state.is_final():
                return (await read_runs(client, [run_id]))[run_id]
            await asyncio.sleep(0.25)
    raise AssertionError(f"task {run_id} did not end within {timeout} s")


async def wait_running(run_id: uuid.UUID, timeout: float = 60) -> None:
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = (await client.read_flow_run(run_id)).state
            if state and (state.is_running() or state.is_final()):
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"task {run_id} did not start within {timeout} s")


async def subflow_runs(run_id: uuid.UUID) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))


async def stored_files(storage: RegisteredStorage, target: str) -> set[str]:
    """Every file under ``target`` on the storage's server, as storage paths."""
    base = storage.object_path(target)

    def find() -> list[str]:
        fs = storage.fs
        fs.invalidate_cache()
        return fs.find(base)

    found = await asyncio.to_thread(find)
    root = storage.object_path("/").rstrip("/")
    return {"/" + path.strip("/")[len(root.strip("/")):].lstrip("/") for path in found}


async def download(storage: RegisteredStorage, files: list[dict], target: str, into: Path) -> Path:
    """Download the files of an output keeping their layout under ``target``."""
    for entry in files:
        local = into / posixpath.relpath(entry["path"], target)
        local.parent.mkdir(parents=True, exist_ok=True)
        await storage.get(entry["path"], local)
    return into


def key_times(folder: Path) -> list[float]:
    joined = folder / "joined.mp4"
    joined.write_bytes(b"".join(p.read_bytes() for p in [folder / pkg.INIT, *sorted(folder.glob("seg_*.m4s"))]))
    packets = ffprobe_json("-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", str(joined))["packets"]
    joined.unlink()
    return sorted(round(float(p["pts_time"]), 3) for p in packets if "K" in p["flags"])


def decoded_frames(folder: Path, segment: str) -> int:
    joined = folder / "check.mp4"
    joined.write_bytes((folder / pkg.INIT).read_bytes() + (folder / segment).read_bytes())
    streams = ffprobe_json("-count_frames", "-show_entries", "stream=nb_read_frames", str(joined))["streams"]
    joined.unlink()
    return int(streams[0]["nb_read_frames"])


# --- parameters ---------------------------------------------------------------------------------


def test_parameter_errors_name_each_field():
    with pytest.raises(ValidationError) as caught:
        VimquTaskParams.model_validate({
            "input": {"source_type": "storage", "path": "inputs/movie.mp4"},
            "outputs": [
                {"storage_id": "s", "target_path": "/o", "type": "hls",
                 "type_specific_config": {"variants": ["360p", "999p"]}},
                {"storage_id": "s", "target_path": "o", "type": "thumbnail",
                 "type_specific_config": {"count": 2, "times": [1]}},
                {"storage_id": "s", "target_path": "/o", "type": "gif"},
            ],
            "webhook_url": "ftp://example.com/hook"})
    errors = parameter_errors(caught.value)
    assert set(errors) == {"input.storage_id", "input.path", "outputs.0.type_specific_config.variants.1",
                           "outputs.1.target_path", "outputs.1.type_specific_config.count", "outputs.2.type",
                           "webhook_url"}, errors
    assert "999p" in errors["outputs.0.type_specific_config.variants.1"][0]
    params = VimquTaskParams.model_validate({
        "input": {"source_type": "url", "path": "https://example.com/a.mp4"},
        "outputs": [{"storage_id": "s", "target_path": "/out/dash/", "type": "mpeg_dash"}]})
    assert (params.outputs[0].type, params.outputs[0].target_path) == ("dash", "/out/dash")
    assert params.outputs[0].config.variants == ["360p", "720p", "1080p"]


def test_manifests_are_uploaded_after_the_files_they_name():
    files = ["master.m3u8", "360p/index.m3u8", "360p/init.mp4", "360p/seg_00001.m4s", "manifest.mpd",
             "sprite.vtt", "sprite.jpg", "thumb_00001.jpg"]
    assert sorted(files, key=upload_rank) == ["360p/init.mp4", "360p/seg_00001.m4s", "sprite.jpg",
                                              "thumb_00001.jpg", "360p/index.m3u8", "master.m3u8",
                                              "manifest.mpd", "sprite.vtt"]


# --- one input, four outputs on four servers ------------------------------------------------------


async def test_one_input_four_outputs_on_four_storages(
        service, prefect_api, clip, s3_server, azure_server, sftp_storage_server, gcs_server, ftp_storage_server,
        tmp_path):
    ftp = await register(ftp_storage_server.storage("inputs ftp"))
    s3 = await register(s3_server.storage("hls s3"))
    azure = await register(azure_server.storage("dash azure"))
    sftp = await register(sftp_storage_server.storage("thumbs sftp"))
    gcs = await register(gcs_server.storage("mp4 gcs"))
    await ftp.put(clip, "/inputs/clip.mp4")
    ladder = {"variants": ["240p", "360p", "720p"], "segment_duration": SEGMENT}
    tag = uuid.uuid4().hex[:8]
    outputs = [
        output(s3, f"/outputs/{tag}/hls", "hls", ladder, reference="hls-ref"),
        output(azure, f"/outputs/{tag}/dash", "mpeg_dash", ladder),
        output(sftp, f"/outputs/{tag}/thumbs", "thumbnail", {"count": 4, "width": 320, "sprite": True}),
        output(gcs, f"/outputs/{tag}/video", "video", {"height": 360}),
    ]
    params = {"input": {"source_type": "storage", "storage_id": ftp.storage_id, "path": "/inputs/clip.mp4"},
              "outputs": outputs}
    started = time.monotonic()
    run_id = await create_task(params)
    view = await wait_final(run_id)
    elapsed = time.monotonic() - started
    assert view.run.state.is_completed(), view.run.state
    print(f"\ntask create -> completed: {elapsed:.1f} s")

    # the result artifact, in the contract's shape, and the rendered result object
    raw = view.result
    assert set(raw) == {"outputs"} and set(raw["outputs"]) == {o["id"] for o in outputs}
    data = render(view)
    assert data["status"] == "completed" and data["id"] == str(run_id) and UTC_TIME.match(data["created_at"])
    assert "message" not in data
    entries = {entry["id"]: entry for entry in data["outputs"]}
    for o in outputs:
        entry = entries[o["id"]]
        assert entry["status"] == "completed", entry
        assert entry["storage"] == o["storage"] and entry["target_path"] == o["target_path"]
        assert entry["reference_id"] == o["reference_id"]
        assert entry["files"] and all(UTC_TIME.match(f["uploaded_at"]) for f in entry["files"])
        assert all(f["path"].startswith(o["target_path"] + "/") for f in entry["files"])
    assert view.progress == 100

    # one subflow run per output, named after its type and storage, each Completed
    children = await subflow_runs(run_id)
    assert sorted(c.name for c in children) == sorted(
        ["hls → s3 'hls s3'", "dash → azure 'dash azure'", "thumbnail → sftp 'thumbs sftp'",
         "video → gcs 'mp4 gcs'"])
    assert all(c.state.is_completed() for c in children)
    assert not any(t.startswith(("task:", "account:")) for c in children for t in c.tags), [c.tags for c in children]

    # every listed file is on its server, and nothing else (no half-uploaded temporary)
    hls, dash, thumbs, video = (entries[o["id"]] for o in outputs)
    for storage, entry in ((s3, hls), (azure, dash), (sftp, thumbs), (gcs, video)):
        assert await stored_files(storage, entry["target_path"]) == {f["path"] for f in entry["files"]}, \
            storage.driver

    # hls: 720p is above the 360p input: dropped and noted
    assert "720p" in hls["message"] and "never upscaled" in hls["message"]
    assert not [f for f in hls["files"] if "/720p/" in f["path"]]
    hls_dir = await download(s3, hls["files"], hls["target_path"], tmp_path / "hls")
    dash_dir = await download(azure, dash["files"], dash["target_path"], tmp_path / "dash")
    for manifest in (hls_dir / pkg.MASTER, dash_dir / pkg.MPD):
        streams = ffprobe_json("-show_entries", "stream=codec_type,codec_name,width,height", str(manifest))["streams"]
        assert {(s["width"], s["height"]) for s in streams if s["codec_type"] == "video"} == {(426, 240), (640, 360)}
        assert any(s["codec_name"] == "aac" for s in streams), manifest
    for rung in ("240p", "360p"):  # a segment of every rung decodes: one segment's worth of frames
        assert decoded_frames(hls_dir / rung, "seg_00002.m4s") == SEGMENT * FPS
    for playlist in hls_dir.glob("*/index.m3u8"):
        extinf = extinf_durations(playlist)
        assert all(abs(d - SEGMENT) <= 0.1 for d in extinf[:-1]) and abs(sum(extinf) - DURATION) < 0.1, extinf
    for rep, durations in mpd_segment_durations(dash_dir / pkg.MPD).items():
        assert all(abs(d - SEGMENT) <= 0.1 for d in durations[:-1]), (rep, durations)
    times = {rung: key_times(dash_dir / rung) for rung in ("240p", "360p")}
    assert times["240p"] == times["360p"] and len(times["240p"]) == DURATION / SEGMENT, times
    # hls and dash asked with the same ladder: one encode, the same segment files on both servers
    for name in ("360p/seg_00001.m4s", "240p/init.mp4"):
        assert hashlib.sha256((hls_dir / name).read_bytes()).digest() == \
               hashlib.sha256((dash_dir / name).read_bytes()).digest(), name

    # thumbnails on SFTP: 4 thumbs, the sprite and its WebVTT index
    names = sorted(posixpath.basename(f["path"]) for f in thumbs["files"])
    assert names == ["sprite.jpg", "sprite.vtt", *(f"thumb_{i:05d}.jpg" for i in range(1, 5))]
    vtt = (sftp_storage_server.root / thumbs["target_path"].lstrip("/") / "sprite.vtt").read_text()
    assert vtt.startswith("WEBVTT") and vtt.count("sprite.jpg#xywh=") == 4

    # the mp4 on GCS
    mp4 = tmp_path / "video.mp4"
    await gcs.get(video["files"][0]["path"], mp4)
    info = ffprobe_json("-show_entries", "stream=codec_name,width,height:format=duration", str(mp4))
    assert {(s["codec_name"], s.get("width"), s.get("height")) for s in info["streams"]} == {
        ("h264", 640, 360), ("aac", None, None)}
    assert abs(float(info["format"]["duration"]) - DURATION) < 0.2


# --- failures -----------------------------------------------------------------------------------


async def test_a_storage_that_goes_down_fails_only_its_output(service, prefect_api, media, clip, s3_server,
                                                             tmp_path):
    (media.directory / "down.mp4").write_bytes(clip.read_bytes())
    s3 = await register(s3_server.storage("thumbs s3"))
    with ftp_server(tmp_path / "ftp") as details:
        doomed = await register(details.storage("doomed ftp"))
        outputs = [output(doomed, "/videos", "video", {"height": 180, "audio_codec": "none"}),
                   output(s3, f"/outputs/{uuid.uuid4().hex[:8]}", "thumbnail", {"times": [1, 3]})]
        run_id = await create_task({"input": {"source_type": "url", "path": f"{media.base}/down.mp4"},
                                    "outputs": outputs})
        await wait_running(run_id)
    # the FTP server is stopped: the video's upload fails, the thumbnails go on
    view = await wait_final(run_id)
    assert view.run.state.is_completed(), view.run.state
    data = render(view)
    video, thumbs = data["outputs"]
    assert thumbs["status"] == "completed" and len(thumbs["files"]) == 2
    assert video["status"] == "failed" and video["files"] == []
    assert "doomed ftp" in video["message"] and "cannot connect" in video["message"], video["message"]
    assert data["status"] == "failed" and "doomed ftp" in data["message"] and video["id"] in data["message"]
    assert not list((tmp_path / "ftp").rglob("*.mp4")), "nothing half-uploaded"
    states = {c.name: c.state.type.value for c in await subflow_runs(run_id)}
    assert states == {"video → ftp 'doomed ftp'": "FAILED", "thumbnail → s3 'thumbs s3'": "COMPLETED"}


async def test_the_task_fails_when_the_input_or_every_output_fails(service, prefect_api, media,
                                                                   ftp_storage_server, s3_server):
    ftp = await register(ftp_storage_server.storage("inputs ftp"))
    s3 = await register(s3_server.storage("s3"))
    missing = {"input": {"source_type": "storage", "storage_id": ftp.storage_id, "path": "/inputs/none.mp4"},
               "outputs": [output(s3, "/never", "thumbnail", {})]}
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=2", "-c:a", "aac",
        str(media.directory / "audio-only.m4a"))
    unknown = output(s3, "/never", "thumbnail", {})
    unknown["storage_id"] = str(uuid.uuid4())
    all_fail = {"input": {"source_type": "url", "path": f"{media.base}/audio-only.m4a"},
                "outputs": [unknown, output(s3, "/never", "video", {})]}
    run_ids = [await create_task(p) for p in (missing, all_fail)]
    views = await asyncio.gather(*(wait_final(run_id) for run_id in run_ids))

    data = render(views[0])
    assert views[0].run.state.is_failed() and data["status"] == "failed"
    assert data["message"].startswith("input: ") and "none.mp4" in data["message"], data["message"]
    assert data["outputs"][0]["status"] == "failed"

    data = render(views[1])
    assert views[1].run.state.is_failed() and data["status"] == "failed"
    first, second = data["outputs"]
    assert "not registered" in first["message"]
    assert "no video stream" in second["message"] and "'s3'" in second["message"], second["message"]
    assert first["id"] in data["message"] and second["id"] in data["message"]


async def test_cancelling_a_task_stops_its_outputs(service, prefect_api, media, s3_server, tmp_path):
    from prefect.states import Cancelling

    long_clip = media.directory / "long.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}:d=40",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(long_clip))
    s3 = await register(s3_server.storage("cancelled s3"))
    run_id = await create_task({"input": {"source_type": "url", "path": f"{media.base}/long.mp4"},
                                "outputs": [output(s3, "/cancelled", "hls", {"variants": ["240p", "360p"]}),
                                            output(s3, "/cancelled", "video", {"codec": "h265"})]})
    deadline = time.monotonic() + 60
    while not [c for c in await subflow_runs(run_id) if c.state and c.state.is_running()]:
        assert time.monotonic() < deadline, "no output started"
        await asyncio.sleep(0.1)
    async with get_client() as client:
        await client.set_flow_run_state(run_id, Cancelling(), force=True)
    view = await wait_final(run_id, timeout=30)
    assert view.run.state.is_cancelled(), view.run.state
    assert render(view)["status"] == "canceled"
    children = await subflow_runs(run_id)
    assert children and all(c.state.is_final() and not c.state.is_completed() for c in children), \
        [(c.name, c.state) for c in children]
    assert not any(t.startswith("task:") for c in children for t in c.tags), "outputs are not listed as tasks"
