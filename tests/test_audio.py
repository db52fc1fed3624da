"""Audio tasks: the steps on generated sounds (waveform pixels, beat times of a click track,
copy versus re-encode, bad inputs, speech) and the five tasks end to end through the API
and the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from flows.audio import AudioTTSParams, AudioWaveformParams
from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.audio import tts as tts_step
from flows.steps.audio.beats import find_beats
from flows.steps.audio.encode import encode_audio
from flows.steps.audio.probe import probe_audio
from flows.steps.audio.waveform import PeakEnvelope, draw_waveform, render_waveform
from flows.steps.tools.probe import probe_media

SR = 44100
BPM = 100.0
FIRST_BEAT = 0.5


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def write_wav(path: Path, samples: np.ndarray, rate: int = SR) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def click_track(seconds: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """A metronome at BPM whose first beat of every 4 is higher and louder; (samples, beat times)."""
    beats = np.arange(FIRST_BEAT, seconds - 0.3, 60.0 / BPM)
    y = np.zeros(int(seconds * SR))
    n = int(0.03 * SR)
    t = np.arange(n) / SR
    for k, time in enumerate(beats):
        freq, amp = (1600, 0.9) if k % 4 == 0 else (1000, 0.5)
        i = int(round(time * SR))
        y[i:i + n] += amp * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.008)
    return y, beats


def tone_then_silence(path: Path, seconds: float = 4.0) -> Path:
    """A full-scale-ish 220 Hz tone for the first half, silence for the second half."""
    t = np.arange(int(seconds * SR)) / SR
    return write_wav(path, 0.9 * np.sin(2 * np.pi * 220 * t) * (t < seconds / 2))


def decode(path: Path, rate: int = 16000) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate),
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, "<f4")


def packets_md5(path: Path) -> str:
    """MD5 of the audio packets as stored (equal for a stream copy, different after re-encoding)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "md5", "-"],
                          check=True, capture_output=True, text=True).stdout.strip()


def median_pitch(samples: np.ndarray, rate: int = 16000) -> float:
    import librosa

    f0 = librosa.yin(samples, fmin=60, fmax=400, sr=rate)
    voiced = f0[(f0 > 61) & (f0 < 399)]
    return float(np.median(voiced))


