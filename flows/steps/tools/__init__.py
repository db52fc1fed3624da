"""External tools: the process runner (``process``), ffmpeg (``ffmpeg``), ffprobe (``probe``,
with the ``probe_input`` step) and PCM decoding (``pcm``)."""
