"""The timing model (spec §4) and the output profiles (spec §12): pure functions, no media."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import pytest

from flows.create.profiles import V1_PROFILES, profile
from flows.create.sxml import Box, Speech, parse
from flows.create.timeline import DEFAULT_DURATION, LOWER_THIRD, THEME_CROSSFADE, THEME_IMAGE_DURATION, Plan, plan

EXAMPLES = Path(__file__).parent.parent / "examples" / "sxml"
MUSIC = "https://e.com/music.mp3"
CLIP = "https://e.com/clip.mp4"


def lay(body: str, **lengths: float) -> Plan:
    """Plan a body; lengths by short name: music=…, clip=…"""
    urls = {"music": MUSIC, "clip": CLIP}
    definition = parse(f'<movie service="craftsman-1.0"><body>{body}</body></movie>')
    return plan(definition.movie, {urls.get(k, k): v for k, v in lengths.items()})


def plate(duration: str | None = None, color: str = "#000", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    dur = f' duration="{duration}"' if duration is not None else ""
    return f'<effect type="none"{dur}{extra}><image color="{color}"/></effect>'


def spans(clips) -> list[tuple[float, float]]:
    return [(c.start, c.end) for c in clips]


# ---------------------------------------------------------------- §4.6 worked example


def test_worked_example_of_the_spec():
    definition = parse((EXAMPLES / "01_sdk_sample.xml").read_bytes())
    result = plan(definition.movie, {"https://example.com/music.mp3": 95.0})
    assert result.duration == 38.3  # 45.1 - 6.8
    top = [g for g in result.groups if len(g.path) == 3]  # the items of the main sequence
    assert [round(g.end - g.start, 6) for g in top] == [6, 6, 6, 12, 4, 4, 1.6, 2.5, 3]
    outer = [t for t in result.transitions if len(t.path) == 3]
    assert [(t.transition.type, t.start, t.end) for t in outer] == [
        ("cube", 5.0, 6.0), ("move", 10.0, 11.0), ("crossfade", 15.7, 16.0), ("crossfade", 26.7, 27.7),
        ("crossfade", 29.7, 30.7), ("crossfade", 33.2, 33.7), ("move", 33.8, 34.8), ("circle", 35.3, 36.3),
    ]
    # inside the first two 6 s stacks: kenburns 3.5 + (move|under) 1.0 + kenburns 3.5
    inner = [t for t in result.transitions if len(t.path) == 5]
    assert [(t.transition.type, t.start, t.end) for t in inner] == [("move", 2.5, 3.5), ("under", 7.5, 8.5)]
    assert spans(v for v in result.visuals if v.path[:3] == (0, 0, 0)) == [(0.0, 3.5), (2.5, 6.0)]
    (music,) = result.audio
    assert (music.start, music.end, music.fadeout, music.length) == (0.0, 38.3, 4.0, 95.0)
    # the 12 s sliding effect splits its time between its three pictures
    assert spans(v for v in result.visuals if v.path[:3] == (0, 0, 6)) == [(15.7, 19.7), (19.7, 23.7), (23.7, 27.7)]


# ---------------------------------------------------------------- sequence, stack, defaults


def test_sequence_sums_and_transitions_overlap():
    result = lay(plate("10") + '<transition type="crossfade" duration="1"/>' + plate("10"))
    assert result.duration == 19.0
    assert spans(result.visuals) == [(0.0, 10.0), (9.0, 19.0)]
    (transition,) = result.transitions
    assert (transition.start, transition.end, transition.before, transition.after) == (9.0, 10.0, (0,), (2,))


def test_bare_effects_in_a_sequence_last_the_default():
    result = lay(plate() + plate())
    assert result.duration == 2 * DEFAULT_DURATION
    assert spans(result.visuals) == [(0.0, 5.0), (5.0, 10.0)]


def test_stack_is_the_max_of_its_children_and_flexible_children_span_it():
    result = lay(f'<stack>{plate()}{plate("3")}{plate("7", margin_start="1")}<text>caption</text></stack>')
    assert result.duration == 8.0
    assert spans(result.layers()) == [(0.0, 8.0), (0.0, 3.0), (1.0, 8.0), (0.0, 8.0)]


def test_stack_without_timed_children_is_flexible():
    assert lay(f"<stack>{plate()}<text>t</text></stack>").duration == DEFAULT_DURATION
    nested = lay(f'<stack><stack>{plate()}</stack><audio filename="{MUSIC}"/></stack>', music=12)
    assert nested.duration == 12.0 and spans(nested.visuals) == [(0.0, 12.0)]


def test_empty_body_lasts_the_default():
    assert lay("").duration == DEFAULT_DURATION


# ---------------------------------------------------------------- slaves and margins


def test_slave_music_follows_the_pictures_and_master_music_drives_them():
    slave = lay(f'<stack>{plate("4")}<audio filename="{MUSIC}" duration=".." fadeout="1"/></stack>', music=60)
    assert slave.duration == 4.0 and spans(slave.audio) == [(0.0, 4.0)] and slave.audio[0].fadeout == 1.0
    master = lay(f'<stack>{plate("4")}<audio filename="{MUSIC}"/></stack>', music=60)
    assert master.duration == 60.0  # the documented pitfall: the music makes the stack long


def test_slave_in_a_sequence_spans_the_whole_sequence():
    result = lay(plate("3") + plate("4") + f'<audio filename="{MUSIC}" duration=".."/>', music=60)
    assert result.duration == 7.0 and spans(result.audio) == [(0.0, 7.0)]


def test_audio_in_a_sequence_plays_after_the_pictures():
    result = lay(plate() + f'<audio filename="{MUSIC}" duration="3"/>', music=60)
    assert result.duration == 8.0 and spans(result.audio) == [(5.0, 8.0)]


def test_documented_margin_example():
    result = lay(f'<stack duration="15">{plate()}<audio filename="{MUSIC}" fadeout="2" margin-both="2"/></stack>', music=200)
    (music,) = result.audio
    assert (music.start, music.end, music.fadeout) == (2.0, 13.0, 2.0)


def test_margins_position_children_in_a_stack():
    result = lay(
        f'<stack duration="10">{plate()}'
        '<text margin-start="2" duration="3">a</text>'  # [2, 5)
        '<text margin-end="1" duration="3">b</text>'  # anchored to the end: [6, 9)
        '<text margin-end="4">c</text>'  # flexible: [0, 6)
        '<text margin-both="1.5">d</text>'  # [1.5, 8.5)
        '<text margin-start="8" duration="5">e</text>'  # truncated by the parent: [8, 10)
        "</stack>"
    )
    assert spans(result.texts) == [(2.0, 5.0), (6.0, 9.0), (0.0, 6.0), (1.5, 8.5), (8.0, 10.0)]


def test_audio_margins_add_time():
    speech = Speech("neospeech:julie", "Welcome")
    definition = parse('<movie service="craftsman-1.0"><body><stack>' + plate()
                       + '<audio voice="neospeech:julie" margin-start="0.5" margin-end="2">Welcome</audio>'
                       + "</stack></body></movie>")
    result = plan(definition.movie, {speech: 3.2})
    assert result.duration == 5.7
    (voice,) = result.audio
    assert (voice.source, voice.start, voice.end) == (speech, 0.5, 3.7)


def test_fixed_parent_truncates_a_sequence():
    result = lay(f'<stack duration="6"><sequence>{plate("4")}<transition duration="1"/>{plate("4")}'
                 f'<transition duration="1"/>{plate("4")}</sequence></stack>')
    assert result.duration == 6.0
    assert spans(result.visuals) == [(0.0, 4.0), (3.0, 6.0)]
    assert spans(result.transitions) == [(3.0, 4.0)]


# ---------------------------------------------------------------- media lengths


def test_video_length_skip_speed_and_override():
    assert lay(f'<effect><video filename="{CLIP}" skip="2"/></effect>', clip=10).duration == 8.0
    assert lay(f'<effect><video filename="{CLIP}" skip="2" speed="2"/></effect>', clip=10).duration == 4.0
    short = lay(f'<effect><video filename="{CLIP}" duration="3"/></effect>', clip=10)
    assert short.duration == 3.0 and short.visuals[0].length == 3.0
    frozen = lay(f'<effect duration="6"><video filename="{CLIP}"/></effect>', clip=4)
    assert frozen.duration == 6.0 and frozen.visuals[0].length == 4.0  # the renderer holds the last frame


def test_video_sound_is_an_audio_clip_unless_muted():
    result = lay(f'<effect><video filename="{CLIP}" skip="1" volume="0.5"/></effect>'
                 f'<effect><video filename="{CLIP}" audio="false"/></effect>', clip=5)
    (sound,) = result.audio
    assert (sound.source, sound.start, sound.end, sound.skip, sound.volume, sound.video) == (CLIP, 0.0, 4.0, 1.0, 0.5, True)


def test_audio_length_skip_and_missing_length():
    assert lay(f'<stack><audio filename="{MUSIC}" skip="5"/></stack>', music=12).duration == 7.0
    with pytest.raises(ValueError, match="no media length given for 'https://e.com/music.mp3'"):
        lay(f'<stack><audio filename="{MUSIC}"/></stack>')


# ---------------------------------------------------------------- transitions


def test_transitions_at_the_edges_are_ignored():
    result = lay('<transition duration="1"/>' + plate("3") + plate("3") + '<transition duration="1"/>')
    assert result.duration == 6.0 and result.transitions == ()
    assert result.warnings == ("line 1: <transition> has no item before it: ignored",
                               "line 1: <transition> has no item after it: ignored")


def test_transition_is_clamped_to_its_neighbours():
    result = lay(plate("2") + '<transition duration="1.5"/>' + plate("2")
                 + '<transition duration="1.5"/>' + plate("2"))
    # the second transition gets what the middle item has left after the first one
    assert spans(result.transitions) == [(0.5, 2.0), (2.0, 2.5)]
    assert result.duration == 4.0


def test_default_transition_is_a_one_second_crossfade():
    result = lay(plate("3") + "<transition/>" + plate("3"))
    (transition,) = result.transitions
    assert (transition.transition.type, transition.start, transition.end) == ("crossfade", 2.0, 3.0)


def test_audio_crossfades_across_transitions():
    result = lay(f'<effect><video filename="{CLIP}"/></effect><transition duration="1.5"/>'
                 f'<effect><video filename="{CLIP}"/></effect>', clip=6)
    first, second = result.audio
    assert (first.start, first.end, first.fadeout) == (0.0, 6.0, 1.5)
    assert (second.start, second.end, second.fadein) == (4.5, 10.5, 1.5)


# ---------------------------------------------------------------- multi-media effects (§4.5)


def test_fixed_effect_splits_its_time_between_its_media():
    result = lay(f'<effect type="diving" duration="10"><image color="#fff"/><video filename="{CLIP}"/></effect>', clip=20)
    assert spans(result.visuals) == [(0.0, 5.0), (5.0, 10.0)]
    assert [(v.slot, v.slots, v.effect_start, v.effect_end) for v in result.visuals] == [(0, 2, 0.0, 10.0), (1, 2, 0.0, 10.0)]
    assert spans(result.audio) == [(5.0, 10.0)]


def test_effect_without_duration_takes_its_videos_length():
    result = lay(f'<effect type="sliding"><video filename="{CLIP}"/><image color="#fff"/></effect>', clip=8)
    assert result.duration == 8.0 + DEFAULT_DURATION
    assert spans(result.visuals) == [(0.0, 8.0), (8.0, 13.0)]


def test_effect_children_other_than_media_draw_over_it():
    result = lay('<effect type="none" duration="4"><image color="#fff"/><text>on top</text></effect>')
    assert [type(c).__name__ for c in result.layers()] == ["VisualClip", "TextClip"]
    assert spans(result.texts) == [(0.0, 4.0)]


# ---------------------------------------------------------------- modifiers, boxes, paint order


def test_modifier_spans():
    result = lay('<overlay duration="6"><image color="#fff"/>'
                 '<animator type="slide-in" duration="1"/><animator type="slide-out" duration="1"/>'
                 '<animator type="rot-out" duration="2"/>'
                 '<filter type="alpha" duration="2" margin-end="0"/><filter type="blur"/></overlay>')
    assert [(m.node.type, m.start, m.end) for m in result.modifiers_of((0,))] == [
        ("alpha", 4.0, 6.0), ("blur", 0.0, 6.0), ("slide-in", 0.0, 1.0), ("slide-out", 5.0, 6.0),
        ("rot-out", 4.0, 6.0)]


def test_media_filters_follow_their_slot():
    result = lay('<effect duration="4"><image color="#fff"/><image color="#000"><filter type="blur"/></image></effect>')
    ((path, start, end),) = [(m.path, m.start, m.end) for m in result.modifiers]
    assert (path, start, end) == ((0, 1), 2.0, 4.0)


def test_boxes_of_texts_and_overlays():
    result = lay('<stack duration="3"><text type="legend">caption</text><text type="zone">full</text>'
                 '<overlay top="0" right="0" height="0.2"><image color="#fff"/><text>in the logo box</text></overlay>'
                 "</stack>")
    legend, full, inside = result.texts
    assert legend.box == LOWER_THIRD and full.box == Box()
    (logo,) = result.visuals
    assert logo.effect is None and logo.box == inside.box == Box(top=0.0, right=0.0, height=0.2)


def test_layers_are_in_paint_order():
    result = lay(f'<stack>{plate("3", "#111")}<overlay><image color="#222"/></overlay>{plate("3", "#333")}</stack>')
    assert [c.media.color.r for c in result.layers()] == [0x11, 0x22, 0x33]


# ---------------------------------------------------------------- theme widgets (§13)


def test_theme_widget_is_a_crossfaded_slideshow_under_its_soundtrack():
    definition = parse((EXAMPLES / "14_theme_widget.xml").read_bytes())
    result = plan(definition.movie, {"https://example.com/music.mp3": 10.0})
    # cards 3 + 2 + 3, images 4 + default + 5, map 3, each shown alone that long; six 1 s crossfades added
    assert result.duration == 3 + 4 + THEME_IMAGE_DURATION + 2 + 5 + 3 + 3 + 6 * THEME_CROSSFADE
    assert {v.effect.type for v in result.visuals if v.media.filename} == {"kenburns"}
    captions = [t for t in result.texts if t.box == LOWER_THIRD]
    # each caption fades in and out with its picture, around its 4 s alone (4-8 s, then 9-13 s)
    assert [(t.text.text, t.start, t.end) for t in captions] == [("Arrival at the beach", 3.0, 9.0), ("Sunset", 8.0, 14.0)]
    assert [(t.start, t.end) for t in result.transitions[:3]] == [(3.0, 4.0), (8.0, 9.0), (13.0, 14.0)]
    (music,) = result.audio
    assert (music.start, music.end, music.loop) == (0.0, result.duration, True)
    assert len(result.transitions) == 6 and {t.transition.type for t in result.transitions} == {"crossfade"}


# ---------------------------------------------------------------- every example plans


def test_every_example_plans():
    for path in sorted(EXAMPLES.glob("*.xml")):
        definition = parse(path.read_bytes())
        lengths = {url: 12.0 for url in definition.assets if url.endswith((".mp4", ".mp3"))}
        lengths.update({speech: 2.5 for speech in definition.speeches})
        result = plan(definition.movie, lengths)
        assert result.duration > 0 and result.warnings == (), path.name
        for clip in (*result.visuals, *result.texts, *result.audio, *result.transitions, *result.modifiers):
            assert 0 <= clip.start <= clip.end <= result.duration, (path.name, clip.path)


# ---------------------------------------------------------------- profiles (§12)


@pytest.mark.parametrize(
    "name, size, fps",
    [
        (None, (640, 360), 25),
        ("360p", (640, 360), 25),
        ("720p", (1280, 720), 25),
        ("1080p-24-fps", (1920, 1080), 24),
        ("360p-29-97-fps", (640, 360), Fraction(30000, 1001)),
        ("360p-12-5-fps", (640, 360), Fraction(25, 2)),
        ("480p-4-3-29-97-fps", (640, 480), Fraction(30000, 1001)),
        ("iphone-16-9-12fp", (480, 270), 12),
        ("iphone-24p", (480, 320), 24),
        ("youtube-5fps", (640, 360), 5),
        ("mobile-small", (176, 144), 15),
        ("dvd-ntsc-16-9", (720, 480), Fraction(30000, 1001)),
        ("dvd-pal-4-3-h", (352, 288), 25),
        ("square-400", (400, 400), 25),
    ],
)
def test_profiles(name, size, fps):
    found = profile(name)
    assert (found.width, found.height) == size and found.fps == fps and found.known


def test_every_v1_profile_is_known_with_even_sizes():
    assert len(set(V1_PROFILES)) == 64
    for name in V1_PROFILES:
        found = profile(name)
        assert found.known and found.width % 2 == 0 and found.height % 2 == 0, name


def test_unknown_profile_falls_back_and_antialias_supersamples():
    fallback = profile("hologram-8k")
    assert (fallback.width, fallback.height, fallback.fps, fallback.known) == (640, 360, 25, False)
    assert profile("720p").supersampled(4) == (5120, 2880) and profile("720p").supersampled(1) == (1280, 720)
    with pytest.raises(ValueError):
        profile().supersampled(3)
    assert profile("dvd-ntsc-4-3").rate == "30000/1001"


def test_two_transitions_in_a_row_keep_the_last():
    result = lay(plate("3") + '<transition type="cube"/>\n<transition type="circle" duration="0.5"/>' + plate("3"))
    (transition,) = result.transitions
    assert (transition.transition.type, transition.start) == ("circle", 2.5)
    assert result.warnings == ("line 1: <transition> is followed by another transition: ignored",)


def test_plan_is_deterministic_and_picklable():
    """Prefect tasks hand the definition and the plan to each other."""
    definition = parse((EXAMPLES / "14_theme_widget.xml").read_bytes())
    lengths = {"https://example.com/music.mp3": 30.0}
    result = plan(definition.movie, lengths)
    assert result == plan(definition.movie, lengths)
    assert pickle.loads(pickle.dumps(definition)) == definition and pickle.loads(pickle.dumps(result)) == result
