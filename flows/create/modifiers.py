"""Filters and animators (spec §11) applied to a drawn stream, in document order.

Filters: ``alpha`` (a fade of the node's opacity over the filter's span, or a constant
opacity), ``blur`` and the other blurs (``gblur``), ``colormap`` (negative, low contrast, a
colour matrix, black & white), ``tint``/``threetint`` (colour by brightness),
``key``/``makeTransparent`` (chroma key, ``colorkey``). The masks (``mask``, ``lumamask``,
``alphamask`` and their ``inv`` kinds) cut the node's alpha by the cover of their ``<image>``
(a picture stretched to the node, or a colour; ``stills.mask_cover``); a mask made of a
nested render is not drawn. ``frame``, ``borderBlur`` and ``fitAdapter`` of a picture are
done once on the still (``stills.still_filters``), the adapters' moves by ``motion.py``,
``distancemap``/``distancecolor`` by ``text.py``. Other filters are ignored with a warning.

Animators move a node in 2D over the animator's span (values held before and after it):

- ``slide-in`` / ``slide-out`` (``direction``, default left): from / to just off the named
  screen edge; ``slide``: a slow drift of a tenth of the frame towards ``direction``;
- ``grow`` (``growStart`` 0 -> ``growEnd`` 0.1): a z translation, drawn as a zoom about the
  node's centre by ``GROW_CAMERA / (GROW_CAMERA - z)`` (the camera ``GROW_CAMERA`` screen
  units from the screen plane; towards the viewer = bigger);
- ``rot-in`` / ``rot-out`` (``angle`` degrees, default 90): a rotation about the screen axis
  into / out of place;
- ``custom``: paths through its ``key``s (linear, or eased with ``mode="quadratic"``): ``pos``
  (screen units of §5.1: x in half-heights, y up), ``scale`` (x, y factors about the centre),
  ``rot`` about the z axis (a flat rotation) or any other axis (turned in 3D and seen through
  the ``GROW_CAMERA``: ``turn.py``); ``orient`` keys about one axis the same way, the short
  way round between keys (keys turning about several axes are ignored with a warning).

A zoom or a rotation is drawn on a transparent canvas large enough for the biggest size the
node reaches (``perspective``, sub-pixel; ``rotate``), so nothing is cut at the node's box.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from flows.create.graph import FilterGraph, Stream, num
from flows.create.motion import ADAPTERS, MAX_ZOOM
from flows.create.stills import KB, KR
from flows.create.sxml import Color, Filter, Key
from flows.create.timeline import Modifier
from flows.create.turn import Turn

GROW_CAMERA = 2.0
"""Distance of the camera from the screen plane (screen units, §5.1) for ``grow``."""
STILL_FILTERS = frozenset(("frame", "borderBlur", "fitAdapter"))
"""Filters of a picture done once on the still."""
BLURS = frozenset(("blur", "hblur", "vblur", "gaussianBlur", "hgaussianBlur", "vgaussianBlur", "directionalBlur",
                   "maskedBlur", "bilateralBlur"))
TEXT_FILTERS = frozenset(("distancemap", "distancecolor"))
KEY_THRESHOLD = 0.3
"""``key``'s default ``threshold``: how far from the key colour a pixel is still made
transparent (ffmpeg ``colorkey`` similarity, 0.01-1; the edge blends over half as much)."""
LOW_CONTRAST = 0.5
"""Contrast of ``colormap preset="lowContrast"`` (1 = unchanged)."""
ANIMATED = frozenset(("slide-in", "slide-out", "slide", "grow", "rot-in", "rot-out", "custom"))
MASKS = frozenset(("mask", "alphamask", "alphainvmask", "lumamask", "lumainvmask"))
MaskCover = Callable[[Filter, Stream], "str | None"]
"""A mask filter's cover for a stream: the label of a grey stream as long and as big as it
(255 = kept), or None when the filter has no picture or colour to make one from."""


def apply(graph: FilterGraph, modifiers: list[Modifier], stream: Stream, *, still: bool,
          cover: MaskCover | None = None) -> Stream:
    """``stream`` through its ``modifiers``; ``still``: a picture clip whose still filters
    were done by Pillow; ``cover`` makes the cover of a mask filter."""
    for modifier in modifiers:
        node = modifier.node
        if node.tag == "filter":
            if node.type in STILL_FILTERS and still:
                continue
            if node.type in MASKS:
                stream = _mask(graph, modifier, stream, cover)
                continue
            stream = _filter(graph, modifier, stream)
        else:
            stream = _animate(graph, modifier, stream)
    return stream


def _window(graph: FilterGraph, modifier: Modifier, stream: Stream) -> tuple[int, int]:
    """(first, last) frame of ``modifier`` counted in the stream's own frames."""
    a = max(0, graph.frame(modifier.start) - stream.start)
    b = min(stream.frames, graph.frame(modifier.end) - stream.start)
    return a, b


