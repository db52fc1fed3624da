"""video.create: render an SXML movie definition (spec: ../shared/specs/sxml.md).

Layers, each pure and usable on its own:

- ``sxml``: hardened XML parse into an immutable node tree, the asset list, the error classes;
- ``timeline``: the timing model (spec §4) -> a flat, render-ready ``Plan``;
- ``profiles``: output profile names -> size and frame rate (spec §12).
"""
