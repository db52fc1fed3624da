"""``html.scrape``: the videos and images of a web page (seed 000, v2 task reference)."""

from pydantic import BaseModel, Field

from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.html.scrape import scrape_page

__all__ = [  # the task flows, then their parameter and result models
    "scrape", "HtmlScrapeParams", "HtmlScrapeHit", "HtmlScrapeHits", "HtmlScrapeResult"
]


class HtmlScrapeParams(TaskParams):
    """Parameters of ``html.scrape``."""

    url: str = Field(description="URL of the HTML page.")


class HtmlScrapeHit(BaseModel):
    """A video or image found in the page."""

    url: str = Field(description="Absolute URL (YouTube and Vimeo players as their watch URL).")
    kind: str = Field(description="video (a file), youtube, vimeo or image.")
    width: int | None = None
    height: int | None = None


class HtmlScrapeHits(BaseModel):
    """What the page shows or announces, each URL once, in page order (metadata first)."""

    videos: list[HtmlScrapeHit]
    images: list[HtmlScrapeHit]


class HtmlScrapeResult(BaseModel):
    """Output values of ``html.scrape``."""

    page_title: str | None
    hits: HtmlScrapeHits


@task_flow("html.scrape")
async def scrape(params: HtmlScrapeParams, account: str = LOCAL_ACCOUNT) -> HtmlScrapeResult:
    """Scrape an HTML web page to return the videos and images found."""
    settings = get_settings()
    limited = settings.model_copy(update={"fetch_max_bytes": min(settings.fetch_max_bytes, settings.max_page_bytes)})
    page = await fetch(params.url, current_run().work_dir / "in", settings=limited)
    title, hits = await scrape_page(page, params.url)
    return HtmlScrapeResult(page_title=title, hits=HtmlScrapeHits(**hits))


# Names from before the family prefix, kept for existing pipelines.
ScrapeHit = HtmlScrapeHit
ScrapeHits = HtmlScrapeHits
ScrapeParams = HtmlScrapeParams
ScrapeResult = HtmlScrapeResult