def matched(found: list[float], truth: np.ndarray, window: float = 0.07) -> float:
    """Share of ``truth`` times with a ``found`` time within ``window`` s."""
    found_arr = np.array(found)
    return float(np.mean([np.min(np.abs(found_arr - t)) <= window for t in truth])) if len(found) else 0.0


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sounds")
    y, _ = click_track()
    files = {
        "click.wav": write_wav(root / "click.wav", 0.9 * y),
        "tone.wav": tone_then_silence(root / "tone.wav"),
        "silence.wav": write_wav(root / "silence.wav", np.zeros(5 * SR)),
    }
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=3", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(root / "tone.mp3"))
    files["tone.mp3"] = root / "tone.mp3"
    data = files["tone.mp3"].read_bytes()
    (root / "truncated.mp3").write_bytes(data[: len(data) // 2])
    files["truncated.mp3"] = root / "truncated.mp3"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(root / "mute.mp4"))
    files["mute.mp4"] = root / "mute.mp4"
    (root / "notes.txt").write_text("these are not the sounds you are looking for\n" * 50)
    files["notes.txt"] = root / "notes.txt"
    # ADTS AAC: silence then noise, whose duration ffprobe can only estimate from the bit rate
    ffmpeg("-f", "lavfi", "-i", "anullsrc=d=4", "-f", "lavfi", "-i", "anoisesrc=d=4:a=0.5",
           "-filter_complex", "[0][1]concat=n=2:v=0:a=1", "-c:a", "aac", "-f", "adts", str(root / "raw.aac"))
    files["raw.aac"] = root / "raw.aac"
    return files


# -- steps -----------------------------------------------------------------------------------

def test_peak_envelope_spreads_blocks_over_columns():
    envelope = PeakEnvelope(block=10)
    samples = np.concatenate([np.full(500, 0.5), np.full(500, -0.25)]).astype(np.float32)
    for chunk in np.array_split(samples, 7):  # uneven chunks, blocks across chunk edges
        envelope.add(chunk)
    low, high = envelope.columns(4)
    assert high.tolist() == [0.5, 0.5, -0.25, -0.25] and low.tolist() == [0.5, 0.5, -0.25, -0.25]
    wide_low, wide_high = envelope.columns(400)  # more columns than blocks: each shows its block
    assert len(wide_high) == 400 and wide_high[0] == 0.5 and wide_high[-1] == -0.25


def test_render_waveform_scales_to_the_margin():
    image = render_waveform(np.array([-1.0, -0.5, 0.0]), np.array([1.0, 0.5, 0.0]),
                            height=41, vmargin=5, fill="#ff0000", background="#ffffff")
    column = [image.getpixel((x, y)) == (255, 0, 0) for x in range(3) for y in range(41)]
    filled = [sum(column[x * 41:(x + 1) * 41]) for x in range(3)]
    # full scale: 41 - 2*5 rows; half scale: half of them (+-1 for rounding); silence: the centre row
    assert filled[0] == 31 and 15 <= filled[1] <= 17 and filled[2] == 1
    assert image.getpixel((0, 4)) == (255, 255, 255) and image.getpixel((0, 5)) == (255, 0, 0)


async def test_draw_waveform_fills_where_the_signal_is_loud(sounds, tmp_path):
    audio = await probe_audio.fn(sounds["tone.wav"])
    path, mime = await draw_waveform.fn(sounds["tone.wav"], audio, tmp_path, width=200, height=50, vmargin=2,
                                     fill="#00ff00", background="#000080", format="png")
    image = Image.open(path).convert("RGB")
    assert mime == "image/png" and image.size == (200, 50)
    fill, background = (0, 255, 0), (0, 0, 128)
    # loud first half: each column filled from near the top margin to near the bottom margin
    for x in (10, 50, 90):
        assert image.getpixel((x, 5)) == fill and image.getpixel((x, 44)) == fill
        assert image.getpixel((x, 0)) == background
    # silent second half: only the centre line
    for x in (120, 160, 199):
        assert image.getpixel((x, 5)) == background and image.getpixel((x, 44)) == background
    # start/end: the window 1.5 s - 2.5 s is loud in its first half only
    part, _ = await draw_waveform.fn(sounds["tone.wav"], audio, tmp_path / "part", width=100, height=50,
                                  fill="#00ff00", background="#000080", start=1.5, end=2.5, format="png")
    window = Image.open(part).convert("RGB")
    assert window.getpixel((20, 5)) == fill and window.getpixel((80, 5)) == background
    with pytest.raises(TaskError, match="start"):
        await draw_waveform.fn(sounds["tone.wav"], audio, tmp_path, width=10, height=10, start=9.0)


async def test_find_beats_on_a_click_track(sounds):
    found = await find_beats.fn(sounds["click.wav"], await probe_media(sounds["click.wav"]))
    _, truth = click_track()
    assert matched(found.beats, truth) >= 0.95
    assert matched(truth.tolist(), np.array(found.beats)) >= 0.95  # and few extra beats
    assert matched(found.downbeats, truth[::4]) >= 0.9
    assert len(found.downbeats) <= len(truth[::4]) + 1
    silent = await find_beats.fn(sounds["silence.wav"], await probe_media(sounds["silence.wav"]))
    assert silent.beats == [] and silent.downbeats == []


async def test_convert_copies_same_codec_unless_forced(sounds, tmp_path):
    source = sounds["tone.mp3"]
    audio = await probe_audio.fn(source)
    copied = await encode_audio.fn(source, audio.probe, tmp_path / "copy", "mp3", duration=audio.duration, force=False)
    forced = await encode_audio.fn(source, audio.probe, tmp_path / "force", "mp3", duration=audio.duration, force=True)
    assert packets_md5(copied) == packets_md5(source) != packets_md5(forced)
    for path in (copied, forced):
        probe = await probe_media(path)
        assert probe.audio.codec == "mp3" and abs(probe.duration - 3.0) < 0.1
    aac = await encode_audio.fn(source, audio.probe, tmp_path / "aac", "aac", duration=audio.duration, force=False)
    probe = await probe_media(aac)
    assert aac.suffix == ".m4a" and probe.audio.codec == "aac" and abs(probe.duration - 3.0) < 0.1


async def test_probe_audio_names_what_is_wrong(sounds):
    with pytest.raises(TaskError, match="not a readable audio file"):
        await probe_audio.fn(sounds["notes.txt"])
    with pytest.raises(TaskError, match="no audio stream.*video"):
        await probe_audio.fn(sounds["mute.mp4"])
    with pytest.raises(TaskError, match=r"truncated: its audio stops at 1\.\d+ s but the file announces 3\.\d+ s"):
        await probe_audio.fn(sounds["truncated.mp3"])
    raw = await probe_audio.fn(sounds["raw.aac"])  # ffprobe's bit-rate estimate is far off; the measure is not
    assert raw.codec == "aac" and raw.content_type == "audio/aac" and abs(raw.duration - 8.0) < 0.1
    assert abs((await probe_media(sounds["raw.aac"])).duration - 8.0) > 1


async def test_speak_voices_differ_and_length_follows_text(tmp_path):
    short = "The quick brown fox jumps over the lazy dog."
    julie = await tts_step.speak.fn(short, "neospeech:julie", tmp_path / "j")
    paul = await tts_step.speak.fn(short, "neospeech:paul", tmp_path / "p")
    longer = await tts_step.speak.fn(short * 3, "neospeech:julie", tmp_path / "l")
    durations = [(await probe_media(p)).duration for p in (julie, paul, longer)]
    assert durations[2] > 2.5 * durations[0] > 0
    assert median_pitch(decode(julie)) > 1.5 * median_pitch(decode(paul))


def test_tts_and_waveform_parameters(monkeypatch):
    assert AudioTTSParams(text="hi", voice="neospoken: paul").voice == "neospeech:paul"
    monkeypatch.setenv("DRAGONFLOW_TTS_MAX_CHARS", "10")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValidationError, match="11 characters long; the limit is 10"):
            AudioTTSParams(text="x" * 11)
    finally:
        monkeypatch.delenv("DRAGONFLOW_TTS_MAX_CHARS")
        get_settings.cache_clear()
    with pytest.raises(ValidationError, match="text is empty"):
        AudioTTSParams(text="   ")
    with pytest.raises(ValidationError, match="not a color"):
        AudioWaveformParams(url="http://x/a.mp3", fill="blurple")
    with pytest.raises(ValidationError, match="end"):
        AudioWaveformParams(url="http://x/a.mp3", start=5, end=2)
    with pytest.raises(ValidationError, match="vmargin"):
        AudioWaveformParams(url="http://x/a.mp3", height=10, vmargin=5)


