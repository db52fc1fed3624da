"""README.md and docs/: the task tables generated from the registry and up to date, the\nREADME short, and its "Try it" commands working as written."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from deployments.local import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_task_tables_match_the_registry():
    done = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_setting_is_described():
    from flows.settings import Settings

    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_readme_stays_a_newcomers_page():
    """Set-up, try it, tasks, surfaces and an operations summary; figures live in docs/performance.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 450, f"README.md has {len(lines)} lines: move reference material under docs/"
    assert lines[2:6] == ["```sh", lines[3], lines[4], "```"] and lines[3].startswith("./bootstrap.sh up"), lines[:6]



def readme_section(title: str) -> str:
    """The text of README.md's ``## title`` section."""
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def json_values(text: str) -> list:
    """The JSON values printed one after another (curl -s adds no newline)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        value, at = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
        values.append(value)
    return values


def test_the_readme_try_it_commands_work_as_written(service, tmp_path):
    """The shell blocks of "Try it", run by bash and curl as a user pastes them: only the
    placeholders (SECRET, KEY) and the ports (the suite's service is not on 8000) are filled
    in; the service is already up with ``DRAGONFLOW_FETCH_ALLOW=127.0.0.1``."""
    blocks = re.findall(r"```sh\n(.*?)```", readme_section("Try it"), re.S)
    script = "\n".join(blocks)
    assert "./bootstrap.sh up" in script and script.count("curl ") == 3, script
    api = service.api.removeprefix("http://")
    script = script.replace("localhost:8000", api).replace("127.0.0.1:8000", api)
    script = script.replace("9000", str(free_port()))  # the input server's port
    lines = [line for line in script.replace("tasks=KEY", "tasks=$KEY").splitlines()
             if not line.startswith(("SECRET=", "DRAGONFLOW_FETCH_ALLOW="))]
    Image.new("RGB", (800, 600), (20, 160, 90)).save(tmp_path / "photo.jpg", "JPEG")
    key = service.run({"task_name": "hello", "name": "earlier"})["key"]
    done = subprocess.run(["bash", "-c", "trap 'kill $(jobs -p)' EXIT\n" + "\n".join(lines)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "SECRET": service.account["secret"], "KEY": key})
    assert done.returncode == 0, done.stderr
    hello, thumb, status = json_values(done.stdout)
    assert hello[0]["status"] == "success" and hello[0]["result"] == "Hello John", hello
    result = thumb[0]["result"]
    assert {k: result[k] for k in ("width", "height", "original_width", "original_height")} == {
        "width": 200, "height": 150, "original_width": 800, "original_height": 600}, thumb
    assert result["output"].startswith(f"{service.api}/storage/persistent/local/{thumb[0]['key']}/")
    assert Image.open(io.BytesIO(service.http.get(result["output"]).content)).size == (200, 150)
    assert status[0]["key"] == key and status[0]["result"] == "Hello earlier", status


PIPELINE_RUN = """
import asyncio, json, sys
namespace = {}
exec(compile(sys.stdin.read(), "README.md", "exec"), namespace)
print(json.dumps(asyncio.run(namespace["contact_sheet"](sys.argv[1:]))))
"""


def test_the_readme_pipeline_example_runs(service, media):
    """The "Using the flows in a pipeline" example, as written, run by a data engineer's
    own process against the service's Prefect server: a thumbnail of each URL."""
    [example] = re.findall(r"```python\n(.*?)```", readme_section("Using the flows in a pipeline"), re.S)
    urls = [media.image("sheet-1.jpg", size=(800, 600)), media.image("sheet-2.jpg", size=(640, 640))]
    done = subprocess.run([sys.executable, "-c", PIPELINE_RUN, *urls], input=example, cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=service.env)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads(done.stdout.strip().splitlines()[-1])
    sizes = [Image.open(io.BytesIO(service.http.get(url).content)).size for url in outputs]
    assert sizes == [(320, 240), (320, 320)], (outputs, sizes)
