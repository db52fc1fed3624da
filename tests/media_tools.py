"""Small helpers the media tests share."""

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path


def run(*command: str) -> str:
    """A tool's stdout (it must succeed within 2 minutes)."""
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def ffprobe_json(*args: str) -> dict:
    """ffprobe's JSON answer for ``args``."""
    return json.loads(run("ffprobe", "-v", "error", "-print_format", "json", *args))


def extinf_durations(playlist: Path) -> list[float]:
    """The segment durations an HLS media playlist lists."""
    return [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", playlist.read_text())]


def mpd_segment_durations(mpd: Path) -> dict[str, list[float]]:
    """Each DASH representation's segment durations (seconds), by representation id."""
    from flows.outputs.package import MPD_NS

    ns = {"mpd": MPD_NS}
    durations = {}
    for rep in ET.parse(mpd).getroot().iter(f"{{{MPD_NS}}}Representation"):
        template = rep.find("mpd:SegmentTemplate", ns)
        scale = int(template.get("timescale"))
        durations[rep.get("id")] = [int(s.get("d")) / scale for s in template.findall("mpd:SegmentTimeline/mpd:S", ns)
                                    for _ in range(int(s.get("r", "0")) + 1)]
    return durations
