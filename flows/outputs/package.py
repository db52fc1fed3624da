"""HLS and DASH: a ladder of H.264 rungs encoded once to CMAF (fragmented MP4) segments, with
the HLS playlists and/or the DASH MPD written over the same segment files.

How (the way good packagers do it):

- **One ffmpeg for the whole ladder**: the input is decoded once, ``split`` into one scaled
  branch per rung, each encoded by its own libx264, and every rung (plus the audio, encoded
  once per distinct audio bitrate) goes to ffmpeg's ``dash`` muxer, which cuts CMAF segments
  and writes the MPD. Measured on the 2-core machine against one ffmpeg per rung run side by
  side (``bench/vimqu_ladder.py``, 60 s 1080p30 -> 360p/720p/1080p, x264 veryfast, ffmpeg 5.1):
  decoding once costs 96-100 s of CPU against 114-127 s for three decodes. Wall times on the
  shared machine (load 2 to 27 during the runs) favoured the three processes only because
  more threads take a larger share of a contended CPU; on a worker running several tasks the
  CPU saved is what counts, so the single decode is kept.
- **Aligned key frames**: every rung has the same fixed GOP of ``ceil(fps × segment)``
  frames, scene-cut key frames off (``-sc_threshold 0``), a forced IDR at each multiple of the
  segment duration (``expr:gte(t,n_forced*SEG)``), the same preset, B-frames and frame rate;
  so every segment of every rung starts with an IDR at the same time and every video segment
  but the last lasts exactly ``segment_duration`` (to the frame).
- **Manifests from the segments**: the MPD's SegmentTimeline is the truth; each
  representation's files are moved to ``<rung>/init.mp4`` and ``<rung>/seg_00001.m4s`` … and
  the MPD's templates and ids renamed to match. The HLS media playlists (``<rung>/index.m3u8``,
  VOD, version 7, ``EXT-X-MAP`` of the init segment) list the same files with the timeline's
  durations; the master playlist's ``BANDWIDTH`` is the peak segment bitrate measured from
  the files (``AVERAGE-BANDWIDTH`` the mean), with ``CODECS``, ``RESOLUTION``, ``FRAME-RATE``
  and an audio group per audio rendition.
- **I-frame playlists** (Apple's HLS authoring spec asks for them, for scrubbing and fast
  forward): one ``<rung>/iframes.m3u8`` per rung, ``EXT-X-I-FRAMES-ONLY``, one entry per
  segment whose ``EXT-X-BYTERANGE`` is the segment's key frame (its ``moof`` and the frame's
  bytes, read from the file: ``fmp4.keyframe_range``), named by the master playlist's
  ``EXT-X-I-FRAME-STREAM-INF``.
- **No copy (remux) path**: a copied rung keeps the source's own GOP, B-frames and key frames,
  so its segments would not line up with the encoded rungs unless the source was cut exactly
  as ours; proving that needs every key frame time *and* the encoder's settings, and getting it
  wrong breaks ABR switching. The ladder is always encoded (see the module ``ladder``).
"""

from __future__ import annotations

import math
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from flows.errors import TaskError
from flows.outputs.config import StreamingConfig
from flows.outputs.fmp4 import keyframe_range
from flows.outputs.ladder import DroppedRung, LadderPlan, Rung, plan_ladder
from flows.settings import get_settings
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
_NS = {"mpd": MPD_NS}
MASTER = "master.m3u8"
MPD = "manifest.mpd"
MEDIA_PLAYLIST = "index.m3u8"
IFRAME_PLAYLIST = "iframes.m3u8"
INIT = "init.mp4"
SEGMENT = "seg_{:05d}.m4s"
FORMATS = ("hls", "dash")

for _prefix, _uri in (("", MPD_NS), ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
                      ("xlink", "http://www.w3.org/1999/xlink")):
    ET.register_namespace(_prefix, _uri)


@dataclass(frozen=True)
class RenditionResult:
    """One encoded representation: a video rung or an audio rendition."""

    name: str
    kind: str  # "video" | "audio"
    codecs: str
    bitrate: int
    """Target bitrate, kbps."""
    bandwidth: int
    """Peak segment bitrate measured from the files, bits/s (HLS BANDWIDTH)."""
    average_bandwidth: int
    segments: list[float]
    """Durations of its segments in order, seconds."""
    files: list[str]
    """Its init segment then its media segments (relative paths)."""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    playlist: str | None = None
    """Its HLS media playlist, when HLS was asked."""
    iframes: list[tuple[int, int]] = field(default_factory=list)
    """Each media segment's key frame (offset, length in the file), for a video rung in HLS."""

    @property
    def iframe_playlist(self) -> str | None:
        """Its HLS I-frame playlist (a video rung in HLS)."""
        return f"{self.name}/{IFRAME_PLAYLIST}" if self.iframes else None


