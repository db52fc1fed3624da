"""Beats and downbeats of music (``audio.beats``), with librosa.

1. ``OnsetFeatures`` takes the decoded audio chunk by chunk (mono, ``SR`` Hz) and keeps, per
   frame of ``HOP`` samples: the spectral flux over all mel bands and over the low band
   (kick drum, bass), and the low-frequency log spectrum. An hour of audio is ~15 MB of
   features, never the samples.
2. ``track_beats``: a local tempo curve (windowed autocorrelation of the flux, followed by
   Viterbi decoding over log-tempo so it may change over time), librosa's dynamic-programming
   beat tracker on that time-varying tempo, then a check of the metrical level (double the
   tempo when strong onsets fall half-way between beats, halve it when every other beat
   carries no low-band onset).
3. Downbeats: per beat, the low-band accent, the overall accent and the change of the bass
   spectrum from the previous beat; an HMM over the position in the bar (3 or 4 beats)
   decodes which beats start bars.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback
from flows.steps.tools.pcm import decode_pcm
from flows.steps.tools.probe import MediaProbe

SR = 22050
HOP = 512
N_FFT = 2048
N_MELS = 64
FPS = SR / HOP
FPS_INT = round(FPS)
LOW_HZ = 300.0
BASS_HZ = (30.0, 500.0)
AMIN = 1e-5
"""Floor of the mel power (about 90 dB under a full-scale sine)."""
TIME_OFFSET = 0.02
"""Seconds from a frame's centre to the onset its flux peak marks (measured on click tracks)."""
SILENCE = 10 ** (-60 / 20)
"""Peak amplitude under which the input counts as silence (-60 dBFS): no beats."""

TEMPO_MIN, TEMPO_MAX = 40.0, 240.0
TEMPO_BINS_PER_OCTAVE = 48
TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES = 120.0, 1.0
TEMPO_WINDOW = 384
"""Frames (~8.9 s) of flux in each local autocorrelation."""
TEMPO_STEP = 8
"""Frames between local tempo estimates (~0.19 s)."""
TEMPO_DRIFT_OCTAVES = 0.02
"""Typical tempo change between two estimates, in octaves."""
TEMPO_JUMP = 1e-3
"""Probability of an abrupt tempo change between two estimates..."""
TEMPO_JUMP_OCTAVES = 0.75
"""...by at most this much: never to the double or half tempo (an octave error)."""
EDGE_STRENGTH = 0.2
"""Beats at the ends whose onset is weaker than this share of the median beat's are dropped."""
LOW_BAND_SHARE = 0.2
"""The metrical level is judged on the low band when its onsets are this strong (else all bands)."""
DOUBLE_IF_MIDPOINTS = 0.5
"""Double the tempo when onsets half-way between beats reach this share of the beats' onsets."""
HALVE_IF_ALTERNATE = 0.3
"""Halve it when every other beat's onset is under this share of the others'."""
LEVEL_UNIT_DB = 6.0
"""Loudness step that counts as much as the other downbeat cues."""
BASS_RANGE = 4.0
"""Range of the bass spectrum compared between beats, in log10 units (40 dB)."""
METERS = (4, 3)
"""Beats per bar considered, the most common first (it wins ties)."""
BAR_CHANGE = 0.05
"""Probability that the decoded bar position skips (a beat missed or added)."""


@dataclass(frozen=True)
class Features:
    """Per-frame features of a whole track."""

    flux: np.ndarray
    low_flux: np.ndarray
    level: np.ndarray
    """Frame energy, dB."""
    bass: np.ndarray
    """(bins, frames) log10 power between BASS_HZ."""
    peak: float

    def times(self, frames: np.ndarray) -> np.ndarray:
        """Seconds of flux frames."""
        return (np.asarray(frames) * HOP + N_FFT / 2) / SR + TIME_OFFSET


@dataclass(frozen=True)
class _Analysis:
    window: np.ndarray
    mel: np.ndarray
    low_bands: np.ndarray
    bass_bins: slice


