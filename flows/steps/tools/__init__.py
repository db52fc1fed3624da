"""External tools: the ffmpeg/ffprobe/espeak-ng runner and PCM decoding."""
