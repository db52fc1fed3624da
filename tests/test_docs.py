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