@dataclass(frozen=True)
class PackageResult:
    """What ``package_streams`` made in its output directory (relative paths)."""

    formats: tuple[str, ...]
    hls_files: list[str]
    """master.m3u8, the media and I-frame playlists, every init and media segment (empty
    without hls)."""
    dash_files: list[str]
    """manifest.mpd, every init and media segment (empty without dash)."""
    renditions: list[RenditionResult]
    dropped: list[DroppedRung]
    capped: str | None
    segment_duration: float
    duration: float
    gop: int
    """Frames from one key frame to the next, on every rung."""
    encode_seconds: float
    decode: str = "once (split)"
    notes: list[str] = field(default_factory=list)

    @property
    def rungs(self) -> list[RenditionResult]:
        return [r for r in self.renditions if r.kind == "video"]

    def files(self, output_type: str) -> list[str]:
        """The files of the ``hls`` or ``dash`` (``mpeg_dash``) output."""
        return self.hls_files if output_type == "hls" else self.dash_files


def gop_frames(fps: float, segment: float) -> int:
    """Frames per GOP: one segment's worth at ``fps`` (rounded up, so a forced key frame at
    each segment boundary is never preceded by an extra one)."""
    return max(1, math.ceil(fps * segment - 1e-6))


def _dar(size: tuple[int, int]) -> str:
    ratio = Fraction(size[0], size[1])
    return f"{ratio.numerator}/{ratio.denominator}"