def _enable(graph: FilterGraph, a: int, b: int) -> str:
    """A filter's timeline expression: on from the stream's own frame ``a`` to ``b``."""
    return f"between(t,{graph.seconds(a)},{graph.seconds(b)})"


def _param(node, name: str, default: float) -> float:
    value = node.params.get(name)
    return default if value is None else float(value)


# --------------------------------------------------------------------------- filters


def _filter(graph: FilterGraph, modifier: Modifier, stream: Stream) -> Stream:
    node = modifier.node
    kind = node.type
    a, b = _window(graph, modifier, stream)
    start, duration, enable = graph.seconds(a), graph.seconds(max(0, b - a)), _enable(graph, a, b)
    if kind == "alpha":
        a0 = _param(node, "alphaStart", 1.0)
        a1 = _param(node, "alphaEnd", a0)
        stream = graph.as_format(stream, True)
        if abs(a0 - a1) < 1e-6:
            if a0 >= 1:
                return stream
            label = graph.chain(stream.label, [f"colorchannelmixer=aa={num(a0)}:enable='{enable}'"])
        else:
            way = "in" if a1 > a0 else "out"
            label = graph.chain(stream.label, [f"fade=t={way}:st={start}:d={duration}:alpha=1"])
        return replace(stream, label=label)
    if kind in BLURS:
        diameter = float(node.params.get("diameter") or node.params.get("diameterX") or 5.0)
        sigma = max(0.5, diameter / 2 * graph.height / 360)
        return replace(stream, label=graph.chain(stream.label, [f"gblur=sigma={num(sigma)}:enable='{enable}'"]))
    if kind == "colormap":
        return _colormap(graph, stream, node, enable)
    if kind in ("tint", "threetint"):
        return _tint(graph, stream, node, enable)
    if kind in ("key", "makeTransparent"):
        color = node.params.get("color") or Color(0, 255, 0)
        similarity = min(1.0, max(0.01, _param(node, "threshold", KEY_THRESHOLD)))
        return _in_rgb(graph, graph.as_format(stream, True), [
            f"colorkey=color=0x{color.r:02x}{color.g:02x}{color.b:02x}:similarity={num(similarity)}"
            f":blend={num(similarity / 2)}:enable='{enable}'"])
    if kind in STILL_FILTERS or kind in TEXT_FILTERS or kind in ADAPTERS:  # done elsewhere
        return stream
    graph.warn(node.line, f"<filter type=\"{kind}\"> is not rendered: ignored")
    return stream


def _in_rgb(graph: FilterGraph, stream: Stream, filters: list[str]) -> Stream:
    """``stream`` through ``filters`` working on RGB (converted from and back to BT.709
    limited range)."""
    label = graph.chain(stream.label, [
        f"scale=in_color_matrix=bt709:in_range=tv,format={'gbrap' if stream.alpha else 'gbrp'}", *filters,
        f"scale=out_color_matrix=bt709:out_range=tv,format={'yuva420p' if stream.alpha else 'yuv420p'}",
    ])
    return replace(stream, label=label)


def _colormap(graph: FilterGraph, stream: Stream, node, enable: str) -> Stream:
    """``colormap`` (§11.1): ``preset="negative"``, ``"lowContrast"``, an ``rgba-bias-matrix``
    (rows R, G, B, A of an RGBA colour each, then the bias: the identity is
    ``#FF000000,#00FF0000,#0000FF00,#000000FF,#00000000``), or black & white without either."""
    preset = str(node.params.get("preset") or "").strip()
    matrix = node.params.get("rgba-bias-matrix")
    if matrix is not None:
        if len(matrix) != 5:
            graph.warn(node.line, "<filter type=\"colormap\"> rgba-bias-matrix needs 5 colours: ignored")
            return stream
        rows, bias = matrix[:4], matrix[4]
        mix = ":".join(f"{out}{src}={num(row[i] / 255)}" for out, row in zip("rgba", rows)
                       for i, src in enumerate("rgba"))
        lift = ":".join(f"{c}='val+{bias[i]}'" for i, c in enumerate("rgba"))
        stream = graph.as_format(stream, True)
        return _in_rgb(graph, stream, [f"colorchannelmixer={mix}:enable='{enable}'", f"lutrgb={lift}:enable='{enable}'"])
    if preset == "negative":
        look = "negate=negate_alpha=0"
    elif preset == "lowContrast":
        look = f"eq=contrast={LOW_CONTRAST}"
    elif not preset:
        look = "hue=s=0"
    else:
        graph.warn(node.line, f"<filter type=\"colormap\"> preset \"{preset}\" is not known: ignored")
        return stream
    return replace(stream, label=graph.chain(stream.label, [f"{look}:enable='{enable}'"]))


