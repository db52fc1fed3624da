"""video.create: render an SXML movie definition (spec: ../shared/specs/sxml.md).

Layers, each pure and usable on its own:

- ``sxml``: hardened XML parse into an immutable node tree, the asset list, the error classes;
- ``timeline``: the timing model (spec §4) -> a flat, render-ready ``Plan``;
- ``profiles``: output profile names -> size and frame rate (spec §12);
- ``text``: text boxes drawn with Pillow; ``mix``: speech synthesis and the audio mix;
- ``render``: the plan as ffmpeg processes (one, or one per window of a long movie) — the video
  graph (``scene``, on ``graph``'s streams, with ``transitions``, ``motion``, ``modifiers``,
  ``stills``), the mix, the H.264/AAC encode;

The flow ``create`` (task ``video.create``) runs them as steps, each a Prefect task seen on
the run's page: ``parse`` → ``fetch assets`` (every URL once, ``fetch_concurrency`` at a
time, through the fetch step and its address rules) → ``probe`` (media lengths, pictures
checked, speech synthesised) → ``plan`` → ``render preview`` (stored and published as a
partial result before the export: ``{"duration"}`` as soon as the plan is known, then
``{"duration", "preview"}``) → ``render export`` → ``thumbnail`` → ``store``. Progress is
ffmpeg's own, mapped over the phases (``PHASES``).
"""


import asyncio
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from flows.create import render as renderer, sxml, timeline
from flows.create.profiles import DEFAULT_PROFILE, Profile, profile as get_profile
from flows.create.sxml import (
    Audio,
    CouldNotDownloadError,
    Definition,
    Image,
    InvalidContentError,
    InvalidImageError,
    Speech,
    Video,
)
from flows.errors import FetchError, TaskError
from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, publish_partial, report_progress, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.step import step, step_log
from flows.steps.store import store
from flows.steps.tools.probe import MediaProbe, probe_media

PHASES = {"parse": (0, 2), "fetch": (2, 15), "probe": (15, 20), "plan": (20, 21), "preview": (21, 40),
          "export": (40, 96), "thumbnail": (96, 98), "store": (98, 100)}
"""Progress (percent) at the start and end of each phase; a skipped render's share goes to the export."""