@lru_cache
def _analysis() -> _Analysis:
    """STFT window, mel filters and band selections (built on first use). librosa is imported
    where it is used, here and below: it is slow to import, and the API process imports this
    module without running it."""
    import librosa

    return _Analysis(
        window=np.hanning(N_FFT + 1)[:-1].astype(np.float32),
        mel=librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32),
        low_bands=librosa.mel_frequencies(N_MELS + 2, fmax=SR / 2)[1:-1] < LOW_HZ,
        bass_bins=slice(*np.searchsorted(librosa.fft_frequencies(sr=SR, n_fft=N_FFT), BASS_HZ)),
    )


class OnsetFeatures:
    """Accumulates ``Features`` from a stream of mono float32 chunks at ``SR`` Hz."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.float32)
        self._last: np.ndarray | None = None
        self._flux: list[np.ndarray] = []
        self._low: list[np.ndarray] = []
        self._level: list[np.ndarray] = []
        self._bass: list[np.ndarray] = []
        self._peak = 0.0

    def add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._peak = max(self._peak, float(np.abs(samples).max()))
        data = np.concatenate([self._buffer, samples]) if len(self._buffer) else samples
        count = 0 if len(data) < N_FFT else 1 + (len(data) - N_FFT) // HOP
        if count:
            analysis = _analysis()
            frames = np.lib.stride_tricks.sliding_window_view(data, N_FFT)[::HOP][:count]
            power = np.abs(np.fft.rfft(frames * analysis.window, axis=1)).astype(np.float32).T ** 2
            mel_db = 10 * np.log10(np.maximum(analysis.mel @ power, AMIN))
            previous = mel_db[:, :1] if self._last is None else self._last
            flux = np.maximum(0.0, np.diff(mel_db, axis=1, prepend=previous))
            self._flux.append(flux.mean(axis=0))
            self._low.append(flux[analysis.low_bands].mean(axis=0))
            self._level.append(10 * np.log10(np.maximum(power.sum(axis=0), AMIN)))
            self._bass.append(np.log10(np.maximum(power[analysis.bass_bins], 1e-6)).astype(np.float16))
            self._last = mel_db[:, -1:]
        self._buffer = data[count * HOP:].copy()

    def finish(self) -> Features:
        if not self._flux:
            empty = np.zeros(0, np.float32)
            return Features(empty, empty, empty, np.zeros((0, 0), np.float16), self._peak)
        return Features(
            np.concatenate(self._flux), np.concatenate(self._low), np.concatenate(self._level),
            np.concatenate(self._bass, axis=1), self._peak,
        )


@dataclass(frozen=True)
class Beats:
    beats: list[float]
    downbeats: list[float]


def _tempo_grid() -> np.ndarray:
    octaves = np.log2(TEMPO_MAX / TEMPO_MIN)
    return TEMPO_MIN * 2 ** (np.arange(int(octaves * TEMPO_BINS_PER_OCTAVE) + 1) / TEMPO_BINS_PER_OCTAVE)


def local_tempogram(flux: np.ndarray, bpm: np.ndarray) -> np.ndarray:
    """(tempo bins, steps) normalised autocorrelation of the windowed flux every TEMPO_STEP
    frames, read at the lags of ``bpm``."""
    signal = flux - np.convolve(flux, np.ones(FPS_INT) / FPS_INT, mode="same")
    half = TEMPO_WINDOW // 2
    padded = np.pad(signal, half)
    window = np.hanning(TEMPO_WINDOW).astype(np.float32)
    lags = 60.0 * FPS / bpm
    lag0 = np.floor(lags).astype(int)
    frac = (lags - lag0).astype(np.float32)
    centres = np.arange(0, len(flux), TEMPO_STEP)
    out = np.empty((len(bpm), len(centres)), np.float32)
    for first in range(0, len(centres), 1024):
        batch = centres[first:first + 1024]
        segments = np.lib.stride_tricks.sliding_window_view(padded, TEMPO_WINDOW)[batch] * window
        spectrum = np.fft.rfft(segments, n=2 * TEMPO_WINDOW, axis=1)
        acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : TEMPO_WINDOW]
        acf /= np.maximum(acf[:, :1], 1e-9)
        values = acf[:, lag0] * (1 - frac) + acf[:, lag0 + 1] * frac
        out[:, first:first + len(batch)] = np.maximum(values, 0).T
    return out


def tempo_curve(flux: np.ndarray) -> np.ndarray:
    """The tempo (BPM) at every frame: Viterbi path through the local tempogram."""
    import librosa

    bpm = _tempo_grid()
    gram = local_tempogram(flux, bpm)
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    likelihood = gram * prior[:, None] + 1e-6
    likelihood /= likelihood.sum(axis=0, keepdims=True)
    octave = np.log2(bpm)
    distance = np.abs(octave[:, None] - octave[None, :])
    drift = np.exp(-0.5 * (distance / TEMPO_DRIFT_OCTAVES) ** 2)
    jump = (distance <= TEMPO_JUMP_OCTAVES).astype(float)
    transition = (1 - TEMPO_JUMP) * drift / drift.sum(axis=1, keepdims=True) + TEMPO_JUMP * jump / jump.sum(
        axis=1, keepdims=True)
    path = librosa.sequence.viterbi(likelihood, transition)
    return np.repeat(bpm[path], TEMPO_STEP)[: len(flux)]


def _strength(envelope: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Peak of ``envelope`` within a frame of each (fractional) frame position."""
    index = np.clip(np.round(frames).astype(int), 1, len(envelope) - 2)
    return np.maximum(np.maximum(envelope[index - 1], envelope[index]), envelope[index + 1])


