"""The sound of a movie (spec §8.3): speech synthesis and the ffmpeg mix of every AudioClip.

``synthesize(plan, dest_dir)`` speaks each distinct ``Speech`` of the plan once (audio.tts's
``speak`` step) and returns its WAV. ``mix_audio(plan, sources, probes, first_input)`` returns
what the renderer adds to its ffmpeg command: the input options of the audio files (each
through ``input_args``, so the demuxer allow-list applies), a ``filter_complex`` fragment and
the label of its output stream, ``[aout]`` (None when nothing is audible).

Each clip's chain, in this order: decode from ``skip`` (an input seek; or, for a looping clip,
``-stream_loop`` plus ``atrim``: the file repeats from its beginning after the first, skipped,
play) → resample to 48 kHz stereo float (a mono source on both channels at its level) → cut to the played length → ``atempo`` for ``speed``
→ ``volume`` → linear ``afade`` in at the start and out at the end of the *played* segment (the
clip's span, or the source's end when it is shorter and does not loop) → ``adelay`` to the
clip's start. Clips whose file has no audio stream (a silent video) are left out.

The clips are summed with ``amix`` (``normalize=0``: levels are not divided by the number of
inputs), padded with silence and cut to exactly ``plan.duration`` (sample-exact at 48 kHz),
then loudness-normalised to **EBU R128 −16 LUFS integrated, −1.5 dBTP true peak** (``LOUDNESS``:
the usual target for web/mobile video) with ``loudnorm`` in **single pass**: the mix exists
only inside the render's ffmpeg graph, and a two-pass (measure, then apply) would decode and
mix every source twice, in an extra ffmpeg run before the render; single-pass (dynamic mode,
3 s look-ahead and a true-peak limiter) lands within about 1 LU of the target in the same
process. loudnorm resamples to 192 kHz in that mode, so the result is resampled back to 48 kHz.

Ducking (``duck-others`` on a clip, spec §8.3): while a master clip plays, the sum of the
non-master clips is turned down to ``duck-others`` (0–1), from ``duck-margin`` s (default 0.5)
before its start to ``duck-margin`` s after its end, with linear ramps of ``duck-fade`` s
(default 1.0). The master's playing span stands for "audible" (its ``duck-threshold`` sound
detection is not done: speech from audio.tts is sound from start to end).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from prefect.context import FlowRunContext, TaskRunContext

from flows.create.sxml import Speech
from flows.create.timeline import AudioClip, Plan
from flows.steps.audio.tts import VOICES, speak
from flows.steps.tools.ffmpeg import input_args
from flows.steps.tools.probe import MediaProbe

SAMPLE_RATE = 48_000
LOUDNESS = {"I": -16.0, "TP": -1.5, "LRA": 11.0}
"""loudnorm's targets: integrated loudness (LUFS), true peak (dBTP), loudness range (LU)."""
OUTPUT = "[aout]"

DEFAULT_VOICE = "neospeech:julie"
"""The voice of a ``voice=`` name that is not known (the spec's first documented voice)."""
_VOICE_ALIASES = {"julie": "neospeech:julie", "kate": "neospeech:julie", "paul": "neospeech:paul"}

DUCK_MARGIN = 0.5
DUCK_FADE = 1.0


# --------------------------------------------------------------------------- speech


def voice_for(name: str) -> str:
    """The audio.tts voice (a key of ``VOICES``) for an SXML ``voice=`` name.

    ``neospeech:julie`` and ``neospeech:paul`` are themselves; a bare or differently prefixed
    ``julie``/``paul``/``kate`` (kate, in the schema's comment, is a female voice like julie)
    maps by name, any case; anything else is ``DEFAULT_VOICE``."""
    key = name.strip().lower()
    if key in VOICES:
        return key
    return _VOICE_ALIASES.get(key.rpartition(":")[2], DEFAULT_VOICE)


def speeches(plan: Plan) -> list[Speech]:
    """The distinct speeches of the plan, in path order."""
    return list(dict.fromkeys(clip.source for clip in plan.audio if isinstance(clip.source, Speech)))


