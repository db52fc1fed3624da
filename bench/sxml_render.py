"""video.create render speed (issue 12): a 30 s movie of 6 photos with Ken Burns moves, 5
crossfades, a title, captions and music with fades, rendered

1. by the renderer (``flows.create.render``: Pillow preparation + one ffmpeg process — one per
   window of about a minute for a longer movie —, the export's x264 preset from the settings) at 360p and 720p: wall time / real time (targets:
   ≤ 0.5× at 360p, ≤ 1.5× at 720p on the 2-core machine), and the peak RSS of the ffmpeg
   process and of this Python process;
2. the preview (parse → plan → preview render, what the flow does before publishing the
   ``preview`` partial result; fetch and probe of local files are not in it): time to it;
3. by a hand-written single ffmpeg command doing the same movie (same sizes, same sub-pixel
   Ken Burns with ``perspective``, ``xfade`` chain, ``drawtext`` title and captions, music with
   ``afade`` + ``loudnorm``, same encode) as the floor: ratio ours / floor (target ≤ 1.3).

Run: .venv/bin/python bench/sxml_render.py [--profiles 360p,720p] [--long]. Not a test.
``--long`` also renders a 10-minute movie (120 distinct photos, each with a caption) at 360p
and prints its peak RSS (target ≤ 1 GiB). Prints ``uptime`` first: the figures mean little on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from flows.create import sxml, timeline
from flows.create.profiles import profile as get_profile
from flows.create.render import CRF, PREVIEW_CRF, PREVIEW_PRESET, Media, build, preview_profile
from flows.create.text import default_font
from flows.settings import get_settings
from flows.steps.tools.probe import probe_media

PHOTOS = 6
SLIDE = 6.0
FADE = 1.2  # 6 × 6 − 5 × 1.2 = 30 s
CAPTIONS = ["Morning at the lake", "The old bridge", "Market day", "Up the hill", "Sunset", "Home again"]


def make_photo(path: Path, seed: int) -> None:
    """A 1600×1200 JPEG with structure (gradients, shapes, texture), like a photo to encode."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1200, 0:1600]
    base = np.stack([(x / 1600 * 255 * rng.random()), (y / 1200 * 255), ((x + y) / 2800 * 255)], axis=2)
    noise = rng.normal(0, 12, (1200, 1600, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = rng.integers(0, 1500), rng.integers(0, 1100)
        draw.ellipse((x0, y0, x0 + rng.integers(20, 300), y0 + rng.integers(20, 300)),
                     fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    image.filter(ImageFilter.SMOOTH).save(path, quality=90)


def make_music(path: Path, seconds: float) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=f=220:d={seconds}:r=44100,volume=0.3", "-f", "lavfi", "-i",
                    f"anoisesrc=d={seconds}:c=pink:a=0.05:r=44100", "-filter_complex", "amix=inputs=2",
                    "-ac", "2", "-b:a", "192k", str(path)], check=True)


def definition(urls: list[str], music: str, photos: int = PHOTOS) -> str:
    items = []
    for index in range(photos):
        title = '<text type="zone" top="0.3" height="0.3" fontsize="48">A day out</text>' if index == 0 else ""
        caption = CAPTIONS[index % len(CAPTIONS)]
        direction = "negative" if index % 2 else "positive"
        items.append(f'<stack duration="{SLIDE}"><effect type="kenburns" direction="{direction}">'
                     f'<image filename="{urls[index % len(urls)]}"/></effect>{title}'
                     f'<text type="legend" backgroundcolor="#00000088">{caption}</text></stack>')
    body = f'<transition type="crossfade" duration="{FADE}"/>'.join(items)
    return (f'<movie service="craftsman-1.0"><body><stack><sequence>{body}</sequence>'
            f'<audio filename="{music}" duration=".." fadein="2" fadeout="3"/></stack></body></movie>')


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (less load-dependent
    than wall time on a shared machine)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def self_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one ffmpeg run (measured by GNU time on that process)."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", *command], capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"ffmpeg failed: {done.stderr[-800:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK ")][-1]
    return seconds, int(peak.split()[1]) / 1024


async def ours(xml: str, files: dict, out: Path, name: str, preview: bool = False
               ) -> tuple[float, float, float, float]:
    """(seconds, movie duration, seconds to plan, ffmpeg peak RSS MiB) of one render through the
    renderer: parse, plan, ``build`` (Pillow preparation) and its ffmpeg commands (the largest
    peak of them)."""
    start = time.monotonic()
    parsed = sxml.parse(xml)
    probes = {url: await probe_media(path) for url, path in files.items() if str(path).endswith(".mp3")}
    plan = timeline.plan(parsed.movie, {url: p.duration for url, p in probes.items()})
    planned = time.monotonic() - start
    profile = get_profile(name)
    media = Media(files=files, probes=probes)
    work = out.parent / f"work-{out.stem}"
    if preview:
        command = build(plan, media, preview_profile(profile), out, work, antialias=1, preset=PREVIEW_PRESET,
                        crf=PREVIEW_CRF)
    else:
        command = build(plan, media, profile, out, work, antialias=4, crf=CRF)
    peak = 0.0
    for step in command.steps:  # one ffmpeg process, or one per window of a long movie and the join
        step.prepare()
        _, step_peak = timed(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *step.args])
        peak = max(peak, step_peak)
    return time.monotonic() - start, plan.duration, planned, peak


