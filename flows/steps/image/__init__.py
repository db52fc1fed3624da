"""Image internals: probe, resize, GIF, strip, analysis, faces, saliency, smart crop."""
