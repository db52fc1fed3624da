"""Theme widgets (spec §13): an item's ``duration`` is how long it is shown, caption readable;
the crossfades between items add to the movie instead of eating the items' durations."""

from __future__ import annotations

import subprocess

import numpy as np

from flows.create.sxml import parse
from flows.create.timeline import LOWER_THIRD, THEME_CROSSFADE, Plan, plan
from tests.test_create_render import (BLUE, FPS, GREEN, H, RED, W, close, frames, mean_colour, render_definition,
                                      stream_info)

MUSIC = "https://example.com/music.mp3"
DURATIONS = (2.5, 2.0, 2.5)
CAPTIONS = ("Arrival at the beach", "Sunset over the bay", "Back home")


def client_theme(pictures: tuple[str, ...] = ("https://example.com/1.jpg", "https://example.com/2.jpg",
                                              "https://example.com/3.jpg"), music: str = MUSIC) -> str:
    """A real client's definition: three captioned images with durations and a soundtrack."""
    items = "".join(
        f"<image filename='{url}' duration='{duration}'><track type='caption'><text>{caption}</text></track></image>"
        for url, duration, caption in zip(pictures, DURATIONS, CAPTIONS)
    )
    return ("<movie service='craftsman-1.0'><body><widget type='director.theme.tiles'>"
            f"<track type='video'>{items}</track>"
            f"<track type='audio'><audio filename='{music}'/></track></widget></body></movie>")


def clear_window(result: Plan, start: float, end: float) -> tuple[float, float]:
    """The longest part of ``[start, end)`` that no transition overlaps."""
    cuts = sorted((max(start, t.start), min(end, t.end)) for t in result.transitions if t.start < end and t.end > start)
    pieces, cursor = [], start
    for cut_start, cut_end in cuts:
        pieces.append((cursor, cut_start))
        cursor = max(cursor, cut_end)
    pieces.append((cursor, end))
    return max(pieces, key=lambda piece: piece[1] - piece[0])


def test_a_theme_movie_lasts_its_items_durations_plus_the_crossfades():
    result = plan(parse(client_theme()).movie, {MUSIC: 3.0})
    assert result.warnings == ()
    assert result.duration == sum(DURATIONS) + (len(DURATIONS) - 1) * THEME_CROSSFADE  # 9.0 s, not 5.0
    assert result.duration >= sum(DURATIONS)
    (music,) = result.audio
    assert (music.start, music.end, music.loop) == (0.0, result.duration, True)  # follows the movie, looped


def test_each_caption_is_fully_shown_for_its_item_duration():
    result = plan(parse(client_theme()).movie, {MUSIC: 30.0})
    captions = [t for t in result.texts if t.text.text in CAPTIONS]
    assert [t.text.text for t in captions] == list(CAPTIONS)
    for caption, duration in zip(captions, DURATIONS):
        assert result.modifiers_of(caption.path) == []  # no fade of its own
        clear_start, clear_end = clear_window(result, caption.start, caption.end)
        assert clear_end - clear_start >= duration - 1e-6, caption.text.text
    # one after the other: item i is held alone while the next has not started yet
    for before, after in zip(captions, captions[1:]):
        assert before.start < after.start and after.start < before.end <= after.start + THEME_CROSSFADE + 1e-6


def test_plain_sequences_still_lose_their_transitions_overlaps():
    stacks = [f'<stack duration="{d}"><effect type="none"><image color="#fff"/></effect>'
              f'<text type="legend">{c}</text></stack>' for d, c in zip(DURATIONS, CAPTIONS)]
    body = '<transition type="crossfade" duration="1"/>'.join(stacks)
    result = plan(parse(f'<movie service="craftsman-1.0"><body>{body}</body></movie>').movie)
    assert result.duration == sum(DURATIONS) - 2 * 1.0  # spec §4.4: transitions consume time


def test_a_rendered_theme_movie_and_its_soundtrack_last_the_rule(tmp_path):
    files = {}
    for name, colour in (("1.png", RED), ("2.png", GREEN), ("3.png", BLUE)):
        path = tmp_path / name
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c=0x{bytes(colour).hex()}:s=64x36",
                        "-frames:v", "1", str(path)], check=True)
        files[f"https://example.com/{name}"] = path
    music = tmp_path / "music.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=3", str(music)], check=True)
    files[MUSIC] = music
    xml = client_theme(tuple(files)[:3])
    result, _, out = render_definition(tmp_path, xml, files, lengths={MUSIC: 3.0})
    expected = sum(DURATIONS) + (len(DURATIONS) - 1) * THEME_CROSSFADE
    assert result.duration == expected
    info = stream_info(out)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert abs(int(video["nb_read_frames"]) - expected * FPS) <= 1
    assert abs(float(info["format"]["duration"]) - expected) <= 2 / FPS
    assert abs(float(audio["duration"]) - expected) <= 2 / FPS
    rate = int(audio["sample_rate"])
    pcm = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-ac", "1", "-f", "s16le", "-"],
                                       capture_output=True, check=True).stdout, np.int16).astype(float)
    last_second = pcm[round((expected - 1.2) * rate):round((expected - 0.2) * rate)]
    assert np.sqrt(np.mean(last_second ** 2)) > 1000  # the 3 s music loops to the end, still audible
    # each picture fills the frame alone, its caption drawn unchanging, for its whole duration
    decoded = frames(out)
    band = (0, round(H * (1 - LOWER_THIRD.bottom - LOWER_THIRD.height)), W, round(H * (1 - LOWER_THIRD.bottom)))
    captions = [t for t in result.texts if t.text.text in CAPTIONS]
    for caption, duration, colour in zip(captions, DURATIONS, (RED, GREEN, BLUE)):
        clear_start, _ = clear_window(result, caption.start, caption.end)
        shown = decoded[round(clear_start * FPS):round((clear_start + duration) * FPS)]
        assert len(shown) == round(duration * FPS)
        middle = mean_colour(shown[len(shown) // 2], band)
        x0, y0, x1, y1 = band
        assert shown[len(shown) // 2][y0:y1, x0:x1].std() > 20, caption.text.text  # the caption is drawn
        for frame in shown:
            assert close(mean_colour(frame, (0, 0, W, H // 3)), colour), caption.text.text
            assert close(mean_colour(frame, band), middle, 6), caption.text.text


def test_a_theme_video_plays_whole_then_holds_and_a_card_is_shown_its_duration():
    clip = "https://example.com/clip.mp4"
    xml = ("<movie service='craftsman-1.0'><body><widget type='director.theme.tiles'><track type='video'>"
           f"<video filename='{clip}' skip='1'/><text duration='2'>The end</text></track></widget></body></movie>")
    result = plan(parse(xml).movie, {clip: 4.0})
    assert result.duration == 3.0 + 2.0 + THEME_CROSSFADE
    video = next(v for v in result.visuals if v.media.filename == clip)
    assert (video.start, video.end, video.length) == (0.0, 3.0 + THEME_CROSSFADE, 3.0)  # last frame held
    (sound,) = result.audio
    assert (sound.start, sound.end, sound.skip) == (0.0, 3.0, 1.0)
    (card,) = [t for t in result.texts if t.text.text == "The end"]
    assert (card.start, card.end) == (3.0, 3.0 + THEME_CROSSFADE + 2.0)
    assert clear_window(result, card.start, card.end) == (3.0 + THEME_CROSSFADE, result.duration)
