"""audio.beats quality and speed on synthesized tracks whose beat times are known.

Tracks: metronome click tracks (accented first beat) and drum patterns (kick, snare, hi-hat,
a bass line whose note changes every bar), 60-180 BPM, some with a tempo change (abrupt or a
ramp) and added noise, one in 3/4. Each is written as a 44.1 kHz WAV and goes through the
task's own step (``flows.steps.audio.beats.find_beats``: streamed ffmpeg decode, features, tracking).

Prints per track and on average the beat F-measure and the downbeat F-measure (mir_eval,
70 ms window; mir_eval ignores the first 5 s), then the speed as x real time on a 3-minute
MP3 (first call in the process, which includes numba's compilation, and the median of
three warm calls).
Each track is made with SEEDS random seeds (timing jitter of the hits, noise): mean and
minimum F-measures are printed.

    .venv/bin/python bench/audio_beats.py
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Callable

import mir_eval
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.steps.audio.beats import find_beats  # noqa: E402
from flows.steps.tools.probe import probe_media

SR = 44100
DURATION = 30.0
rng = np.random.default_rng(0)
Tempo = Callable[[float], float]


def beat_grid(duration: float, bpm_at: Tempo, start: float = 0.37) -> np.ndarray:
    """Beat times for a tempo that may change over time."""
    times, t = [], start
    while t < duration - 0.3:
        times.append(t)
        t += 60.0 / bpm_at(t)
    return np.array(times)


def decay(n: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * SR))


def place(track: np.ndarray, t: float, sound: np.ndarray) -> None:
    i = int(round(t * SR))
    n = min(len(sound), len(track) - i)
    if n > 0:
        track[i:i + n] += sound[:n]


def click(freq: float, amp: float) -> np.ndarray:
    n = int(0.03 * SR)
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / SR) * decay(n, 0.008)


def kick() -> np.ndarray:
    n = int(0.25 * SR)
    freq = 50 + 100 * np.exp(-np.arange(n) / SR / 0.03)
    return 0.9 * np.sin(2 * np.pi * np.cumsum(freq) / SR) * decay(n, 0.08)


def snare() -> np.ndarray:
    n = int(0.18 * SR)
    tone = np.sin(2 * np.pi * 190 * np.arange(n) / SR) * decay(n, 0.05)
    return 0.35 * rng.standard_normal(n) * decay(n, 0.04) + 0.3 * tone


def hat(amp: float = 0.12) -> np.ndarray:
    n = int(0.05 * SR)
    return amp * np.diff(rng.standard_normal(n + 1)) * decay(n, 0.012)


def bass(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(a * np.sin(2 * np.pi * k * freq * t) for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)))
    return 0.35 * tone * np.minimum(1, t / 0.01) * np.exp(-t / (seconds * 0.8))


ROOTS = [55.0, 43.65, 65.41, 49.0]  # A1 F1 C2 G1: one note per bar


def click_track(bpm_at: Tempo, meter: int = 4):
    beats = beat_grid(DURATION, bpm_at)
    y = np.zeros(int(DURATION * SR))
    for k, t in enumerate(beats):
        place(y, t + rng.uniform(-0.004, 0.004), click(1600, 1.0) if k % meter == 0 else click(1000, 0.6))
    return y, beats, beats[::meter]


def drum_track(bpm_at: Tempo, meter: int = 4, syncopated: bool = False):
    """Kick on 1 (and 3), snare on the other beats, hi-hat eighths, a bass note per bar."""
    beats = beat_grid(DURATION, bpm_at)
    ends = np.append(beats[1:], 2 * beats[-1] - beats[-2])
    y = np.zeros(int(DURATION * SR))
    for k, (t, end) in enumerate(zip(beats, ends)):
        position, ibi = k % meter, end - t
        jitter = rng.uniform(-0.005, 0.005)
        strong = position == 0 or (meter == 4 and position == 2)
        place(y, t + jitter, kick() if strong else snare())
        if syncopated and position == 1:
            place(y, t + ibi / 2, 0.7 * kick())
        place(y, t, hat())
        place(y, t + ibi / 2, hat(0.08))
        if strong:
            place(y, t, bass(ROOTS[(k // meter) % len(ROOTS)], (2 if meter == 4 else meter) * ibi * 0.95))
    return y, beats, beats[::meter]


def noisy(make, snr_db: float):
    def build():
        y, beats, downbeats = make()
        noise = rng.standard_normal(len(y)) * np.sqrt(np.mean(y ** 2) / 10 ** (snr_db / 10))
        return y + noise, beats, downbeats
    return build


def const(bpm: float) -> Tempo:
    return lambda t: bpm


def step(first: float, then: float, at: float) -> Tempo:
    return lambda t: first if t < at else then


def ramp(first: float, then: float, t0: float, t1: float) -> Tempo:
    return lambda t: first if t < t0 else then if t > t1 else first + (then - first) * (t - t0) / (t1 - t0)


TRACKS = {
    "click 60": lambda: click_track(const(60)),
    "click 120": lambda: click_track(const(120)),
    "click 180": lambda: click_track(const(180)),
    "click 90->140 (step)": lambda: click_track(step(90, 140, 15)),
    "drums 70": lambda: drum_track(const(70)),
    "drums 100": lambda: drum_track(const(100)),
    "drums 128 + noise 6 dB": noisy(lambda: drum_track(const(128)), 6),
    "drums 165": lambda: drum_track(const(165)),
    "drums 84 syncopated": lambda: drum_track(const(84), syncopated=True),
    "drums 95->125 (ramp) + noise": noisy(lambda: drum_track(ramp(95, 125, 8, 22)), 10),
    "drums 140->110 (step) + noise": noisy(lambda: drum_track(step(140, 110, 15)), 10),
    "drums 3/4 150": lambda: drum_track(const(150), meter=3),
    "drums 60": lambda: drum_track(const(60)),
    "drums 180": lambda: drum_track(const(180)),
    "drums 110 + noise 0 dB": noisy(lambda: drum_track(const(110)), 0),
    "click 60->180 (ramp)": lambda: click_track(ramp(60, 180, 5, 25)),
}
SEEDS = 3
"""Each track is made with this many random seeds (hit timing jitter, noise)."""


def write_wav(path: Path, y: np.ndarray) -> None:
    pcm = (0.8 * y / np.max(np.abs(y)) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SR)
        out.writeframes(pcm.tobytes())


async def track(path: Path):
    return await find_beats.fn(path, await probe_media(path))


async def quality(tmp: Path) -> None:
    global rng
    print(f"{SEEDS} seeds per track; F-measures: mean (min)")
    print(f"{'track':32s} {'beat F':>13s} {'downbeat F':>13s}")
    beat_scores, downbeat_scores = [], []
    for name, make in TRACKS.items():
        f_beat, f_down = [], []
        for seed in range(SEEDS):
            rng = np.random.default_rng(seed)
            y, beats, downbeats = make()
            path = tmp / "track.wav"
            write_wav(path, y)
            found = await track(path)
            f_beat.append(mir_eval.beat.f_measure(beats, np.array(found.beats)))
            f_down.append(mir_eval.beat.f_measure(downbeats, np.array(found.downbeats)))
        beat_scores += f_beat
        downbeat_scores += f_down
        print(f"{name:32s} {np.mean(f_beat):6.3f} ({min(f_beat):.3f}) {np.mean(f_down):6.3f} ({min(f_down):.3f})")
    print(f"{'MEAN':32s} {np.mean(beat_scores):6.3f} ({min(beat_scores):.3f}) {np.mean(downbeat_scores):6.3f}"
          f" ({min(downbeat_scores):.3f})   targets: beat F >= 0.90, downbeat F >= 0.75")


async def speed(tmp: Path) -> None:
    global DURATION
    DURATION = 180.0
    y, _, _ = drum_track(ramp(110, 125, 60, 120))
    wav, mp3 = tmp / "long.wav", tmp / "long.mp3"
    write_wav(wav, y)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-ac", "2", "-b:a", "192k", str(mp3)], check=True)
    times = []
    for _ in range(4):
        started = time.perf_counter()
        await track(mp3)
        times.append(time.perf_counter() - started)
    cold, warm = times[0], statistics.median(times[1:])
    print(f"speed on a 3-minute stereo MP3: first call {cold:.2f} s ({DURATION / cold:.0f}x real time,"
          f" includes JIT), warm median {warm:.2f} s ({DURATION / warm:.0f}x real time; target >= 30x)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await speed(Path(tmp))
        global DURATION
        DURATION = 30.0
        await quality(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
