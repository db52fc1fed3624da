"""``html.scrape``: the videos and images of a web page (seed 000, v2 task reference)."""

import asyncio

from pydantic import BaseModel, Field

from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.html.scrape import scrape as find_hits

MAX_PAGE_BYTES = 5 * 1024 * 1024


class ScrapeParams(TaskParams):
    """Parameters of ``html.scrape``."""

    url: str = Field(description="URL of the HTML page.")


class ScrapeHit(BaseModel):
    """A video or image found in the page."""

    url: str = Field(description="Absolute URL (YouTube and Vimeo players as their watch URL).")
    kind: str = Field(description="video (a file), youtube, vimeo or image.")
    width: int | None = None
    height: int | None = None


class ScrapeHits(BaseModel):
    """What the page shows or announces, each URL once, in page order (metadata first)."""

    videos: list[ScrapeHit]
    images: list[ScrapeHit]


class ScrapeResult(BaseModel):
    """Output values of ``html.scrape``."""

    page_title: str | None
    hits: ScrapeHits


@task_flow("html.scrape")
async def scrape(params: ScrapeParams, account: str = LOCAL_ACCOUNT) -> ScrapeResult:
    """Scrape an HTML web page to return the videos and images found."""
    settings = get_settings()
    limited = settings.model_copy(update={"fetch_max_bytes": min(settings.fetch_max_bytes, MAX_PAGE_BYTES)})
    page = await fetch(params.url, current_run().work_dir / "in", settings=limited)
    html = await asyncio.to_thread(page.read_bytes)
    title, hits = await asyncio.to_thread(find_hits, html, params.url)
    return ScrapeResult(page_title=title, hits=ScrapeHits(**hits))
