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
            secret = getattr(account, kind)
            if secret is not None and hmac.compare_digest(secret.get_secret_value().encode(), value.encode()):
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

    async def credential(self, request: Request, body: dict[str, Any]) -> tuple[str, str]:
        """(``secret`` or ``api_key``, value) from the Authorization header (``Secret X``,
        ``Api-Key X``, or a bare value, as real clients send it), the body or the query."""
        header = request.headers.get("authorization", "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "secret":
            return "secret", token.strip()
        if scheme.lower() == "api-key":
            return "api_key", token.strip()
        if header and not token:
            if await self.lookup("secret", header) is None and await self.lookup("api_key", header) is not None:
                return "api_key", header
            return "secret", header
        for kind in ("secret", "api_key"):
            if value := body.get(kind) or request.query_params.get(kind):
                return kind, str(value)
        return "secret", ""

    async def authenticate(self, request: Request, body: dict[str, Any]) -> AccountBlock:
        """The account a request is made for, or 401."""
        kind, value = await self.credential(request, body)
        if not value:
            raise unauthorized("credentials are missing: pass a secret key or an api key")
        account = await self.lookup(kind, value)
        if account is None:
            raise unauthorized("invalid secret key" if kind == "secret" else "invalid api key")
        if kind == "api_key" and not referrer_allowed(request.headers.get("referer"), account.referrers):
            raise unauthorized("the Referer of this request is not in the account's whitelist")
        return account