def _tint(graph: FilterGraph, stream: Stream, node, enable: str) -> Stream:
    """Colours by brightness (§11.1): ``tint`` maps black to ``blackColor`` and white to
    ``whiteColor`` (a duotone); ``threetint`` passes through ``mediumColor`` at mid grey. Done
    in RGB on the BT.709 luma."""
    black = node.params.get("blackColor") or Color(0, 0, 0)
    white = node.params.get("whiteColor") or Color(255, 255, 255)
    medium = node.params.get("mediumColor") if node.type == "threetint" else None

    def curve(i: int) -> str:
        low, high = black[i], white[i]
        if medium is None:
            return f"{low}+({high - low})*val/255"
        mid = medium[i]
        return f"if(lt(val,128),{low}+({mid - low})*val/128,{mid}+({high - mid})*(val-128)/127)"

    luma = ":".join(f"{c}r={KR}:{c}g={1 - KR - KB:.4f}:{c}b={KB}" for c in "rgb")
    return _in_rgb(graph, stream, [f"colorchannelmixer={luma}:enable='{enable}'",
                                   f"lutrgb=r='{curve(0)}':g='{curve(1)}':b='{curve(2)}':enable='{enable}'"])


def _mask(graph: FilterGraph, modifier: Modifier, stream: Stream, cover: MaskCover | None) -> Stream:
    """``stream`` keeping only what the mask's cover keeps (its own alpha multiplied by the
    cover) during the filter's span."""
    node = modifier.node
    label = cover(node, stream) if cover is not None else None
    if label is None:
        graph.warn(node.line, f"<filter type=\"{node.type}\"> needs an <image> (a picture or a color) to mask"
                              " with: ignored")
        return stream
    a, b = _window(graph, modifier, stream)
    stream = graph.as_format(stream, True)
    own, copy, kept, out = graph.label(), graph.label(), graph.label(), graph.label()
    graph.chains.append(f"{stream.label}split{own}{copy}")
    alpha = graph.chain(own, ["alphaextract"])
    graph.chains += [
        f"{alpha}{label}blend=all_mode=multiply:enable='{_enable(graph, a, b)}'{kept}",
        f"{copy}{kept}alphamerge{out}",
    ]
    return replace(stream, label=out)


# --------------------------------------------------------------------------- animators


def _animate(graph: FilterGraph, modifier: Modifier, stream: Stream) -> Stream:
    node = modifier.node
    kind = node.type
    if kind not in ANIMATED:
        graph.warn(node.line, f"<animator type=\"{kind}\"> is not rendered: ignored")
        return stream
    if stream.full:
        stream = replace(stream, full=False, w=graph.width, h=graph.height)
    a, b = _window(graph, modifier, stream)
    if b <= a:
        return stream
    if kind == "custom":
        return _custom(graph, node, stream, a)
    if kind == "grow":
        z0, z1 = _param(node, "growStart", 0.0), _param(node, "growEnd", 0.1)
        s0, s1 = _depth_scale(z0), _depth_scale(z1)
        s = f"({num(s0)}+{num(s1 - s0)}*{_progress('(in-1)', a, b)})"  # perspective counts frames from 1
        return _zoom(graph, stream, s, s, max(s0, s1))
    if kind in ("rot-in", "rot-out"):
        angle = -math.radians(_param(node, "angle", 90.0))  # SXML turns counter-clockwise, rotate clockwise
        p = _progress("n", a, b)
        return _rotate(graph, stream, f"{num(angle)}*{f'(1-{p})' if kind == 'rot-in' else p}")
    t0 = f"(t-{{T0}}-{graph.seconds(a)})"
    p = f"clip({t0}/{graph.seconds(b - a)},0,1)"
    direction = str(node.params.get("direction", "left") or "left").strip()
    x, y = stream.x, stream.y
    W, H = graph.width, graph.height
    if kind == "slide":  # slow drift: a tenth of the frame over the span
        ox = {"left": f"-{W * 0.1}", "right": f"{W * 0.1}"}.get(direction, "0")
        oy = {"up": f"-{H * 0.1}", "down": f"{H * 0.1}"}.get(direction, "0")
        return replace(stream, x=f"({x})+({ox})*{p}", y=f"({y})+({oy})*{p}")
    # off-screen offsets towards the named edge
    far = {"left": (f"-(({x})+{stream.w})", "0"), "right": (f"({W}-({x}))", "0"),
           "up": ("0", f"-(({y})+{stream.h})"), "down": ("0", f"({H}-({y}))")}.get(direction)
    if far is None:
        return stream
    ox, oy = far
    k = f"(1-{p})" if kind == "slide-in" else p
    return replace(stream, x=f"({x})+({ox})*{k}", y=f"({y})+({oy})*{k}")


