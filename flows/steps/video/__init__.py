"""Video internals: frames, encoding, geometry, reverse."""
