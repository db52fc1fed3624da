"""Upload tasks: ``video.upload.youtube``, ``video.upload.vimeo`` and ``video.upload.fb``
(seed 000, v2 task reference; seeds 001/002 for v1).

Each is a thin flow: fetch the video, probe its duration, upload it with the service's
task from ``blocks/`` (resumable, streamed from the file, progress in the status), answer
the seed's outputs. Tokens come with the task (kept out of the run's parameters by the
API, see ``flows/contract/secrets.py``) or from a saved credentials block named by
``credentials``.
"""


from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from blocks import facebook as facebook_service
from blocks import vimeo as vimeo_service
from blocks import youtube as youtube_service
from blocks.uploads import UploadError
from flows.errors import TaskError
from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, report_progress, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.store import as_upload_step, credentials_block, retry_policy
from flows.steps.tools.probe import MediaProbe, content_type, probe_input

__all__ = [  # the task flows, then their parameter and result models
    "youtube", "vimeo", "fb", "YouTubeUploadParams", "YouTubeUploadResult", "VimeoUploadParams",
    "VimeoUploadResult", "FacebookUploadParams", "FacebookUploadResult"
]

OAUTH1 = ("consumer_key", "consumer_secret", "access_token_key", "access_token_secret")
UPLOAD_START, UPLOAD_END = 5.0, 99.0
TOKEN_MISSING = "this field is required (or name a saved credentials block in credentials)"


def _credentials_field():
    return Field(None, description="Name of a saved credentials block to use instead of tokens in the task.")


