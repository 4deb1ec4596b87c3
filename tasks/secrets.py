"""Secrets for providers, read from Prefect blocks (the domain package never imports Prefect)."""

from __future__ import annotations


def prefect_secret_loader(block_name: str) -> str:
    """The value of the Prefect ``Secret`` block ``block_name`` (raises if it does not exist).

    Pass as ``token_loader`` to the tushare provider; the value is never logged.
    """
    from prefect.blocks.system import Secret

    return Secret.load(block_name).get()