def metrical_factor(features: Features, beats: np.ndarray, tempo: np.ndarray) -> float:
    """2, 0.5 or 1: how to change the tracked tempo so that beats carry the strong onsets."""
    if len(beats) < 8:
        return 1.0
    low, full = _strength(features.low_flux, beats), _strength(features.flux, beats)
    accent = features.low_flux if np.median(low) > LOW_BAND_SHARE * np.median(full) else features.flux
    on_beat = _strength(accent, beats)
    between = _strength(accent, (beats[1:] + beats[:-1]) / 2)
    level = max(float(np.median(on_beat)), 1e-9)
    current = float(np.median(tempo[beats]))
    if np.median(between) / level > DOUBLE_IF_MIDPOINTS and 2 * current <= TEMPO_MAX:
        return 2.0
    even, odd = np.median(on_beat[::2]), np.median(on_beat[1::2])
    if min(even, odd) / max(even, odd, 1e-9) < HALVE_IF_ALTERNATE and current / 2 >= TEMPO_MIN:
        return 0.5
    return 1.0


def _dp_beats(flux: np.ndarray, tempo: np.ndarray) -> np.ndarray:
    """librosa's dynamic-programming beat tracker on a time-varying tempo, with the edges
    fixed: its own trimming drops ordinary beats near the ends, and its first beat after a
    silent start is often misplaced."""
    import librosa

    _, frames = librosa.beat.beat_track(
        onset_envelope=flux, sr=SR, hop_length=HOP, bpm=tempo, units="frames", trim=False
    )
    return _complete_edges(flux, np.asarray(frames, dtype=int), tempo)


def _complete_edges(flux: np.ndarray, beats: np.ndarray, tempo: np.ndarray) -> np.ndarray:
    """Drop weak beats at both ends, then extend the beat sequence one period at a time
    (snapped to the strongest onset nearby) while strong onsets continue it."""
    if len(beats) < 2:
        return beats
    floor = EDGE_STRENGTH * float(np.median(_strength(flux, beats)))
    strong = _strength(flux, beats) >= floor
    if not strong.any():
        return beats[:0]
    beats = list(beats[strong.argmax():len(beats) - strong[::-1].argmax()])
    for direction in (-1, 1):
        while True:
            edge = beats[0] if direction < 0 else beats[-1]
            period = 60.0 * FPS / tempo[edge]
            guess = edge + direction * period
            low, high = int(round(guess - period / 8)), int(round(guess + period / 8)) + 1
            if low < 0 or high > len(flux):
                break
            best = low + int(np.argmax(flux[low:high]))
            if flux[best] < floor:
                break
            if direction < 0:
                beats.insert(0, best)
            else:
                beats.append(best)
    return np.array(beats, dtype=int)


