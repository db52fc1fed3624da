"""SXML parsing: hardening, error messages (name, line, element, attribute), value types,
the typed tree, the asset list, and every example definition."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from flows.create import sxml
from flows.create.sxml import (
    AUTO,
    Box,
    Color,
    Effect,
    Image,
    Speech,
    Stack,
    Text,
    Video,
    Widget,
    parse,
    parse_color,
    walk,
)
from flows.errors import TaskError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "sxml").glob("*.xml"))


def movie(body: str, head: str = "") -> str:
    """A definition whose body starts on line 3."""
    return f'<movie service="craftsman-1.0">{head}\n<body>\n{body}\n</body>\n</movie>'


def error(definition: str | bytes) -> str:
    with pytest.raises(sxml.SxmlError) as caught:
        parse(definition)
    assert isinstance(caught.value, TaskError)
    return str(caught.value)


# ---------------------------------------------------------------- examples


def test_examples_cover_every_element_and_parse_cleanly():
    assert len(EXAMPLES) >= 15
    seen: set[str] = set()
    for path in EXAMPLES:
        definition = parse(path.read_bytes())
        assert definition.warnings == (), path.name
        assert all(url.startswith("https://example.com/") for url in definition.assets), path.name
        seen.update(node.tag for node in walk(definition.movie))
    assert {"sequence", "stack", "effect", "transition", "image", "video", "audio", "text", "overlay",
            "filter", "animator", "widget"} <= seen


# ---------------------------------------------------------------- hardening

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE movie [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<movie service="craftsman-1.0"><body><text>&lol9;</text></body></movie>"""


def test_billion_laughs_is_refused_without_expanding():
    started = time.perf_counter()
    message = error(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5
    assert message == "InvalidXMLError: line 2: DTDs (<!DOCTYPE>) are not allowed"


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE movie [<!ENTITY secret SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE movie SYSTEM "http://127.0.0.1:9/movie.dtd">',
        '<!DOCTYPE movie [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>',
    ],
)
def test_external_entities_and_dtds_are_refused(doctype):
    definition = f'<?xml version="1.0"?>\n{doctype}\n<movie service="craftsman-1.0"><body><text>&secret;</text></body></movie>'
    message = error(definition)
    assert message.startswith("InvalidXMLError: line 2: DTDs")
    assert "root:" not in message


def test_undeclared_entity_is_an_xml_error():
    assert error(movie("<text>&secret;</text>")) == "InvalidXMLError: line 3: undefined entity"


def test_predefined_and_character_entities_still_work():
    text = parse(movie("<text>Fish &amp; chips&#10;&lt;2&gt;</text>")).movie.body.children[0]
    assert text.text == "Fish & chips\n<2>"


def test_size_cap():
    message = error(movie(" " * sxml.MAX_DEFINITION_BYTES))
    assert message.startswith("InvalidXMLError: the definition is ") and "bytes, more than the" in message


def test_element_count_cap(monkeypatch):
    monkeypatch.setattr(sxml, "MAX_ELEMENTS", 50)
    body = "\n".join('<effect duration="1"><image color="#000"/></effect>' for _ in range(30))
    assert error(movie(body)) == "InvalidXMLError: line 27: more than 50 elements"


def test_element_count_cap_default_is_enforced():
    body = "<stack/>" * sxml.MAX_ELEMENTS
    assert error(movie(body)).startswith(f"InvalidXMLError: line 3: more than {sxml.MAX_ELEMENTS} elements")


def test_nesting_cap():
    depth = sxml.MAX_DEPTH  # movie + body + this many stacks exceeds it
    body = "<stack>" * depth + "</stack>" * depth
    assert error(movie(body)) == f"InvalidXMLError: line 3: <stack> is nested deeper than {sxml.MAX_DEPTH} levels"


# ---------------------------------------------------------------- error messages


