"""The task tables of README.md and docs/ are generated from the registry and up to date."""

import subprocess
import sys
from pathlib import Path

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