def _relative(values: np.ndarray) -> np.ndarray:
    """Values as a fraction above (or below) their median, clipped to [-1, 3]."""
    return np.clip(values / max(float(np.median(values)), 1e-9) - 1, -1, 3)


def downbeat_salience(features: Features, beats: np.ndarray) -> np.ndarray:
    """Per beat: how much it sounds like the first beat of a bar, from the low-band onset
    (kick, bass), the loudness (in LEVEL_UNIT_DB steps) and the change of the bass notes."""
    low = _relative(_strength(features.low_flux, beats))
    around = np.clip(beats[:, None] + np.arange(-1, 4)[None, :], 0, len(features.level) - 1)
    level = features.level[around].max(axis=1)
    level = (level - np.median(level)) / LEVEL_UNIT_DB
    bass = features.bass.astype(np.float32)
    bass = np.maximum(bass, bass.max() - BASS_RANGE)
    bounds = np.append(beats, len(features.flux))
    notes = np.stack([np.median(bass[:, a:max(b, a + 1)], axis=1) for a, b in zip(bounds[:-1], bounds[1:])])
    notes -= notes.mean(axis=1, keepdims=True)
    change = np.abs(np.diff(notes, axis=0, prepend=notes[:1])).mean(axis=1)
    return low + level + _relative(change)


def bar_positions(salience: np.ndarray, meter: int) -> np.ndarray:
    """Viterbi path of each beat's position in a bar of ``meter`` beats (0 = downbeat)."""
    advance = np.roll(np.eye(meter), 1, axis=1)
    transition = (1 - BAR_CHANGE) * advance + BAR_CHANGE * (1 - advance) / (meter - 1)
    log_transition = np.log(transition)
    emission = np.zeros((len(salience), meter))
    emission[:, 0] = salience
    score = emission[0].copy()
    back = np.zeros((len(salience), meter), dtype=int)
    for i in range(1, len(salience)):
        candidates = score[:, None] + log_transition
        back[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + emission[i]
    path = np.empty(len(salience), dtype=int)
    path[-1] = int(score.argmax())
    for i in range(len(salience) - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def contrast(salience: np.ndarray, path: np.ndarray) -> float:
    """How much more salient the decoded downbeats are than the other beats."""
    first = path == 0
    if first.all() or not first.any():
        return 0.0
    return float(salience[first].mean() - salience[~first].mean())


def track_beats(features: Features) -> Beats:
    """Beat and downbeat times (seconds) from a track's features; empty for silence."""
    if features.peak < SILENCE or len(features.flux) < TEMPO_WINDOW // 4 or features.flux.max() <= 0:
        return Beats([], [])
    tempo = tempo_curve(features.flux)
    beats = _dp_beats(features.flux, tempo)
    factor = metrical_factor(features, beats, tempo)
    if factor != 1.0:
        tempo = tempo * factor
        beats = _dp_beats(features.flux, tempo)
    if len(beats) == 0:
        return Beats([], [])
    times = features.times(beats)
    downbeats: np.ndarray = np.zeros(0)
    if len(beats) >= 6:
        salience = downbeat_salience(features, beats)
        paths = [bar_positions(salience, meter) for meter in METERS]
        path = max(paths, key=lambda found: contrast(salience, found))
        downbeats = times[path == 0]
    return Beats([round(float(t), 3) for t in times], [round(float(t), 3) for t in downbeats])


@step("beats")
async def find_beats(source: Path, probe: MediaProbe, *, progress: ProgressCallback | None = None) -> Beats:
    """Decode ``source`` as a stream and find its beats and downbeats."""
    features = OnsetFeatures()
    async with aclosing(decode_pcm(source, probe, rate=SR, chunk_seconds=10.0, progress=progress)) as chunks:
        async for chunk in chunks:
            await asyncio.to_thread(features.add, chunk)
    found = await asyncio.to_thread(lambda: track_beats(features.finish()))
    step_log("%d beats, %d downbeats in %s", len(found.beats), len(found.downbeats), source.name)
    return found
