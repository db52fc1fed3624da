"""audio.waveform memory and time on a 1-hour 44.1 kHz stereo input.

Makes a 1-hour stereo track (a tone whose level swells every 10 s, plus noise) as MP3 and as
WAV, then draws the default 1024x60 waveform of each with the task's own steps
(``probe_audio`` + ``draw_waveform``: ffmpeg decodes to 11025 Hz mono and streams 5-s
chunks into a min/max envelope). Each run happens in a fresh Python process, which reports
its peak RSS (and ffmpeg's, the child) and the wall time.

    .venv/bin/python bench/audio_waveform.py
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3600
TARGET_MB = 200


def make_input(path: Path, codec: list[str]) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"sine=f=220:d={HOUR}:r=44100",
         "-f", "lavfi", "-i", f"anoisesrc=d={HOUR}:r=44100:a=0.05",
         "-filter_complex", "[0]volume='0.5+0.4*sin(2*PI*t/10)':eval=frame[tone];[tone][1]amix=inputs=2[mix]",
         "-map", "[mix]", "-ac", "2", *codec, str(path)],
        check=True,
    )


async def child(source: str, dest: str) -> None:
    sys.path.insert(0, str(ROOT))
    from flows.steps.audio.probe import probe_audio
    from flows.steps.audio.waveform import draw_waveform

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    audio = await probe_audio.fn(Path(source))
    path, _ = await draw_waveform.fn(Path(source), audio, Path(dest), width=1024, height=60)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "seconds": elapsed,
        "duration": audio.duration,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": baseline,
        "ffmpeg_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "image": str(path),
    }))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in (("hour.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]), ("hour.wav", ["-c:a", "pcm_s16le"])):
            source = Path(tmp) / name
            made = time.perf_counter()
            make_input(source, codec)
            print(f"{name}: {source.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - made:.0f} s")
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(source), str(Path(tmp) / "out")],
                check=True, capture_output=True, text=True,
            ).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            verdict = "ok" if figures["rss_mb"] <= TARGET_MB else "OVER"
            print(f"  waveform of {figures['duration']:.0f} s: {figures['seconds']:.1f} s"
                  f" ({figures['duration'] / figures['seconds']:.0f}x real time);"
                  f" peak RSS {figures['rss_mb']:.0f} MB (after imports {figures['rss_after_imports_mb']:.0f} MB;"
                  f" target <= {TARGET_MB} MB: {verdict}); ffmpeg peak RSS {figures['ffmpeg_rss_mb']:.0f} MB")
            source.unlink()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(child(sys.argv[2], sys.argv[3]))
    else:
        main()