# -- end to end ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(media, sounds) -> dict[str, str]:
    """The generated sounds served by the test media server: name -> URL."""
    for name, path in sounds.items():
        (media.directory / name).write_bytes(path.read_bytes())
    return {name: f"{media.base}/{name}" for name in sounds}


def fetch_output(status: dict, tmp_path: Path, name: str) -> Path:
    response = httpx.get(status["result"]["output"])
    assert response.status_code == 200
    path = tmp_path / name
    path.write_bytes(response.content)
    return path


async def test_info_and_convert_end_to_end(service, served, sounds, tmp_path):
    info = await asyncio.to_thread(service.run, {"task_name": "audio.info", "url": served["tone.mp3"]})
    assert info["status"] == "success", info
    assert info["result"]["codec"] == "mp3" and info["result"]["content_type"] == "audio/mpeg"
    assert abs(info["result"]["duration"] - 3.0) < 0.1 and round(info["result"]["duration"], 2) == info["result"]["duration"]

    status = await asyncio.to_thread(service.run, {"task_name": "audio.convert", "url": served["tone.mp3"], "codec": "vorbis"})
    assert status["status"] == "success", status
    result = status["result"]
    assert result["content_type"] == "audio/ogg" and result["output"].endswith(".ogg")
    output = await probe_media(fetch_output(status, tmp_path, "out.ogg"))
    assert output.audio.codec == "vorbis" and abs(output.duration - 3.0) < 0.1
    assert abs(result["duration"] - output.duration) < 0.02
    # it plays: the decoded tone has the source's level
    rms = [float(np.sqrt(np.mean(decode(path) ** 2))) for path in (tmp_path / "out.ogg", sounds["tone.mp3"])]
    assert rms[1] > 0.05 and abs(rms[0] / rms[1] - 1) < 0.05


async def test_waveform_end_to_end(service, served, tmp_path):
    status = await asyncio.to_thread(service.run, {
        "task_name": "audio.waveform", "url": served["tone.wav"], "width": 300, "height": 40,
        "fill": "#ff0000", "background": "#ffffff", "format": "png"})
    assert status["status"] == "success", status
    result = status["result"]
    assert (result["width"], result["height"], result["content_type"]) == (300, 40, "image/png")
    assert abs(result["duration"] - 4.0) < 0.05
    image = Image.open(io.BytesIO(httpx.get(result["output"]).content)).convert("RGB")
    assert image.size == (300, 40)
    assert image.getpixel((60, 3)) == (255, 0, 0) and image.getpixel((240, 3)) == (255, 255, 255)
    default = await asyncio.to_thread(service.run, {"task_name": "audio.waveform", "url": served["tone.wav"]})
    assert default["status"] == "success", default
    assert default["result"]["content_type"] == "image/jpeg"
    assert Image.open(io.BytesIO(httpx.get(default["result"]["output"]).content)).size == (1024, 60)


