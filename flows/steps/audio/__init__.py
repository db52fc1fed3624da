"""Audio internals: probe, encode, waveform, beats, text to speech."""
