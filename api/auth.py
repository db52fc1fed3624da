"""Authentication (seed 000): secret key, or api key + whitelisted Referer."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from prefect.client.orchestration import PrefectClient

from api.errors import unauthorized
from blocks.account import AccountBlock, load_accounts

RELOAD_INTERVAL = 1.0


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def referrer_allowed(referer: str | None, whitelist: list[str]) -> bool:
    """True when the Referer's origin (or host) is in the account's whitelist."""
    if not referer:
        return False
    origin, host = _origin(referer), urlsplit(referer).netloc.lower()
    return any(entry.lower().rstrip("/") in (origin, host) for entry in whitelist)


class Accounts:
    """Accounts read from their Prefect blocks, cached; re-read on an unknown credential."""

    def __init__(self, client: PrefectClient):
        self._client = client
        self._accounts: list[AccountBlock] = []
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def _find(self, kind: str, value: str) -> AccountBlock | None:
        for account in self._accounts:
            if hmac.compare_digest(getattr(account, kind).get_secret_value(), value):
                return account
        return None

    async def reload(self, older_than: float = RELOAD_INTERVAL) -> None:
        """Re-read the accounts when the cached copy is older than ``older_than`` seconds."""
        if time.monotonic() - self._loaded_at > older_than:
            async with self._lock:
                self._accounts = await load_accounts(self._client)
                self._loaded_at = time.monotonic()

    @property
    def origins(self) -> set[str]:
        """Every whitelisted origin (browser clients get CORS headers for these)."""
        return {_origin(r) if "://" in r else r.lower() for a in self._accounts for r in a.referrers}

    async def lookup(self, kind: str, value: str) -> AccountBlock | None:
        account = await self._find(kind, value)
        if account is None:
            await self.reload()
            account = await self._find(kind, value)
        return account

    async def authenticate(self, request: Request, body: dict[str, Any]) -> AccountBlock:
        """The account a request is made for, or 401."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        secret = body.get("secret") or request.query_params.get("secret")
        api_key = body.get("api_key") or request.query_params.get("api_key")
        if scheme.lower() == "secret":
            secret = token.strip()
        elif scheme.lower() == "api-key":
            api_key = token.strip()
        if secret:
            account = await self.lookup("secret", str(secret))
            if account is None:
                raise unauthorized("invalid secret key")
            return account
        if api_key:
            account = await self.lookup("api_key", str(api_key))
            if account is None:
                raise unauthorized("invalid api key")
            if not referrer_allowed(request.headers.get("referer"), account.referrers):
                raise unauthorized("the Referer of this request is not in the account's whitelist")
            return account
        raise unauthorized("credentials are missing: pass a secret key or an api key")
