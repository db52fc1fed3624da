"""Client accounts as Prefect blocks (never plain files): credentials and Referer whitelist."""

from __future__ import annotations

import re
import secrets

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from pydantic import Field, SecretStr

from .meta import DOCUMENTATION_URL, LOGO_URL

ACCOUNT_PREFIX = "account-"


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

    @staticmethod
    def document_name(name: str) -> str:
        return ACCOUNT_PREFIX + name

    def credentials(self) -> dict[str, str]:
        return {
            "name": self.name,
            "secret": self.secret.get_secret_value(),
            "api_key": self.api_key.get_secret_value(),
        }


def check_account_name(name: str) -> str:
    """Account names are lower-case slugs (they appear in tags, paths and block names)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise ValueError(f"account name {name!r}: use lower-case letters, digits and dashes")
    return name


async def create_account(name: str, **settings: object) -> AccountBlock:
    """Create account ``name``, or update the given ``settings`` (referrers, limits) of an
    existing one; its credentials never change."""
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
