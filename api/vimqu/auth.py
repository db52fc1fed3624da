"""VimQu authentication: ``Authorization: Bearer <token>`` names an account (its ``token``
field, made by ``dragonflow account create`` and replaced by ``dragonflow account token``).

401 for a missing or unknown token, 403 for a suspended account (with the account's
message), then the per-token rate limit (429). The account copy is re-read from its Prefect
block when older than ``vimqu_account_refresh`` seconds, so a suspension, new credits or a
new token apply within that time on every API process.
"""

from __future__ import annotations

from fastapi import Request

from api.auth import Accounts
from api.vimqu.errors import forbidden, unauthenticated
from blocks.account import AccountBlock
from flows.settings import get_settings

SUSPENDED = "Your account has been suspended."


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or 401."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Unauthenticated: send the header Authorization: Bearer <your_token>.")
    return token.strip()


async def account_for(accounts: Accounts, token: str) -> AccountBlock | None:
    """The account whose VimQu token is ``token`` (None when there is none); the cached
    accounts are re-read every ``vimqu_account_refresh`` s (suspension, credits)."""
    await accounts.reload(older_than=get_settings().vimqu_account_refresh)
    return await accounts.lookup("token", token)


async def current_account(request: Request) -> AccountBlock:
    """FastAPI dependency of every VimQu route: the request's account, or 401/403/429."""
    token = bearer_token(request)
    account = await account_for(request.app.state.accounts, token)
    if account is None:
        raise unauthenticated()
    if account.suspended:
        raise forbidden(account.suspended_message or SUSPENDED)
    await request.app.state.vimqu_limiter.hit(token)
    request.state.vimqu_token = token
    return account