def floor_command(photos: list[Path], music: Path, out: Path, name: str) -> list[str]:
    """The same movie as one hand-written ffmpeg command."""
    profile = get_profile(name)
    w, h, rate = profile.width, profile.height, Fraction(profile.fps)
    frames = round(SLIDE * rate)
    font = default_font()
    inputs, chains = [], []
    for index, photo in enumerate(photos):
        inputs += ["-i", str(photo)]
        z0, z1 = (1.0, 1.2) if index % 2 == 0 else (1.2, 1.0)
        z = f"({z0}+{z1 - z0:.3f}*(in-1)/{frames - 1})"  # perspective's `in` counts from 1
        x0, x1 = f"({w}/2-{w}/(2*{z}))", f"({w}/2+{w}/(2*{z}))"
        y0, y1 = f"({h}/2-{h}/(2*{z}))", f"({h}/2+{h}/(2*{z}))"
        size = round(48 * h / 360) if index == 0 else round(h * 0.14 * 0.5)
        title = (f",drawtext=fontfile={font}:text='A day out':fontsize={size}:fontcolor=white:"
                 f"x=(w-tw)/2:y=h*0.45-th/2" if index == 0 else "")
        caption_size = round(h * 0.14 * 0.55)
        chains.append(
            f"[{index}:v]loop=loop=-1:size=1,settb=1/{rate},setpts=N,trim=end_frame={frames},"
            f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},format=yuv420p,"
            f"perspective=x0='{x0}':y0='{y0}':x1='{x1}':y1='{y0}':x2='{x0}':y2='{y1}':x3='{x1}':y3='{y1}':eval=frame"
            f"{title},drawbox=x=iw*0.05:y=ih*0.8:w=iw*0.9:h=ih*0.14:color=black@0.53:t=fill,"
            f"drawtext=fontfile={font}:text='{CAPTIONS[index]}':fontsize={caption_size}:fontcolor=white:"
            f"x=(w-tw)/2:y=h*0.87-th/2[p{index}]")
    previous, length = "[p0]", SLIDE
    for index in range(1, len(photos)):
        offset = round(length - FADE, 6)
        chains.append(f"{previous}[p{index}]xfade=transition=fade:duration={FADE}:offset={offset}[x{index}]")
        previous, length = f"[x{index}]", round(offset + SLIDE, 6)
    inputs += ["-i", str(music)]
    chains.append(f"[{len(photos)}:a]atrim=duration={length},afade=t=in:d=2,afade=t=out:st={length - 3}:d=3,"
                  "loudnorm=I=-16:TP=-1.5,aresample=48000,aformat=channel_layouts=stereo[a]")
    gop = round(rate * 2)
    return ["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(chains), "-map", previous,
            "-map", "[a]", "-c:v", "libx264", "-preset", get_settings().x264_preset, "-crf", str(CRF),
            "-pix_fmt", "yuv420p", "-g", str(gop), "-r", str(rate), "-c:a", "aac", "-b:a", "128k",
            "-movflags", "+faststart", str(out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", default="360p,720p")
    parser.add_argument("--long", action="store_true", help="also render a 10-minute movie (peak RSS)")
    args = parser.parse_args()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"x264 preset: {get_settings().x264_preset}, CRF {CRF}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = [root / f"photo{i}.jpg" for i in range(PHOTOS)]
        for i, photo in enumerate(photos):
            make_photo(photo, i)
        music = root / "music.mp3"
        make_music(music, 40)
        urls = [f"https://example.com/photo{i}.jpg" for i in range(PHOTOS)]
        files = {**dict(zip(urls, photos)), "https://example.com/music.mp3": music}
        xml = definition(urls, "https://example.com/music.mp3")

        seconds, duration, _, _ = asyncio.run(ours(xml, files, root / "preview.mp4", "360p", preview=True))
        print(f"preview (parse -> plan -> preview render, 360p export profile): first partial result"
              f" {{duration}} at plan time, {{preview}} after {seconds:.2f} s ({duration:.1f} s movie)")
        for name in args.profiles.split(","):
            cpu = cpu_seconds()
            seconds, duration, planned, ours_peak = asyncio.run(ours(xml, files, root / f"ours-{name}.mp4", name))
            ours_cpu, cpu = cpu_seconds() - cpu, cpu_seconds()
            floor, floor_peak = timed(floor_command(photos, music, root / f"floor-{name}.mp4", name))
            floor_cpu = cpu_seconds() - cpu
            print(f"{name}: ours {seconds:.2f} s = {seconds / duration:.2f}x real time "
                  f"(plan {planned * 1000:.0f} ms); floor (hand-written ffmpeg) {floor:.2f} s = "
                  f"{floor / duration:.2f}x; ours/floor {seconds / floor:.2f}; peak RSS ffmpeg ours {ours_peak:.0f} MiB,"
                  f" floor {floor_peak:.0f} MiB, python {self_peak_mib():.0f} MiB; CPU ours {ours_cpu:.1f} s, floor {floor_cpu:.1f} s,"
                  f" ratio {ours_cpu / floor_cpu:.2f}")
        if args.long:
            count = 120
            long_urls = [f"https://example.com/long{i}.jpg" for i in range(count)]
            for i, url in enumerate(long_urls):  # every photo distinct, as in a real 10-minute movie
                files[url] = root / f"long{i}.jpg"
                make_photo(files[url], 100 + i)
            xml = definition(long_urls, "https://example.com/music.mp3", photos=count)
            seconds, duration, _, peak = asyncio.run(ours(xml, files, root / "long.mp4", "360p"))
            print(f"10-minute movie ({count} photos, {duration:.0f} s) at 360p: {seconds:.1f} s = "
                  f"{seconds / duration:.2f}x; peak RSS ffmpeg {peak:.0f} MiB, "
                  f"python {self_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
