"""video.create's sound (spec §8.3): the ffmpeg mix of the plan's audio clips, on generated
tones, checked with numpy; speech synthesis through audio.tts."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from flows.create.mix import DEFAULT_VOICE, LOUDNESS, SAMPLE_RATE, mix_audio, synthesize, voice_for
from flows.create.sxml import Speech, parse
from flows.create.timeline import Plan, plan
from flows.steps.tools.probe import MediaProbe, probe_media

FRAME = 1 / 25
TONE = "https://e.com/tone440.wav"
HIGH = "https://e.com/tone1000.mp3"
SHORT = "https://e.com/short880.wav"
SILENT = "https://e.com/silent.mp4"
SOUND_VIDEO = "https://e.com/talking.mp4"


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[dict[str, Path], dict[str, MediaProbe]]:
    """Tones (a mono 44.1 kHz WAV, a stereo MP3, a 1 s WAV), a silent video, a video with sound."""
    root = tmp_path_factory.mktemp("tones")
    files = {
        TONE: root / "tone440.wav", HIGH: root / "tone1000.mp3", SHORT: root / "short880.wav",
        SILENT: root / "silent.mp4", SOUND_VIDEO: root / "talking.mp4",
    }
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=6:sample_rate=44100", "-ac", "1", str(files[TONE]))
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:duration=8", "-ac", "2", "-b:a", "128k", str(files[HIGH]))
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=880:duration=1", str(files[SHORT]))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=2:r=10", "-c:v", "mpeg4", str(files[SILENT]))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=2:r=10", "-f", "lavfi", "-i", "sine=frequency=660:duration=2",
            "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(files[SOUND_VIDEO]))
    probes = {url: asyncio.run(probe_media(path)) for url, path in files.items()}
    return files, probes


def lay(body: str, probes: dict[str, MediaProbe], **speech_lengths: float) -> Plan:
    definition = parse(f'<movie service="craftsman-1.0"><body>{body}</body></movie>')
    lengths: dict = {url: probe.duration for url, probe in probes.items()}
    lengths.update({speech: speech_lengths.get("speech", 1.0) for speech in definition.speeches})
    return plan(definition.movie, lengths)


def render(movie: Plan, media, tmp_path: Path, *, normalize: bool = True, sources=None, lead_input: bool = False) -> np.ndarray:
    """Mix ``movie`` with ffmpeg into a WAV; its samples (float, shape (n, 2))."""
    files, probes = media
    first = 1 if lead_input else 0
    mixed = mix_audio(movie, sources or files, probes, first, normalize=normalize)
    assert mixed is not None
    inputs, graph, label = mixed
    lead = ["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono:d=0.5"] if lead_input else []
    out = tmp_path / "mix.wav"
    _ffmpeg(*lead, *inputs, "-filter_complex", graph, "-map", label, "-c:a", "pcm_s16le", str(out))
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == SAMPLE_RATE and wav.getnchannels() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data.reshape(-1, 2).astype(np.float64) / 32768


def rms(samples: np.ndarray, start: float, end: float) -> float:
    part = samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    return float(np.sqrt(np.mean(part**2))) if len(part) else 0.0


def level(samples: np.ndarray, start: float, end: float, frequency: float) -> float:
    """Amplitude of ``frequency`` in ``[start, end)`` (left channel, Hann-windowed FFT)."""
    part = samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE), 0]
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part))))
    freqs = np.fft.rfftfreq(len(part), 1 / SAMPLE_RATE)
    band = (freqs > frequency - 15) & (freqs < frequency + 15)
    return float(spectrum[band].max() / (np.hanning(len(part)).sum() / 2))


def test_duration_silence_before_the_start_and_sound_after(media, tmp_path):
    movie = lay(f'<stack duration="3.5"><audio filename="{TONE}" margin-start="1.2" duration=".."/></stack>', media[1])
    assert movie.duration == 3.5
    out = render(movie, media, tmp_path, lead_input=True)  # inputs numbered from first_input=1
    assert abs(len(out) / SAMPLE_RATE - 3.5) <= FRAME
    assert len(out) == 3.5 * SAMPLE_RATE  # sample-exact in fact
    assert rms(out, 0.0, 1.15) < 1e-4
    assert rms(out, 1.3, 3.5) > 0.05
    assert level(out, 1.5, 3.5, 440) > 10 * level(out, 1.5, 3.5, 1000)
    assert np.abs(out[:, 0] - out[:, 1]).max() < 1e-3  # a mono source on both channels


def test_the_mix_is_padded_and_cut_to_the_movie(media, tmp_path):
    # a 1 s sound in a 3 s movie: silence after it; a 6 s sound in a 2 s movie: cut
    short = lay(f'<stack duration="3"><audio filename="{SHORT}"/></stack>', media[1])
    out = render(short, media, tmp_path, normalize=False)
    assert len(out) == 3 * SAMPLE_RATE and rms(out, 0.1, 0.9) > 0.05 and rms(out, 1.05, 3) < 1e-4
    long = lay(f'<stack duration="2"><audio filename="{TONE}"/></stack>', media[1])
    out = render(long, media, tmp_path)
    assert len(out) == 2 * SAMPLE_RATE and rms(out, 1.5, 2.0) > 0.05


def test_fade_in_rises_and_fade_out_falls(media, tmp_path):
    movie = lay(f'<stack duration="4"><audio filename="{TONE}" fadein="1" fadeout="1" duration=".."/></stack>', media[1])
    out = render(movie, media, tmp_path, normalize=False)
    rises = [rms(out, t, t + 0.1) for t in np.arange(0, 1, 0.1)]
    assert all(b > a for a, b in zip(rises, rises[1:]))
    assert rises[0] < 0.15 * rises[-1]
    full = rms(out, 1.5, 2.5)
    assert abs(full - 0.125 / np.sqrt(2)) < 0.005  # ffmpeg's sine: amplitude 1/8, level kept
    falls = [rms(out, t, t + 0.1) for t in np.arange(3, 4, 0.1)]
    assert all(b < a for a, b in zip(falls, falls[1:])) and falls[-1] < 0.15 * full


def test_overlapping_clips_are_both_heard(media, tmp_path):
    movie = lay(
        f'<stack duration="4"><audio filename="{TONE}" duration=".."/>'
        f'<audio filename="{HIGH}" margin-start="1" skip="2" duration="2"/></stack>', media[1],
    )
    out = render(movie, media, tmp_path)
    assert level(out, 0.0, 0.9, 1000) < 0.05 * level(out, 0.0, 0.9, 440)
    low, high = level(out, 1.2, 2.9, 440), level(out, 1.2, 2.9, 1000)
    assert low > 0.01 and high > 0.01 and 0.5 < low / high < 2
    assert level(out, 3.1, 4.0, 1000) < 0.05 * level(out, 3.1, 4.0, 440)


def test_half_volume_is_six_decibels_down(media, tmp_path):
    movie = lay(
        f'<sequence><audio filename="{TONE}" duration="1.5"/><audio filename="{TONE}" duration="1.5" volume="0.5"/>'
        "</sequence>", media[1],
    )
    assert [(c.start, c.end, c.volume) for c in movie.audio] == [(0.0, 1.5, 1.0), (1.5, 3.0, 0.5)]
    out = render(movie, media, tmp_path, normalize=False)
    drop = 20 * np.log10(rms(out, 1.7, 2.9) / rms(out, 0.2, 1.4))
    assert abs(drop + 6.02) < 0.3


def test_speed_and_loop(media, tmp_path):
    fast = lay(f'<stack duration="2"><audio filename="{SHORT}" speed="2"/></stack>', media[1])
    assert fast.audio[0].length == 0.5
    out = render(fast, media, tmp_path, normalize=False)
    assert rms(out, 0.05, 0.45) > 0.05 and rms(out, 0.55, 2) < 1e-4  # 1 s played in 0.5 s
    assert level(out, 0.05, 0.45, 880) > 0.05  # atempo keeps the pitch
    looped = lay(f'<stack duration="3.5"><audio filename="{SHORT}" loop="true" duration=".."/></stack>', media[1])
    out = render(looped, media, tmp_path, normalize=False)
    assert min(rms(out, t, t + 0.4) for t in (0.1, 1.1, 2.1, 3.05)) > 0.05


def test_a_video_without_sound_is_skipped_and_one_with_sound_is_mixed(media, tmp_path):
    files, probes = media
    silent = lay(f'<effect type="none"><video filename="{SILENT}"/></effect>', probes)
    assert silent.audio and silent.audio[0].video
    assert mix_audio(silent, files, probes, 0) is None
    both = lay(
        f'<stack><effect type="none"><video filename="{SILENT}"/></effect>'
        f'<audio filename="{SHORT}"/></stack>', probes,
    )
    inputs, graph, label = mix_audio(both, files, probes, 3)
    assert inputs.count("-i") == 1 and str(files[SHORT]) in inputs and "[3:a]" in graph
    talking = lay(f'<effect type="none"><video filename="{SOUND_VIDEO}"/></effect>', probes)
    out = render(talking, media, tmp_path, normalize=False)
    assert level(out, 0.2, 1.8, 660) > 0.05
    muted = lay(f'<effect type="none"><video filename="{SOUND_VIDEO}" audio="false"/></effect>', probes)
    assert mix_audio(muted, files, probes, 0) is None


def test_inputs_go_through_the_demuxer_allow_list(media):
    files, probes = media
    movie = lay(f'<stack duration="3"><audio filename="{HIGH}" skip="1"/><audio filename="{SHORT}" loop="true"'
                f' duration=".."/></stack>', probes)
    inputs, _, _ = mix_audio(movie, files, probes, 0)
    assert inputs.count("-format_whitelist") == inputs.count("-i") == 2
    assert inputs[inputs.index("-i") - 1] == "1.000000"  # the skip is an input seek
    assert inputs[inputs.index("-i") - 4 : inputs.index("-i") - 2] == ["-f", "mp3"]
    assert "-stream_loop" in inputs  # the short file repeats


def test_loudness_is_normalised_to_the_target(media, tmp_path):
    movie = lay(
        f'<stack duration="6"><audio filename="{TONE}" volume="0.2"/><audio filename="{HIGH}" volume="0.1"/></stack>',
        media[1],
    )
    out = render(movie, media, tmp_path)
    wav = tmp_path / "mix.wav"
    measured = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(wav), "-af", "loudnorm=print_format=json", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stderr
    stats = json.loads(re.search(r"\{[^{}]*\}", measured[measured.rindex("Parsed_loudnorm"):]).group(0))
    assert abs(float(stats["input_i"]) - LOUDNESS["I"]) < 1.5
    assert float(stats["input_tp"]) <= LOUDNESS["TP"] + 0.5
    assert len(out) == 6 * SAMPLE_RATE


def test_ducking_turns_the_music_down_under_the_voice(media, tmp_path):
    movie = lay(
        f'<stack duration="5"><audio filename="{HIGH}" duration=".."/>'
        f'<audio filename="{SHORT}" margin-start="2" duck-others="0.25" duck-margin="0.2" duck-fade="0.3"/></stack>',
        media[1],
    )
    out = render(movie, media, tmp_path, normalize=False)
    before, under, after = level(out, 0.2, 1.4, 1000), level(out, 2.0, 3.0, 1000), level(out, 3.6, 4.8, 1000)
    assert abs(under / before - 0.25) < 0.03 and abs(after / before - 1) < 0.03
    assert level(out, 2.0, 3.0, 880) > 0.05  # the voice itself is not ducked


def test_voices_map_to_the_tts_engine():
    assert voice_for("neospeech:julie") == "neospeech:julie"
    assert voice_for("NeoSpeech:Paul") == "neospeech:paul"
    assert voice_for("paul") == "neospeech:paul" and voice_for("neospeech:kate") == "neospeech:julie"
    assert voice_for("acapela:bob") == DEFAULT_VOICE


def test_speech_is_synthesised_once_and_mixed(media, tmp_path):
    files, probes = media
    definition = parse(
        '<movie service="craftsman-1.0"><body><stack><sequence>'
        '<audio voice="neospeech:julie">Hello.</audio><audio voice="neospeech:paul">Hi.</audio>'
        '<audio voice="neospeech:julie">Hello.</audio></sequence></stack></body></movie>'
    )
    spoken = asyncio.run(synthesize(plan(definition.movie, {s: 1.0 for s in definition.speeches}), tmp_path / "tts"))
    assert set(spoken) == {Speech("neospeech:julie", "Hello."), Speech("neospeech:paul", "Hi.")}
    assert len(set(spoken.values())) == 2 and all(path.stat().st_size > 1000 for path in spoken.values())
    lengths = {speech: asyncio.run(probe_media(path)).duration for speech, path in spoken.items()}
    movie = plan(definition.movie, lengths)
    julie = Speech("neospeech:julie", "Hello.")
    out = render(movie, media, tmp_path, sources={**files, **spoken})
    assert abs(len(out) / SAMPLE_RATE - movie.duration) <= FRAME
    assert rms(out, 0, lengths[julie]) > 0.01
