"""SXML parsing: a hardened XML read into an immutable, typed node tree (spec §2-§11).

``parse(text)`` returns a ``Definition``: the ``Movie`` tree, every asset URL in document
order (deduplicated, so the flow fetches each once), the text-to-speech requests and the
warnings (unknown elements, unknown types). Invalid definitions raise a ``SxmlError``
subclass whose message starts with the original service's error name and names the line,
the element and the attribute::

    InvalidXMLError: line 3: not well-formed (invalid token)
    InvalidContentError: line 5: <image> attribute duration: 'abc' is not a time

Hardening: the stdlib expat parser with every DTD refused at its ``<!DOCTYPE`` (so no entity
is ever declared or expanded: billion laughs, external entities), parameter entities
off, and caps on size, element count and nesting depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, NamedTuple
from xml.parsers import expat

from PIL import ImageColor

from flows.errors import TaskError

MAX_DEFINITION_BYTES = 2 * 1024 * 1024
"""Largest definition accepted, in UTF-8 bytes."""
MAX_ELEMENTS = 20_000
"""Most elements in one definition."""
MAX_DEPTH = 64
"""Deepest element nesting (``movie`` is depth 1)."""
SERVICE = "craftsman-1.0"
"""The only ``movie service=`` value (spec §2)."""


# --------------------------------------------------------------------------- errors


class SxmlError(TaskError):
    """A definition the service cannot render; the message starts with the class name."""

    def __init__(self, detail: str, line: int | None = None):
        self.detail, self.line = detail, line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{type(self).__name__}: {where}{detail}")


class InvalidXMLError(SxmlError):
    """Not well-formed XML, a refused DTD/entity, or a size/count/depth cap exceeded."""


class InvalidContentError(SxmlError):
    """Well-formed XML that is not a valid movie: misplaced element, bad attribute value."""


class InvalidFontError(SxmlError):
    """A ``fontname`` that names no installed font and no loadable font file (render layer)."""


class InvalidImageError(SxmlError):
    """An image asset that cannot be decoded (render layer)."""


class CouldNotDownloadError(SxmlError):
    """An asset URL that could not be fetched (fetch layer)."""


# --------------------------------------------------------------------------- value types (§3)

AUTO = "auto"
"""A placement value of ``auto`` (centre on that axis, spec §5.2)."""


class Color(NamedTuple):
    """An RGBA colour, 0-255 per channel; alpha 255 is opaque."""

    r: int
    g: int
    b: int
    a: int = 255

    @property
    def hex(self) -> str:
        """``#rrggbbaa``, the form ffmpeg's colour options accept as ``0xrrggbbaa``."""
        return "#{:02x}{:02x}{:02x}{:02x}".format(*self)


_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})\Z")


def parse_float(text: str) -> float:
    """``2``, ``2.5``, ``.5``, ``-0.02`` (no nan/inf)."""
    text = text.strip()
    if not _FLOAT.match(text):
        raise ValueError(f"{text!r} is not a number")
    return float(text)