def ladder_command(src: Path, probe: MediaProbe, plan: LadderPlan, segment: float, out_dir: Path,
                   *, preset: str | None = None) -> list[str]:
    """ffmpeg arguments encoding every rung of ``plan`` (decoded once, split) and the audio to
    CMAF segments and an MPD in ``out_dir`` (names still ffmpeg's: ``init_<i>.m4s``,
    ``seg_<i>_<n>.m4s``, ``manifest.mpd``)."""
    preset = preset or get_settings().x264_preset
    gop = gop_frames(plan.fps, segment)
    n = len(plan.rungs)
    source_fps = probe.video.frame_rate if probe.video else 0
    pre = f"fps={plan.fps:g}," if source_fps and source_fps > plan.fps + 0.01 else ""
    branches = [f"[0:v:0]{pre}split={n}" + "".join(f"[s{i}]" for i in range(n))]
    dar = _dar(plan.source_size)
    for i, rung in enumerate(plan.rungs):
        branches.append(f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic,format=yuv420p,setdar={dar}[v{i}]")
    args = [*input_args(src, probe.format_name), "-filter_complex", ";".join(branches)]
    for i, rung in enumerate(plan.rungs):
        rate = rung.video_bitrate
        args += ["-map", f"[v{i}]", f"-b:v:{i}", f"{rate}k", f"-maxrate:v:{i}", f"{int(rate * 1.1)}k",
                 f"-bufsize:v:{i}", f"{2 * rate}k"]
    args += ["-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
             "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-forced-idr", "1",
             "-force_key_frames", f"expr:gte(t,n_forced*{segment:g})"]
    audio = plan.audio_bitrates if probe.audio else []
    for j, kbps in enumerate(audio):
        args += ["-map", "0:a:0", f"-c:a:{j}", "aac", f"-b:a:{j}", f"{kbps}k"]
    if audio:
        rate = probe.audio.sample_rate if probe.audio.sample_rate in (44100, 48000) else 48000
        args += ["-ac", "2", "-ar", str(rate)]
    sets = "id=0,streams=v" + (" id=1,streams=a" if audio else "")
    args += ["-sn", "-dn", "-map_metadata", "-1", "-f", "dash", "-seg_duration", f"{segment:g}",
             "-use_template", "1", "-use_timeline", "1", "-adaptation_sets", sets,
             "-init_seg_name", "init_$RepresentationID$.m4s",
             "-media_seg_name", "seg_$RepresentationID$_$Number%05d$.m4s", str(out_dir / MPD)]
    return args


def _timeline(template: ET.Element) -> list[int]:
    """Segment durations (in timescale units) of a SegmentTemplate's SegmentTimeline."""
    durations: list[int] = []
    for s in template.findall("mpd:SegmentTimeline/mpd:S", _NS):
        durations += [int(s.get("d"))] * (int(s.get("r", "0")) + 1)
    return durations


def _attribute(element: ET.Element, parent: ET.Element, name: str) -> str | None:
    return element.get(name) or parent.get(name)


def _finish(out_dir: Path, plan: LadderPlan, formats: tuple[str, ...], segment: float) -> tuple[
        list[RenditionResult], list[str], list[str]]:
    """Rename ffmpeg's files per rendition, rewrite the MPD, write the HLS playlists."""
    tree = ET.parse(out_dir / MPD)
    root = tree.getroot()
    renditions: list[RenditionResult] = []
    for aset in root.iter(f"{{{MPD_NS}}}AdaptationSet"):
        # each rung has its own init segment (its own SPS/PPS): not bitstream-switchable
        aset.attrib.pop("bitstreamSwitching", None)
    video_index = audio_index = 0
    audio_names: dict[int, str] = {}
    for aset in root.iter(f"{{{MPD_NS}}}AdaptationSet"):
        kind = aset.get("contentType") or ("audio" if "audio" in (aset.get("mimeType") or "") else "video")
        for rep in aset.findall("mpd:Representation", _NS):
            old_id = rep.get("id")
            if kind == "video":
                rung: Rung | None = plan.rungs[video_index]
                name, bitrate = rung.name, rung.video_bitrate
                video_index += 1
            else:
                rung = None
                bitrate = plan.audio_bitrates[audio_index]
                name = f"audio_{bitrate}k"
                audio_names[bitrate] = name
                audio_index += 1
            template = rep.find("mpd:SegmentTemplate", _NS)
            timescale = int(template.get("timescale"))
            start = int(template.get("startNumber", "1"))
            durations = _timeline(template)
            folder = out_dir / name
            folder.mkdir(exist_ok=True)
            (out_dir / f"init_{old_id}.m4s").replace(folder / INIT)
            files = [f"{name}/{INIT}"]
            sizes, iframes = [], []
            for k in range(len(durations)):
                source = out_dir / f"seg_{old_id}_{start + k:05d}.m4s"
                target = folder / SEGMENT.format(k + 1)
                source.replace(target)
                sizes.append(target.stat().st_size)
                files.append(f"{name}/{target.name}")
                if kind == "video" and "hls" in formats:
                    iframes.append(keyframe_range(target))
            template.set("initialization", f"$RepresentationID$/{INIT}")
            template.set("media", "$RepresentationID$/seg_$Number%05d$.m4s")
            template.set("startNumber", "1")
            rep.set("id", name)
            seconds = [d / timescale for d in durations]
            peak, average = _bitrates(sizes, seconds)
            renditions.append(RenditionResult(
                name=name, kind=kind, codecs=_attribute(rep, aset, "codecs") or "", bitrate=bitrate,
                bandwidth=peak, average_bandwidth=average, segments=seconds,
                files=files, width=rung.width if rung else None, height=rung.height if rung else None,
                fps=rung.fps if rung else None,
                playlist=f"{name}/{MEDIA_PLAYLIST}" if "hls" in formats else None, iframes=iframes,
            ))
    segments = [f for r in renditions for f in r.files]
    dash_files: list[str] = []
    if "dash" in formats:
        tree.write(out_dir / MPD, encoding="utf-8", xml_declaration=True)
        dash_files = [MPD, *segments]
    else:
        (out_dir / MPD).unlink()
    hls_files: list[str] = []
    if "hls" in formats:
        for r in renditions:
            (out_dir / r.playlist).write_text(media_playlist(r))
            if r.iframe_playlist:
                (out_dir / r.iframe_playlist).write_text(iframe_playlist(r))
        (out_dir / MASTER).write_text(master_playlist(renditions, plan, audio_names))
        iframe_playlists = [r.iframe_playlist for r in renditions if r.iframe_playlist]
        hls_files = [MASTER, *(r.playlist for r in renditions), *iframe_playlists, *segments]
    return renditions, hls_files, dash_files


def _playlist_head(rendition: RenditionResult, *extra: str) -> list[str]:
    target = max(1, max(round(s) for s in rendition.segments))
    return ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:1",
            "#EXT-X-PLAYLIST-TYPE:VOD", *extra, "#EXT-X-INDEPENDENT-SEGMENTS", f'#EXT-X-MAP:URI="{INIT}"']


def media_playlist(rendition: RenditionResult) -> str:
    """A VOD HLS media playlist (version 7, fMP4) over a rendition's segments."""
    lines = _playlist_head(rendition)
    for k, seconds in enumerate(rendition.segments):
        lines += [f"#EXTINF:{seconds:.6f},", SEGMENT.format(k + 1)]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def iframe_playlist(rendition: RenditionResult) -> str:
    """A video rung's I-frame playlist: each segment's key frame by byte range, shown until
    the next one (a segment's duration)."""
    lines = _playlist_head(rendition, "#EXT-X-I-FRAMES-ONLY")
    for k, (seconds, (offset, length)) in enumerate(zip(rendition.segments, rendition.iframes)):
        lines += [f"#EXTINF:{seconds:.6f},", f"#EXT-X-BYTERANGE:{length}@{offset}", SEGMENT.format(k + 1)]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _bitrates(sizes: list[int], seconds: list[float]) -> tuple[int, int]:
    """Peak and average bits/s of pieces of ``sizes`` bytes lasting ``seconds`` each."""
    peak = max((8 * b / s for b, s in zip(sizes, seconds) if s > 0), default=0)
    average = 8 * sum(sizes) / sum(seconds) if sum(seconds) else 0
    return math.ceil(peak), math.ceil(average)


