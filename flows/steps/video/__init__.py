"""Video internals: frames, encoding, geometry, reverse. Steps (Prefect tasks; ``.fn`` is the
plain coroutine function): ``encode.encode_video``, ``reverse.reverse_video``,
``frames.thumbnail_frame``, ``frames.film_strip``; the probe is ``tools.probe.probe_input``."""
