"""dragonflow settings: the one place every tunable lives (env prefix ``DRAGONFLOW_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated


class Settings(BaseSettings):
    """Settings read from the environment, e.g. ``DRAGONFLOW_HOME=/srv/dragonflow``."""

    model_config = SettingsConfigDict(env_prefix="DRAGONFLOW_", extra="ignore", populate_by_name=True)

    @field_validator("run_retention_days")
    @classmethod
    def _an_hour_at_least(cls, days: float) -> float:
        if days != 0 and days < 1 / 24:
            raise ValueError("keep finished runs at least an hour (1/24 day), or 0 for ever")
        return days

    home: Path = Field(
        default_factory=lambda: Path.home() / ".dragonflow",
        description="Where state lives: the embedded Prefect database, stored files, scratch directories.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL clients use to reach the API (output file URLs start with it).",
    )
    work_pool: str = Field("dragonflow", description="Prefect work pool the deployments and warm workers use.")
    fetch_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of hosts or CIDRs that fetch may reach even though they are private.",
    )
    fetch_max_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Largest input download, in bytes.")
    fetch_timeout: float = Field(120.0, gt=0, description="Seconds one input download may take.")
    fetch_max_redirects: int = Field(5, ge=0, description="Redirects an input download follows (each hop re-checked).")
    max_image_pixels: int = Field(100_000_000, ge=1, description="Largest image decoded, in pixels (checked before decoding).")
    tts_max_chars: int = Field(20_000, ge=1, description="Longest text audio.tts accepts, in characters.")
    callback_attempts: int = Field(5, ge=1, description="Tries of a callback POST before it is given up.")
    callback_backoff: float = Field(0.5, ge=0, description="Seconds before the 2nd try of a callback; doubles each try.")
    callback_timeout: float = Field(10.0, gt=0, description="Seconds one callback POST may take.")
    fetch_concurrency: int = Field(4, ge=1, description="Inputs of one multi-input task downloaded at once.")
    fetch_retries: int = Field(2, ge=0, description="Retries of a fetch that failed for a transient reason (5xx, timeout).")
    fetch_retry_delay: float = Field(0.5, ge=0, description="Seconds before the first fetch retry; doubles each retry.")
    max_page_bytes: int = Field(5 * 1024 * 1024, ge=1, description="Largest HTML page html.scrape reads.")
    x264_preset: str = Field("medium", description="x264 preset of every H.264 encode (speed vs size).")
    tool_timeout: float = Field(600.0, gt=0, description="Seconds an ffmpeg run may take, plus tool_timeout_per_second of media.")
    tool_timeout_per_second: float = Field(4.0, ge=0, description="Extra ffmpeg time allowed per second of media.")
    probe_timeout: float = Field(60.0, gt=0, description="Seconds ffprobe or a single-frame grab may take.")
    heartbeat_timeout: float = Field(
        300.0,
        ge=10,
        validation_alias=AliasChoices("DRAGONFLOW_HEARTBEAT_TIMEOUT", "DRAGONFLOW_CRASH_AFTER_SECONDS"),
        description="Seconds without a heartbeat after which a running task's worker counts as dead: the task is"
        " run again (crash_retries) or ends Crashed. Workers beat every third of it; at least 10. Old name:"
        " DRAGONFLOW_CRASH_AFTER_SECONDS.",
    )
    run_retention_days: float = Field(
        30.0,
        description="Days a finished task's flow run (with its logs and artifacts) stays in Prefect's database;"
        " Prefect's database vacuum deletes older ones every hour. 0 keeps them forever; at least 1/24 (an hour).",
    )
    crash_retries: int = Field(
        2, ge=0, description="Times a task whose worker died (or was killed by its input) is run again before it ends Crashed."
    )
    database_url: Optional[str] = Field(
        None,
        description="PostgreSQL URL of the scale topology's Prefect database (postgresql+asyncpg://...);"
        " `up --scale` starts a local PostgreSQL when unset.",
    )
    redis_url: Optional[str] = Field(
        None,
        description="Redis URL of the scale topology (Prefect's events, ordering and leases; the VimQu rate limit"
        " and the account create lock shared by API processes); `up --scale` starts a local Redis when unset.",
    )
    create_max_duration: float = Field(600.0, gt=0, description="Longest video.create movie, in seconds.")
    create_max_assets: int = Field(200, ge=1, description="Most distinct asset URLs in one video.create definition.")
    create_max_speeches: int = Field(100, ge=0, description="Most distinct voice= texts in one video.create definition.")
    create_max_pixels_per_second: int = Field(
        1920 * 1080 * 30, ge=1, description="Most pixels video.create renders per second of movie (width x height x fps)."
    )
    step_tasks: bool = Field(True, description="Run each step of a task as a Prefect task (seen in the UI's run page).")
    worker_limit: int = Field(8, description="Flow runs one warm worker runs at once.")
    api_max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body the API reads, in bytes (larger: 413, unread)."
    )
    api_max_tasks_per_create: int = Field(1000, ge=1, description="Most tasks one create request may hold (more: 400).")
    api_port: int = Field(8000, description="Port of the REST API started by `dragonflow up` / `dragonflow api`.")
    prefect_port: int = Field(4200, description="Port of the Prefect server `dragonflow up` starts (with --scale: its first API process).")
    worker_poll_seconds: float = Field(
        2.0, description="Fallback poll interval of the warm worker (it picks runs up on Prefect events)."
    )

    vimqu_rate_limit_per_minute: int = Field(
        60, ge=1, description="VimQu API requests one token may make per minute (more: 429 with Retry-After)."
    )
    vimqu_initial_credits_minutes: float = Field(
        100_000.0, ge=0, description="VimQu credits (output minutes) a new account starts with."
    )
    vimqu_input_timeout: float = Field(
        12.0, gt=0, description="Seconds the VimQu API gives a task's input to answer when the task is created."
    )
    vimqu_account_refresh: float = Field(
        2.0, ge=0, description="Seconds the VimQu API trusts its copy of an account (suspension, credits)."
    )

    youtube_api_url: str = Field(
        "https://www.googleapis.com", description="Base URL of the YouTube Data API v3 (uploads go to its /upload/youtube/v3/videos)."
    )
    youtube_watch_url: str = Field(
        "https://www.youtube.com/watch?v=", description="Prefix of a YouTube video's watch URL (the id is appended)."
    )
    vimeo_api_url: str = Field("https://api.vimeo.com", description="Base URL of the Vimeo API (v3).")
    facebook_graph_url: str = Field(
        "https://graph-video.facebook.com", description="Base URL of the Facebook Graph API for video uploads."
    )
    facebook_graph_version: str = Field("v23.0", description="Graph API version of the Facebook calls, e.g. v23.0.")
    facebook_watch_url: str = Field(
        "https://www.facebook.com/watch/?v=", description="Prefix of a Facebook video's URL (the id is appended)."
    )
    upload_chunk_bytes: int = Field(
        8 * 1024 * 1024,
        ge=256 * 1024,
        description="Bytes sent per request of a resumable upload (YouTube: rounded down to a multiple of 256 KiB);"
        " Facebook files up to this size go in one request.",
    )
    upload_retries: int = Field(
        5, ge=0, description="Tries again of one upload request after a 5xx, a 429 or a dropped connection (resuming)."
    )
    upload_retry_delay: float = Field(1.0, ge=0, description="Seconds before the first upload retry; doubles each retry.")
    upload_timeout: float = Field(300.0, gt=0, description="Seconds one upload request (one chunk) may take.")
    upload_task_retries: int = Field(
        1, ge=0, description="Prefect retries of a whole upload task whose request retries ran out (a new upload)."
    )

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def storage_dir(self) -> Path:
        """Root of the local storage blocks' files."""
        return self.home / "storage"

    @property
    def work_dir(self) -> Path:
        """Parent of the per-run scratch directories."""
        return self.home / "work"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
