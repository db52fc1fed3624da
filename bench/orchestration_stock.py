"""Prefect's stock path for ``bench/orchestration.py``: ``flows.image.info`` served by
``prefect.serve`` (a Runner that starts ``python -m prefect.engine`` per flow run) as the
deployment ``image.info/stock``.

The deployment is made from the flow's entrypoint: ``info.serve()`` would hand the flow
object to each subprocess through cloudpickle, which fails on our task flows
("cannot pickle '_contextvars.ContextVar' object": the decorator's closure reaches
``flows.run_scope._scope``).

Run by the benchmark from the project root with ``PREFECT_API_URL`` (and the service's
``DRAGONFLOW_*`` settings) in the environment; ``PREFECT_RUNNER_POLL_FREQUENCY`` sets
its poll interval.
"""

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

if __name__ == "__main__":
    serve(RunnerDeployment.from_entrypoint("flows/image.py:info", name="stock"), print_starting_message=False)
