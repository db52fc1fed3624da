"""CORS for browser clients: origins are the accounts' Referer whitelists."""

from __future__ import annotations

from typing import Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

ORIGINS_MAX_AGE = 10.0


class AccountCORS(CORSMiddleware):
    """Starlette's CORS middleware with the allowed origins read from the accounts."""

    def __init__(self, app: ASGIApp, accounts: Callable[[], object]):
        super().__init__(
            app, allow_origins=[], allow_methods=["*"], allow_headers=["*"], expose_headers=["*"]
        )
        self._accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accounts = self._accounts()
        if scope["type"] == "http" and accounts is not None:
            try:
                await accounts.reload(ORIGINS_MAX_AGE)
            except Exception:  # Prefect unreachable: the route answers 503 itself
                pass
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        accounts = self._accounts()
        return accounts is not None and origin.lower() in accounts.origins