@pytest.mark.parametrize(
    "body, expected",
    [
        ('<effect type="none">\n<image color="#fff"\n</effect>',
         "InvalidXMLError: line 5: not well-formed (invalid token)"),
        ("<stack><transition/></stack>", "InvalidContentError: line 3: <transition> must be directly inside a sequence"),
        ('<image color="#fff"/>', "InvalidContentError: line 3: <image> must be inside an effect, overlay, filter or widget"),
        ('\n\n<effect><image filename="https://e.com/a.jpg" duration="abc"/></effect>',
         "InvalidContentError: line 5: <image> attribute duration: 'abc' is not a time"),
        ('<effect duration="-2"><image color="#fff"/></effect>',
         "InvalidContentError: line 3: <effect> attribute duration: '-2' is not a time (negative)"),
        ('<effect><image color="#ggg"/></effect>',
         "InvalidContentError: line 3: <image> attribute color: '#ggg' is not a colour (#RRGGBB, #RRGGBBAA or a name)"),
        ('<effect><video filename="https://e.com/v.mp4" audio="yes"/></effect>',
         "InvalidContentError: line 3: <video> attribute audio: 'yes' is not a boolean (true or false)"),
        ('<effect><image/></effect>', "InvalidContentError: line 3: <image> needs a filename or a color attribute"),
        ('<effect><video/></effect>', "InvalidContentError: line 3: <video> needs a filename attribute"),
        ('<effect><image filename="photos/a.jpg"/></effect>',
         "InvalidContentError: line 3: <image> attribute filename: 'photos/a.jpg' is not an http(s) URL"),
        ('<audio/>', "InvalidContentError: line 3: <audio> needs a filename or a voice attribute"),
        ('<audio voice="neospeech:julie">  </audio>',
         "InvalidContentError: line 3: <audio> attribute voice: there is no text to speak"),
        ('<text margin-both="1" margin-start="2">x</text>',
         "InvalidContentError: line 3: <text> attribute margin-both: cannot be combined with margin-start/margin-end"),
        ('<text align="middle">x</text>',
         "InvalidContentError: line 3: <text> attribute align: 'middle' is not left|right|center|justify[,top|center|bottom]"),
        ('<text top="high">x</text>', "InvalidContentError: line 3: <text> attribute top: 'high' is not a number"),
        ('<text><key time="1"/></text>', "InvalidContentError: line 3: <key> must be inside an animator"),
        ('<animator type="custom"><key pos="0,0,0"/></animator>', "InvalidContentError: line 3: <key> needs a time attribute"),
        ('<animator type="custom"><key time="0" pos="0,0"/></animator>',
         "InvalidContentError: line 3: <key> attribute pos: '0,0' is not a list of 3 numbers"),
        ('<effect><filter diameter="2"/></effect>', "InvalidContentError: line 3: <filter> needs a type attribute"),
        ('<track type="video"/>', "InvalidContentError: line 3: <track> must be inside a widget"),
        ('<audio filename="https://e.com/a.mp3"><text>x</text></audio>',
         "InvalidContentError: line 3: <text> is not allowed inside <audio>"),
        ('<effect><video filename="https://e.com/v.mp4" speed="0"/></effect>',
         "InvalidContentError: line 3: <video> attribute speed: 0.0 is not positive"),
    ],
)
def test_error_messages_name_line_element_and_attribute(body, expected):
    assert error(movie(body)) == expected


def test_document_level_errors():
    assert error("<film/>") == "InvalidContentError: line 1: the root element is <film>, not <movie>"
    assert error('<movie service="craftsman-2.0"><body/></movie>') == (
        "InvalidContentError: line 1: <movie> attribute service: 'craftsman-2.0' is not 'craftsman-1.0'"
    )
    assert error('<movie service="craftsman-1.0"/>') == "InvalidContentError: line 1: <movie> needs exactly one <body>, not 0"
    assert error('<movie service="craftsman-1.0"><body/>\n<stack/></movie>') == (
        "InvalidContentError: line 2: <stack> must be inside the <body>"
    )
    assert error("") == "InvalidXMLError: line 1: no element found"


def test_other_error_names_exist_for_later_layers():
    for name in ("InvalidFontError", "InvalidImageError", "CouldNotDownloadError"):
        exc = getattr(sxml, name)("https://e.com/x: 404", 7)
        assert isinstance(exc, TaskError) and str(exc) == f"{name}: line 7: https://e.com/x: 404"


def test_unknown_elements_and_attributes_are_ignored():
    definition = parse(movie('<sparkle/>\n<text alighn="center" type="zone">hi<blink/></text>', head="<head/>"))
    assert definition.warnings == (
        "line 1: <head> is not rendered (custom shaders): ignored",
        "line 3: <sparkle> is not an SXML element: ignored",
        "line 4: <blink> is not an SXML element: ignored",
    )
    (text,) = definition.movie.body.children
    assert text.text == "hi" and text.align == "center"


