"""Audio internals. Steps (Prefect tasks; ``.fn`` is the plain coroutine function):
``probe.probe_audio``, ``encode.encode_audio``, ``waveform.draw_waveform``,
``beats.find_beats``, ``tts.speak``."""
