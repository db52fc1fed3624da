"""Make docs/images/prefect-run.png: the Prefect UI's page of one ``image.thumb`` run (its
steps as task runs, logs and result), as the README shows it.

Starts the whole service in a temporary home, runs one task on a generated picture, and
takes the screenshot with headless Chromium (Debian's ``chromium``).

Run: .venv/bin/python bench/screenshot_run.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx
from PIL import Image

from deployments.local import LocalService, serve_directory

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "prefect-run.png"
SIZE = (1400, 900)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "media").mkdir()
        Image.radial_gradient("L").resize((800, 600)).convert("RGB").save(root / "media" / "photo.jpg")
        with serve_directory(root / "media") as media, LocalService(root / "home") as service:
            task = {"task_name": "image.thumb", "url": f"{media}/photo.jpg", "width": 200, "height": 200}
            status = httpx.post(f"{service.api}/v2/create", timeout=60, json={
                "secret": service.account["secret"], "tasks": task, "block": True}).json()[0]
            details = httpx.get(f"{service.api}/v2/status", timeout=30, params={
                "tasks": status["key"], "details": "true", "secret": service.account["secret"]}).json()[0]
            page = details["details"]["prefect_ui"]
            raw = root / "shot.png"
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={root / 'chromium'}", f"--window-size={SIZE[0]},{SIZE[1]}",
                 "--virtual-time-budget=15000", "--hide-scrollbars", f"--screenshot={raw}", page],
                check=True, capture_output=True, timeout=120,
            )
            Image.open(raw).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size} bytes) from {page}")


if __name__ == "__main__":
    main()