def test_unknown_types_are_kept_with_a_warning():
    definition = parse(movie('<effect type="hologram"><image color="#000"/></effect>\n<transition type="warp"/>'))
    assert definition.movie.body.children[0].type == "hologram"
    assert "line 3: <effect> effect type 'hologram' is unknown (rendered as an approximation)" in definition.warnings


def test_missing_service_is_assumed_with_a_warning():
    definition = parse("<movie><body/></movie>")
    assert definition.warnings == ("line 1: <movie> has no service attribute: craftsman-1.0 assumed",)


# ---------------------------------------------------------------- values and the tree


@pytest.mark.parametrize(
    "text, color",
    [
        ("#FF8000", Color(255, 128, 0, 255)),
        ("#ffffff88", Color(255, 255, 255, 0x88)),
        ("#f00", Color(255, 0, 0, 255)),
        ("#f008", Color(255, 0, 0, 0x88)),
        ("red", Color(255, 0, 0, 255)),
        ("White", Color(255, 255, 255, 255)),
    ],
)
def test_colours(text, color):
    assert parse_color(text) == color


@pytest.mark.parametrize("text", ["nan", "inf", "1,5", "", "2s", "0x10"])
def test_numbers_are_strict(text):
    with pytest.raises(ValueError):
        sxml.parse_float(text)


