"""The task contract both REST surfaces and the workers share, below them all.

- ``keys``: task key <-> flow run id.
- ``runs``: what a run carries (tags, result and progress artifacts), its neutral
  ``Phase`` from a Prefect state, and reading runs with their artifacts.
- ``stupeflix``: pure renderers of the Stupeflix v1/v2 status objects.

Nothing here imports FastAPI, media libraries or ``flows.steps``.
"""