async def test_beats_end_to_end(service, served):
    status = await asyncio.to_thread(service.run, {"task_name": "audio.beats", "url": served["click.wav"]})
    assert status["status"] == "success", status
    _, truth = click_track()
    result = status["result"]
    assert result["duration"] == 20 and isinstance(result["duration"], int)
    assert matched(result["beats"], truth) >= 0.95 and matched(result["downbeats"], truth[::4]) >= 0.9
    silent = await asyncio.to_thread(service.run, {"task_name": "audio.beats", "url": served["silence.wav"]})
    assert silent["status"] == "success", silent
    assert silent["result"]["beats"] == [] and silent["result"]["downbeats"] == []


async def test_tts_end_to_end(service, tmp_path):
    text = "Dragonflow speaks. "
    runs = {
        "short": {"text": text},
        "long": {"text": (text * 4 + "\n\n") * 3, "codec": "ogg"},
        "paul": {"text": text, "voice": "neospeech:paul"},
    }
    statuses = {}
    for name, params in runs.items():
        statuses[name] = await asyncio.to_thread(service.run, {"task_name": "audio.tts", **params})
        assert statuses[name]["status"] == "success", statuses[name]
    assert statuses["short"]["result"]["content_type"] == "audio/mpeg"
    assert statuses["long"]["result"]["content_type"] == "audio/ogg"
    assert statuses["long"]["result"]["duration"] > 8 * statuses["short"]["result"]["duration"] > 0
    files = {name: fetch_output(status, tmp_path, name) for name, status in statuses.items()}
    assert (await probe_media(files["short"])).audio.codec == "mp3"
    assert (await probe_media(files["long"])).audio.codec == "vorbis"
    assert median_pitch(decode(files["short"])) > 1.5 * median_pitch(decode(files["paul"]))
    too_long = await asyncio.to_thread(service.run, {"task_name": "audio.tts", "text": "x" * 20001})
    assert too_long["status"] == "error"
    assert "limit is 20000" in json.dumps(too_long["error"])


async def test_bad_inputs_end_to_end(service, served):
    cases = {
        "notes.txt": "not a readable audio file",
        "mute.mp4": "no audio stream",
        "truncated.mp3": "truncated",
    }
    for name, message in cases.items():
        status = await asyncio.to_thread(service.run, {"task_name": "audio.info", "url": served[name]})
        assert status["status"] == "error" and message in status["error"], status


def test_all_five_on_v1(service, served):
    tasks = [
        {"task_name": "audio.info", "url": served["tone.mp3"]},
        {"task_name": "audio.convert", "url": served["tone.mp3"], "codec": "vorbis"},
        {"task_name": "audio.waveform", "url": served["tone.wav"], "format": "png"},
        {"task_name": "audio.beats", "url": served["click.wav"]},
        {"task_name": "audio.tts", "text": "Version one.", "voice": "neospoken: paul"},
    ]
    response = service.http.post("/v1/create", json={"secret": service.account["secret"], "block": True, "tasks": tasks})
    assert response.status_code == 200, response.text
    info, convert, waveform, beats, tts = response.json()
    assert all(status["status"] == "success" for status in (info, convert, waveform, beats, tts)), response.json()
    assert info["result"]["codec"] == "mp3" and abs(info["result"]["duration"] - 3.0) < 0.1
    for status in (convert, waveform, tts):
        assert "/storage/volatile/" in status["result"]["output"]  # v1's default store
    assert convert["result"]["content_type"] == "audio/ogg"
    assert Image.open(io.BytesIO(httpx.get(waveform["result"]["output"]).content)).size == (1024, 60)
    _, truth = click_track()
    assert matched(beats["result"]["beats"], truth) >= 0.95
    assert tts["result"]["content_type"] == "audio/mpeg" and tts["result"]["duration"] > 0.5


def test_cli_runs_audio_info(service, served):
    done = service.cli("run", "audio.info", f"url={served['raw.aac']}")
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout)
    assert status["status"] == "success" and status["result"]["codec"] == "aac"
    assert abs(status["result"]["duration"] - 8.0) < 0.1