async def synthesize(plan: Plan, dest_dir: Path) -> dict[Speech, Path]:
    """A WAV for each distinct ``Speech`` in ``plan.audio`` (one ``speak`` each, concurrently;
    the ``tts`` step's task runs inside a flow, its function outside one)."""
    todo = speeches(plan)
    in_run = FlowRunContext.get() is not None or TaskRunContext.get() is not None
    say = speak if in_run else getattr(speak, "fn", speak)
    paths = await asyncio.gather(*(
        say(speech.text, voice_for(speech.voice), dest_dir / f"speech-{index:02d}")
        for index, speech in enumerate(todo)
    ))
    return dict(zip(todo, paths))


# --------------------------------------------------------------------------- mix


def _num(value: float) -> str:
    """A number for a filter argument (no exponent, trailing zeros dropped)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _atempo(speed: float) -> list[str]:
    """``atempo`` filters whose product is ``speed`` (each factor within 0.5–2)."""
    filters = []
    while speed > 2.0:
        filters.append("atempo=2")
        speed /= 2.0
    while speed < 0.5:
        filters.append("atempo=0.5")
        speed /= 0.5
    if abs(speed - 1.0) > 1e-9:
        filters.append(f"atempo={_num(speed)}")
    return filters


def _played(clip: AudioClip, duration: float) -> tuple[float, float]:
    """(span, played): seconds of the clip inside the movie, and of sound in it."""
    span = min(clip.end, duration) - clip.start
    if clip.loop or clip.length is None:
        return span, span
    return span, max(0.0, min(span, clip.length))


def _audible(clip: AudioClip, probes: dict[str, MediaProbe], duration: float) -> bool:
    if clip.volume <= 0 or clip.start >= duration or _played(clip, duration)[1] <= 1e-6:
        return False
    if isinstance(clip.source, str):
        probe = probes.get(clip.source)
        if probe is not None and probe.audio is None:
            return False  # a video without sound, or a file with nothing to hear
        if probe is None and clip.video:
            return False
    return True


def _duck_level(clip: AudioClip) -> float | None:
    level = clip.duck.get("duck-others")
    return None if level is None else min(1.0, max(0.0, float(level)))


def _duck_gain(masters: list[AudioClip], duration: float) -> str:
    """A ``volume`` expression of ``t``: 1, lowered to each master's level around its span."""
    gains = []
    for clip in masters:
        level = _duck_level(clip)
        margin = float(clip.duck.get("duck-margin", DUCK_MARGIN) or 0.0)
        fade = max(0.001, float(clip.duck.get("duck-fade", DUCK_FADE) or 0.0))
        start = clip.start - margin
        end = clip.start + _played(clip, duration)[1] + margin
        ramp_in = f"clip((t-({_num(start - fade)}))/{_num(fade)},0,1)"
        ramp_out = f"clip((({_num(end + fade)})-t)/{_num(fade)},0,1)"
        gains.append(f"(1-{_num(1 - level)}*{ramp_in}*{ramp_out})")
    expression = gains[0]
    for gain in gains[1:]:
        expression = f"min({expression},{gain})"
    return expression