def _progress(frame: str, a: int, b: int) -> str:
    """0 -> 1 from the stream's own frame ``a`` to ``b`` (``frame``: the filter's counter)."""
    return f"clip(({frame}-{a})/{max(1, b - a)},0,1)"


def _depth_scale(z: float) -> float:
    """How much bigger a plane ``z`` screen units towards the viewer looks."""
    return min(MAX_ZOOM, GROW_CAMERA / max(GROW_CAMERA - z, GROW_CAMERA / MAX_ZOOM))


def _custom(graph: FilterGraph, node, stream: Stream, a: int) -> Stream:
    """A keyframed path: ``scale`` then ``pos`` then ``rot`` (§11.2's order)."""
    keys: tuple[Key, ...] = node.keys
    eased = str(node.params.get("mode", "linear") or "linear").strip() == "quadratic"
    scaled = [k for k in keys if k.params.get("scale") is not None]
    if scaled:
        own = f"((in-1-{a})/{graph.rate})"
        sx, sy = (_keyed([(k.time, k.params.get("scale")[axis]) for k in scaled], own, eased) for axis in (0, 1))
        biggest = max(max(abs(v) for v in k.params.get("scale")[:2]) for k in scaled)
        stream = _zoom(graph, stream, sx, sy, biggest)
    moved = [k for k in keys if k.params.get("pos") is not None]
    if moved:
        t = f"(t-{{T0}}-{graph.seconds(a)})"
        H = graph.height
        dx = _keyed([(k.time, k.params.get("pos")[0] * H / 2) for k in moved], t, eased)
        dy = _keyed([(k.time, -k.params.get("pos")[1] * H / 2) for k in moved], t, eased)
        stream = replace(stream, x=f"({stream.x})+{dx}", y=f"({stream.y})+{dy}")
    oriented = [k for k in keys if k.params.get("orient") is not None]
    if oriented:
        about = {i for k in oriented for i, v in enumerate(k.params.get("orient")) if abs(v) > 1e-9}
        if len(about) > 1:
            graph.warn(node.line, "<animator type=\"custom\"> orient keys turning about more than one axis are"
                                  " not rendered: ignored")
        else:
            i = about.pop() if about else 2
            angles = _shortest([(k.time, math.radians(k.params.get("orient")[i])) for k in oriented])
            stream = _rotation(graph, stream, tuple(float(j == i) for j in range(3)), angles, a, eased)
    turned = [k for k in keys if k.params.get("rot") is not None]
    if turned:
        axis = tuple(turned[0].params.get("rot")[1:4])
        if any(tuple(k.params.get("rot")[1:4]) != axis for k in turned):
            graph.warn(node.line, "<animator type=\"custom\"> rot keys with different axes: drawn about the"
                                  " first key's axis")
        angles = [(k.time, math.radians(k.params.get("rot")[0])) for k in turned]
        stream = _rotation(graph, stream, axis, angles, a, eased)
    return stream