def test_typed_tree():
    definition = parse(movie("""
<stack margin-start="1" duration="..">
  <effect type="kenburns" direction="negative" timeOffset="0.5" depthEnable="false">
    <image filename="https://e.com/a.jpg" width="320"><filter type="blur" diameter="4"/></image>
  </effect>
  <effect><video filename="https://e.com/v.mp4" skip="2" audio="false" volume="0.5" speed="2" duration="3"/></effect>
  <text type="legend" fontname="https://e.com/font.ttf" fontsize="24" fontcolor="#ff000080" align="right,bottom"
        left="auto" right="auto" width="0.5" bottom=".1" vector="true">
     First line
        second line
  </text>
  <audio filename="https://e.com/m.mp3" fadein="1" fadeout="2" volume="0.3" loop="true" duck-others="0.2"/>
  <animator type="custom"><key time="2" pos="1,0,0"/><key time="0" pos="0,0,0"/></animator>
</stack>"""))
    (stack,) = definition.movie.body.children
    assert isinstance(stack, Stack)
    assert stack.timing == sxml.Timing(slave=True, margin_start=1.0)
    kenburns, plain, text, audio = stack.children
    assert kenburns.type == "kenburns" and kenburns.params.as_dict() == {
        "direction": "negative", "timeOffset": 0.5, "depthEnable": False}
    (image,) = kenburns.media
    assert image.filename == "https://e.com/a.jpg" and image.params.get("width") == 320.0
    assert image.filters[0].type == "blur" and image.filters[0].params.get("diameter") == 4.0
    (video,) = plain.media
    assert (video.skip, video.audio, video.volume, video.speed, video.timing.duration) == (2.0, False, 0.5, 2.0, 3.0)
    assert text.kind == "legend" and text.text == "First line\nsecond line"
    assert (text.align, text.valign, text.fontsize, text.fontcolor) == ("right", "bottom", 24.0, Color(255, 0, 0, 128))
    assert text.box == Box(left=AUTO, right=AUTO, width=0.5, bottom=0.1) and text.vector
    assert (audio.fadein, audio.fadeout, audio.volume, audio.loop) == (1.0, 2.0, 0.3, True)
    assert audio.params.get("duck-others") == 0.2
    assert [key.time for key in stack.animators[0].keys] == [0.0, 2.0]
    assert stack.animators[0].keys[1].params.get("pos") == (1.0, 0.0, 0.0)
    assert definition.assets == ("https://e.com/a.jpg", "https://e.com/v.mp4", "https://e.com/font.ttf", "https://e.com/m.mp3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        text.text = "changed"


def test_lines_are_recorded():
    definition = parse(movie('<effect>\n\n<image color="#000"/>\n</effect>'))
    effect = definition.movie.body.children[0]
    assert (definition.movie.body.line, effect.line, effect.media[0].line) == (2, 3, 5)


def test_assets_in_document_order_deduplicated_with_speech():
    definition = parse(movie("""
<effect><image filename="https://e.com/b.jpg"/></effect>
<effect><image filename="https://e.com/a.jpg"><filter type="mask"><image filename="https://e.com/mask.png"/></filter></image></effect>
<effect><image filename="https://e.com/b.jpg"/></effect>
<overlay><image filename="https://e.com/logo.png"/></overlay>
<audio voice="neospeech:paul">Hello</audio>
<audio voice="neospeech:paul">Hello</audio>"""))
    assert definition.assets == ("https://e.com/b.jpg", "https://e.com/a.jpg", "https://e.com/mask.png", "https://e.com/logo.png")
    assert definition.speeches == (Speech("neospeech:paul", "Hello"),)


def test_widget_content_is_lax_and_captions_attach_to_images():
    definition = parse(movie("""
<widget type="director.theme.tiles">
  <track type="video">
    <image filename="https://e.com/a.jpg" duration="3"><track type="caption"><text>Hi</text></track></image>
  </track>
  <track type="audio"><audio filename="https://e.com/m.mp3"/></track>
  <style layer="comp:title" color="#336699" visible="false"/>
</widget>"""))
    (widget,) = definition.movie.body.children
    assert isinstance(widget, Widget) and widget.type == "director.theme.tiles"
    image = widget.children[0].children[0]
    assert isinstance(image, Image) and image.timing.duration == 3.0
    assert [c.text for c in image.captions] == ["Hi"]
    assert widget.children[2].params.get("color") == Color(0x33, 0x66, 0x99)


def test_sphere_is_an_overlay_and_camera_is_ignored():
    definition = parse(movie('<stack><camera><animator type="grow"/></camera><sphere><image color="#000"/></sphere></stack>'))
    (stack,) = definition.movie.body.children
    assert [type(c).__name__ for c in stack.children] == ["Overlay"]
    assert any("<camera> is not rendered" in w for w in definition.warnings)


# ---------------------------------------------------------------- placement boxes


@pytest.mark.parametrize(
    "box, content_aspect, expected",
    [
        (Box(), None, (0.0, 0.0, 1.0, 1.0)),
        (Box(top=0.05, right=0.02, height=0.16), 2.0, (1 - 0.02 - 0.18, 0.05, 0.18, 0.16)),  # logo: 2:1 at 16:9
        (Box(left=AUTO, right=AUTO, width=0.5, height=0.2), None, (0.25, 0.4, 0.5, 0.2)),
        (Box(left=0.1, right=0.1, top=0.1, bottom=0.1), None, (0.1, 0.1, 0.8, 0.8)),
        (Box(height=0.18, bottom=0.12, left=0.1), None, (0.1, 1 - 0.12 - 0.18, 0.9, 0.18)),
    ],
)
def test_box_resolution(box, content_aspect, expected):
    assert box.resolve(16 / 9, content_aspect) == pytest.approx(expected)


def test_effect_media_property_keeps_order():
    definition = parse(movie(
        '<effect type="diving"><image color="#000"/><text>t</text><video filename="https://e.com/v.mp4"/></effect>'))
    effect = definition.movie.body.children[0]
    assert isinstance(effect, Effect)
    assert [type(m) for m in effect.media] == [Image, Video]
    assert isinstance(effect.children[1], Text)


def test_a_nested_movie_is_refused_even_inside_a_widget():
    assert error(movie('<widget type="x"><movie/></widget>')) == "InvalidContentError: line 3: <movie> must be the root element"


def test_bytes_with_a_declared_encoding_are_decoded():
    definition = parse('<?xml version="1.0" encoding="ISO-8859-1"?><movie service="craftsman-1.0"><body><text>Café</text></body></movie>'
                       .encode("latin-1"))
    assert definition.movie.body.children[0].text == "Café"


def test_colour_names_after_pillow_cached_them():
    """Pillow's getrgb caches converted names in ImageColor.colormap as tuples."""
    from PIL import ImageColor

    ImageColor.getrgb("white")
    assert sxml.parse_color("White") == sxml.Color(255, 255, 255)
