"""video.upload.youtube / .vimeo / .fb and the youtube storage, against the local fakes of
the three services (tests/fake_services.py): the uploaders' protocols and resume (no byte
range sent twice once the server confirmed it), their errors, and the tasks through
/v2/create and /v1/create with tokens kept out of the run's parameters, logs and statuses."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import facebook, vimeo, youtube
from blocks.uploads import RetryPolicy, UploadError
from flows.contract.keys import run_id_for
from flows.contract.secrets import PREFIX
from tests.fake_services import (
    FACEBOOK_CHUNK, FACEBOOK_SECRET, FACEBOOK_TOKEN, VIMEO_TOKEN, YOUTUBE_KEY, YOUTUBE_TOKEN,
)

CHUNK = 256 * 1024
POLICY = RetryPolicy(retries=3, delay=0.01, timeout=30)


@pytest.fixture(autouse=True)
def fresh(fakes):
    fakes.reset()


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 4 s H.264 video of ~600 KB (3 YouTube chunks of 256 KiB, 3 Facebook transfers)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
                    "-f", "lavfi", "-i", "anoisesrc=d=4:a=0.1", "-c:v", "libx264", "-preset", "ultrafast",
                    "-qp", "12", "-c:a", "aac", "-shortest", str(path)], check=True)
    size = path.stat().st_size
    assert 2 * CHUNK < size < 3 * CHUNK or 2 * CHUNK < size < 6 * CHUNK, size
    return path


def _clean(upload) -> None:
    """The server got the whole file once: no chunk started before what it had confirmed."""
    assert upload.resent == []


# -- YouTube ---------------------------------------------------------------------------

def _yt(fakes, clip, **kwargs):
    credentials = youtube.YouTubeCredentials(access_token=kwargs.pop("token", YOUTUBE_TOKEN),
                                             developer_key=YOUTUBE_KEY)
    video = youtube.YouTubeVideo(title="Clip", description="d", tags=["a", "b"], privacy_status="unlisted")
    return youtube.upload_video.fn(credentials, clip, video, content_type="video/mp4",
                                   api_url=f"{fakes.url}/youtube", chunk_bytes=CHUNK, policy=POLICY, **kwargs)


async def test_youtube_resumable_upload_in_chunks(fakes, clip):
    seen = []
    video_id = await _yt(fakes, clip, progress=lambda done, total: seen.append((done, total)))
    upload = fakes.youtube.upload()
    assert video_id == f"yt{upload.id[:8]}" and upload.done
    assert bytes(upload.data) == clip.read_bytes()
    size = clip.stat().st_size
    assert [start for start, _ in upload.chunks] == list(range(0, size, CHUNK))
    assert upload.metadata["snippet"] == {"title": "Clip", "description": "d", "categoryId": "22", "tags": ["a", "b"]}
    assert upload.metadata["status"] == {"privacyStatus": "unlisted"}
    assert upload.metadata["key"] == YOUTUBE_KEY and upload.metadata["content_type"] == "video/mp4"
    assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    _clean(upload)


@pytest.mark.parametrize("failures", [["drop"], ["503"], ["429", "drop", "503"]])
async def test_youtube_resumes_after_failures_without_resending(fakes, clip, failures):
    fakes.youtube.failures = [None, *failures]  # the first chunk goes through
    await _yt(fakes, clip)
    upload = fakes.youtube.upload()
    assert bytes(upload.data) == clip.read_bytes()
    status_queries = [r for r in fakes.youtube.requests if r["headers"].get("Content-Range", "").startswith("bytes */")]
    assert len(status_queries) == len(failures)
    _clean(upload)
    if failures == ["drop"]:  # half the dropped chunk was kept: the next one starts mid-chunk
        assert CHUNK + CHUNK // 2 in [start for start, _ in upload.chunks]


async def test_youtube_308_without_range_starts_again_at_zero(fakes, clip):
    fakes.youtube.failures = [None, "lose"]
    await _yt(fakes, clip)
    upload = fakes.youtube.upload()
    assert bytes(upload.data) == clip.read_bytes()
    assert [start for start, _ in upload.chunks][:3] == [0, CHUNK, 0]
    _clean(upload)


@pytest.mark.parametrize("failure, message", [
    ("401", "YouTube refused the access token: it is invalid or expired (HTTP 401)"),
    ("quota", "YouTube quota exceeded while starting the upload (HTTP 403) (quotaExceeded"),
    ("upload_limit", "YouTube quota exceeded while starting the upload (HTTP 400) (uploadLimitExceeded"),
])
async def test_youtube_errors_are_not_retried(fakes, clip, failure, message):
    fakes.youtube.start_failures = [failure]
    with pytest.raises(UploadError) as info:
        await _yt(fakes, clip)
    assert str(info.value).startswith(message) and not info.value.transient
    assert len(fakes.youtube.requests) == 1


async def test_youtube_gives_up_after_its_retries(fakes, clip):
    fakes.youtube.failures = ["503"] * 10
    with pytest.raises(UploadError) as info:
        await _yt(fakes, clip)
    assert info.value.transient and "after 3 retries" in str(info.value)


# -- Vimeo -------------------------------------------------------------------------------

def _vimeo(fakes, clip, **kwargs):
    credentials = vimeo.VimeoCredentials(oauth2_token=kwargs.pop("token", VIMEO_TOKEN))
    return vimeo.upload_video.fn(credentials, clip, title="Clip", description="about", api_url=f"{fakes.url}/vimeo",
                                 chunk_bytes=CHUNK, policy=POLICY, **kwargs)


@pytest.mark.parametrize("failures", [[], ["drop"], ["half"], ["503", "drop", "half"]])
async def test_vimeo_tus_upload_resumes(fakes, clip, failures):
    fakes.vimeo.failures = [None, *failures]
    fakes.vimeo.free_space = 5 * 10**6
    result = await _vimeo(fakes, clip)
    upload = fakes.vimeo.upload()
    size = clip.stat().st_size
    assert bytes(upload.data) == clip.read_bytes() and upload.done
    assert result == {"uri": f"/videos/{upload.id}", "link": f"https://vimeo.com/{upload.id}",
                      "uploaded_file_size": size, "free_space": 5 * 10**6 - size}
    assert upload.metadata["create"]["upload"] == {"approach": "tus", "size": size}
    assert upload.metadata["patch"] == {"name": "Clip", "description": "about"}
    _clean(upload)


async def test_vimeo_refuses_a_video_larger_than_the_quota(fakes, clip):
    fakes.vimeo.free_space = 1000
    with pytest.raises(UploadError, match="Vimeo upload quota exceeded: the video is .* the account has 1000 free"):
        await _vimeo(fakes, clip)
    assert fakes.vimeo.uploads == {}


async def test_vimeo_invalid_token(fakes, clip):
    with pytest.raises(UploadError, match=r"Vimeo refused the oauth2_token: it is invalid or expired \(HTTP 401\)"):
        await _vimeo(fakes, clip, token="wrong")
    assert len(fakes.vimeo.requests) == 1


# -- Facebook ------------------------------------------------------------------------------

def _fb(fakes, clip, chunk_bytes=CHUNK, **kwargs):
    credentials = facebook.FacebookCredentials(access_token=kwargs.pop("token", FACEBOOK_TOKEN),
                                               app_secret=FACEBOOK_SECRET)
    return facebook.upload_video.fn(credentials, clip, page_id="1234", title="Clip", description="about",
                                    privacy="SELF", no_story=True, graph_url=f"{fakes.url}/facebook",
                                    graph_version="v23.0", chunk_bytes=chunk_bytes, policy=POLICY, **kwargs)


@pytest.mark.parametrize("failures", [[], ["drop"], ["503", "drop"]])
async def test_facebook_resumable_phases(fakes, clip, failures):
    fakes.facebook.failures = [None, *failures]
    video_id = await _fb(fakes, clip)
    upload = fakes.facebook.upload()
    size = clip.stat().st_size
    assert video_id == upload.id and upload.done and bytes(upload.data) == clip.read_bytes()
    starts = [start for start, _ in upload.chunks]
    assert starts == sorted(starts) and sorted(set(starts))[:3] == [0, FACEBOOK_CHUNK, 2 * FACEBOOK_CHUNK]
    assert upload.metadata["start"]["file_size"] == str(size)
    finish = upload.metadata["finish"]
    assert (finish["title"], finish["description"], json.loads(finish["privacy"]), finish["no_story"]) == (
        "Clip", "about", {"value": "SELF"}, "true")
    paths = {r["path"] for r in fakes.facebook.requests}
    assert paths == {"/facebook/v23.0/1234/videos"}
    _clean(upload)


async def test_facebook_small_file_in_one_post(fakes, clip):
    video_id = await _fb(fakes, clip, chunk_bytes=10**7)
    upload = fakes.facebook.upload()
    assert video_id == upload.id and bytes(upload.data) == clip.read_bytes()
    assert upload.metadata["title"] == "Clip" and "privacy" in upload.metadata
    assert len(fakes.facebook.requests) == 1


@pytest.mark.parametrize("failure, message", [
    ("401", "Facebook refused the access token: it is invalid or expired (code 190"),
    ("rate_limit", "Facebook rate limit or quota reached while starting the upload (code 4"),
])
async def test_facebook_errors(fakes, clip, failure, message):
    fakes.facebook.start_failures = [failure]
    with pytest.raises(UploadError) as info:
        await _fb(fakes, clip)
    assert str(info.value).startswith(message) and not info.value.transient
    assert len(fakes.facebook.requests) == 1


def test_appsecret_proof_is_hmac_sha256_of_the_token():
    import hashlib
    import hmac

    fields = facebook.FacebookCredentials(access_token="tok", app_secret="sec").auth_fields()
    assert fields == {"access_token": "tok",
                      "appsecret_proof": hmac.new(b"sec", b"tok", hashlib.sha256).hexdigest()}
    assert facebook.FacebookCredentials(access_token="tok", app_secret="-").auth_fields() == {"access_token": "tok"}


# -- Through the API -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upload_service(service):
    """The session service (conftest points its upload clients at the fakes)."""
    return service


@pytest.fixture(scope="module")
def clip_url(media, clip):
    (media.directory / "clip.mp4").write_bytes(clip.read_bytes())
    return f"{media.base}/clip.mp4"


async def _run_record(service, key: str) -> tuple[dict, str, list]:
    """(the run's parameters, its logs, the names of Secret blocks) read from Prefect."""
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            run = await client.read_flow_run(run_id_for(key))
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            secrets = [d.name for d in await client.read_block_documents_by_type("secret")]
            artifacts = await client.request("POST", "/artifacts/filter", json={
                "artifacts": {"flow_run_id": {"any_": [str(run.id)]}}})
    return run.parameters, "\n".join(log.message for log in logs) + artifacts.text, secrets


def test_youtube_task_through_v2(upload_service, fakes, clip, clip_url):
    fakes.youtube.failures = [None, "drop"]
    status = upload_service.run({"task_name": "video.upload.youtube", "url": clip_url, "access_token": YOUTUBE_TOKEN,
                                 "developer_key": YOUTUBE_KEY, "title": "Clip", "tags": ["x"],
                                 "privacy_status": "private"})
    assert status["status"] == "success", status.get("error")
    upload = fakes.youtube.upload()
    assert status["result"] == {"output": f"https://www.youtube.com/watch?v=yt{upload.id[:8]}", "duration": 4.0}
    assert bytes(upload.data) == clip.read_bytes() and upload.metadata["status"] == {"privacyStatus": "private"}
    _clean(upload)
    parameters, logs, secrets = asyncio.run(_run_record(upload_service, status["key"]))
    dumped = json.dumps(parameters)
    assert YOUTUBE_TOKEN not in dumped and YOUTUBE_KEY not in dumped
    assert parameters["params"]["access_token"] == "**********"
    assert parameters["params"]["secrets"].startswith(PREFIX)
    assert parameters["params"]["secrets"] not in secrets  # deleted when the run ended
    assert YOUTUBE_TOKEN not in logs  # nor in the run's artifacts (result, progress)
    details = upload_service.http.post("/v2/status", json={"secret": upload_service.account["secret"],
                                                           "tasks": [status["key"]], "details": True}).text
    assert YOUTUBE_TOKEN not in details


def test_youtube_invalid_token_is_an_error_status(upload_service, fakes, clip_url):
    status = upload_service.run({"task_name": "video.upload.youtube", "url": clip_url, "access_token": "expired",
                                 "title": "Clip"})
    assert status["status"] == "error"
    assert status["error"].startswith("YouTube refused the access token: it is invalid or expired (HTTP 401)")
    assert "expired" not in json.dumps(asyncio.run(_run_record(upload_service, status["key"]))[0])


def test_vimeo_task_through_v1(upload_service, fakes, clip, clip_url):
    fakes.vimeo.failures = [None, "half"]
    fakes.vimeo.free_space = 10**7
    response = upload_service.http.post("/v1/create", json={
        "secret": upload_service.account["secret"], "block": True,
        "tasks": [{"task_name": "video.upload.vimeo", "url": clip_url, "title": "Clip", "oauth2_token": VIMEO_TOKEN}]})
    assert response.status_code == 200, response.text
    status = response.json()[0]
    assert status["status"] == "success", status.get("error")
    upload = fakes.vimeo.upload()
    size = clip.stat().st_size
    assert status["result"] == {"output": f"https://vimeo.com/{upload.id}", "uploaded_file_size": size,
                                "free_space": 10**7 - size, "duration": 4.0}
    assert bytes(upload.data) == clip.read_bytes()
    _clean(upload)
    assert VIMEO_TOKEN not in json.dumps(asyncio.run(_run_record(upload_service, status["key"]))[0])


def test_vimeo_oauth1_parameters_name_oauth2_token(upload_service, clip_url):
    status = upload_service.run({"task_name": "video.upload.vimeo", "url": clip_url, "consumer_key": "ck",
                                 "consumer_secret": "cs-secret", "access_token_key": "ak",
                                 "access_token_secret": "as-secret"})
    assert status["status"] == "error"
    (message,) = status["error"]["parameters"]["oauth2_token"]
    assert "retired API v2: send oauth2_token" in message
    dumped = json.dumps(asyncio.run(_run_record(upload_service, status["key"]))[0])
    assert "cs-secret" not in dumped and "as-secret" not in dumped


def test_facebook_task_through_v2(upload_service, fakes, clip, clip_url):
    fakes.facebook.failures = [None, "503"]
    status = upload_service.run({"task_name": "video.upload.fb", "url": clip_url, "access_token": FACEBOOK_TOKEN,
                                 "app_secret": FACEBOOK_SECRET, "title": "Clip", "privacy": "AUTO",
                                 "page_id": "42"})
    assert status["status"] == "success", status.get("error")
    upload = fakes.facebook.upload()
    assert status["result"] == {"output": f"https://www.facebook.com/watch/?v={upload.id}", "duration": 4.0}
    assert bytes(upload.data) == clip.read_bytes() and "privacy" not in upload.metadata["finish"]
    _clean(upload)
    parameters = json.dumps(asyncio.run(_run_record(upload_service, status["key"]))[0])
    assert FACEBOOK_TOKEN not in parameters and FACEBOOK_SECRET not in parameters


def test_saved_credentials_block_named_by_a_task(upload_service, fakes, clip, clip_url):
    with temporary_settings({PREFECT_API_URL: upload_service.prefect_api}):
        youtube.YouTubeCredentials(access_token=YOUTUBE_TOKEN).save("my-channel", overwrite=True)
        youtube.YouTubeCredentials(access_token=YOUTUBE_TOKEN, accounts=["someone-else"]).save(
            "not-mine", overwrite=True)
    ok = upload_service.run({"task_name": "video.upload.youtube", "url": clip_url, "credentials": "my-channel",
                             "title": "Saved"})
    assert ok["status"] == "success", ok.get("error")
    refused = upload_service.run({"task_name": "video.upload.youtube", "url": clip_url, "credentials": "not-mine",
                                  "title": "Saved"})
    assert refused["status"] == "error" and "may not use the credentials block 'not-mine'" in refused["error"]


def test_youtube_task_store_uploads_a_video_output(upload_service, fakes, clip_url):
    status = upload_service.run({"task_name": "video.convert", "url": clip_url, "width": 160,
                                 "task_store": {"type": "youtube", "access_token": YOUTUBE_TOKEN, "title": "Converted",
                                                "privacy_status": "unlisted"}})
    assert status["status"] == "success", status.get("error")
    upload = fakes.youtube.upload()
    assert status["result"]["output"] == f"https://www.youtube.com/watch?v=yt{upload.id[:8]}"
    assert upload.done and upload.metadata["snippet"]["title"] == "Converted"
    assert bytes(upload.data)[4:8] == b"ftyp"
    assert YOUTUBE_TOKEN not in json.dumps(asyncio.run(_run_record(upload_service, status["key"]))[0])
