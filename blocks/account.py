"""Client accounts as Prefect blocks (never plain files): credentials, Referer whitelist,
the VimQu surface's Bearer token, webhook signing secret and URL, credits and suspension."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime
from typing import Any

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from pydantic import Field, SecretStr

from .meta import DOCUMENTATION_URL, LOGO_URL

ACCOUNT_PREFIX = "account-"
TOKEN_PREFIX = "vq_"
WEBHOOK_SECRET_PREFIX = "whsec_"


def new_token() -> str:
    """A VimQu Bearer token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


class AccountBlock(Block):
    """A client account of the Tasks API."""

    _block_type_name = "Dragonflow Account"
    _block_type_slug = "dragonflow-account"
    _description = "An API account: secret, api key and the Referer whitelist for api-key auth."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.account import AccountBlock

    account_block = AccountBlock.load("BLOCK_NAME")  # BLOCK_NAME = "account-" + the account name
    ```
    """

    name: str = Field(description="Account name (tags its runs and prefixes its files).")
    secret: SecretStr = Field(description="Secret key for server-to-server requests.")
    api_key: SecretStr = Field(description="Api key, valid only with a whitelisted Referer.")
    referrers: list[str] = Field(default_factory=list, description="Origins allowed with the api key.")
    expiration_days: int = Field(0, ge=0, description="Persistent files older than this are deleted; 0 = never.")
    max_concurrent: int = Field(0, ge=0, description="Tasks queued or running at once; 0 = no limit.")
    max_per_day: int = Field(0, ge=0, description="Tasks created per 24 h; 0 = no limit.")
    token: SecretStr | None = Field(
        None, description="Bearer token of the VimQu API (/api/...); `dragonflow account token` replaces it.")
    webhook_secret: SecretStr | None = Field(
        None, description="Signs webhooks and callbacks (Standard Webhooks: whsec_ + base64 key).")
    webhook_url: str | None = Field(None, description="Receives every VimQu task's result object when it ends.")
    credits_minutes: float | None = Field(
        None, description="VimQu credits granted, in output minutes; none = the initial balance setting.")
    credits_since: datetime | None = Field(
        None, description="When credits_minutes was granted: tasks created since then spend it.")
    suspended: bool = Field(False, description="A suspended account gets 403 on the VimQu API.")
    suspended_message: str | None = Field(None, description="What a suspended account is told.")

    @staticmethod
    def document_name(name: str) -> str:
        return ACCOUNT_PREFIX + name

    def credentials(self) -> dict[str, Any]:
        """What ``dragonflow account create`` prints: name, Stupeflix secret and api key,
        VimQu token and webhook signing secret."""
        return {
            "name": self.name,
            "secret": self.secret.get_secret_value(),
            "api_key": self.api_key.get_secret_value(),
            "token": self.token.get_secret_value() if self.token else None,
            "webhook_secret": self.webhook_secret.get_secret_value() if self.webhook_secret else None,
        }

    def ensure_vimqu_credentials(self) -> bool:
        """Give a token and a webhook secret to an account that has none (accounts made
        before the VimQu surface); True when one was added."""
        added = False
        if self.token is None or not self.token.get_secret_value():
            self.token, added = SecretStr(new_token()), True
        if self.webhook_secret is None or not self.webhook_secret.get_secret_value():
            self.webhook_secret, added = SecretStr(new_webhook_secret()), True
        return added


def check_account_name(name: str) -> str:
    """Account names are lower-case slugs (they appear in tags, paths and block names)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise ValueError(f"account name {name!r}: use lower-case letters, digits and dashes")
    return name


async def create_account(name: str, *, initial: dict[str, object] | None = None, **settings: object) -> AccountBlock:
    """Create account ``name``, or update the given ``settings`` (referrers, limits) of an
    existing one; its credentials never change (an account without a VimQu token or webhook
    secret gets them). ``initial`` settings apply only to a new account."""
    check_account_name(name)
    document = AccountBlock.document_name(name)
    async with get_client() as client:
        try:
            await client.read_block_document_by_name(document, AccountBlock.get_block_type_slug())
            exists = True
        except ObjectNotFound:
            exists = False
    if exists:  # load errors propagate: never replace an account's credentials by accident
        account = await AccountBlock.aload(document)
    else:
        account = AccountBlock(name=name, secret=secrets.token_hex(16), api_key=secrets.token_hex(12))
        for field, value in (initial or {}).items():
            setattr(account, field, value)
    account.ensure_vimqu_credentials()
    for field, value in settings.items():
        setattr(account, field, value)
    await account.asave(document, overwrite=True)
    return account


async def load_accounts(client: PrefectClient) -> list[AccountBlock]:
    """Every account, secrets included (one API call)."""
    documents = await client.read_block_documents_by_type(
        AccountBlock.get_block_type_slug(), include_secrets=True
    )
    return [AccountBlock._from_block_document(doc) for doc in documents]


async def load_account(name: str) -> AccountBlock:
    """Account ``name`` (ValueError when there is none)."""
    check_account_name(name)
    return await AccountBlock.aload(AccountBlock.document_name(name))


async def update_account(name: str, **settings: object) -> AccountBlock:
    """Set ``settings`` of existing account ``name`` and save it."""
    account = await load_account(name)
    for field, value in settings.items():
        setattr(account, field, value)
    await account.asave(AccountBlock.document_name(name), overwrite=True)
    return account
