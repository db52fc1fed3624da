"""Small helpers the media tests share."""

import json
import subprocess


def run(*command: str) -> str:
    """A tool's stdout (it must succeed within 2 minutes)."""
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def ffprobe_json(*args: str) -> dict:
    """ffprobe's JSON answer for ``args``."""
    return json.loads(run("ffprobe", "-v", "error", "-print_format", "json", *args))
