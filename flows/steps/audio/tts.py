"""Text to speech with espeak-ng (``audio.tts``): offline, US-English voices."""

from __future__ import annotations

from pathlib import Path

from flows.steps.step import step, step_log
from flows.steps.tools.process import run_tool

# Client voice names -> espeak-ng voices: a female and a male US-English voice.
VOICES = {
    "neospeech:julie": "en-us+f3",
    "neospeech:paul": "en-us",
}
# Seconds allowed to espeak-ng: a base plus this much per character (it runs ~50x real time).
TIMEOUT_BASE = 30.0
TIMEOUT_PER_CHAR = 0.01


@step("tts", run_name="tts {voice}")
async def speak(text: str, voice: str, dest_dir: Path) -> Path:
    """Speak ``text`` with ``voice`` (a key of VOICES) into ``dest_dir/speech.wav``.

    The text goes through a file, never the command line; SSML and other markup are off.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    text_file, wav = dest_dir / "text.txt", dest_dir / "speech.wav"
    text_file.write_text(text, encoding="utf-8")
    await run_tool(
        ["espeak-ng", "-b", "1", "-v", VOICES[voice], "-f", str(text_file), "-w", str(wav)],
        timeout=TIMEOUT_BASE + TIMEOUT_PER_CHAR * len(text), what="espeak-ng",
    )
    step_log("%d characters spoken by %s (%d bytes of WAV)", len(text), VOICES[voice], wav.stat().st_size)
    return wav