def _token_required(token_name: str):
    """A validator: the token, or a saved credentials block, is required."""

    def check(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (value is None or not value.get_secret_value()) and not info.data.get("credentials"):
            raise PydanticCustomError("token_missing", TOKEN_MISSING)
        return value

    return field_validator(token_name, mode="after")(check)


class YouTubeUploadParams(TaskParams):
    """Parameters of ``video.upload.youtube``."""

    url: str = Field(description="URL of the source video.")
    credentials: str | None = _credentials_field()
    access_token: SecretStr | None = Field(
        None, validate_default=True, description="Target user's OAuth2 access token with upload authorization."
    )
    developer_key: SecretStr | None = Field(None, description="YouTube developer key (API key) of a registered app.")
    title: str = Field(description="Video title.")
    description: str = Field("", description="Video description.")
    tags: list[str] = Field(default_factory=list, description="Video tags.")
    category_id: int = Field(22, description="Video category ID number (22: People & Blogs).")
    privacy_status: Literal["public", "private", "unlisted"] = Field(
        "public", description="Privacy status of the video (unaudited API projects can only upload private videos)."
    )

    _access_token = _token_required("access_token")


class YouTubeUploadResult(BaseModel):
    """Output values of ``video.upload.youtube``."""

    output: str = Field(description="URL of the uploaded video on YouTube.")
    duration: float = Field(description="Duration of the input video file, in seconds.")


class VimeoUploadParams(TaskParams):
    """Parameters of ``video.upload.vimeo``."""

    url: str = Field(description="Video url to upload.")
    title: str = Field("", description="Video title.")
    description: str = Field("", description="Video description.")
    credentials: str | None = _credentials_field()
    consumer_key: str | None = Field(None, description="OAuth1 application consumer key (Vimeo API v2, retired).")
    consumer_secret: SecretStr | None = Field(None, description="OAuth1 application consumer secret (retired).")
    access_token_key: str | None = Field(None, description="OAuth1 user access token key (retired).")
    access_token_secret: SecretStr | None = Field(None, description="OAuth1 user access token secret (retired).")
    oauth2_token: SecretStr | None = Field(
        None, validate_default=True, description="OAuth2 user access token with the upload and edit scopes."
    )

    @field_validator("oauth2_token", mode="after")
    @classmethod
    def _oauth2(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (value is not None and value.get_secret_value()) or info.data.get("credentials"):
            return value
        if any(info.data.get(name) for name in OAUTH1):
            raise PydanticCustomError(
                "oauth1", "OAuth1 parameters (consumer_key, consumer_secret, access_token_key, access_token_secret)"
                " were for Vimeo's retired API v2: send oauth2_token, an OAuth2 access token with the upload and"
                " edit scopes")
        raise PydanticCustomError("token_missing", TOKEN_MISSING)


class VimeoUploadResult(BaseModel):
    """Output values of ``video.upload.vimeo``."""

    output: str = Field(description="URL of the uploaded video on Vimeo.")
    uploaded_file_size: int = Field(description="Size of the uploaded file, in bytes.")
    free_space: int | None = Field(description="Upload space left on the Vimeo account, in bytes.")
    duration: float = Field(description="Duration of the input video file, in seconds.")


class FacebookUploadParams(TaskParams):
    """Parameters of ``video.upload.fb``."""

    url: str = Field(description="URL of the source video.")
    credentials: str | None = _credentials_field()
    access_token: SecretStr | None = Field(
        None, validate_default=True, description="Target user's (or Page's) access token."
    )
    title: str = Field("", description="Video title.")
    description: str = Field("", description="Video description.")
    privacy: Literal["AUTO", "EVERYONE", "ALL_FRIENDS", "FRIENDS_OF_FRIENDS", "SELF"] = Field(
        "AUTO", description="Privacy level of the video (AUTO: Facebook's default for the target)."
    )
    no_story: bool = Field(False, description="If set to true, this will suppress feed and timeline story.")
    api_key: str = Field("-", description="Facebook API key (app id; not needed by the Graph API).")
    app_secret: SecretStr | None = Field(None, description="Facebook app secret: calls are signed with appsecret_proof.")
    page_id: str = Field(
        "me", pattern=r"^(me|[0-9]{1,32})$", description="Id of the Page to upload to (default: me, the user's own)."
    )

    _access_token = _token_required("access_token")


class FacebookUploadResult(BaseModel):
    """Output values and file of ``video.upload.fb``."""

    output: str = Field(description="URL of the uploaded video on Facebook.")
    duration: float = Field(description="Duration of the input video file, in seconds.")


async def _open_video(url: str) -> tuple[Path, MediaProbe]:
    """Fetch and probe the input; TaskError unless it has a video stream."""
    source = await fetch(url, current_run().work_dir / "in")
    probe = await probe_input(source)
    if probe.video is None:
        raise TaskError(f"{url} has no video stream")
    await report_progress(UPLOAD_START)
    return source, probe


async def _progress(done: int, total: int) -> None:
    await report_progress(UPLOAD_START + (UPLOAD_END - UPLOAD_START) * done / max(total, 1))


async def _upload(upload_task: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await as_upload_step(upload_task)(*args, progress=_progress, policy=retry_policy(), **kwargs)
    except UploadError as exc:
        raise TaskError(str(exc)) from None


def _given(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value() not in ("", "-")


@task_flow("video.upload.youtube")
async def youtube(params: YouTubeUploadParams, account: str = LOCAL_ACCOUNT) -> YouTubeUploadResult:
    """Upload a video to YouTube (Data API v3 resumable upload, OAuth2 bearer token)."""
    source, probe = await _open_video(params.url)
    if _given(params.access_token):
        credentials = youtube_service.YouTubeCredentials(access_token=params.access_token,
                                                         developer_key=params.developer_key)
    else:
        credentials = await credentials_block(youtube_service.YouTubeCredentials, params.credentials, account)
    video = youtube_service.YouTubeVideo(title=params.title, description=params.description, tags=params.tags,
                                         category_id=params.category_id, privacy_status=params.privacy_status)
    settings = get_settings()
    video_id = await _upload(youtube_service.upload_video, credentials, source, video,
                             content_type=content_type(probe), api_url=settings.youtube_api_url,
                             chunk_bytes=settings.upload_chunk_bytes)
    return YouTubeUploadResult(output=youtube_service.watch_url(video_id, settings.youtube_watch_url),
                               duration=round(probe.duration, 3))


@task_flow("video.upload.vimeo")
async def vimeo(params: VimeoUploadParams, account: str = LOCAL_ACCOUNT) -> VimeoUploadResult:
    """Upload a video to Vimeo (API v3, tus upload, OAuth2 token)."""
    source, probe = await _open_video(params.url)
    if _given(params.oauth2_token):
        credentials = vimeo_service.VimeoCredentials(oauth2_token=params.oauth2_token)
    else:
        credentials = await credentials_block(vimeo_service.VimeoCredentials, params.credentials, account)
    settings = get_settings()
    uploaded = await _upload(vimeo_service.upload_video, credentials, source, title=params.title,
                             description=params.description, api_url=settings.vimeo_api_url,
                             chunk_bytes=settings.upload_chunk_bytes)
    return VimeoUploadResult(output=uploaded["link"], uploaded_file_size=uploaded["uploaded_file_size"],
                             free_space=uploaded["free_space"], duration=round(probe.duration, 3))


@task_flow("video.upload.fb")
async def fb(params: FacebookUploadParams, account: str = LOCAL_ACCOUNT) -> FacebookUploadResult:
    """Upload a video to Facebook (Graph API, resumable phases for large files)."""
    source, probe = await _open_video(params.url)
    if _given(params.access_token):
        credentials = facebook_service.FacebookCredentials(
            access_token=params.access_token, app_secret=params.app_secret if _given(params.app_secret) else None)
    else:
        credentials = await credentials_block(facebook_service.FacebookCredentials, params.credentials, account)
    settings = get_settings()
    video_id = await _upload(facebook_service.upload_video, credentials, source, page_id=params.page_id,
                             title=params.title, description=params.description,
                             privacy=None if params.privacy == "AUTO" else params.privacy, no_story=params.no_story,
                             content_type=content_type(probe), graph_url=settings.facebook_graph_url,
                             graph_version=settings.facebook_graph_version, chunk_bytes=settings.upload_chunk_bytes)
    return FacebookUploadResult(output=facebook_service.watch_url(video_id, settings.facebook_watch_url),
                                duration=round(probe.duration, 3))