class VideoCreateParams(TaskParams):
    """Parameters of ``video.create``."""

    definition: str = Field(description="The movie: an SXML document (UTF-8 XML).")
    profile: str = Field(DEFAULT_PROFILE, description="Output profile: size and frame rate (360p, 720p, iphone, …;"
                         " every v1 profile name; unknown names render at 640×360, 25 fps).")
    preview: bool = Field(False, description="Also render a fast low-resolution preview, published before the export.")
    export: bool = Field(True, description="Render the final file.")
    thumbnail_time: float = Field(1.0, ge=0, description="Time of the thumbnail frame, in seconds.")
    antialias: Literal[1, 2, 4] = Field(4, description="Supersampling factor of text and edges (1, 2 or 4).")

    @field_validator("profile", mode="before")
    @classmethod
    def _profile_name(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class VideoCreateResult(BaseModel):
    """Output values and files of ``video.create``."""

    duration: float
    width: int
    height: int
    export: str | None = None
    preview: str | None = None
    thumbnail: str | None = None


# --------------------------------------------------------------------------- steps


def _line_of(definition: Definition, url: str) -> int | None:
    for node in sxml.walk(definition.movie):
        if getattr(node, "filename", None) == url or getattr(node, "fontname", None) == url:
            return node.line
    return None


@step("parse")
async def parse_definition(text: str) -> Definition:
    """The definition parsed and checked against the limits."""
    definition = sxml.parse(text)
    settings = get_settings()
    if len(definition.assets) > settings.create_max_assets:
        raise InvalidContentError(f"the definition uses {len(definition.assets)} assets, over the limit of"
                                  f" {settings.create_max_assets}")
    if len(definition.speeches) > settings.create_max_speeches:
        raise InvalidContentError(f"the definition has {len(definition.speeches)} voice texts, over the limit of"
                                  f" {settings.create_max_speeches}")
    for warning in definition.warnings:
        step_log("%s", warning)
    step_log("%d assets, %d voice texts", len(definition.assets), len(definition.speeches))
    return definition


@step("fetch assets")
async def fetch_assets(definition: Definition, dest_dir: Path) -> dict[str, Path]:
    """Every asset URL fetched once (``fetch_concurrency`` at a time); CouldNotDownloadError
    naming the URL (and the line using it) for the first that fails."""
    limit = asyncio.Semaphore(get_settings().fetch_concurrency)

    async def one(index: int, url: str) -> tuple[str, Path]:
        async with limit:
            try:
                return url, await fetch(url, dest_dir / f"{index:03d}")
            except FetchError as exc:
                raise CouldNotDownloadError(f"could not fetch {url}: {exc.reason}", _line_of(definition, url)) from None

    return dict(await asyncio.gather(*(one(i, url) for i, url in enumerate(definition.assets))))


def _media_urls(definition: Definition) -> tuple[set[str], set[str]]:
    """(picture URLs, video/audio URLs) of the definition (theme captions included)."""
    pictures, media = set(), set()
    for node in sxml.walk(definition.movie):
        if isinstance(node, Image) and node.filename and node.color is None and node.kind != "map":
            pictures.add(node.filename)
        elif isinstance(node, (Video, Audio)) and node.filename:
            media.add(node.filename)
    return pictures, media


def _check_picture(url: str, path: Path, line: int | None) -> None:
    from flows.steps.image.probe import open_image

    try:
        with open_image(path) as img:
            img.verify() if img.format == "PNG" else img.size
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the client's image
        raise InvalidImageError(f"<image> attribute filename: {url} is not an image that can be decoded ({exc})",
                                line) from None


@step("probe")
async def probe_assets(definition: Definition, files: dict[str, Path], speech_dir: Path
                       ) -> tuple[dict[str, MediaProbe], dict[Speech, Path], dict[str | Speech, float]]:
    """Media lengths: ffprobe of every video/audio URL, pictures checked, speech synthesised
    (its WAV's length drives its stack, "audio as master")."""
    from flows.create.mix import synthesize

    pictures, media = _media_urls(definition)
    for url in sorted(pictures):
        await asyncio.to_thread(_check_picture, url, files[url], _line_of(definition, url))

    async def probe_one(url: str) -> tuple[str, MediaProbe]:
        try:
            return url, await probe_media(files[url])
        except TaskError as exc:
            raise InvalidContentError(f"{url} is not a media file that can be read ({exc})",
                                      _line_of(definition, url)) from None

    probes = dict(await asyncio.gather(*(probe_one(url) for url in sorted(media))))
    lengths: dict[str | Speech, float] = {url: p.duration for url, p in probes.items()}
    speech_files: dict[Speech, Path] = {}
    if definition.speeches:
        draft = timeline.plan(definition.movie, {**lengths, **{s: 1.0 for s in definition.speeches}})
        speech_files = await synthesize(draft, speech_dir)
        for speech, wav in speech_files.items():
            lengths[speech] = (await probe_media(wav)).duration
    for url, p in probes.items():
        step_log("%s: %s", url, p.summary())
    return probes, speech_files, lengths


@step("plan")
async def plan_movie(definition: Definition, lengths: dict, profile: Profile) -> timeline.Plan:
    """The timeline; InvalidContentError over the duration or pixel-rate limits."""
    plan = timeline.plan(definition.movie, lengths)
    settings = get_settings()
    if plan.duration > settings.create_max_duration:
        raise InvalidContentError(f"the movie lasts {plan.duration:g} s, over the limit of {settings.create_max_duration:g} s")
    rate = profile.width * profile.height * float(profile.fps)
    if rate > settings.create_max_pixels_per_second:
        raise InvalidContentError(f"profile {profile.name} renders {rate:.0f} pixels per second, over the limit of"
                                  f" {settings.create_max_pixels_per_second}")
    for warning in plan.warnings:
        step_log("%s", warning)
    step_log("%.3f s: %d pictures/videos, %d texts, %d transitions, %d sounds", plan.duration, len(plan.visuals),
             len(plan.texts), len(plan.transitions), len(plan.audio))
    return plan


def _progress(phase: tuple[float, float]):
    low, high = phase

    async def report(percent: float) -> None:
        await report_progress(low + (high - low) * percent / 100)

    return report


def _render_name(parameters: dict) -> str:
    return f"render {parameters['what']} {parameters['profile'].width}x{parameters['profile'].height}"


@step("render", run_name=_render_name)
async def render_video(what: str, plan: timeline.Plan, media: renderer.Media, profile: Profile, dest: Path,
                       work_dir: Path, antialias: int, preset: str | None, crf: int,
                       phase: tuple[float, float]) -> Path:
    """One ffmpeg render of the plan (the preview or the export)."""
    command = await renderer.render_movie(plan, media, profile, dest, work_dir, antialias=antialias,
                                          preset=preset, crf=crf, progress=_progress(phase))
    for warning in command.warnings:
        step_log("%s", warning)
    step_log("%s: %.3f s at %dx%d, %s fps, %d bytes", what, plan.duration, profile.width, profile.height,
             profile.rate, dest.stat().st_size)
    return dest


@step("thumbnail")
async def make_thumbnail(movie: Path, time: float, duration: float, profile: Profile, dest: Path) -> Path:
    """The frame at ``thumbnail_time`` (clamped into the movie) as a JPEG."""
    return await renderer.extract_frame(movie, time, duration, dest, profile.fps)


# --------------------------------------------------------------------------- the task


@task_flow("video.create")
async def create(params: VideoCreateParams, account: str = LOCAL_ACCOUNT) -> VideoCreateResult:
    """Render an SXML movie definition into a video (export), a preview and a thumbnail."""
    work = current_run().work_dir
    out = profile_for(params.profile)
    if not out.known:
        step_log("unknown profile %r: rendered at 640x360, 25 fps", params.profile)
    definition = await parse_definition(params.definition)
    await report_progress(PHASES["parse"][1])
    files = await fetch_assets(definition, work / "assets")
    await report_progress(PHASES["fetch"][1])
    probes, speech_files, lengths = await probe_assets(definition, files, work / "speech")
    await report_progress(PHASES["probe"][1])
    plan = await plan_movie(definition, lengths, out)
    duration = round(plan.duration, 3)
    await publish_partial({"duration": duration})
    await report_progress(PHASES["plan"][1])

    fonts = {url: path for url, path in files.items() if _is_font(definition, url)}
    media = renderer.Media(files={**files, **speech_files}, probes=probes, fonts=fonts)
    result = VideoCreateResult(duration=duration, width=out.width, height=out.height)
    movie: tuple[Path, Profile] | None = None
    export_phase = PHASES["export"] if params.preview else (PHASES["plan"][1], PHASES["export"][1])
    if params.preview:
        small = renderer.preview_profile(out)
        path = await render_video("preview", plan, media, small, work / "out" / "preview.mp4", work / "render-preview",
                                  1, renderer.PREVIEW_PRESET, renderer.PREVIEW_CRF, PHASES["preview"])
        result.preview = await store(path, "preview")
        await publish_partial({"duration": duration, "preview": result.preview})
        movie = (path, small)
    if params.export:
        path = await render_video("export", plan, media, out, work / "out" / "export.mp4", work / "render-export",
                                  params.antialias, None, renderer.CRF, export_phase)
        movie = (path, out)
    if movie is None:  # neither file asked for: the thumbnail still needs pictures
        path = await render_video("frames", plan, media, out, work / "out" / "frames.mp4", work / "render-frames",
                                  params.antialias, renderer.PREVIEW_PRESET, renderer.CRF, export_phase)
        movie = (path, out)
    await report_progress(PHASES["export"][1])
    thumb = await make_thumbnail(movie[0], params.thumbnail_time, plan.duration, movie[1],
                                 work / "out" / "thumbnail.jpg")
    await report_progress(PHASES["thumbnail"][1])
    if params.export:
        result.export = await store(movie[0], "export")
    result.thumbnail = await store(thumb, "thumbnail")
    return result


def profile_for(name: str) -> Profile:
    return get_profile(name)


def _is_font(definition: Definition, url: str) -> bool:
    return any(getattr(node, "fontname", None) == url for node in sxml.walk(definition.movie))


__all__ = ["create", "VideoCreateParams", "VideoCreateResult", "renderer", "sxml", "timeline"]