def parse_time(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = parse_float(text)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a time") from None
    if value < 0:
        raise ValueError(f"{text.strip()!r} is not a time (negative)")
    return value


def parse_bool(text: str) -> bool:
    """``true``/``false`` (any case; ``1``/``0`` too)."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"{text.strip()!r} is not a boolean (true or false)")


def parse_color(text: str) -> Color:
    """``#RRGGBB``, ``#RRGGBBAA``, ``#RGB``, ``#RGBA`` or a CSS colour name."""
    value = text.strip()
    if _HEX.match(value):
        digits = value[1:]
        if len(digits) <= 4:
            digits = "".join(c * 2 for c in digits)
        channels = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
        return Color(*channels)
    if value.lower() in ImageColor.colormap:  # Pillow caches converted names there as tuples
        return Color(*ImageColor.getrgb(value.lower())[:3])
    raise ValueError(f"{value!r} is not a colour (#RRGGBB, #RRGGBBAA or a name)")


def parse_floats(text: str, count: int | None = None) -> tuple[float, ...]:
    """A comma list of numbers (``x,y``, ``x,y,z``); ``count`` fixes its length."""
    parts = text.split(",")
    if count is not None and len(parts) != count:
        raise ValueError(f"{text.strip()!r} is not a list of {count} numbers")
    try:
        return tuple(parse_float(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a list of numbers") from None


def parse_colors(text: str) -> tuple[Color, ...]:
    """A comma list of colours (the colormap filter's ``rgba-bias-matrix``)."""
    return tuple(parse_color(part) for part in text.split(","))


def parse_position(text: str) -> float | str:
    """A placement value: a fraction of the screen, or ``auto``."""
    if text.strip().lower() == AUTO:
        return AUTO
    return parse_float(text)


def _couple(text: str) -> tuple[float, ...]:
    return parse_floats(text, 2)


def _triplet(text: str) -> tuple[float, ...]:
    return parse_floats(text, 3)


def _quad(text: str) -> tuple[float, ...]:
    return parse_floats(text, 4)


# --------------------------------------------------------------------------- node tree


@dataclass(frozen=True)
class Params:
    """An element's remaining attributes, typed when known (else the raw string); read-only."""

    items: tuple[tuple[str, object], ...] = ()

    def get(self, name: str, default: object = None) -> object:
        for key, value in self.items:
            if key == name:
                return value
        return default

    def __contains__(self, name: str) -> bool:
        return any(key == name for key, _ in self.items)

    def as_dict(self) -> dict[str, object]:
        return dict(self.items)


@dataclass(frozen=True)
class Timing:
    """Time attributes of a node (§4.1). ``None`` = not given; ``start`` folds into margin_start."""

    duration: float | None = None
    slave: bool = False
    margin_start: float | None = None
    margin_end: float | None = None


@dataclass(frozen=True)
class Box:
    """Placement (§5.2): fractions of the frame height (top/bottom/height) or width
    (left/right/width), or ``AUTO``; ``None`` = not given. All ``None`` = full frame."""

    top: float | str | None = None
    bottom: float | str | None = None
    left: float | str | None = None
    right: float | str | None = None
    width: float | str | None = None
    height: float | str | None = None

    @property
    def placed(self) -> bool:
        return any(v is not None for v in (self.top, self.bottom, self.left, self.right, self.width, self.height))

    def resolve(self, frame_aspect: float, content_aspect: float | None = None) -> tuple[float, float, float, float]:
        """``(x, y, w, h)`` as fractions of the frame (x from the left, y from the top).

        A missing size follows the content's aspect ratio (``content_aspect`` = w/h in pixels)
        from the other size, else spans what the edges leave; a missing position centres."""
        width, height = _num(self.width), _num(self.height)
        if width is None and height is not None and content_aspect:
            width = height * content_aspect / frame_aspect
        if height is None and width is not None and content_aspect:
            height = width * frame_aspect / content_aspect
        if width is None:
            width = 1.0 - (_num(self.left) or 0.0) - (_num(self.right) or 0.0)
        if height is None:
            height = 1.0 - (_num(self.top) or 0.0) - (_num(self.bottom) or 0.0)
        return _axis(self.left, self.right, width), _axis(self.top, self.bottom, height), width, height


def _num(value: float | str | None) -> float | None:
    return value if isinstance(value, float) else None


def _axis(near: float | str | None, far: float | str | None, size: float) -> float:
    if isinstance(near, float):
        return near
    if isinstance(far, float):
        return 1.0 - far - size
    return (1.0 - size) / 2


@dataclass(frozen=True)
class Speech:
    """A text-to-speech request (``<audio voice=…>text</audio>``): the key of its length."""

    voice: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Node:
    """Any element; ``line`` is its start tag's line in the definition."""

    tag: ClassVar[str] = "node"
    line: int
    timing: Timing = Timing()
    filters: tuple["Filter", ...] = ()
    animators: tuple["Animator", ...] = ()


@dataclass(frozen=True, kw_only=True)
class Key:
    """An animator keyframe (§11.2): ``time`` plus pos/scale/rot/orient or filter parameters."""

    line: int
    time: float
    params: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Animator(Node):
    """Moves/grows the node it is in over its time span (§11.2)."""

    tag: ClassVar[str] = "animator"
    type: str
    params: Params = Params()
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Filter(Node):
    """Image processing on the node it is in (§11.1); ``inputs`` = nested renders (masks)."""

    tag: ClassVar[str] = "filter"
    type: str
    params: Params = Params()
    inputs: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Image(Node):
    """A still: ``filename`` URL, or a solid ``color``, or ``kind="map"`` (§8.1).
    ``captions``: ``<track type="caption">`` texts (theme widgets only)."""

    tag: ClassVar[str] = "image"
    filename: str | None = None
    color: Color | None = None
    kind: str | None = None
    params: Params = Params()
    captions: tuple["Text", ...] = ()


@dataclass(frozen=True, kw_only=True)
class Video(Node):
    """A video clip (§8.2); ``audio`` = its sound is mixed in."""

    tag: ClassVar[str] = "video"
    filename: str
    skip: float = 0.0
    audio: bool = True
    volume: float = 1.0
    speed: float = 1.0
    params: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Audio(Node):
    """A sound (§8.3): a file, or text to speak with ``voice``. ``params``: ducking etc."""

    tag: ClassVar[str] = "audio"
    filename: str | None = None
    voice: str | None = None
    text: str = ""
    skip: float = 0.0
    fadein: float = 0.0
    fadeout: float = 0.0
    volume: float = 1.0
    loop: bool = False
    speed: float = 1.0
    params: Params = Params()

    @property
    def speech(self) -> Speech | None:
        return Speech(self.voice, self.text) if self.voice and not self.filename else None


@dataclass(frozen=True, kw_only=True)
class Text(Node):
    """Text drawn in a box (§9). ``align``/``valign``: horizontal/vertical alignment."""

    tag: ClassVar[str] = "text"
    kind: str = "zone"
    text: str = ""
    fontname: str | None = None
    fontsize: float | None = None
    fontcolor: Color = Color(255, 255, 255)
    backgroundcolor: Color | None = None
    align: str = "center"
    valign: str = "center"
    box: Box = Box()
    wrap: bool = True
    interlign: float | None = None
    vector: bool = False
    direction: str | None = None
    params: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Transition(Node):
    """A transition between its two neighbours in a sequence (§7, §4.4)."""

    tag: ClassVar[str] = "transition"
    type: str = "crossfade"
    duration: float = 1.0
    params: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Sequence(Node):
    """Children one after another (``body`` is a sequence); transitions among them."""

    tag: ClassVar[str] = "sequence"
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Stack(Node):
    """Children at the same time, first at the back (§5.3)."""

    tag: ClassVar[str] = "stack"
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Effect(Node):
    """Full-frame moving picture of its image/video children (§6); other children draw over."""

    tag: ClassVar[str] = "effect"
    type: str = "none"
    params: Params = Params()
    children: tuple[Node, ...] = ()

    @property
    def media(self) -> tuple[Image | Video, ...]:
        return tuple(c for c in self.children if isinstance(c, (Image, Video)))


@dataclass(frozen=True, kw_only=True)
class Overlay(Node):
    """A placed box of media/atoms over earlier stack children (§10); ``sphere`` maps here."""

    tag: ClassVar[str] = "overlay"
    box: Box = Box()
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Track(Node):
    """A theme widget's track: ``video`` items, ``audio`` soundtrack or ``caption`` texts."""

    tag: ClassVar[str] = "track"
    type: str = "video"
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Style(Node):
    """A theme widget's layer style (``layer``, ``color``, ``visible``)."""

    tag: ClassVar[str] = "style"
    params: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Widget(Node):
    """A template (§13); rendered as the slideshow fallback (see timeline)."""

    tag: ClassVar[str] = "widget"
    type: str = ""
    children: tuple[Node, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Movie:
    """The document root: ``body`` is the top-level sequence."""

    line: int
    body: Sequence
    service: str = SERVICE


@dataclass(frozen=True)
class Definition:
    """A parsed definition: the tree, assets to fetch, speech to synthesise, warnings."""

    movie: Movie
    assets: tuple[str, ...] = ()
    speeches: tuple[Speech, ...] = ()
    warnings: tuple[str, ...] = ()


def walk(node: Node | Movie) -> Iterator[Node]:
    """Every node under ``node`` (itself included), parents before children."""
    if isinstance(node, Movie):
        yield from walk(node.body)
        return
    yield node
    nested = (getattr(node, name, ()) for name in ("children", "captions", "inputs"))
    for child in (*(n for group in nested for n in group), *node.filters, *node.animators):
        yield from walk(child)


# --------------------------------------------------------------------------- vocabulary

EFFECT_TYPES = frozenset(
    "none kenburns panel flower explode slice rectangles diving sliding rotator square".split()
)
TRANSITION_TYPES = frozenset(
    "crossfade waterdrop circle radial swirl strip scan scans move over under cube spiral dualmove custom".split()
)
TEXT_KINDS = frozenset(("zone", "legend", "advanced"))
ANIMATOR_TYPES = frozenset("slide-in slide-out slide rot-in rot-out grow custom".split())

_ATOMS = frozenset(("effect", "text", "overlay", "audio", "widget", "sphere"))
_CONTAINERS = frozenset(("sequence", "stack"))
_MODIFIERS = frozenset(("filter", "animator"))
_MEDIA = frozenset(("image", "video"))
_CONTENT = _MEDIA | _ATOMS | _CONTAINERS | _MODIFIERS
ALLOWED_CHILDREN: dict[str, frozenset[str]] = {
    "movie": frozenset(("head", "body")),
    "body": _ATOMS | _CONTAINERS | _MODIFIERS | {"transition"},
    "sequence": _ATOMS | _CONTAINERS | _MODIFIERS | {"transition"},
    "stack": _ATOMS | _CONTAINERS | _MODIFIERS | {"camera"},
    "effect": _CONTENT,
    "overlay": _CONTENT,
    "sphere": _CONTENT,
    "filter": _CONTENT,
    "text": _MODIFIERS,
    "audio": frozenset(),
    "image": frozenset(("filter",)),
    "video": frozenset(("filter",)),
    "animator": frozenset(("key",)),
    "key": frozenset(),
    "transition": _ATOMS,
}
"""Allowed children per element (spec §2); widget content is lax (anything goes)."""
_IGNORED = frozenset(("head", "camera"))
"""Known elements that are accepted and not rendered."""
_PLACEMENT_HINT = {
    "transition": "must be directly inside a sequence",
    "key": "must be inside an animator",
    "camera": "must be inside a stack",
    "image": "must be inside an effect, overlay, filter or widget",
    "video": "must be inside an effect, overlay, filter or widget",
    "body": "must be directly inside the movie",
    "head": "must be directly inside the movie",
    "movie": "must be the root element",
    "track": "must be inside a widget",
    "style": "must be inside a widget",
}

_TIME_ATTRS = frozenset(("duration", "margin-start", "margin-end", "margin-both", "start"))
_PLACEMENT = ("top", "bottom", "left", "right", "width", "height")
_Parser = Callable[[str], object]
_KNOWN_PARAMS: dict[str, _Parser] = {
    # effects / transitions / animators
    "timeOffset": parse_time, "depthEnable": parse_bool, "transWidth": parse_float, "width": parse_float,
    "height": parse_float,
    "color": parse_color, "angle": parse_float, "growStart": parse_float, "growEnd": parse_float,
    # filters (§9, §11.1)
    "alphaStart": parse_float, "alphaEnd": parse_float, "diameter": parse_float, "diameterX": parse_float,
    "diameterY": parse_float, "distanceWidth": parse_float, "strokeWidth": parse_float,
    "strokeColor": parse_color, "strokeOpacity": parse_float, "fillOpacity": parse_float,
    "dropShadowColor": parse_color, "dropShadowOpacity": parse_float, "dropShadowBlurWidth": parse_float,
    "dropShadowPosition": _couple, "dropShadowAngle": parse_float, "dropShadowDistance": parse_float,
    "dropShadowWidth": parse_float, "outerGlowColor": parse_color, "outerGlowOpacity": parse_float,
    "outerGlowWidth": parse_float, "outerGlowBlurWidth": parse_float,
    "innerShadowColor": parse_color, "innerShadowOpacity": parse_float, "innerShadowBlurWidth": parse_float,
    "innerShadowPosition": _couple, "innerShadowAngle": parse_float, "innerShadowDistance": parse_float,
    "innerShadowWidth": parse_float, "innerGlowColor": parse_color, "innerGlowOpacity": parse_float,
    "innerGlowWidth": parse_float, "innerGlowBlurWidth": parse_float, "threshold": parse_float,
    "gamma": parse_float, "whiteColor": parse_color, "blackColor": parse_color, "mediumColor": parse_color,
    "opaqueColor": parse_color, "transparentColor": parse_color, "zoomStart": parse_float,
    "zoomEnd": parse_float, "zoomLimit": parse_float, "centerStart": _couple, "centerEnd": _couple,
    "rgba-bias-matrix": parse_colors, "color0": parse_color, "color1": parse_color,
    "point0": _couple, "point1": _couple,
    # keys
    "pos": _triplet, "scale": _triplet, "orient": _triplet, "rot": _quad,
    # audio ducking
    "duck-others": parse_float, "duck-threshold": parse_float, "duck-margin": parse_time,
    "duck-fade": parse_time,
}


# --------------------------------------------------------------------------- hardened XML read


@dataclass
class _Raw:
    """One element as read: the builder's input."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list["_Raw"] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


def _refuse(what: str, parser: "expat.XMLParserType") -> Callable[..., None]:
    def handler(*_args: object) -> None:
        raise InvalidXMLError(f"{what} are not allowed", parser.CurrentLineNumber)

    return handler


def _read_xml(text: str | bytes) -> _Raw:
    """Parse with expat, refusing DTDs and entities and enforcing the caps; the root element."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_DEFINITION_BYTES:
        raise InvalidXMLError(f"the definition is {size} bytes, more than the {MAX_DEFINITION_BYTES} allowed")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse("DTDs (<!DOCTYPE>)", parser)
    parser.EntityDeclHandler = _refuse("entity declarations", parser)
    parser.UnparsedEntityDeclHandler = _refuse("entity declarations", parser)
    parser.ExternalEntityRefHandler = _refuse("external entities", parser)
    stack: list[_Raw] = []
    roots: list[_Raw] = []
    count = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        line = parser.CurrentLineNumber
        if count > MAX_ELEMENTS:
            raise InvalidXMLError(f"more than {MAX_ELEMENTS} elements", line)
        if len(stack) >= MAX_DEPTH:
            raise InvalidXMLError(f"<{tag}> is nested deeper than {MAX_DEPTH} levels", line)
        element = _Raw(tag, attrs, line)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def data(chunk: str) -> None:
        if stack:
            stack[-1].text.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _tag: stack.pop()
    parser.CharacterDataHandler = data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise InvalidXMLError(expat.ErrorString(exc.code), exc.lineno) from None
    return roots[0]


# --------------------------------------------------------------------------- builder


class _Builder:
    """Turns raw elements into nodes, validating placement and values; collects assets."""

    def __init__(self) -> None:
        self.assets: dict[str, None] = {}
        self.speeches: dict[Speech, None] = {}
        self.warnings: list[str] = []

    # ---- attribute access with error context

    def value(self, raw: _Raw, name: str, parse: _Parser, default: object = None) -> object:
        text = raw.attrs.get(name)
        if text is None:
            return default
        try:
            return parse(text)
        except ValueError as exc:
            raise InvalidContentError(f"<{raw.tag}> attribute {name}: {exc}", raw.line) from None

    def required(self, raw: _Raw, name: str) -> str:
        text = raw.attrs.get(name, "").strip()
        if not text:
            raise InvalidContentError(f"<{raw.tag}> needs a {name} attribute", raw.line)
        return text

    def url(self, raw: _Raw, name: str) -> str:
        url = self.required(raw, name)
        if not re.match(r"https?://[^\s/]+", url, re.IGNORECASE):
            raise InvalidContentError(f"<{raw.tag}> attribute {name}: {url!r} is not an http(s) URL", raw.line)
        self.assets.setdefault(url, None)
        return url

    def params(self, raw: _Raw, used: frozenset[str] | set[str] = frozenset()) -> Params:
        items = []
        for name in raw.attrs:
            if name in used or name in _TIME_ATTRS:
                continue
            parse = _KNOWN_PARAMS.get(name)
            items.append((name, self.value(raw, name, parse) if parse else raw.attrs[name]))
        return Params(tuple(items))

    def timing(self, raw: _Raw) -> Timing:
        duration = raw.attrs.get("duration")
        slave = duration is not None and duration.strip() == ".."
        both = self.value(raw, "margin-both", parse_time)
        start = self.value(raw, "margin-start", parse_time)
        if start is None:
            start = self.value(raw, "start", parse_time)
        end = self.value(raw, "margin-end", parse_time)
        if both is not None:
            if start is not None or end is not None:
                raise InvalidContentError(
                    f"<{raw.tag}> attribute margin-both: cannot be combined with margin-start/margin-end", raw.line
                )
            start = end = both
        return Timing(
            duration=None if slave else self.value(raw, "duration", parse_time),
            slave=slave,
            margin_start=start,
            margin_end=end,
        )

    def box(self, raw: _Raw) -> Box:
        return Box(**{name: self.value(raw, name, parse_position) for name in _PLACEMENT})

    def warn(self, raw: _Raw, message: str) -> None:
        self.warnings.append(f"line {raw.line}: <{raw.tag}> {message}")

    def known(self, raw: _Raw, value: str, vocabulary: frozenset[str], what: str) -> None:
        if value not in vocabulary:
            self.warn(raw, f"{what} {value!r} is unknown (rendered as an approximation)")

    # ---- children

    def children(self, raw: _Raw, lax: bool = False) -> tuple[list[Node], list[Filter], list[Animator]]:
        """Build ``raw``'s children; filters and animators apart. ``lax``: widget content."""
        nodes: list[Node] = []
        filters: list[Filter] = []
        animators: list[Animator] = []
        allowed = ALLOWED_CHILDREN.get(raw.tag, frozenset())
        for child in raw.children:
            if child.tag not in _KNOWN:
                self.warn(child, "is not an SXML element: ignored")
                continue
            if child.tag == "movie" or (not lax and child.tag not in allowed):
                hint = _PLACEMENT_HINT.get(child.tag, f"is not allowed inside <{raw.tag}>")
                raise InvalidContentError(f"<{child.tag}> {hint}", child.line)
            if child.tag in _IGNORED:
                self.warn(child, "is not rendered: ignored")
                continue
            node = _BUILDERS[child.tag](self, child, lax)
            if isinstance(node, Filter):
                filters.append(node)
            elif isinstance(node, Animator):
                animators.append(node)
            else:
                nodes.append(node)
        return nodes, filters, animators

    def fields(self, raw: _Raw, lax: bool = False) -> tuple[dict, tuple[Node, ...]]:
        """The fields every node shares (line, timing, filters, animators), and its other children."""
        nodes, filters, animators = self.children(raw, lax)
        shared = {"line": raw.line, "timing": self.timing(raw), "filters": tuple(filters), "animators": tuple(animators)}
        return shared, tuple(nodes)


def _content(raw: _Raw) -> str:
    """Character data: trimmed, each line trimmed; inner newlines are line breaks."""
    return "\n".join(line.strip() for line in "".join(raw.text).strip().splitlines())


def _sequence(b: _Builder, raw: _Raw, lax: bool) -> Sequence:
    fields, children = b.fields(raw, lax)
    return Sequence(children=children, **fields)


def _stack(b: _Builder, raw: _Raw, lax: bool) -> Stack:
    fields, children = b.fields(raw, lax)
    return Stack(children=children, **fields)


def _effect(b: _Builder, raw: _Raw, lax: bool) -> Effect:
    kind = raw.attrs.get("type", "none").strip() or "none"
    b.known(raw, kind, EFFECT_TYPES, "effect type")
    fields, children = b.fields(raw, lax)
    return Effect(type=kind, params=b.params(raw, {"type"}), children=children, **fields)


def _overlay(b: _Builder, raw: _Raw, lax: bool) -> Overlay:
    fields, children = b.fields(raw, lax)
    if raw.tag == "sphere":
        b.warn(raw, "is drawn as a full-frame overlay")
    return Overlay(box=b.box(raw), children=children, **fields)


def _transition(b: _Builder, raw: _Raw, lax: bool) -> Transition:
    kind = raw.attrs.get("type", "crossfade").strip() or "crossfade"
    b.known(raw, kind, TRANSITION_TYPES, "transition type")
    b.children(raw, lax)  # validates a custom transition's widget; it is drawn as a crossfade
    return Transition(
        line=raw.line,
        type=kind,
        duration=b.value(raw, "duration", parse_time, 1.0),
        params=b.params(raw, {"type"}),
    )


def _image(b: _Builder, raw: _Raw, lax: bool) -> Image:
    filename = b.url(raw, "filename") if "filename" in raw.attrs else None  # before its children's
    fields, children = b.fields(raw, lax)
    kind = raw.attrs.get("type")
    color = b.value(raw, "color", parse_color)
    if filename is None and color is None and kind != "map":
        raise InvalidContentError("<image> needs a filename or a color attribute", raw.line)
    captions = tuple(
        text for track in children if isinstance(track, Track) for text in track.children if isinstance(text, Text)
    )
    return Image(
        filename=filename,
        color=color,
        kind=kind,
        params=b.params(raw, {"filename", "color", "type"}),
        captions=captions,
        **fields,
    )


def _video(b: _Builder, raw: _Raw, lax: bool) -> Video:
    filename = b.url(raw, "filename")
    fields, _ = b.fields(raw, lax)
    return Video(
        filename=filename,
        skip=b.value(raw, "skip", parse_time, 0.0),
        audio=b.value(raw, "audio", parse_bool, True),
        volume=b.value(raw, "volume", parse_float, 1.0),
        speed=_speed(b, raw),
        params=b.params(raw, {"filename", "skip", "audio", "volume", "speed"}),
        **fields,
    )


def _speed(b: _Builder, raw: _Raw) -> float:
    speed = b.value(raw, "speed", parse_float, 1.0)
    if speed <= 0:
        raise InvalidContentError(f"<{raw.tag}> attribute speed: {speed} is not positive", raw.line)
    return speed


def _audio(b: _Builder, raw: _Raw, lax: bool) -> Audio:
    fields, _ = b.fields(raw, lax)
    voice = raw.attrs.get("voice", "").strip() or None
    text = _content(raw)
    if "filename" in raw.attrs:
        filename = b.url(raw, "filename")
        if voice:
            b.warn(raw, "has both filename and voice: the file is played")
    elif voice:
        filename = None
        if not text:
            raise InvalidContentError("<audio> attribute voice: there is no text to speak", raw.line)
        b.speeches.setdefault(Speech(voice, text), None)
    else:
        raise InvalidContentError("<audio> needs a filename or a voice attribute", raw.line)
    used = {"filename", "voice", "skip", "fadein", "fadeout", "volume", "loop", "speed"}
    return Audio(
        filename=filename,
        voice=voice,
        text=text,
        skip=b.value(raw, "skip", parse_time, 0.0),
        fadein=b.value(raw, "fadein", parse_time, 0.0),
        fadeout=b.value(raw, "fadeout", parse_time, 0.0),
        volume=b.value(raw, "volume", parse_float, 1.0),
        loop=b.value(raw, "loop", parse_bool, False),
        speed=_speed(b, raw),
        params=b.params(raw, used),
        **fields,
    )


_H_ALIGN = frozenset(("left", "right", "center", "justify"))
_V_ALIGN = frozenset(("top", "center", "bottom"))


def _align(b: _Builder, raw: _Raw) -> tuple[str, str]:
    text = raw.attrs.get("align", "").strip().lower()
    if not text:
        return "center", "center"
    parts = [part.strip() for part in text.split(",")]
    horizontal, vertical = parts[0], parts[1] if len(parts) > 1 else "center"
    if len(parts) > 2 or horizontal not in _H_ALIGN or vertical not in _V_ALIGN:
        raise InvalidContentError(
            f"<{raw.tag}> attribute align: {text!r} is not left|right|center|justify[,top|center|bottom]", raw.line
        )
    return horizontal, vertical


def _text(b: _Builder, raw: _Raw, lax: bool) -> Text:
    fields, _ = b.fields(raw, lax)
    kind = raw.attrs.get("type", "zone").strip() or "zone"
    b.known(raw, kind, TEXT_KINDS, "text type")
    fontname = raw.attrs.get("fontname", "").strip() or None
    if fontname and re.match(r"https?://", fontname, re.IGNORECASE):
        b.assets.setdefault(fontname, None)
    horizontal, vertical = _align(b, raw)
    fontsize = b.value(raw, "fontsize", parse_float)
    if fontsize is not None and fontsize <= 0:
        raise InvalidContentError(f"<text> attribute fontsize: {fontsize} is not positive", raw.line)
    used = {"type", "fontname", "fontsize", "fontcolor", "backgroundcolor", "align", "wrap", "interlign",
            "vector", "direction", *_PLACEMENT}
    return Text(
        kind=kind,
        text=_content(raw),
        fontname=fontname,
        fontsize=fontsize,
        fontcolor=b.value(raw, "fontcolor", parse_color, Color(255, 255, 255)),
        backgroundcolor=b.value(raw, "backgroundcolor", parse_color),
        align=horizontal,
        valign=vertical,
        box=b.box(raw),
        wrap=b.value(raw, "wrap", parse_bool, True),
        interlign=b.value(raw, "interlign", parse_float),
        vector=b.value(raw, "vector", parse_bool, False),
        direction=raw.attrs.get("direction", "").strip() or None,
        params=b.params(raw, used),
        **fields,
    )


def _filter(b: _Builder, raw: _Raw, lax: bool) -> Filter:
    fields, inputs = b.fields(raw, lax)
    return Filter(type=b.required(raw, "type"), params=b.params(raw, {"type"}), inputs=inputs, **fields)


def _animator(b: _Builder, raw: _Raw, lax: bool) -> Animator:
    kind = raw.attrs.get("type", "custom").strip() or "custom"
    b.known(raw, kind, ANIMATOR_TYPES, "animator type")
    keys = []
    for child in raw.children:
        if child.tag != "key":
            if child.tag in _BUILDERS:
                raise InvalidContentError(f"<{child.tag}> is not allowed inside <animator>", child.line)
            b.warn(child, "is not an SXML element: ignored")
            continue
        time = b.value(child, "time", parse_time)
        if time is None:
            raise InvalidContentError("<key> needs a time attribute", child.line)
        keys.append(Key(line=child.line, time=time, params=b.params(child, {"time"})))
    return Animator(
        line=raw.line,
        timing=b.timing(raw),
        type=kind,
        params=b.params(raw, {"type"}),
        keys=tuple(sorted(keys, key=lambda k: k.time)),
    )


def _widget(b: _Builder, raw: _Raw, lax: bool) -> Widget:
    fields, children = b.fields(raw, lax=True)
    return Widget(type=raw.attrs.get("type", "").strip(), children=children, **fields)


def _track(b: _Builder, raw: _Raw, lax: bool) -> Track:
    fields, children = b.fields(raw, lax=True)
    return Track(type=raw.attrs.get("type", "video").strip(), children=children, **fields)


def _style(b: _Builder, raw: _Raw, lax: bool) -> Style:
    return Style(line=raw.line, params=b.params(raw))


def _key_outside(b: _Builder, raw: _Raw, lax: bool) -> Node:
    raise InvalidContentError(f"<key> {_PLACEMENT_HINT['key']}", raw.line)


_BUILDERS: dict[str, Callable[[_Builder, _Raw, bool], Node]] = {
    "body": _sequence,
    "sequence": _sequence,
    "stack": _stack,
    "effect": _effect,
    "overlay": _overlay,
    "sphere": _overlay,
    "transition": _transition,
    "image": _image,
    "video": _video,
    "audio": _audio,
    "text": _text,
    "filter": _filter,
    "animator": _animator,
    "widget": _widget,
    "track": _track,
    "style": _style,
    "key": _key_outside,
}


_KNOWN = frozenset(_BUILDERS) | _IGNORED | {"movie"}


def parse(text: str | bytes) -> Definition:
    """Parse and validate a definition; raises ``InvalidXMLError``/``InvalidContentError``."""
    root = _read_xml(text)
    if root.tag != "movie":
        raise InvalidContentError(f"the root element is <{root.tag}>, not <movie>", root.line)
    builder = _Builder()
    service = root.attrs.get("service", "").strip()
    if not service:
        builder.warn(root, f"has no service attribute: {SERVICE} assumed")
    elif service != SERVICE:
        raise InvalidContentError(f"<movie> attribute service: {service!r} is not {SERVICE!r}", root.line)
    bodies = [child for child in root.children if child.tag == "body"]
    if len(bodies) != 1:
        raise InvalidContentError(f"<movie> needs exactly one <body>, not {len(bodies)}", root.line)
    for child in root.children:
        if child.tag == "head":
            builder.warn(child, "is not rendered (custom shaders): ignored")
        elif child.tag in _KNOWN and child.tag != "body":
            hint = _PLACEMENT_HINT.get(child.tag, "must be inside the <body>")
            raise InvalidContentError(f"<{child.tag}> {hint}", child.line)
        elif child.tag != "body":
            builder.warn(child, "is not an SXML element: ignored")
    body = _sequence(builder, bodies[0], False)
    return Definition(
        movie=Movie(line=root.line, body=body, service=SERVICE),
        assets=tuple(builder.assets),
        speeches=tuple(builder.speeches),
        warnings=tuple(builder.warnings),
    )