def master_playlist(renditions: list[RenditionResult], plan: LadderPlan, audio_names: dict[int, str]) -> str:
    """The HLS master playlist: one audio group per audio rendition, one variant per rung
    (lowest first) with its measured peak and average bitrates."""
    audio = {r.name: r for r in renditions if r.kind == "audio"}
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in audio.values():
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{r.name}",NAME="{r.name}",LANGUAGE="und",'
                     f'DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="{r.playlist}"')
    for rung, r in zip(plan.rungs, (r for r in renditions if r.kind == "video")):
        group = audio.get(audio_names.get(rung.audio_bitrate, ""))
        peak = r.bandwidth + (group.bandwidth if group else 0)
        average = r.average_bandwidth + (group.average_bandwidth if group else 0)
        codecs = ",".join(c for c in (r.codecs, group.codecs if group else "") if c)
        attrs = [f"BANDWIDTH={peak}", f"AVERAGE-BANDWIDTH={average}", f"RESOLUTION={r.width}x{r.height}",
                 f"FRAME-RATE={r.fps:.3f}", f'CODECS="{codecs}"']
        if group:
            attrs.append(f'AUDIO="{group.name}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), r.playlist]
    for r in renditions:
        if r.iframe_playlist:
            peak, average = _bitrates([length for _, length in r.iframes], r.segments)
            lines.append(f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
                         f'RESOLUTION={r.width}x{r.height},CODECS="{r.codecs}",URI="{r.iframe_playlist}"')
    return "\n".join(lines) + "\n"


def _run_name(parameters: dict) -> str:
    formats = "+".join(parameters.get("formats") or FORMATS)
    config = parameters["config"]
    names = [v.name for v in config.resolved_variants()]
    return f"package {formats} {'/'.join(names)}"


@step("package", run_name=_run_name)
async def package_streams(
    src: Path,
    probe: MediaProbe,
    config: StreamingConfig,
    out_dir: Path,
    *,
    formats: tuple[str, ...] = FORMATS,
    preset: str | None = None,
    progress: ProgressCallback | None = None,
) -> PackageResult:
    """Encode ``src`` (probed) to the ladder of ``config`` once, as CMAF segments in
    ``out_dir``, and write the manifests of ``formats`` (``hls``: master.m3u8 and one
    ``<rung>/index.m3u8`` each; ``dash``: manifest.mpd) over the same segments. Rungs above
    the input are dropped and reported. ``preset`` overrides the ``x264_preset`` setting."""
    formats = tuple(dict.fromkeys("dash" if f == "mpeg_dash" else f for f in formats))
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be among {FORMATS}, not {formats!r}")
    if probe.video is None:
        raise TaskError("the input has no video stream: hls and dash need one")
    plan = plan_ladder(config.resolved_variants(), probe.video.upright_size, probe.video.frame_rate,
                       audio_bitrate=config.audio_bitrate)
    segment = config.segment_duration
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (MPD, MASTER):  # a re-run into the same directory replaces the old files
        (out_dir / stale).unlink(missing_ok=True)
    for name in [r.name for r in plan.rungs] + [f"audio_{k}k" for k in plan.audio_bitrates]:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    started = time.monotonic()
    await run_ffmpeg(ladder_command(src, probe, plan, segment, out_dir, preset=preset),
                     duration=probe.duration, progress=progress)
    encode_seconds = time.monotonic() - started
    renditions, hls_files, dash_files = _finish(out_dir, plan, formats, segment)
    notes = [d.reason for d in plan.dropped]
    if plan.capped:
        notes.append(f"every asked rung was above the input: {plan.capped} was made at the input's size"
                     f" as {plan.rungs[0].name}")
    result = PackageResult(
        formats=formats, hls_files=hls_files, dash_files=dash_files, renditions=renditions,
        dropped=plan.dropped, capped=plan.capped, segment_duration=segment, duration=probe.duration,
        gop=gop_frames(plan.fps, segment), encode_seconds=round(encode_seconds, 3), notes=notes,
    )
    step_log("%s: %s in %.1f s (%d segments of %g s per rung)%s", "+".join(formats),
             ", ".join(f"{r.name} {r.width}x{r.height} {r.bandwidth // 1000} kbps peak" for r in result.rungs),
             encode_seconds, len(result.rungs[0].segments), segment,
             "; dropped " + ", ".join(d.name for d in plan.dropped) if plan.dropped else "")
    return result
