"""dragonflow settings: the one place every tunable lives (env prefix ``DRAGONFLOW_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated


class Settings(BaseSettings):
    """Settings read from the environment, e.g. ``DRAGONFLOW_HOME=/srv/dragonflow``."""

    model_config = SettingsConfigDict(env_prefix="DRAGONFLOW_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".dragonflow")
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL clients use to reach the API (output file URLs start with it).",
    )
    work_pool: str = "dragonflow"
    fetch_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of hosts or CIDRs that fetch may reach even though they are private.",
    )
    fetch_max_bytes: int = 512 * 1024 * 1024
    fetch_timeout: float = 120.0
    fetch_max_redirects: int = 5
    max_image_pixels: int = 100_000_000
    tts_max_chars: int = Field(20_000, ge=1, description="Longest text audio.tts accepts, in characters.")
    callback_attempts: int = 5
    callback_backoff: float = 0.5
    worker_limit: int = Field(8, description="Flow runs one warm worker runs at once.")
    worker_poll_seconds: float = Field(
        2.0, description="Fallback poll interval of the warm worker (it picks runs up on Prefect events)."
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