def mix_audio(
    plan: Plan,
    sources: dict[str | Speech, Path],
    probes: dict[str, MediaProbe],
    first_input: int,
    *,
    normalize: bool = True,
) -> tuple[list[str], str, str] | None:
    """ffmpeg inputs, a ``filter_complex`` fragment and its output label (``[aout]``) for the
    sound of ``plan``: ``plan.duration`` seconds of 48 kHz stereo. ``sources``: the local file
    of every URL and ``Speech`` of ``plan.audio``; ``probes``: the probe of every URL;
    ``first_input``: the ffmpeg input index of the first file added here (inputs are added in
    order). None when nothing is audible. ``normalize=False`` leaves out the loudness
    normalisation (levels as mixed; for measuring)."""
    duration = plan.duration
    clips = [clip for clip in plan.audio if _audible(clip, probes, duration)]
    if not clips or duration <= 0:
        return None

    inputs: list[str] = []
    chains: list[str] = []
    labels: dict[int, str] = {}
    for index, clip in enumerate(clips):
        try:
            path = sources[clip.source]
        except KeyError:
            raise ValueError(f"line {clip.line}: no local file for audio source {clip.source!r}") from None
        probe = probes.get(clip.source) if isinstance(clip.source, str) else None
        format_name = probe.format_name if probe is not None else ("wav" if isinstance(clip.source, Speech) else None)
        span, played = _played(clip, duration)
        needed = played * clip.speed  # seconds of the source
        channels = probe.audio.channels if probe is not None and probe.audio is not None else None
        mono = channels == 1 or isinstance(clip.source, Speech)  # audio.tts writes mono WAVs
        filters = [f"aresample={SAMPLE_RATE}"]
        if mono:  # both channels at the source's level (ffmpeg's own upmix would be −3 dB)
            filters.append("pan=stereo|c0=c0|c1=c0")
        filters.append("aformat=sample_fmts=fltp:channel_layouts=stereo")
        if clip.loop and clip.length:
            file_length = clip.skip + clip.length * clip.speed
            loops = max(0, math.ceil((clip.skip + needed) / file_length) - 1) if file_length > 0 else 0
            inputs += [*(["-stream_loop", str(loops)] if loops else []), *input_args(Path(path), format_name)]
            filters.append(f"atrim=start={_num(clip.skip)}:duration={_num(needed)}")
        else:
            inputs += input_args(Path(path), format_name, seek=clip.skip or None)
            filters.append(f"atrim=duration={_num(needed)}")
        filters.append("asetpts=PTS-STARTPTS")
        if clip.speed != 1.0:
            filters += _atempo(clip.speed)
            filters.append(f"atrim=duration={_num(played)}")
        if clip.volume != 1.0:
            filters.append(f"volume={_num(clip.volume)}")
        if clip.fadein > 0:
            filters.append(f"afade=t=in:st=0:d={_num(min(clip.fadein, played))}")
        if clip.fadeout > 0:
            fade = min(clip.fadeout, played)
            filters.append(f"afade=t=out:st={_num(played - fade)}:d={_num(fade)}")
        delay = round(clip.start * SAMPLE_RATE)
        if delay > 0:
            filters.append(f"adelay=delays={delay}S:all=1")
        label = f"[mx{index}]"
        chains.append(f"[{first_input + index}:a]{','.join(filters)}{label}")
        labels[index] = label

    masters = [i for i, clip in enumerate(clips) if _duck_level(clip) is not None]
    others = [i for i in range(len(clips)) if i not in masters]
    streams = [labels[i] for i in range(len(clips))]
    if masters and others:
        chains.append(_sum([labels[i] for i in others], "[mxbed]"))
        gain = _duck_gain([clips[i] for i in masters], duration)
        chains.append(f"[mxbed]volume='{gain}':eval=frame[mxducked]")
        streams = ["[mxducked]", *(labels[i] for i in masters)]

    samples = round(duration * SAMPLE_RATE)
    exact = f"apad=whole_len={samples},atrim=end_sample={samples}"
    tail = [exact]
    if normalize:
        targets = ":".join(f"{key}={_num(value)}" for key, value in LOUDNESS.items())
        tail += [f"loudnorm={targets}", f"aresample={SAMPLE_RATE}", exact]
    tail.append("aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo")
    chains.append(_sum(streams, "", tail=",".join(tail)) + OUTPUT)
    return inputs, ";".join(chains), OUTPUT


def _sum(labels: list[str], output: str, tail: str = "") -> str:
    """``labels`` summed (levels kept) into ``output``, then ``tail`` filters."""
    if len(labels) == 1:
        head = f"{labels[0]}anull"
    else:
        head = f"{''.join(labels)}amix=inputs={len(labels)}:normalize=0:duration=longest:dropout_transition=0"
    return head + (f",{tail}" if tail else "") + output
