"""The VimQu surface (seed 003) under ``/api/``: tasks (one input, many outputs to registered
storages), registered storages, the profile. Bearer tokens (``auth``), rate limit and credits
(``limits``), the ``{"message", "errors"}`` error envelope (``errors``), request bodies
(``body``), the input check at creation (``inputs``). Runs are created and read through the run gateway (``api.gateway``), rendered
by ``flows.contract.vimqu``."""

from fastapi import APIRouter

from api.vimqu import routes, storages

router = APIRouter()
router.include_router(routes.router)
router.include_router(storages.router)