def _shortest(angles: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Keyed angles (radians) unwrapped so each key is reached the short way round, as the
    quaternion interpolation of ``orient`` keys does."""
    path = angles[:1]
    for t, v in angles[1:]:
        step = (v - path[-1][1] + math.pi) % (2 * math.pi) - math.pi
        path.append((t, path[-1][1] + step))
    return path


def _rotation(graph: FilterGraph, stream: Stream, axis: tuple[float, ...], angles: list[tuple[float, float]],
              a: int, eased: bool) -> Stream:
    """``stream`` turned about ``axis`` through the keyed ``angles`` (radians, counter-clockwise
    seen from the axis' tip): flat about z, in 3D about any other axis."""
    turn = Turn.about(axis, GROW_CAMERA * graph.height / 2, MAX_ZOOM)
    if turn is not None and abs(turn.axis[0]) + abs(turn.axis[1]) > 1e-9:
        return _turn(graph, stream, turn, angles, a, eased)
    # rotate's own time: n frames into the stream; it turns clockwise
    sign = -1 if turn is not None and turn.axis[2] < 0 else 1
    return _rotate(graph, stream, _keyed([(t, -sign * v) for t, v in angles], f"((n-{a})/{graph.rate})", eased))


def _turn(graph: FilterGraph, stream: Stream, turn: Turn, angles: list[tuple[float, float]], a: int,
          eased: bool) -> Stream:
    """``stream`` turned in 3D through the keyed ``angles`` (radians), on a canvas as big as
    the turned node gets (``turn.py``)."""
    half_w, half_h = turn.extent(stream.w, stream.h, [v for _, v in angles])
    stream, cw, ch = _canvas(graph, stream, 2 * half_w, 2 * half_h)
    angle = _keyed(angles, f"((in-1-{a})/{graph.rate})", eased)  # perspective counts frames from 1
    label = graph.chain(stream.label, [turn.corners(cw, ch, angle), "format=yuva420p"])
    return replace(stream, label=label)


def _keyed(points: list[tuple[float, float]], t: str, eased: bool = False) -> str:
    """An expression of the time expression ``t`` through ``points`` (``(time, value)``,
    sorted), held before the first and after the last: linear between keys, or with
    ``eased`` (``mode="quadratic"``) a quadratic ease-in-out, so the motion starts and stops
    smoothly at every key."""
    expr = num(points[-1][1])
    for (ta, va), (tb, vb) in reversed(list(zip(points, points[1:]))):
        if tb <= ta:
            continue
        u = f"({t}-{num(ta)})/{num(tb - ta)}"
        if eased:
            u = f"if(lt({u},0.5),2*pow({u},2),1-2*pow(1-{u},2))"
        segment = f"({num(va)}+({num(vb - va)})*{u})"
        expr = f"if(lt({t},{num(tb)}),{segment},{expr})"
    return f"if(lt({t},{num(points[0][0])}),{num(points[0][1])},{expr})"


def _canvas(graph: FilterGraph, stream: Stream, width: float, height: float) -> tuple[Stream, int, int]:
    """``stream`` (with alpha) centred on a transparent canvas of at least ``width`` × ``height``
    plus a 2-pixel border; returns it and the canvas size. Its position moves to keep it in place."""
    w, h = stream.w, stream.h
    # even borders: 4:2:0 rounds pad and overlay offsets down to even pixels
    px = min(2 * graph.width, 2 * math.ceil((max(0.0, width - w) / 2 + 2) / 2))
    py = min(2 * graph.height, 2 * math.ceil((max(0.0, height - h) / 2 + 2) / 2))
    cw, ch = w + 2 * px, h + 2 * py
    stream = graph.as_format(stream, True)
    # drawn in 4:4:4 (no chroma siting shifts when resampled), back to 4:2:0 after
    label = graph.chain(stream.label, ["format=yuva444p", f"pad={cw}:{ch}:{px}:{py}:color=black@0"])
    return replace(stream, label=label, x=f"({stream.x})-{px}", y=f"({stream.y})-{py}", w=cw, h=ch), cw, ch


def _zoom(graph: FilterGraph, stream: Stream, sx: str, sy: str, biggest: float) -> Stream:
    """``stream`` zoomed about its centre by the expressions ``sx``, ``sy`` (of perspective's
    frame counter ``in``)."""
    grow = min(MAX_ZOOM, max(1.0, biggest))
    stream, cw, ch = _canvas(graph, stream, stream.w * grow, stream.h * grow)
    hx = f"({cw}/(2*max({sx},0.001)))"
    hy = f"({ch}/(2*max({sy},0.001)))"
    x0, x1 = f"({cw / 2}-{hx})", f"({cw / 2}+{hx})"
    y0, y1 = f"({ch / 2}-{hy})", f"({ch / 2}+{hy})"
    label = graph.chain(stream.label, [
        f"perspective=x0='{x0}':y0='{y0}':x1='{x1}':y1='{y0}':x2='{x0}':y2='{y1}':x3='{x1}':y3='{y1}'"
        f":interpolation=linear:sense=source:eval=frame", "format=yuva420p"])
    return replace(stream, label=label)


def _rotate(graph: FilterGraph, stream: Stream, angle: str) -> Stream:
    """``stream`` turned by ``angle`` (radians, clockwise on screen; an expression of ``n``)
    about its centre, on a canvas as big as its diagonal."""
    diagonal = math.hypot(stream.w, stream.h)
    stream, cw, ch = _canvas(graph, stream, diagonal, diagonal)
    label = graph.chain(stream.label, [f"rotate=a='{angle}':ow={cw}:oh={ch}:c=black@0", "format=yuva420p"])
    return replace(stream, label=label)
